#!/usr/bin/env python
"""A detector with PartialNet-T0 trained and evaluated on a generated COCO set, on CPU.

    .venv/bin/python tools/demo.py                      # Mask R-CNN, ~6 minutes on 2 cores
    .venv/bin/python tools/demo.py --epochs 2           # quicker, lower AP
    .venv/bin/python tools/demo.py --detector rtmdet    # RTMDet-tiny: PartialNet-T0 vs CSPNeXt

Generates data/synthetic_coco (deterministic, nothing downloaded), evaluates the freshly
initialised model, trains it with mmengine's Runner (validating every epoch), evaluates again
and prints COCO AP of both. ``--detector rtmdet`` does this for RTMDet-tiny with PartialNet-T0
and then for RTMDet-tiny with its own CSPNeXt-tiny backbone: same data, pipeline, schedule,
optimiser and seed, neither pretrained, both in one table.

It also writes, and prints the paths of, pictures under WORK_DIR/pictures/: predictions.png
(mmdet's DetLocalVisualizer on a few val images: the ground truth, then each model untrained
and trained) and a curves picture per model (training loss and val AP per epoch, from the
run's scalar log). The trained predictions are those of the weights evaluated (RTMDet's EMA).
"""
import argparse
import os.path as osp
import time

from partialnet_mm.toolkit.demo import (DETECTORS, DemoSettings, demo_models, draw_demo_pictures,
                                        results_table, run_demo)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--detector', choices=list(DETECTORS), default='mask_rcnn')
    parser.add_argument('--config', help='train this config instead (one model; Mask R-CNN '
                                         'metrics unless --detector rtmdet)')
    parser.add_argument('--data-root', default='data/synthetic_coco',
                        help='where the generated set goes (default: data/synthetic_coco)')
    parser.add_argument('--work-dir', help='default: work_dirs/demo_synthetic (Mask R-CNN), '
                                           'work_dirs/demo_rtmdet')
    parser.add_argument('--epochs', type=int, help='default: the config\'s (12 for Mask '
                                                   'R-CNN, 24 for RTMDet)')
    parser.add_argument('--num-train', type=int, default=240, help='generated train images')
    parser.add_argument('--num-val', type=int, default=60, help='generated val images')
    parser.add_argument('--seed', type=int, default=0,
                        help='the generated set and the initialisation')
    parser.add_argument('--val-interval', type=int, default=1,
                        help='validate every N epochs (the AP curve); > epochs: never')
    parser.add_argument('--pictures', type=int, default=3, metavar='N',
                        help='val images to draw (0: no pictures)')
    args = parser.parse_args()
    spec = DETECTORS[args.detector]
    work_dir = args.work_dir or spec.work_dir
    settings = DemoSettings(args.data_root, args.epochs, args.num_train, args.num_val, args.seed,
                            args.val_interval, args.pictures)
    start = time.time()
    runs = run_demo(settings, demo_models(args.detector, args.config), work_dir)
    print('\n' + results_table(runs, spec.metrics, settings.epochs))
    if args.pictures:
        print('\n' + '\n'.join(draw_demo_pictures(runs, osp.join(work_dir, 'pictures'),
                                                   settings.epochs, args.num_train)))
    print(f'\nTotal {(time.time() - start) / 60:.1f} min; checkpoints and logs in {work_dir}')


if __name__ == '__main__':
    main()
