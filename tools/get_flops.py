#!/usr/bin/env python
"""Parameters and FLOPs of a detection config, or the Mask R-CNN table of the paper.

    .venv/bin/python tools/get_flops.py configs/mask_rcnn_partialnet_s_1x.py [--deploy]
    .venv/bin/python tools/get_flops.py --paper  # S/M/L and the R50 yardstick against paper table 2

"diff, R50-normalised" divides each ratio to the paper by R50's: the part of the gap
that the counting convention (ours against the paper's) puts on R50 too.

FLOPs are multiply-adds by mmengine's counter (mmdet's method): for Mask R-CNN on the
forward mmdet 2.x counted (backbone, neck, RPN head, RoI head on 1000 fixed proposals, mask
head on 100); for one-stage detectors (RTMDet) on the network without NMS. For ImageNet
figures of the classifiers use tools/fidelity.py.
"""
import argparse

from partialnet_mm.mmconfig import load_config
from partialnet_mm.toolkit.complexity import PAPER_MASK_RCNN, detector_complexity

PAPER_CONFIGS = {
    'r50': 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    's': 'configs/mask_rcnn_partialnet_s_1x.py',
    'm': 'configs/mask_rcnn_partialnet_m_1x.py',
    'l': 'configs/mask_rcnn_partialnet_l_1x.py',
}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', nargs='?', help='a detection config (not with --paper)')
    parser.add_argument('--shape', type=int, nargs=2, default=[800, 1280], metavar=('H', 'W'),
                        help='input size (default 800 1280, the paper\'s; 640 640 for RTMDet)')
    parser.add_argument('--deploy', action='store_true', help='count the fused backbone')
    parser.add_argument('--paper', action='store_true',
                        help='Mask R-CNN with ResNet-50 and PartialNet-S/M/L against the '
                        'paper\'s table (params, FLOPs train and deploy, attention matmuls)')
    args = parser.parse_args()
    h, w = args.shape
    if not args.paper:
        if not args.config:
            parser.error('give a config or --paper')
        r = detector_complexity(load_config(args.config), h, w, deploy=args.deploy)
        print(f"{args.config}: {r['params']:.2f} M params, {r['flops']:.1f} GFLOPs at {w}x{h}")
        return
    print(f'Mask R-CNN at {w}x{h}, mmengine counter (fused attention counted as its matmuls)')
    print('| backbone | params (M) | paper | diff | FLOPs train (G) | FLOPs deploy (G) | of which '
          'attention matmuls | paper | diff (deploy) | diff, R50-normalised |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    r50 = None
    for name, path in PAPER_CONFIGS.items():
        cfg = load_config(path)
        train = detector_complexity(cfg, h, w)
        deploy = detector_complexity(cfg, h, w, deploy=True) if name != 'r50' else train
        paper = PAPER_MASK_RCNN[name]
        if name == 'r50':
            r50 = deploy['flops'] / paper['flops']
        print(f"| {'ResNet50' if name == 'r50' else 'PartialNet-' + name.upper()} | "
              f"{train['params']:.2f} | {paper['params']} | "
              f"{100 * (train['params'] / paper['params'] - 1):+.1f}% | {train['flops']:.1f} | "
              f"{deploy['flops']:.1f} | {deploy['attention_flops']:.1f} | {paper['flops']} | "
              f"{100 * (deploy['flops'] / paper['flops'] - 1):+.1f}% | "
              f"{100 * (deploy['flops'] / paper['flops'] / r50 - 1):+.1f}% |", flush=True)


if __name__ == '__main__':
    main()
