"""The demo (tools/demo.py): a detector trained and evaluated on the generated COCO set.

Each model is evaluated freshly initialised, trained with mmengine's Runner (validating every
``val_interval`` epochs) and evaluated again: :func:`run_demo` returns those runs, and
:func:`results_table` / :func:`draw_demo_pictures` turn them into the table and the pictures.
The schedule of a config is stretched or shrunk to the epochs asked (:func:`scale_schedule`);
the trained predictions are those of the weights ``runner.test()`` evaluates (an EMA hook's
averaged ones, :func:`evaluated_weights`). The segmentation demo (tools/demo_seg.py) runs
mmseg's own tools; its parts are at the end (:func:`untrained_checkpoint`,
:func:`iou_metrics`, :func:`seg_schedule_options`, :func:`seg_table`).
"""
import logging
import os.path as osp
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config

DEMO_CONFIGS = Path(__file__).resolve().parent.parent / '.mim' / 'configs' / 'demo'


@dataclass(frozen=True)
class DemoDetector:
    """A ``--detector`` choice: the models it trains, ``(name, config file)`` each, under
    :data:`DEMO_CONFIGS`, the COCO metrics of its table (metric key -> column) and where it
    writes by default."""
    models: Tuple[Tuple[str, str], ...]
    metrics: Dict[str, str]
    work_dir: str


BOX = {'bbox_mAP': 'bbox AP', 'bbox_mAP_50': 'AP50', 'bbox_mAP_75': 'AP75'}
DETECTORS = {
    'mask_rcnn': DemoDetector(
        (('Mask R-CNN, PartialNet-T0', 'mask_rcnn_partialnet_t0_synthetic.py'),),
        {**BOX, 'segm_mAP': 'segm AP', 'segm_mAP_50': 'AP50', 'segm_mAP_75': 'AP75'},
        'work_dirs/demo_synthetic'),
    'rtmdet': DemoDetector(
        (('RTMDet-tiny, PartialNet-T0', 'rtmdet_partialnet-t0_synthetic.py'),
         ('RTMDet-tiny, CSPNeXt-tiny', 'rtmdet_cspnext-tiny_synthetic.py')),
        {**BOX, 'bbox_mAP_s': 'AP small', 'bbox_mAP_m': 'AP medium'},
        'work_dirs/demo_rtmdet'),
}


def demo_models(detector: str, config: Optional[str] = None) -> List[Tuple[str, str]]:
    """``(name, config path)`` of each model the demo trains: the ``detector``'s, or the one
    ``config`` (named after its file)."""
    if config:
        return [(osp.basename(config)[:-3], config)]
    return [(name, str(DEMO_CONFIGS / f)) for name, f in DETECTORS[detector].models]


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


@dataclass
class DemoSettings:
    """What the demo's command line chooses (tools/demo.py's options)."""
    data_root: str = 'data/synthetic_coco'
    epochs: Optional[int] = None  # None: the first config's
    num_train: int = 240
    num_val: int = 60
    seed: int = 0
    val_interval: int = 1
    pictures: int = 3


def demo_config(settings: DemoSettings, config: str, work_dir: str) -> Config:
    """``config`` pointed at the generated set, its schedule scaled to ``settings.epochs``,
    validating every ``val_interval`` epochs and keeping the last checkpoint, in
    ``work_dir``."""
    cfg = Config.fromfile(config)
    root = settings.data_root.rstrip('/') + '/'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = root
    for evaluator in ('val_evaluator', 'test_evaluator'):
        cfg[evaluator].ann_file = root + 'annotations/instances_val.json'
    scale_schedule(cfg, settings.epochs)
    cfg.train_cfg.val_interval = settings.val_interval  # val AP per epoch for the curves
    cfg.default_hooks.checkpoint.interval = settings.epochs
    cfg.work_dir = work_dir
    # mmengine keeps one visualiser per name for the process: each run its own (its own log)
    cfg.visualizer.name = f'visualizer_{osp.basename(config)[:-3]}'
    cfg.randomness = dict(seed=settings.seed)
    return cfg


class _RepeatedInitNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return 'has been called more than once' not in record.getMessage()


@contextmanager
def without_repeated_init_notice(logger: logging.Logger):
    """``Runner.train()`` calls ``init_weights()`` again, after the untrained evaluation did;
    nothing happens then, but mmengine logs a warning a reader takes for a fault."""
    notice = _RepeatedInitNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


@contextmanager
def evaluated_weights(runner):
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


@dataclass
class DemoRun:
    """One model of the demo: its metrics untrained and trained, the predictions drawn, the
    training time."""
    name: str
    runner: object
    untrained: dict
    trained: dict
    before: list = field(repr=False)
    after: list = field(repr=False)
    train_min: float


def train_and_evaluate(settings: DemoSettings, name: str, config: str, work_dir: str,
                       images: Sequence[int]) -> DemoRun:
    """Evaluate, train, evaluate one model, predicting ``images`` (val indices) before and
    after."""
    from mmengine.runner import Runner

    from .pictures import predict

    runner = Runner.from_cfg(demo_config(settings, config, work_dir))
    runner.model.init_weights()
    untrained = runner.test()
    before = predict(runner.model, runner.test_dataloader.dataset, images)
    start = time.time()
    with without_repeated_init_notice(runner.logger):
        runner.train()
    train_min = (time.time() - start) / 60
    trained = runner.test()
    with evaluated_weights(runner) as model:
        after = predict(model, runner.test_dataloader.dataset, images)
    return DemoRun(name, runner, untrained, trained, before, after, train_min)


def run_demo(settings: DemoSettings, models: List[Tuple[str, str]],
             work_dir: str) -> List[DemoRun]:
    """Generate the set (deterministic) and train each model of ``models`` (one model: in
    ``work_dir``; more: each in a folder named after its config)."""
    from ..datasets.synthetic_coco import make_synthetic_coco

    if settings.epochs is None:
        settings.epochs = Config.fromfile(models[0][1]).train_cfg.max_epochs
    make_synthetic_coco(settings.data_root, settings.num_train, settings.num_val,
                        seed=settings.seed)
    images = range(min(settings.pictures, settings.num_val))
    return [train_and_evaluate(
        settings, name, config,
        work_dir if len(models) == 1 else osp.join(work_dir, osp.basename(config)[:-3]), images)
        for name, config in models]


def table_row(name: str, metrics: dict, metric_names: Sequence[str]) -> str:
    """A table row; a model that kept no box (CocoMetric then reports nothing) scores 0."""
    if not metrics:
        name += ', no box kept'
    cells = ' | '.join(f"{metrics.get(f'coco/{k}', 0.0):.3f}" for k in metric_names)
    return f'| {name} | {cells} |'


def results_table(runs: Sequence[DemoRun], metrics: Dict[str, str], epochs: int) -> str:
    """The COCO AP of every run untrained and trained, as a markdown table."""
    lines = [f"| model | {' | '.join(metrics.values())} |", '|---|' + '---|' * len(metrics)]
    for r in runs:
        prefix = f'{r.name}, ' if len(runs) > 1 else ''
        lines.append(table_row(f'{prefix}untrained (initialisation)', r.untrained, metrics))
        lines.append(table_row(f'{prefix}trained ({epochs} epochs, {r.train_min:.1f} min)',
                               r.trained, metrics))
    return '\n'.join(lines)


def draw_demo_pictures(runs: Sequence[DemoRun], folder: str, epochs: int,
                       num_train: int) -> List[str]:
    """predictions.png (the ground truth, then each run untrained and trained) and a curves
    picture per run, in ``folder``; what was drawn, a line each."""
    from .pictures import draw_predictions, plot_training_curves

    first = runs[0].runner
    first.visualizer.dataset_meta = first.test_dataloader.dataset.metainfo
    columns = {}
    for r in runs:
        prefix = f"{r.name.split(', ')[-1]}, " if len(runs) > 1 else ''
        columns[f'{prefix}untrained'] = r.before
        columns[f'{prefix}trained, {epochs} epochs'] = r.after
    drawn = draw_predictions(first.visualizer, columns, osp.join(folder, 'predictions.png'))
    lines = [f"Predictions (ground truth | {' | '.join(columns)}): {drawn}"]
    for r in runs:
        suffix = '' if len(runs) == 1 else '_' + r.name.split(', ')[-1].lower()
        curves = plot_training_curves(
            osp.join(r.runner.log_dir, 'vis_data', 'scalars.json'),
            osp.join(folder, f'curves{suffix}.png'), initial=r.untrained,
            title=f'{r.name}, generated COCO set ({num_train} images)')
        lines.append(f'Training loss and val AP per epoch ({r.name}): {curves}')
    return lines


# --- the segmentation demo (tools/demo_seg.py): mmseg's own tools run through ours ----------

IOU_METRICS = ('aAcc', 'mIoU', 'mAcc')  # mmseg's IoUMetric, as the demo's table shows them


def untrained_checkpoint(config: str, out: str, seed: int = 0) -> str:
    """The config's model as initialised (``init_weights``, seeded), written as an mmengine
    checkpoint: what the untrained row of a demo evaluates with the framework's own test
    tool."""
    import torch
    from mmengine.logging import MMLogger

    from ..checkpoint import write_checkpoint
    from ..mmconfig import build_model

    torch.manual_seed(seed)
    model = build_model(Config.fromfile(config))
    logger = MMLogger.get_instance('mmengine')
    level = logger.level
    logger.setLevel('WARNING')  # init_weights logs every parameter's initialisation
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return write_checkpoint(dict(state_dict=model.state_dict(), meta=dict(note='untrained')),
                            out)


def iou_metrics(log: str) -> Dict[str, float]:
    """The last :data:`IOU_METRICS` figures an mmseg test run logged; ValueError (with the
    log's end) when it logged none."""
    found = {k: re.findall(rf'\b{k}: ([0-9.]+)', log) for k in IOU_METRICS}
    if not all(found.values()):
        raise ValueError('no IoUMetric figures in the test output:\n' + log[-3000:])
    return {k: float(v[-1]) for k, v in found.items()}


def seg_schedule_options(iters: int) -> List[str]:
    """``--cfg-options`` that train the demo's iteration-based config for ``iters``: the
    warm-up (at most 50 iterations, a quarter of a shorter run), then PolyLR to the end;
    validation and the one checkpoint at the end."""
    warmup = min(50, max(1, iters // 4))
    return [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={iters}', f'param_scheduler.0.end={warmup}',
            f'param_scheduler.1.begin={warmup}', f'param_scheduler.1.end={iters}']


def seg_table(before: Dict[str, float], after: Dict[str, float], iters: int,
              train_min: float) -> str:
    """The untrained and trained rows of the segmentation demo (markdown)."""
    def cells(m):
        return ' | '.join(f'{m[k]:.2f}' for k in IOU_METRICS)
    return '\n'.join([f"| model | {' | '.join(IOU_METRICS)} |", '|---|---|---|---|',
                      f'| untrained (initialisation) | {cells(before)} |',
                      f'| trained ({iters} iterations, {train_min:.1f} min) | {cells(after)} |'])
