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
import logging
import os.path as osp
import time
from contextlib import contextmanager

from mmengine.config import Config
from mmengine.runner import Runner

import partialnet_mm  # noqa: F401
from partialnet_mm.datasets.synthetic_coco import make_synthetic_coco
from partialnet_mm.toolkit.pictures import draw_predictions, plot_training_curves, predict

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs', 'demo')
# --detector: the models it trains, (name, config) each, and the COCO metrics of its table
DETECTORS = {
    'mask_rcnn': dict(
        models=[('Mask R-CNN, PartialNet-T0', 'mask_rcnn_partialnet_t0_synthetic.py')],
        keys={'bbox_mAP': 'bbox AP', 'bbox_mAP_50': 'AP50', 'bbox_mAP_75': 'AP75',
              'segm_mAP': 'segm AP', 'segm_mAP_50': 'AP50', 'segm_mAP_75': 'AP75'}),
    'rtmdet': dict(
        models=[('RTMDet-tiny, PartialNet-T0', 'rtmdet_partialnet-t0_synthetic.py'),
                ('RTMDet-tiny, CSPNeXt-tiny', 'rtmdet_cspnext-tiny_synthetic.py')],
        keys={'bbox_mAP': 'bbox AP', 'bbox_mAP_50': 'AP50', 'bbox_mAP_75': 'AP75',
              'bbox_mAP_s': 'AP small', 'bbox_mAP_m': 'AP medium'}),
}


def scale_schedule(cfg: Config, epochs: int) -> None:
    """The config's epoch-based schedule stretched to ``epochs``: the same warm-up, the lr
    steps (MultiStepLR milestones) and cosine phase (begin, end, T_max) at the same fractions
    of training."""
    scale = epochs / cfg.train_cfg.max_epochs
    cfg.train_cfg.max_epochs = epochs
    for sched in cfg.param_scheduler:
        if not sched.get('by_epoch', True):
            continue  # the iteration-based warm-up
        sched.begin = round(sched.get('begin', 0) * scale)
        sched.end = epochs
        if 'milestones' in sched:
            sched.milestones = [max(1, round(m * scale)) for m in sched.milestones]
        if 'T_max' in sched:
            sched.T_max = max(1, sched.end - sched.begin)


def build_cfg(args, config: str, work_dir: str) -> Config:
    cfg = Config.fromfile(config)
    root = args.data_root.rstrip('/') + '/'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = root
    for evaluator in ('val_evaluator', 'test_evaluator'):
        cfg[evaluator].ann_file = root + 'annotations/instances_val.json'
    scale_schedule(cfg, args.epochs)
    cfg.train_cfg.val_interval = args.val_interval  # val AP per epoch for the curves
    cfg.default_hooks.checkpoint.interval = args.epochs
    cfg.work_dir = work_dir
    # mmengine keeps one visualiser per name for the process: each run its own (its own log)
    cfg.visualizer.name = f'visualizer_{osp.basename(config)[:-3]}'
    cfg.randomness = dict(seed=args.seed)
    return cfg


class _RepeatedInitNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return 'has been called more than once' not in record.getMessage()


@contextmanager
def _without_repeated_init_notice(logger: logging.Logger):
    """``Runner.train()`` calls ``init_weights()`` again, after the untrained evaluation did;
    nothing happens then, but mmengine logs a warning a reader takes for a fault."""
    notice = _RepeatedInitNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


@contextmanager
def evaluated_weights(runner: Runner):
    """The weights ``runner.test()`` evaluates: an EMA hook's averaged parameters swapped in
    (as the hook does around every test epoch), else the model's own."""
    ema = [h for h in runner.hooks if type(h).__name__ == 'EMAHook']
    for hook in ema:
        hook.before_test_epoch(runner)
    try:
        yield runner.model
    finally:
        for hook in ema:
            hook.after_test_epoch(runner)


def train_one(args, name: str, config: str, work_dir: str, images) -> dict:
    """Evaluate, train, evaluate one model; its metrics, predictions and timings."""
    runner = Runner.from_cfg(build_cfg(args, config, work_dir))
    runner.model.init_weights()
    untrained = runner.test()
    before = predict(runner.model, runner.test_dataloader.dataset, images)
    t0 = time.time()
    with _without_repeated_init_notice(runner.logger):
        runner.train()
    train_min = (time.time() - t0) / 60
    trained = runner.test()
    with evaluated_weights(runner) as model:
        after = predict(model, runner.test_dataloader.dataset, images)
    return dict(name=name, runner=runner, untrained=untrained, trained=trained, before=before,
                after=after, train_min=train_min)


def row(name, metrics, keys):
    """A table row; a model that kept no box (CocoMetric then reports nothing) scores 0."""
    if not metrics:
        name += ', no box kept'
    return f'| {name} | ' + ' | '.join(f"{metrics.get(f'coco/{k}', 0.0):.3f}" for k in keys) + ' |'


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
    models = [(osp.basename(args.config)[:-3], args.config)] if args.config else \
        [(name, osp.join(DEMO, f)) for name, f in spec['models']]
    work_dir = args.work_dir or ('work_dirs/demo_synthetic' if args.detector == 'mask_rcnn'
                                 else 'work_dirs/demo_rtmdet')
    if args.epochs is None:
        args.epochs = Config.fromfile(models[0][1]).train_cfg.max_epochs

    start = time.time()
    make_synthetic_coco(args.data_root, args.num_train, args.num_val, seed=args.seed)
    images = range(min(args.pictures, args.num_val))
    runs = []
    for name, config in models:
        sub = work_dir if len(models) == 1 else osp.join(work_dir, osp.basename(config)[:-3])
        runs.append(train_one(args, name, config, sub, images))

    keys = spec['keys']
    print(f"\n| model | {' | '.join(keys.values())} |")
    print('|---|' + '---|' * len(keys))
    for r in runs:
        prefix = f"{r['name']}, " if len(runs) > 1 else ''
        print(row(f'{prefix}untrained (initialisation)', r['untrained'], keys))
        print(row(f"{prefix}trained ({args.epochs} epochs, {r['train_min']:.1f} min)",
                  r['trained'], keys))
    if args.pictures:
        pictures = osp.join(work_dir, 'pictures')
        first = runs[0]['runner']
        first.visualizer.dataset_meta = first.test_dataloader.dataset.metainfo
        columns = {}
        for r in runs:
            prefix = f"{r['name'].split(', ')[-1]}, " if len(runs) > 1 else ''
            columns[f'{prefix}untrained'] = r['before']
            columns[f'{prefix}trained, {args.epochs} epochs'] = r['after']
        drawn = draw_predictions(first.visualizer, columns, osp.join(pictures, 'predictions.png'))
        print(f"\nPredictions (ground truth | {' | '.join(columns)}): {drawn}")
        for r in runs:
            suffix = '' if len(runs) == 1 else '_' + r['name'].split(', ')[-1].lower()
            curves = plot_training_curves(
                osp.join(r['runner'].log_dir, 'vis_data', 'scalars.json'),
                osp.join(pictures, f'curves{suffix}.png'), initial=r['untrained'],
                title=f"{r['name']}, generated COCO set ({args.num_train} images)")
            print(f"Training loss and val AP per epoch ({r['name']}): {curves}")
    print(f'\nTotal {(time.time() - start) / 60:.1f} min; checkpoints and logs in {work_dir}')


if __name__ == '__main__':
    main()
