#!/usr/bin/env python
"""INT8 post-training static quantization of a trained mmpretrain classifier (ONNX, QDQ).

    .venv/bin/python tools/quantize.py CONFIG CHECKPOINT OUT.onnx [--calib-num N] [--calib-dir D]
    .venv/bin/python tools/quantize.py configs/demo/partialnet-t0_digits.py CKPT t0_int8.onnx --eval

The backbone is fused and checked, the classifier exported to ONNX (dynamic batch and size;
written beside OUT as ``*_fp32.onnx``), then quantized with onnxruntime's quantize_static:
QDQ format, INT8 weights (per channel) and activations, calibrated on ``--calib-num`` images
of the config's training set through its test pipeline (or of ``--calib-dir``). Conv and Gemm
run in INT8; the channel attentions, PAT_sp's gate and PAT_sf's attention stay fp32.
``--eval``: top-1 on the config's test set and 1-thread batch-1 latency of fp32 and INT8 in
ONNX Runtime and OpenVINO (``--runtime``), PyTorch fp32 beside them, timed interleaved.
"""
import argparse
import sys

from mmengine.config import DictAction

from partialnet_mm.benchmark.report import markdown_table
from partialnet_mm.benchmark.runtimes import parse_runtimes
from partialnet_mm.checkpoint import CheckpointError
from partialnet_mm.deploy import FusionMismatch
from partialnet_mm.toolkit.quantize import evaluate, quantize


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config', help='the mmpretrain config the checkpoint was trained with')
    p.add_argument('checkpoint', help='the trained (or fused) checkpoint')
    p.add_argument('out', help='the INT8 .onnx file to write')
    p.add_argument('--calib-num', type=int, default=300, help='calibration images')
    p.add_argument('--calib-dir', help='calibrate on the images of this folder instead')
    p.add_argument('--eval', action='store_true',
                   help='top-1 and latency of fp32 and INT8 in the runtimes')
    p.add_argument('--runtime', default='onnxruntime,openvino',
                   help='--eval: comma-separated runtimes (onnxruntime, openvino)')
    p.add_argument('--runs', type=int, default=100, help='--eval: timed calls per model')
    p.add_argument('--time-size', type=int, nargs='*', default=[224], metavar='N',
                   help='--eval: also time on random NxN images (default: 224)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = p.parse_args(argv)
    try:
        runtimes = [r for r in parse_runtimes(args.runtime) if r.package] if args.eval else []
        done = quantize(args.config, args.checkpoint, args.out, args.calib_num, args.calib_dir,
                        args.cfg_options)
    except (OSError, KeyError, ValueError, CheckpointError, FusionMismatch) as err:
        print(f'error: {err.args[0] if isinstance(err, KeyError) else err}', file=sys.stderr)
        return 2
    print(f'wrote {done["out"]} (INT8, QDQ; calibrated on {done["calibration_images"]} images) '
          f'and {done["fp32"]} (fp32); {len(done["fp32_nodes"])} Conv/Gemm nodes kept fp32 '
          f'(channel attention gates, PAT_sp gates, PAT_sf attention)')
    if args.eval:
        rows = evaluate(done['config'], done['model'], {'fp32': done['fp32'], 'int8': done['out']},
                        runtimes, args.runs, sizes=args.time_size)
        sizes = list(rows[0]['latency_ms'])
        fp32 = {r['runtime']: r['latency_ms'] for r in rows if r['precision'] == 'fp32'}
        headers = ['runtime', 'precision', 'top-1 (%)']
        headers += [f'ms, {s} (1 thread, batch 1)' for s in sizes]
        headers += [f'/ fp32, {s}' for s in sizes]
        print(markdown_table(
            headers,
            [[r['runtime'], r['precision'], f"{r['top1']:.2f}"]
             + [f"{r['latency_ms'][s]:.3f}" for s in sizes]
             + [f"{r['latency_ms'][s] / fp32[r['runtime']][s]:.3f}" for s in sizes]
             for r in rows]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
