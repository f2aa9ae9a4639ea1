#!/usr/bin/env python
"""COCO evaluation of an exported detector in ONNX Runtime or OpenVINO (mmdet's CocoMetric).

    .venv/bin/python tools/deploy_test.py CONFIG end2end.onnx [--runtime onnxruntime,openvino] \
        [--checkpoint CKPT]

Runs the file on every image of CONFIG's test set with the runtime-only preprocessing of
tools/deploy_infer.py and prints the config's metrics (bbox AP, and segm AP for instance
segmentation) for each runtime; with --checkpoint, the PyTorch model's metrics beside them
(mmdet's own test loop) and the differences.
"""
import argparse
import sys
import tempfile

from mmengine.config import DictAction

import partialnet_mm  # noqa: F401
from partialnet_mm.toolkit.deploy_eval import evaluate_deployed, evaluate_pytorch
from partialnet_runtime import MetadataError, RuntimeMissing
from partialnet_runtime.backends import parse_runtimes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='the mmdet config whose test set and metric to use')
    p.add_argument('model', help='the exported end-to-end .onnx file')
    p.add_argument('--runtime', default='onnxruntime',
                   help='comma-separated: onnxruntime, openvino (default onnxruntime)')
    p.add_argument('--checkpoint', help='also evaluate these PyTorch weights, side by side')
    p.add_argument('--threads', type=int, default=0, help='CPU threads (0: all)')
    p.add_argument('--limit', type=int, help='the first N images only')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, e.g. test_dataloader.dataset.data_root=...')
    args = p.parse_args(argv)
    try:
        runtimes = [r.name for r in parse_runtimes(args.runtime)]
        if 'torch' in runtimes:
            raise RuntimeMissing('the exported file runs in onnxruntime or openvino; '
                                 'PyTorch is --checkpoint')
        rows = {r: evaluate_deployed(args.config, args.model, r, args.threads, args.limit,
                                     args.cfg_options) for r in runtimes}
    except (MetadataError, RuntimeMissing, ValueError, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    if args.checkpoint:
        with tempfile.TemporaryDirectory() as work_dir:
            rows = {'pytorch': evaluate_pytorch(args.config, args.checkpoint, work_dir,
                                                args.cfg_options), **rows}
    keys = [k for k in next(iter(rows.values())) if k.endswith('_mAP')]
    print(f"\n| runtime | {' | '.join(k.split('/')[-1] for k in keys)} | s / image |")
    print('|---|' + '---|' * (len(keys) + 1))
    for name, m in rows.items():
        per_image = f"{m['seconds_per_image']:.3f}" if 'seconds_per_image' in m else '-'
        print(f"| {name} | {' | '.join(f'{m[k]:.3f}' for k in keys)} | {per_image} |")
    if 'pytorch' in rows:
        for name, m in rows.items():
            if name != 'pytorch':
                diffs = ', '.join(f"{k.split('/')[-1]} {m[k] - rows['pytorch'][k]:+.3f}"
                                  for k in keys)
                print(f'{name} - pytorch: {diffs}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
