#!/usr/bin/env python
"""The fault drills of docs/training.md as a table; they train small models with tools/train.py,
hurt each run the way a cluster does, resume it, and compare its end with the uninterrupted run.

    .venv/bin/python tools/fault_table.py                      # 5 runs per fault and model
    .venv/bin/python tools/fault_table.py --models digits --runs 1 --json out.json

Faults: SIGTERM at a random iteration (exit 75, then --resume ends bitwise equal to the
uninterrupted run), kill -9 at a random iteration (--resume from the last complete checkpoint,
at most --every iterations back, same end), kill -9 while a checkpoint is being written (the
pointer names the previous, complete checkpoint; same end), a full disk at a save (a tmpfs
holding 1.5 checkpoints, in a user namespace: `unshare -rm`), a NaN loss at a random iteration
(stops there, naming the terms and the last checkpoint). The detection runs train on a
generated COCO set made in --folder.
"""
import argparse
import json
import os
import os.path as osp
import sys

from partialnet_mm.training.drill import FAULTS, RUNS
from partialnet_mm.training.fault_table import run_fault_table, table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', default=','.join(RUNS),
                        help=f'comma-separated, of {", ".join(RUNS)} (default: all)')
    parser.add_argument('--faults', default=','.join(FAULTS),
                        help=f'comma-separated, of {", ".join(FAULTS)} (default: all)')
    parser.add_argument('--runs', type=int, default=5,
                        help='runs per fault and model (full-disk and nan: 1); default 5')
    parser.add_argument('--every', type=int, default=2,
                        help='checkpoint interval within an epoch, in iterations (default 2)')
    parser.add_argument('--folder', default='work_dirs/fault_table')
    parser.add_argument('--seed', type=int, default=None, help='for the random iterations')
    parser.add_argument('--json', help='also write every trial here')
    parser.add_argument('--table-from', metavar='JSON',
                        help='print the table of an earlier run\'s --json, run nothing')
    args = parser.parse_args()
    if args.table_from:
        with open(args.table_from) as f:
            print(table(json.load(f)))
        return 0
    models, faults = args.models.split(','), args.faults.split(',')
    for name, known in ((models, RUNS), (faults, FAULTS)):
        bad = [n for n in name if n not in known]
        if bad:
            parser.error(f'unknown {bad}; choose from {", ".join(known)}')
    trials_out = run_fault_table(models, faults, args.folder, args.runs, args.every, args.seed,
                                 log=lambda line: print(line, flush=True))
    print('\n' + table(trials_out))
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(trials_out, f, indent=1, default=str)
    return 0 if all(t['passed'] for t in trials_out) else 1


if __name__ == '__main__':
    sys.exit(main())
