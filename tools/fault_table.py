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
import re
import shutil
import sys
import time

from partialnet_mm.datasets.synthetic_coco import make_synthetic_coco
from partialnet_mm.training.drill import FAULTS, RUNS, Drill

ONCE = ('full-disk', 'nan')  # the table's single-run rows


def summary(fault: str, details: list) -> str:
    """One cell of the table for the trials (their JSON records) of one fault and model."""
    diff = max((d.get('max_abs_diff', float('inf')) for d in details), default=0)
    if fault == 'sigterm':
        return (f"exit {sorted({d['exit'] for d in details})}, stopped after "
                f"{[d['stopped_after'] for d in details]}; max abs diff {diff:g}")
    if fault == 'kill':
        return (f"killed after {[d['killed_after'] for d in details]}, resumed from "
                f"{[d['resumed_from'] for d in details]} (lost <= "
                f"{max(d['lost'] for d in details)}); max abs diff {diff:g}")
    if fault == 'kill-during-write':
        return (f"killed writing {[d['partial'][0] if d['partial'] else '-' for d in details]},"
                f" resumed {[d['pointer'] for d in details]}; max abs diff {diff:g}")
    d = details[0]
    if fault == 'full-disk':
        return (f"exit {d['exit']}: 'cannot write ...: the disk is full'; {d['pointer']} intact, "
                f"named in the error")
    terms = re.search(r'\): (.*) not finite', d['message'])
    last = re.search(r'is (\S+): --resume', d['message'])
    return (f"exit {d['exit']} at iteration {d['last_logged'] + 1}; not finite: "
            f"{terms.group(1) if terms else '?'}; resume from "
            f"{osp.basename(last.group(1)) if last else 'none written'}")


def table(trials: list) -> str:
    """The markdown table of the trials' JSON records, one row per fault and model."""
    rows = ['| fault | model | runs | nothing lost | what happened |', '|---|---|---|---|---|']
    keys = list(dict.fromkeys((t['fault'], t['model']) for t in trials))
    for fault, model in keys:
        mine = [t for t in trials if (t['fault'], t['model']) == (fault, model)]
        rows.append(f"| {fault} | {model} | {len(mine)} | {sum(t['passed'] for t in mine)}/"
                    f"{len(mine)} | {summary(fault, mine)} |")
    return '\n'.join(rows)


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
    coco = osp.join(args.folder, 'coco')
    if not osp.isdir(coco) and any(m in ('mask-rcnn', 'rtmdet') for m in models):
        make_synthetic_coco(coco, num_train=8, num_val=4, size=128)
    trials_out = []
    for model in models:
        shutil.rmtree(osp.join(args.folder, model), ignore_errors=True)  # a previous table's
        drill = Drill(model, osp.join(args.folder, model), osp.abspath(coco) + '/',
                      every=args.every, seed=args.seed)
        start = time.time()
        print(f'{model}: uninterrupted run ...', flush=True)
        drill.reference()
        for fault in faults:
            for _ in range(1 if fault in ONCE else args.runs):
                trial = getattr(drill, fault.replace('-', '_'))()
                print(f'  {fault} at {trial.at}: {"ok" if trial.passed else "FAILED"} '
                      f'{ {k: v for k, v in trial.detail.items() if k != "error"} }', flush=True)
                trials_out.append(dict(model=model, fault=fault, at=trial.at,
                                       passed=trial.passed, **trial.detail))
        print(f'{model}: {time.time() - start:.0f} s ({drill.iterations} iterations a run)')
    print('\n' + table(trials_out))
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(trials_out, f, indent=1, default=str)
    return 0 if all(t['passed'] for t in trials_out) else 1


if __name__ == '__main__':
    sys.exit(main())
