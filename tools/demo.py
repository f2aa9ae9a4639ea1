#!/usr/bin/env python
"""The embedded default: Mask R-CNN with PartialNet-T0 on a generated COCO set, on CPU.

    .venv/bin/python tools/demo.py                      # ~6-8 minutes on 2 cores
    .venv/bin/python tools/demo.py --epochs 2           # quicker, lower AP

Generates data/synthetic_coco (deterministic, nothing downloaded), evaluates the
freshly initialised model, trains with mmengine's Runner (validating every epoch),
evaluates again and prints COCO bbox/segm AP of both. It also writes, and prints the
paths of, two pictures under WORK_DIR/pictures/: predictions.png (mmdet's
DetLocalVisualizer on a few val images: ground truth, untrained, trained) and
curves.png (training loss and val AP per epoch, from the run's scalar log).
"""
import argparse
import os.path as osp
import time
import warnings

from mmengine.config import Config
from mmengine.runner import Runner

import partialnet_mm  # noqa: F401
from partialnet_mm.datasets.synthetic_coco import make_synthetic_coco
from partialnet_mm.toolkit.pictures import draw_predictions, plot_training_curves, predict

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'demo', 'mask_rcnn_partialnet_t0_synthetic.py')
KEYS = ['bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'segm_mAP', 'segm_mAP_50', 'segm_mAP_75']


def build_cfg(args) -> Config:
    cfg = Config.fromfile(args.config)
    root = args.data_root.rstrip('/') + '/'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = root
    for evaluator in ('val_evaluator', 'test_evaluator'):
        cfg[evaluator].ann_file = root + 'annotations/instances_val.json'
    cfg.train_cfg.max_epochs = args.epochs
    cfg.train_cfg.val_interval = args.val_interval  # val AP per epoch for the curves
    cfg.param_scheduler[1].end = args.epochs
    cfg.param_scheduler[1].milestones = [max(1, round(args.epochs * 0.75)),
                                         max(1, round(args.epochs * 11 / 12))]
    cfg.default_hooks.checkpoint.interval = args.epochs
    cfg.work_dir = args.work_dir
    cfg.randomness = dict(seed=args.seed)
    return cfg


def row(name, metrics):
    return f'| {name} | ' + ' | '.join(f"{metrics[f'coco/{k}']:.3f}" for k in KEYS) + ' |'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=CONFIG)
    parser.add_argument('--data-root', default='data/synthetic_coco')
    parser.add_argument('--work-dir', default='work_dirs/demo_synthetic')
    parser.add_argument('--epochs', type=int, default=12)
    parser.add_argument('--num-train', type=int, default=240)
    parser.add_argument('--num-val', type=int, default=60)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--val-interval', type=int, default=1,
                        help='validate every N epochs (the AP curve); > epochs: never')
    parser.add_argument('--pictures', type=int, default=3, metavar='N',
                        help='val images to draw (0: no pictures)')
    args = parser.parse_args()

    start = time.time()
    make_synthetic_coco(args.data_root, args.num_train, args.num_val, seed=args.seed)
    runner = Runner.from_cfg(build_cfg(args))
    runner.model.init_weights()
    untrained = runner.test()
    images = range(min(args.pictures, len(runner.test_dataloader.dataset)))
    before = predict(runner.model, runner.test_dataloader.dataset, images)
    t0 = time.time()
    with warnings.catch_warnings():  # train() calls init_weights() again: nothing happens
        warnings.filterwarnings('ignore', message='init_weights of .* has been called more')
        runner.train()
    train_min = (time.time() - t0) / 60
    trained = runner.test()

    print('\n| model | bbox AP | AP50 | AP75 | segm AP | AP50 | AP75 |')
    print('|---|---|---|---|---|---|---|')
    print(row('untrained (initialisation)', untrained))
    print(row(f'trained ({args.epochs} epochs, {train_min:.1f} min)', trained))
    if args.pictures:
        pictures = osp.join(args.work_dir, 'pictures')
        runner.visualizer.dataset_meta = runner.test_dataloader.dataset.metainfo
        after = predict(runner.model, runner.test_dataloader.dataset, images)
        drawn = draw_predictions(runner.visualizer, {'untrained': before,
                                                     f'trained, {args.epochs} epochs': after},
                                 osp.join(pictures, 'predictions.png'))
        curves = plot_training_curves(
            osp.join(runner.log_dir, 'vis_data', 'scalars.json'),
            osp.join(pictures, 'curves.png'), initial=untrained,
            title=f'Mask R-CNN, PartialNet-T0, generated COCO set ({args.num_train} images)')
        print(f'\nPredictions (ground truth | untrained | trained): {drawn}')
        print(f'Training loss and val AP per epoch: {curves}')
    print(f'\nTotal {(time.time() - start) / 60:.1f} min; checkpoint and logs in {args.work_dir}')


if __name__ == '__main__':
    main()
