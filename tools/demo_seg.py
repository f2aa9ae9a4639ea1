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

from partialnet_mm.toolkit.demo import iou_metrics

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'demo', 'fpn_partialnet-t0_synthetic-seg.py')


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


def measured(log: str) -> dict:
    try:
        return iou_metrics(log)
    except ValueError as e:  # a test run that logged no IoU: its log's end, no traceback
        raise SystemExit(str(e))


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
    from partialnet_mm.toolkit.demo import seg_schedule_options, seg_table, untrained_checkpoint
    start = time.time()
    make_synthetic_seg(args.data_root, args.num_train, args.num_val, seed=args.seed)
    root = args.data_root.rstrip('/') + '/'
    options = ['--cfg-options'] + [f'{loader}.dataset.data_root={root}' for loader in
                                   ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    work = args.work_dir
    untrained = untrained_checkpoint(args.config, osp.join(work, 'untrained.pth'), args.seed)
    before = measured(tool('test', [args.config, untrained, '--work-dir', work, *options]))
    t0 = time.time()
    tool('train', [args.config, '--work-dir', work, *options, *seg_schedule_options(args.iters)])
    train_min = (time.time() - t0) / 60
    after = measured(tool('test', [args.config, osp.join(work, f'iter_{args.iters}.pth'),
                                      '--work-dir', work, *options]))
    print('\n' + seg_table(before, after, args.iters, train_min))
    print(f'\nTotal {(time.time() - start) / 60:.1f} min; checkpoints and logs in {work}')


if __name__ == '__main__':
    main()
