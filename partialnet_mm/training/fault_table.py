"""The fault table (tools/fault_table.py, docs/training.md): every drill of :mod:`.drill` run
on each model, and the trials as a markdown table, one row per fault and model."""
import os.path as osp
import re
import shutil
import time
from typing import Callable, List, Optional, Sequence

from .drill import Drill

ONCE = ('full-disk', 'nan')  # the table's single-run rows


def run_fault_table(models: Sequence[str], faults: Sequence[str], folder: str, runs: int = 5,
                    every: int = 2, seed: Optional[int] = None,
                    log: Callable[[str], None] = print) -> List[dict]:
    """Each model's uninterrupted run, then ``runs`` trials of every fault (one of the
    :data:`ONCE` faults), each in ``folder/<model>`` (a previous table's removed); the trials as
    JSON-able records. The detection models train on a generated COCO set in
    ``folder/coco``."""
    coco = osp.join(folder, 'coco')
    if not osp.isdir(coco) and any(m in ('mask-rcnn', 'rtmdet') for m in models):
        from ..datasets.synthetic_coco import make_synthetic_coco
        make_synthetic_coco(coco, num_train=8, num_val=4, size=128)
    trials = []
    for model in models:
        shutil.rmtree(osp.join(folder, model), ignore_errors=True)  # a previous table's
        drill = Drill(model, osp.join(folder, model), osp.abspath(coco) + '/', every=every,
                      seed=seed)
        start = time.time()
        log(f'{model}: uninterrupted run ...')
        drill.reference()
        for fault in faults:
            for _ in range(1 if fault in ONCE else runs):
                trial = getattr(drill, fault.replace('-', '_'))()
                log(f'  {fault} at {trial.at}: {"ok" if trial.passed else "FAILED"} '
                    f'{ {k: v for k, v in trial.detail.items() if k != "error"} }')
                trials.append(dict(model=model, fault=fault, at=trial.at, passed=trial.passed,
                                   **trial.detail))
        log(f'{model}: {time.time() - start:.0f} s ({drill.iterations} iterations a run)')
    return trials


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
