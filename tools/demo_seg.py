#!/usr/bin/env python
"""Semantic FPN with PartialNet-T0 trained and tested on a generated set, on CPU.

    .venv/bin/python tools/demo_seg.py                  # about 5 minutes on 2 cores

Generates data/synthetic_seg (deterministic, nothing downloaded), writes the freshly
initialised model as a checkpoint, then runs mmseg's own tools through ours: tools/test.py
on the untrained checkpoint, tools/train.py, tools/test.py on the trained one (their
progress lines shown as they come); prints mIoU (mmseg's IoUMetric) of both.
"""
import argparse
import os.path as osp
import re
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'demo', 'fpn_partialnet-t0_synthetic-seg.py')
METRICS = ('aAcc', 'mIoU', 'mAcc')


def untrained_checkpoint(config: str, out: str, seed: int) -> str:
    """The config's model as initialised (init_weights), saved as an mmengine checkpoint."""
    import torch
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS

    import partialnet_mm  # noqa: F401
    from partialnet_mm.checkpoint import write_checkpoint
    torch.manual_seed(seed)
    cfg = Config.fromfile(config)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
    logger = MMLogger.get_instance('mmengine')
    level = logger.level
    logger.setLevel('WARNING')  # init_weights logs every parameter's initialisation
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return write_checkpoint(dict(state_dict=model.state_dict(), meta=dict(note='untrained')),
                            out)


# the lines of a tool's log shown while it runs: progress and results, not the config or the
# per-parameter initialisation dump
PROGRESS = re.compile(r'Iter\((train|val|test)\)|Epoch\(|Saving checkpoint')


def tool(name: str, args: list) -> str:
    """Run tools/<name>.py (mmseg's tool through ours), showing its progress lines as they come;
    returns its whole output (the last 5000 characters are shown if it fails)."""
    proc = subprocess.Popen([sys.executable, osp.join(ROOT, 'tools', f'{name}.py'), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if PROGRESS.search(line):
            sys.stdout.write(line)
            sys.stdout.flush()
    output = ''.join(lines)
    if proc.wait():
        sys.stdout.write(output[-5000:])
        raise SystemExit(f'tools/{name}.py failed (exit code {proc.returncode})')
    return output


def metrics(log: str) -> dict:
    found = {k: re.findall(rf'\b{k}: ([0-9.]+)', log) for k in METRICS}
    if not all(found.values()):
        raise SystemExit('no IoUMetric figures in the test output:\n' + log[-3000:])
    return {k: float(v[-1]) for k, v in found.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=CONFIG, help=f'default: {osp.relpath(CONFIG, ROOT)}')
    parser.add_argument('--data-root', default='data/synthetic_seg',
                        help='where the generated set goes (default: data/synthetic_seg)')
    parser.add_argument('--work-dir', default='work_dirs/demo_seg',
                        help='default: work_dirs/demo_seg')
    parser.add_argument('--iters', type=int, default=800, help='training iterations (default 800)')
    parser.add_argument('--num-train', type=int, default=160, help='generated train images')
    parser.add_argument('--num-val', type=int, default=40, help='generated val images')
    parser.add_argument('--seed', type=int, default=0,
                        help='the generated set and the initialisation')
    args = parser.parse_args()

    from partialnet_mm.datasets.synthetic_seg import make_synthetic_seg
    start = time.time()
    make_synthetic_seg(args.data_root, args.num_train, args.num_val, seed=args.seed)
    root = args.data_root.rstrip('/') + '/'
    options = ['--cfg-options'] + [f'{loader}.dataset.data_root={root}' for loader in
                                   ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    work = args.work_dir
    untrained = untrained_checkpoint(args.config, osp.join(work, 'untrained.pth'), args.seed)
    before = metrics(tool('test', [args.config, untrained, '--work-dir', work, *options]))
    warmup = min(50, max(1, args.iters // 4))
    t0 = time.time()
    tool('train', [args.config, '--work-dir', work, *options, f'train_cfg.max_iters={args.iters}',
                   f'train_cfg.val_interval={args.iters}',
                   f'default_hooks.checkpoint.interval={args.iters}',
                   f'param_scheduler.0.end={warmup}', f'param_scheduler.1.begin={warmup}',
                   f'param_scheduler.1.end={args.iters}'])
    train_min = (time.time() - t0) / 60
    after = metrics(tool('test', [args.config, osp.join(work, f'iter_{args.iters}.pth'),
                                  '--work-dir', work, *options]))

    print('\n| model | aAcc | mIoU | mAcc |')
    print('|---|---|---|---|')
    print('| untrained (initialisation) | ' + ' | '.join(f'{before[k]:.2f}' for k in METRICS) + ' |')
    print(f'| trained ({args.iters} iterations, {train_min:.1f} min) | '
          + ' | '.join(f'{after[k]:.2f}' for k in METRICS) + ' |')
    print(f'\nTotal {(time.time() - start) / 60:.1f} min; checkpoints and logs in {work}')


if __name__ == '__main__':
    main()
