#!/usr/bin/env python
"""Inference speed of a deployed PartialNet, its unfused graph and peers, in one table.

    .venv/bin/python tools/benchmark.py t2                      # a variant (t0 t1 t2 s m l)
    .venv/bin/python tools/benchmark.py configs/partialnet-s_8xb512_in1k.py --checkpoint CKPT
    .venv/bin/python tools/benchmark.py s --channels-last --compile --json s.json
    .venv/bin/python tools/benchmark.py t2 --no-cpu --channels-last --cuda-graph   # GPU table only
    # a detector against the mmdet config it is built on (Mask R-CNN R50; RTMDet-tiny, CSPNeXt)
    .venv/bin/python tools/benchmark.py --det configs/mask_rcnn_partialnet_s_1x.py
    .venv/bin/python tools/benchmark.py --det configs/rtmdet_partialnet-t0_8xb32-300e_coco.py
    .venv/bin/python tools/benchmark.py --plot cpu.png docs/bench/cpu_*.json  # speed against params
    # deployment runtimes
    .venv/bin/python tools/benchmark.py t2 --runtime torch,onnxruntime,openvino
    # INT8 against fp32 and against the peers' INT8 (ONNX Runtime QDQ, OpenVINO NNCF)
    .venv/bin/python tools/benchmark.py t0 --runtime onnxruntime,openvino --int8
    # 800x1216 backbone
    .venv/bin/python tools/benchmark.py s --runtime onnxruntime --backbone --dynamic
    # the whole detector (NMS inside) against its mmdet baseline, exported the same way
    .venv/bin/python tools/benchmark.py --det configs/rtmdet_partialnet-t0_8xb32-300e_coco.py \
        --runtime torch,onnxruntime,openvino

The fused model (``switch_to_deploy``: conv+BN folding, PAT_sp's BN + 1x1 conv folded
into the MLP, one-pass statistics, fused attention) must match the unfused one to
1e-4 (fp32 max abs difference) or no speed is reported (exit code 3). Measured in one
run: CPU latency (1 thread, batch 1, median after warm-up), CPU throughput (all
threads), GPU throughput (batch 256, AMP) when CUDA is available; peers are timm's
FasterNet of the same size (when timm is installed) and ResNet-50. Each row also counts the
model's operations per forward (top-level ATen operators, torch.profiler).

``--det``: a two-stage detector (Mask R-CNN) is timed whole, unfused and fused against the
baseline, in images/s at 800x1216 (all threads); a one-stage detector (RTMDet, RTMDet-Ins),
fused against the baseline at 640x640, batch 1, at 1 thread and at all threads, split into
backbone + neck, head and post-processing (score filter, NMS, masks). The baseline is the
mmdet config ours is built on (``--det-baseline`` to change it).

``--runtime``: the fused PartialNet, FasterNet and ResNet-50 exported to ONNX the same way
(``--exporter``, fixed input size or ``--dynamic``), each export checked against PyTorch,
then timed in PyTorch eager, ONNX Runtime and OpenVINO interleaved: 1 thread batch 1 and all
threads batch ``--cpu-batch``; ``--backbone`` times the four-stage feature extractors at
800x1216 (``--det-shape``) instead of the classifiers at 224x224.

``--runtime ... --int8``: the same three models, fp32 and INT8 (quantized as
tools/quantize.py does: the INT8-friendly form, onnxruntime's QDQ and NNCF, calibrated on
random images; random weights decide no kernel), all timed interleaved at 1 thread batch 1,
with the INT8 graphs' node counts and ONNX Runtime's profile of PartialNet's INT8 file.

``--det CONFIG --runtime``: the whole detector and its baseline exported end to end (as
tools/export_onnx.py does; NMS and masks inside), each checked against mmdet's predict, for a
fixed size and for any size, plus the network alone (no post-processing); all timed
interleaved in each runtime at 1 thread and all threads, batch 1, with ONNX Runtime's op
profile of both end-to-end graphs. Random heads score every candidate at their initial prior
(0.01), above RTMDet's 0.001 threshold, so one-stage detectors run with
model.test_cfg.nms_pre=1000 (1000 candidates a level into NMS, the same for both models; the
order of what a trained model passes at 0.001); two-stage detectors with
model.test_cfg.rcnn.score_thr=0, so that both keep max_per_img detections and mask them all
(random weights would otherwise keep a different number). --cfg-options to change.
"""
import argparse
import json
import sys

from mmengine.config import DictAction

from partialnet_mm.benchmark.modes import REFUSALS, BenchmarkRequest, error_message, exit_code


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', nargs='?', default='t0',
                   help='variant (t0 t1 t2 s m l) or an mmpretrain config of ours')
    p.add_argument('--checkpoint', help='classifier checkpoint to load (else random weights)')
    p.add_argument('--det', metavar='CONFIG', help='detection mode: a detection config of ours '
                                                   '(Mask R-CNN, RTMDet, RTMDet-Ins)')
    p.add_argument('--det-baseline', metavar='CONFIG',
                   help='the yardstick (default: the mmdet config --det is built on)')
    p.add_argument('--det-shape', type=int, nargs=2, metavar=('H', 'W'),
                   help='input size (default: 800 1216 for two-stage detectors and the '
                        'backbones of --runtime --backbone, 640 640 for one-stage ones)')
    p.add_argument('--input-size', type=int, default=224)
    p.add_argument('--runs', type=int, default=100, help='timed CPU latency runs per model')
    p.add_argument('--warmup', type=int, default=10)
    p.add_argument('--rounds', type=int, default=5,
                   help='interleaved timing rounds (= --runs: the models called in turn, one '
                        'call at a time, the steadiest on a shared machine)')
    p.add_argument('--cpu-batch', type=int, default=32)
    p.add_argument('--cpu-runs', type=int, default=10)
    p.add_argument('--gpu-batch', type=int, default=256)
    p.add_argument('--gpu-runs', type=int, default=30)
    p.add_argument('--no-amp', action='store_true', help='fp32 on the GPU')
    p.add_argument('--no-cuda', action='store_true')
    p.add_argument('--no-cpu', action='store_true',
                   help='skip the CPU timings (GPU table; the fused == unfused check still runs)')
    p.add_argument('--no-peers', action='store_true', help='skip FasterNet and ResNet-50')
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--compile', action='store_true', help='torch.compile every model')
    p.add_argument('--cuda-graph', action='store_true',
                   help='GPU: replay every model as a captured CUDA graph (no launch cost)')
    p.add_argument('--runtime', metavar='NAMES',
                   help='time the deployment runtimes instead: a comma-separated list of '
                        'torch, onnxruntime, openvino')
    p.add_argument('--int8', action='store_true',
                   help='--runtime: fp32 and INT8 of PartialNet and its peers, interleaved')
    p.add_argument('--backbone', action='store_true',
                   help='--runtime: the detection backbones at --det-shape (800x1216)')
    p.add_argument('--dynamic', action='store_true',
                   help='--runtime: export for any input size (default: for the timed size)')
    p.add_argument('--exporter', choices=['dynamo', 'torchscript'], default='dynamo',
                   help='--runtime: torch.onnx.export(dynamo=True) or the TorchScript exporter')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                   help='--det --runtime: override both detector configs (default: '
                        'model.test_cfg.nms_pre=1000 for one-stage detectors, '
                        'model.test_cfg.rcnn.score_thr=0 for two-stage ones; see above)')
    p.add_argument('--smoke', action='store_true',
                   help='tiny sizes and few iterations: checks that it runs, not speed')
    p.add_argument('--json', metavar='FILE', help='write the numbers as JSON')
    p.add_argument('--plot', nargs='+', metavar=('FILE.png', 'JSON'),
                   help='draw CPU latency (or GPU throughput) against parameters from JSON '
                        'files this tool wrote (one per variant), PartialNet beside FasterNet '
                        'and ResNet-50; times nothing')
    p.add_argument('--plot-metric', choices=['cpu_latency_ms', 'gpu_images_per_s'],
                   help='what --plot draws (default: CPU latency when every file has it)')
    return p.parse_args(argv)


def plot(args) -> int:
    from partialnet_mm.benchmark.plot import plot_speed_vs_params
    if len(args.plot) < 2 or not args.plot[0].endswith('.png'):
        print('error: --plot FILE.png JSON [JSON ...]', file=sys.stderr)
        return 2
    try:
        print(plot_speed_vs_params(args.plot[1:], args.plot[0], args.plot_metric))
    except ValueError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.plot:
        return plot(args)
    try:
        result, table = BenchmarkRequest.from_options(vars(args)).run()
    except REFUSALS as e:
        print(f'error: {error_message(e)}', file=sys.stderr)
        return exit_code(e)
    print(table(result))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
        print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
