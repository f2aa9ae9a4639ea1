#!/usr/bin/env python
"""Export the fused (deployed) PartialNet classifier or backbone to ONNX and check it.

    .venv/bin/python tools/export_onnx.py t0 partialnet_t0.onnx
    .venv/bin/python tools/export_onnx.py s s_backbone.onnx --backbone --checkpoint BACKBONE.pth
    .venv/bin/python tools/export_onnx.py configs/partialnet-t2_8xb512_in1k.py t2.onnx \
        --checkpoint CKPT
    .venv/bin/python tools/export_onnx.py t0 t0_224.onnx --exporter torchscript --fixed-size

The ONNX graph (one self-contained file) takes ``input`` (N, 3, H, W) with dynamic N, H and W
(H, W >= 32), or with ``--fixed-size`` only (1, 3, --input-size, --input-size) (PAT_sf's iRPE
bias is then a constant), and gives ``logits``, or ``stage{i}`` feature maps for the backbone.
``--exporter``: torch's dynamo exporter (default) or the TorchScript one (what mmdeploy
calls). onnxruntime's outputs are compared with PyTorch's (on other batch and input sizes
than the exported one when dynamic); the export fails (exit code 3) above 1e-4.
"""
import argparse
import os
import sys
import time

import torch

from partialnet_mm.benchmark import classifier_from_config
from partialnet_mm.deploy import FusionMismatch, fuse_and_check, randomize_norms
from partialnet_mm.models import PartialNet, PartialNetClassifier, load_backbone_checkpoint
from partialnet_mm.models.classifiers import load_classifier_checkpoint
from partialnet_mm.toolkit.onnx_export import default_shapes, export, verify


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('model', help='variant (t0 t1 t2 s m l) or an mmpretrain config of ours')
    p.add_argument('out', help='the .onnx file to write')
    p.add_argument('--backbone', action='store_true',
                   help='export the backbone with its four stage outputs (detection)')
    p.add_argument('--checkpoint', help='classifier (or, with --backbone, backbone) weights')
    p.add_argument('--input-size', type=int, default=224)
    p.add_argument('--opset', type=int, default=20)
    p.add_argument('--exporter', choices=['dynamo', 'torchscript'], default='dynamo')
    p.add_argument('--fixed-size', action='store_true',
                   help='export for batch 1 at --input-size only (default: any batch and size)')
    args = p.parse_args(argv)

    kwargs = classifier_from_config(args.model) if args.model.endswith('.py') \
        else dict(arch=args.model)
    torch.manual_seed(0)
    if args.backbone:
        kwargs = {k: v for k, v in kwargs.items() if k not in ('num_classes', 'mid_channels')}
        model = PartialNet(**kwargs).eval()
        if args.checkpoint:
            load_backbone_checkpoint(model, args.checkpoint)
    else:
        model = PartialNetClassifier(**kwargs).eval()
        if args.checkpoint:
            load_classifier_checkpoint(model, args.checkpoint)
    if not args.checkpoint:
        randomize_norms(model)
        print('no --checkpoint: exporting random weights (BN statistics randomised)')
    size = args.input_size
    try:
        fused, diff = fuse_and_check(model, torch.randn(2, 3, size, size), action='export it')
    except FusionMismatch as e:
        print(f'error: {e}', file=sys.stderr)
        return 3
    start = time.perf_counter()
    export(fused, args.out, size, args.opset, dynamo=args.exporter == 'dynamo',
           dynamic=not args.fixed_size, batch=1)
    seconds = time.perf_counter() - start
    shapes = [(1, 3, size, size)] if args.fixed_size else default_shapes(size)
    try:
        onnx_diff = verify(fused, args.out, shapes)
    except ValueError as e:
        print(f'error: {e}', file=sys.stderr)
        return 3
    print(f'wrote {args.out} ({os.path.getsize(args.out) / 2 ** 20:.1f} MiB, one file; '
          f'{args.exporter} exporter, {"fixed" if args.fixed_size else "dynamic"} size, '
          f'{seconds:.1f} s): fused vs unfused {diff:.2e}, onnxruntime vs PyTorch '
          f'{onnx_diff:.2e} (max abs) on inputs {list(shapes)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
