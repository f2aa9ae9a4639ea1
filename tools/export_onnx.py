#!/usr/bin/env python
"""Export the fused (deployed) PartialNet classifier, backbone or whole detector to ONNX, checked.

    .venv/bin/python tools/export_onnx.py t0 partialnet_t0.onnx
    .venv/bin/python tools/export_onnx.py s s_backbone.onnx --backbone --checkpoint BACKBONE.pth
    .venv/bin/python tools/export_onnx.py configs/partialnet-t2_8xb512_in1k.py t2.onnx \
        --checkpoint CKPT
    .venv/bin/python tools/export_onnx.py t0 t0_224.onnx --exporter torchscript --fixed-size
    .venv/bin/python tools/export_onnx.py configs/rtmdet_partialnet-t0_8xb32-300e_coco.py \
        end2end.onnx --checkpoint CKPT          # a detector: network, NMS and masks

Detectors (any mmdet config of RTMDet, RTMDet-Ins, Faster / Mask R-CNN, ours or mmdet's own
such as mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py): mmdeploy's end2end.onnx convention,
``input`` (N, 3, H, W) the data preprocessor's output -> ``dets`` (N, K, 5), ``labels`` (N, K)
[, ``masks``], NMS inside, dynamic batch and size (or --fixed-size at --input-size H W,
default the config's test size), the test preprocessing, class names and thresholds in the
file's metadata (what tools/deploy_infer.py reads). Checked against mmdet's predict on random
inputs: every detection above the score threshold must have a partner (same label, IoU >=
0.99, score within 1e-3; ties at a cut are allowed and counted). Exit code 2 for a config,
checkpoint or runtime that cannot be used, 3 for a failed check; nothing is written then.

The classifier or backbone graph (one self-contained file) takes ``input`` (N, 3, H, W) with dynamic N, H and W
(H, W >= 32), or with ``--fixed-size`` only (1, 3, --input-size, --input-size) (PAT_sf's iRPE
bias is then a constant), and gives ``logits``, or ``stage{i}`` feature maps for the backbone.
``--exporter``: torch's dynamo exporter (default) or the TorchScript one (what mmdeploy
calls). onnxruntime's outputs are compared with PyTorch's (on other batch and input sizes
than the exported one when dynamic); the export fails (exit code 3) above 1e-4.
"""
import argparse
import sys

from mmengine.config import DictAction

from partialnet_mm.deploy import FusionMismatch
from partialnet_mm.mmconfig import is_detector_config

DETECTOR_INPUT = ('--input-size H W (or one S for S x S): the detector\'s export and check size '
                  '(default: the config\'s test size)')


def fail(error, code: int) -> int:
    message = error.args[0] if isinstance(error, KeyError) else str(error)
    print(f'error: {message}', file=sys.stderr)
    return code


def export_detector_main(args) -> int:
    from partialnet_mm.checkpoint import CheckpointError
    from partialnet_mm.toolkit.detector_export import (ConfigUnsupported, DetectorMismatch,
                                                       UnsupportedDetector, export_detector)
    from partialnet_runtime import RuntimeMissing, require_runtime

    if args.exporter == 'dynamo':
        return fail('the detector export uses the TorchScript exporter (NMS as ONNX '
                    'NonMaxSuppression); leave --exporter out', 2)
    if args.backbone:
        return fail('--backbone exports a PartialNet variant\'s backbone (give t0 ... l); a '
                    'detector config exports the whole detector', 2)
    size = args.input_size if args.input_size is None or len(args.input_size) == 2 else \
        args.input_size * 2
    try:
        require_runtime('onnxruntime')  # the check runs in it
        result = export_detector(args.model, args.out, args.checkpoint, args.fixed_size, size,
                                 cfg_options=args.cfg_options)
    except (ConfigUnsupported, UnsupportedDetector, KeyError, CheckpointError,
            FileNotFoundError, RuntimeMissing) as e:
        return fail(e, 2)
    except (FusionMismatch, DetectorMismatch) as e:
        return fail(e, 3)
    print(result.summary())
    return 0


def export_classifier_main(args) -> int:
    from partialnet_mm.checkpoint import CheckpointError
    from partialnet_mm.toolkit.onnx_export import ExportMismatch, export_classifier

    try:
        result = export_classifier(args.model, args.out, args.checkpoint, args.backbone,
                                   args.input_size, args.opset, args.exporter == 'dynamo',
                                   args.fixed_size)
    except (FusionMismatch, ExportMismatch) as e:
        return fail(e, 3)
    except (ValueError, KeyError, CheckpointError, FileNotFoundError) as e:
        return fail(e, 2)
    print(result.summary())
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', help='variant (t0 t1 t2 s m l), an mmpretrain config of ours, or '
                                 'an mmdet detector config (RTMDet, RTMDet-Ins, Mask R-CNN)')
    p.add_argument('out', help='the .onnx file to write')
    p.add_argument('--backbone', action='store_true',
                   help='export the backbone with its four stage outputs (detection)')
    p.add_argument('--checkpoint', help='classifier (or, with --backbone, backbone; or the '
                                        'detector\'s) weights')
    p.add_argument('--input-size', type=int, nargs='+', metavar='SIZE',
                   help='classifier / backbone: the size (default 224); ' + DETECTOR_INPUT)
    p.add_argument('--opset', type=int, default=20)
    p.add_argument('--exporter', choices=['dynamo', 'torchscript'],
                   help='classifier / backbone: dynamo (default) or torchscript; detectors: '
                        'torchscript')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                   help='detectors: override config settings, e.g. the NMS a deployment runs: '
                        'model.test_cfg.score_thr=0.05 model.test_cfg.max_per_img=100')
    p.add_argument('--fixed-size', action='store_true',
                   help='export for batch 1 at --input-size only (default: any batch and size)')
    args = p.parse_args(argv)
    if is_detector_config(args.model):
        return export_detector_main(args)
    if args.cfg_options:
        p.error('--cfg-options is for detector configs')
    args.exporter = args.exporter or 'dynamo'
    if args.input_size is not None and len(args.input_size) != 1:
        p.error('--input-size takes one size for a classifier or backbone')
    args.input_size = args.input_size[0] if args.input_size else 224
    return export_classifier_main(args)


if __name__ == '__main__':
    sys.exit(main())
