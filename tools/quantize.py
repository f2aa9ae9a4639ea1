#!/usr/bin/env python
"""INT8 post-training static quantization of a trained classifier (ONNX Runtime's QDQ ONNX and
OpenVINO via NNCF) or end-to-end detector (ONNX Runtime).

    .venv/bin/python tools/quantize.py CONFIG CHECKPOINT OUT.onnx [--runtime onnxruntime,openvino]
    .venv/bin/python tools/quantize.py configs/demo/partialnet-t0_digits.py CKPT t0_int8.onnx --eval
    .venv/bin/python tools/quantize.py configs/demo/rtmdet_partialnet-t0_synthetic.py CKPT \
        rtmdet_int8.onnx --calib-num 128 --eval

The backbone is fused and checked, the classifier put in its INT8-friendly form (the same
function; every full-map operation has an INT8 kernel) and exported to ONNX at the config's
test image size (``--dynamic``: any batch and size), then quantized, calibrated on
``--calib-num`` images of the config's training set through its test pipeline (or of
``--calib-dir``): for ``onnxruntime`` by onnxruntime's quantize_static (QDQ, OUT.onnx), for
``openvino`` by NNCF (OUT_openvino.xml + .bin). The normal deployed form is written beside
them in fp32 (OUT_fp32.onnx). The channel attentions' (B, C, 1, 1) gates, PAT_sf's
LayerNorm and attention scores, and GELU stay fp32. ``--eval``: top-1 on the config's test
set and 1-thread batch-1 latency of fp32 and INT8 in each runtime, PyTorch fp32 beside them,
timed interleaved.

An mmdet config (RTMDet, RTMDet-Ins, Faster / Mask R-CNN) gives the end-to-end file of
tools/export_onnx.py at its fixed size, backbone, neck and heads in INT8 and the decoding and
NMS in fp32 (ONNX Runtime only), with its fp32 export beside it; ``--eval``: the config's COCO
metrics of both files in ONNX Runtime and their 1-thread latency.
"""
import argparse
import sys

from mmengine.config import DictAction

from partialnet_mm.benchmark.report import markdown_table
from partialnet_mm.checkpoint import CheckpointError
from partialnet_mm.deploy import FusionMismatch
from partialnet_mm.mmconfig import load_config
from partialnet_mm.toolkit.quantize import evaluate, quantize


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='the mmpretrain config the checkpoint was trained with')
    p.add_argument('checkpoint', help='the trained (or fused) checkpoint')
    p.add_argument('out', help='the INT8 .onnx file to write (ONNX Runtime); the OpenVINO '
                               'model goes beside it as *_openvino.xml')
    p.add_argument('--runtime', default='onnxruntime',
                   help='comma-separated runtimes to quantize for: onnxruntime (QDQ ONNX), '
                        'openvino (NNCF)')
    p.add_argument('--calib-num', type=int, default=300, help='calibration images')
    p.add_argument('--calib-dir', help='calibrate on the images of this folder instead')
    p.add_argument('--dynamic', action='store_true',
                   help='any batch and input size (slower INT8 in ONNX Runtime)')
    p.add_argument('--eval', action='store_true',
                   help='top-1 and latency of fp32 and INT8 in each runtime')
    p.add_argument('--runs', type=int, default=100, help='--eval: timed calls per model')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = p.parse_args(argv)
    runtimes = [r.strip() for r in args.runtime.split(',') if r.strip()]
    try:
        if load_config(args.config).get('default_scope') == 'mmdet':
            return detector(args, runtimes)
        done = quantize(args.config, args.checkpoint, args.out, runtimes, args.calib_num,
                        args.calib_dir, args.cfg_options, args.dynamic)
    except (OSError, KeyError, ValueError, CheckpointError, FusionMismatch) as err:
        print(f'error: {err.args[0] if isinstance(err, KeyError) else err}', file=sys.stderr)
        return 2
    for path in done['skipped']:
        print(f'skipped {path}: not a readable image')
    skipped = f', {len(done["skipped"])} skipped' if done['skipped'] else ''
    print(f'wrote {", ".join(done["out"].values())} (INT8, calibrated on '
          f'{done["calibration_images"]} images{skipped}) '
          f'and {done["fp32"]} (fp32); {len(done["fp32_nodes"])} nodes kept fp32 '
          f'(channel attention gates, PAT_sf LayerNorm and attention scores)')
    if args.eval:
        rows = evaluate(done['config'], done['model'], done['fp32'], done['out'], args.runs,
                        dynamic=args.dynamic)
        fp32 = {r['runtime']: r['latency_ms'] for r in rows if r['precision'] == 'fp32'}
        print(markdown_table(
            ['runtime', 'precision', 'top-1 (%)', 'ms (1 thread, batch 1)', '/ fp32'],
            [[r['runtime'], r['precision'], f"{r['top1']:.2f}", f"{r['latency_ms']:.3f}",
              f"{r['latency_ms'] / fp32[r['runtime']]:.3f}"] for r in rows]))
    return 0


def detector(args, runtimes) -> int:
    from partialnet_mm.toolkit.detector_quantize import evaluate_detector, quantize_detector

    if runtimes != ['onnxruntime'] or args.dynamic or args.calib_dir:
        raise ValueError('a detector is quantized for onnxruntime, at its fixed export size, '
                         'on its training images: drop --runtime, --dynamic and --calib-dir')
    done = quantize_detector(args.config, args.checkpoint, args.out, args.calib_num,
                             args.cfg_options)
    height, width = done['size']
    print(f'wrote {done["out"]} (INT8 {done["family"]}, {height}x{width}, calibrated on '
          f'{done["calibration_images"]} images; {len(done["fp32_nodes"])} nodes kept fp32: '
          f'post-processing and attention gates) and {done["fp32"]} (fp32)')
    if args.eval:
        rows = evaluate_detector(args.config, done['fp32'], done['out'], args.runs,
                                 cfg_options=args.cfg_options)
        names = [k for k in rows[0]['metrics'] if k.endswith('_mAP')]
        print(markdown_table(
            ['runtime', 'precision'] + names + ['ms (1 thread, batch 1)', '/ fp32'],
            [['onnxruntime', r['precision']] + [f"{r['metrics'][k]:.3f}" for k in names]
             + [f"{r['latency_ms']:.2f}", f"{r['latency_ms'] / rows[0]['latency_ms']:.3f}"]
             for r in rows]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
