"""Fault drills: train a small model with ``tools/train.py``, hurt the run the way a cluster
does (SIGTERM at a random iteration, ``kill -9``, ``kill -9`` during a checkpoint write, a full
disk, a NaN loss), resume it, and compare its end with the uninterrupted run's.

``tools/fault_table.py`` runs them and prints the table; the tests run each fault once. The
runs are CPU runs that draw all their randomness in the main process (``num_workers=0``),
where :class:`~partialnet_mm.training.ResumableEpochBasedTrainLoop` makes a resumed run the
same run.
"""
import glob
import os
import os.path as osp
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..checkpoint import PARTIAL_SUFFIX, read_checkpoint_file
from .checkpoint_hook import POINTER
from .stop_signal import PREEMPTED_EXIT_CODE

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRAIN = osp.join(REPO, 'tools', 'train.py')
FAULTS = ('sigterm', 'kill', 'kill-during-write', 'full-disk', 'nan')

_COMMON = '''
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=1, iter_interval={every}),
                     {hooks})
randomness = dict(seed=0, deterministic=True)
'''
_DETECTION = '''
data_root = {root!r}
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
'''
# name -> (config to start from, what the drill's config adds)
RUNS: Dict[str, tuple] = {
    'digits': ('configs/demo/partialnet-t0_digits.py', '''
train_dataloader = dict(batch_size=16, dataset=dict(size=32, indices=160))
val_dataloader = dict(dataset=dict(size=32))
train_cfg = dict(max_epochs=2, val_interval=2)
'''),
    'digits-dpconv': ('configs/demo/partialnet-t0-dpconv_digits.py', '''
train_dataloader = dict(batch_size=16, dataset=dict(size=32, indices=160))
val_dataloader = dict(dataset=dict(size=32))
train_cfg = dict(max_epochs=2, val_interval=2)
'''),
    'mask-rcnn': ('configs/demo/mask_rcnn_partialnet_t0_synthetic.py', _DETECTION + '''
train_cfg = dict(max_epochs=3, val_interval=3)
'''),
    # RTMDet's two stages: a stronger pipeline, then at epoch 2 the light one (mmdet's
    # PipelineSwitchHook), with RTMDet's EMA throughout
    'rtmdet': ('configs/demo/rtmdet_partialnet-t0_synthetic.py', _DETECTION + '''
train_dataloader['dataset']['pipeline'] = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=(160, 160), ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(160, 160)),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=(160, 160), pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
train_cfg = dict(max_epochs=3, val_interval=3)
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True,
         priority=49),
    dict(type='PipelineSwitchHook', switch_epoch=2,
         switch_pipeline={{{{_base_.train_pipeline}}}}),
]
'''),
}


@HOOKS.register_module()
class PoisonWeightsHook(Hook):
    """Drill only: before training iteration ``iteration`` (1-based), set the model's first
    weight to NaN, so that this iteration's loss is NaN."""

    def __init__(self, iteration: int):
        self.iteration = iteration

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if runner.iter + 1 == self.iteration:
            model = getattr(runner.model, 'module', runner.model)
            next(p for p in model.parameters() if p.is_floating_point()).data.fill_(float('nan'))


def write_config(name: str, folder: str, data_root: Optional[str] = None, every: int = 2,
                 hooks: str = '', imports: str = '', extra: str = '') -> str:
    """The drill's config for run ``name`` in ``folder``: its demo config, shortened, data in
    the main process, a checkpoint every epoch and every ``every`` iterations; ``hooks`` are
    more ``default_hooks`` entries, ``imports`` a module to import, ``extra`` more lines."""
    base, body = RUNS[name]
    if 'data_root' in body and not data_root:
        raise ValueError(f'the {name} drill needs data_root (a generated COCO set)')
    text = (f'_base_ = {osp.join(REPO, base)!r}\n'
            + body.format(root=(data_root or '').rstrip('/') + '/')
            + _COMMON.format(every=every, hooks=hooks)
            + (f"custom_imports = dict(imports=['partialnet_mm', {imports!r}])\n"
               if imports else '') + extra)
    os.makedirs(folder, exist_ok=True)
    path = osp.join(folder, f'drill_{name}.py')
    with open(path, 'w') as f:
        f.write(text)
    return path


def train_command(config: str, work_dir: str, resume: bool = False,
                  nproc: int = 1) -> List[str]:
    """tools/train.py, or with ``nproc`` > 1 tools/dist_train.sh (on CPU: gloo)."""
    tool = [sys.executable, TRAIN, config] if nproc == 1 else \
        ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), config, str(nproc)]
    return tool + ['--work-dir', work_dir] + (['--resume'] if resume else [])


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get('PYTHONPATH', '')]),
                PYTHONUNBUFFERED='1')


_ITER = re.compile(r'Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/(\d+)\]')
_VAL = re.compile(r'Epoch\(val\)\s*\[(\d+)\]\[\s*\d+/\d+\]')


@dataclass
class Run:
    returncode: int
    output: str
    last_logged: int = 0  # the last iteration the log reported finished
    fired_at: Optional[int] = None  # the logged iteration when the fault was made


def run_training(command: List[str], fault=None, at: Optional[int] = None,
                 timeout: float = 1800, env: Optional[dict] = None) -> Run:
    """Run a training command, following its log; once iteration ``at`` is logged, call
    ``fault(process)`` (once); with ``at='val'``, at the first validation step logged."""
    proc = subprocess.Popen(command, cwd=REPO, env=dict(_env(), **(env or {})),
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines, run = [], Run(0, '')
    try:
        for line in proc.stdout:
            lines.append(line)
            if at == 'val' and fault is not None and run.fired_at is None and _VAL.search(line):
                run.fired_at = run.last_logged
                fault(proc)
            m = _ITER.search(line)
            if m:
                epoch, i, length = map(int, m.groups())
                run.last_logged = (epoch - 1) * length + i
                if fault is not None and run.fired_at is None and at != 'val' \
                        and run.last_logged >= at:
                    run.fired_at = run.last_logged
                    fault(proc)
        run.returncode = proc.wait()
    finally:
        timer.cancel()
    run.output = ''.join(lines)
    return run


def _flat(obj) -> List[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for k in sorted(obj, key=str) for t in _flat(obj[k])]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _flat(v)]
    return []


def compare_checkpoints(a: str, b: str) -> dict:
    """Weights, optimizer state, EMA and schedulers of two checkpoints: ``equal`` (bitwise),
    the largest absolute difference and the number of differing tensors."""
    ca, cb = read_checkpoint_file(a), read_checkpoint_file(b)
    diffs, count = [], 0
    for key in ('state_dict', 'optimizer', 'ema_state_dict'):
        ta, tb = _flat(ca.get(key)), _flat(cb.get(key))
        if len(ta) != len(tb):
            return dict(equal=False, max_abs_diff=float('inf'), differing=-1,
                        note=f'{key}: {len(ta)} vs {len(tb)} tensors')
        for x, y in zip(ta, tb):
            if x.shape != y.shape or not torch.equal(x, y):
                count += 1
                diffs.append(float((x.double() - y.double()).abs().max())
                             if x.shape == y.shape else float('inf'))
    same_sched = ca.get('param_schedulers') == cb.get('param_schedulers')
    same_meta = (ca['meta']['epoch'], ca['meta']['iter']) == (cb['meta']['epoch'],
                                                               cb['meta']['iter'])
    return dict(equal=not count and same_sched and same_meta, differing=count,
                max_abs_diff=max(diffs, default=0.0), note='' if same_sched and same_meta
                else 'schedulers or epoch/iter differ')


def pointed_checkpoint(work_dir: str) -> Optional[str]:
    pointer = osp.join(work_dir, POINTER)
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        return f.read().strip()


def checkpoint_iteration(path: str) -> int:
    return read_checkpoint_file(path)['meta']['iter']


@dataclass
class Trial:
    fault: str
    run: str
    at: int  # the iteration after which the fault was made (as logged)
    passed: bool
    detail: Dict[str, object] = field(default_factory=dict)


class Drill:
    """One model's drills in ``folder``: the uninterrupted reference run is made once."""

    def __init__(self, name: str, folder: str, data_root: Optional[str] = None, every: int = 2,
                 seed: Optional[int] = None, nproc: int = 1, extra: str = ''):
        self.name, self.folder, self.every, self.data_root = name, folder, every, data_root
        self.nproc = nproc
        self.config = write_config(name, folder, data_root, every, extra=extra)
        self.rng = random.Random(seed)
        self._reference: Optional[str] = None
        self.iterations = 0
        self._n = 0

    def _command(self, work: str, resume: bool = False) -> List[str]:
        return train_command(self.config, work, resume, self.nproc)

    def _run(self, work: str, resume: bool = False, fault=None, at=None) -> Run:
        env = None
        if self.nproc > 1:  # torchrun's rendezvous port: a free one
            with socket.socket() as s:
                s.bind(('127.0.0.1', 0))
                env = dict(PORT=str(s.getsockname()[1]))
        return run_training(self._command(work, resume), fault, at, env=env)

    def _work_dir(self, fault: str) -> str:
        self._n += 1
        return osp.join(self.folder, f'{fault}_{self._n}')

    def reference(self) -> str:
        """The uninterrupted run's last checkpoint (the run is made at the first call; it also
        sets :attr:`iterations`)."""
        if self._reference is None:
            work = osp.join(self.folder, 'uninterrupted')
            run = self._run(work)
            if run.returncode != 0:
                raise RuntimeError(f'the uninterrupted {self.name} run failed:\n'
                                   + run.output[-3000:])
            self._reference = pointed_checkpoint(work)
            self.iterations = checkpoint_iteration(self._reference)
        return self._reference

    def _random_iteration(self) -> int:
        return self.rng.randint(1, self.iterations - 2)

    def _resume_and_compare(self, work: str, detail: dict) -> bool:
        run = self._run(work, resume=True)
        detail['resume_exit'] = run.returncode
        if run.returncode != 0:
            detail['error'] = run.output[-2000:]
            return False
        detail.update(compare_checkpoints(self.reference(), pointed_checkpoint(work)))
        # at the end only the epoch checkpoints are kept: no within-epoch one left behind
        detail['left_behind'] = sorted(osp.basename(p) for p in
                                       glob.glob(osp.join(work, 'iter_*.pth*')))
        return bool(detail['equal']) and not detail['left_behind']

    def sigterm(self, at: Union[int, str, None] = None, sig: str = 'SIGTERM') -> Trial:
        """A stop signal after iteration ``at`` (``'val'``: during the first validation): exit
        75 with a checkpoint of the iteration it stopped after, then --resume ends with the
        uninterrupted run's weights."""
        self.reference()  # first, so that the clock of the fault is fair
        at = at or self._random_iteration()
        work = self._work_dir('sigterm')
        run = self._run(work, False, lambda p: p.send_signal(getattr(signal, sig)), at)
        saved = pointed_checkpoint(work)
        stopped = checkpoint_iteration(saved) if saved else None
        detail = dict(exit=run.returncode, stopped_after=stopped, signalled_after=run.fired_at)
        ok = run.returncode == PREEMPTED_EXIT_CODE and stopped is not None \
            and stopped >= run.fired_at
        ok = self._resume_and_compare(work, detail) and ok
        return Trial('sigterm', self.name, run.fired_at, ok, detail)

    def kill(self, at: Optional[int] = None) -> Trial:
        """``kill -9`` after iteration ``at``: --resume starts from the last complete
        checkpoint (at most ``every`` iterations back) and ends as the uninterrupted run."""
        self.reference()
        at = at or self._random_iteration()
        work = self._work_dir('kill')
        run = self._run(work, False, lambda p: p.kill(), at)
        saved = pointed_checkpoint(work)
        start = checkpoint_iteration(saved) if saved else 0
        detail = dict(exit=run.returncode, killed_after=run.fired_at, resumed_from=start,
                      lost=run.fired_at - start)
        # the kill lands in the iteration after the logged one, whose checkpoint may be done
        ok = run.returncode == -signal.SIGKILL and -1 <= run.fired_at - start <= self.every
        ok = self._resume_and_compare(work, detail) and ok
        return Trial('kill', self.name, run.fired_at, ok, detail)

    def kill_during_write(self, at: Optional[int] = None) -> Trial:
        """``kill -9`` while a checkpoint after iteration ``at`` is being written (its partial
        file exists): the pointer names the previous, complete checkpoint."""
        self.reference()
        at = at or self.rng.randint(self.every + 1, self.iterations - 2)  # one written before
        work = self._work_dir('kill-during-write')
        caught: List[str] = []

        def watch(proc):
            def poll():
                while proc.poll() is None:
                    partial = glob.glob(osp.join(work, '*' + PARTIAL_SUFFIX))
                    if partial:
                        proc.kill()
                        caught.extend(partial)
                        return
                    time.sleep(0.0005)
            threading.Thread(target=poll, daemon=True).start()

        run = self._run(work, False, watch, at)
        saved = pointed_checkpoint(work)
        detail = dict(exit=run.returncode, partial=[osp.basename(p) for p in caught],
                      pointer=osp.basename(saved) if saved else None)
        try:  # no pointer: the first checkpoint was the one killed, --resume starts afresh
            complete = saved is None or read_checkpoint_file(saved) is not None
        except Exception as err:  # the failure this drill looks for
            complete, detail['pointer_error'] = False, str(err)
        ok = bool(caught) and run.returncode == -signal.SIGKILL and complete
        ok = self._resume_and_compare(work, detail) and ok
        # the resumed run removed what the kill left
        detail['partial_after_resume'] = glob.glob(osp.join(work, '*' + PARTIAL_SUFFIX))
        return Trial('kill-during-write', self.name, run.fired_at,
                     ok and not detail['partial_after_resume'], detail)

    def full_disk(self) -> Trial:
        """Checkpoints every iteration on a tmpfs that holds one and a half of them: the second
        write fails; the run stops with an error saying the disk is full, the first checkpoint
        intact and named."""
        size = os.path.getsize(self.reference())
        work = self._work_dir('full-disk')
        os.makedirs(work)
        copy = work + '_after'
        config = write_config(self.name, work + '_config', self.data_root, every=1)
        script = (f'mount -t tmpfs -o size={int(size * 1.5) // 1024 + 512}k none '
                  f'{shlex.quote(work)} || exit 97; {shlex.join(train_command(config, work))}; '
                  f'rc=$?; cp -a {shlex.quote(work)} {shlex.quote(copy)}; exit $rc')
        proc = subprocess.run(['unshare', '-rm', 'sh', '-c', script], cwd=REPO, env=_env(),
                              capture_output=True, text=True)
        out = proc.stdout + proc.stderr
        if proc.returncode == 97:
            raise RuntimeError('cannot mount a tmpfs (unshare -rm): ' + out[-500:])
        saved = pointed_checkpoint(copy)
        saved = saved and osp.join(copy, osp.basename(saved))  # the tmpfs went with its process
        message = next((line for line in reversed(out.splitlines())
                        if 'the disk is full' in line), '')
        detail = dict(exit=proc.returncode, message=message.strip()[-400:],
                      pointer=osp.basename(saved) if saved else None,
                      leftovers=[osp.basename(p) for p in glob.glob(osp.join(copy, '*.partial'))])
        try:
            intact = read_checkpoint_file(saved)['meta']['iter'] >= 1
        except Exception as err:  # noqa: BLE001
            intact, detail['pointer_error'] = False, str(err)
        ok = proc.returncode not in (0, PREEMPTED_EXIT_CODE) and bool(message) and intact \
            and osp.basename(saved) in message and not detail['leftovers']
        return Trial('full-disk', self.name, 1, ok, detail)

    def nan(self, at: Optional[int] = None) -> Trial:
        """The loss made NaN at iteration ``at``: the run stops there, naming the iteration, the
        loss terms and the last checkpoint."""
        self.reference()
        at = at or self._random_iteration() + 1
        folder = self._work_dir('nan')
        config = write_config(
            self.name, folder, self.data_root, self.every, imports=__name__,
            hooks=f"poison=dict(type='PoisonWeightsHook', iteration={at})")
        work = osp.join(folder, 'work')
        run = run_training(train_command(config, work))
        message = next((line for line in reversed(run.output.splitlines())
                        if 'InvalidLossError:' in line), '')
        saved = pointed_checkpoint(work)
        detail = dict(exit=run.returncode, message=message.strip()[-400:],
                      last_logged=run.last_logged)
        ok = run.returncode != 0 and f'at iteration {at} ' in message and 'loss=nan' in message \
            and (saved is None or osp.basename(saved) in message) and run.last_logged == at - 1
        return Trial('nan', self.name, at, ok, detail)
