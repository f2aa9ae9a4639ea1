#!/usr/bin/env python
"""PartialNet-T0 learns its split ratios with DPConv on scikit-learn's handwritten digits at
several budgets (real data, on CPU, in minutes).

    .venv/bin/python tools/dpconv_digits.py  # b = 2 and b = 8, ~4 min on 2 cores
    .venv/bin/python tools/dpconv_digits.py --budgets 4 --epochs 4

For each budget b it trains configs/demo/partialnet-t0-dpconv_digits.py with
tools/train.py (mmengine's Runner; the learned ratios are logged each epoch), exports
the ratios with tools/export_split_ratios.py, rebuilds the plain PartialNet from them
and evaluates both on the test split. It prints accuracy, the ratio of every layer,
the conv cost against the budget, and writes the figure (ratio per layer) as a PNG.
"""
import argparse
import json
import os.path as osp
import subprocess
import sys
import time

from partialnet_mm.dpconv.evaluate import evaluate_learned_split, results_tables
from partialnet_mm.dpconv.export import plot_ratios

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'demo', 'partialnet-t0-dpconv_digits.py')


def run_budget(args, budget: float) -> dict:
    """Train at ``budget`` (tools/train.py), export the split (tools/export_split_ratios.py),
    evaluate both classifiers."""
    work_dir = osp.join(args.work_dir, f'b{budget:g}')
    train = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), args.config, '--work-dir',
             work_dir, '--cfg-options', f'model.dpconv_loss.budget={budget}',
             f'train_cfg.max_epochs={args.epochs}', f'train_cfg.val_interval={args.epochs}',
             f'param_scheduler.1.T_max={args.epochs - 1}', f'param_scheduler.1.end={args.epochs}',
             f'default_hooks.checkpoint.interval={args.epochs}', f'randomness.seed={args.seed}']
    start = time.time()
    subprocess.run(train, check=True, stdout=subprocess.DEVNULL if args.quiet else None)
    seconds = time.time() - start
    ckpt = osp.join(work_dir, f'epoch_{args.epochs}.pth')
    ratio_cfg = osp.join(work_dir, 'split_ratios.py')
    frozen_ckpt = osp.join(work_dir, 'frozen.pth')
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'export_split_ratios.py'), ckpt,
                    '--out', ratio_cfg, '--base-config', args.config,
                    '--out-checkpoint', frozen_ckpt], check=True, stdout=subprocess.DEVNULL)
    return dict(evaluate_learned_split(args.config, budget, ckpt, ratio_cfg, frozen_ckpt),
                seconds=seconds, checkpoint=ckpt, ratio_config=ratio_cfg,
                frozen_checkpoint=frozen_ckpt)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=CONFIG, help=f'default: {osp.relpath(CONFIG, ROOT)}')
    parser.add_argument('--budgets', type=float, nargs='+', default=[2, 8],
                        help='the budgets b to train at, one run each (default: 2 8)')
    parser.add_argument('--epochs', type=int, default=8, help='per run (default 8)')
    parser.add_argument('--seed', type=int, default=0, help='the initialisation and data order')
    parser.add_argument('--work-dir', default='work_dirs/dpconv_digits',
                        help='runs, results.json and the figure (default: work_dirs/dpconv_digits)')
    parser.add_argument('--quiet', action='store_true', help='hide the training logs')
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error('--epochs must be >= 2 (one warm-up epoch, then cosine)')

    results = [run_budget(args, b) for b in args.budgets]
    png = plot_ratios({f'b={r["budget"]:g} (top-1 {100 * r["accuracy"]:.1f}%)': r['ratios']
                       for r in results}, osp.join(args.work_dir, 'split_ratios.png'),
                      'PartialNet-T0 + DPConv on digits: learned split ratio per layer')
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1)

    print('\n' + results_tables(results))
    print(f'\nfigure: {png}\nresults: {osp.join(args.work_dir, "results.json")}')
    sys.stdout.flush()


if __name__ == '__main__':
    main()
