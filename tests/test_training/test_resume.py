"""Training that survives its cluster, end to end: tools/train.py runs hurt the way a cluster
does (a stop signal, kill -9, kill -9 during a checkpoint write, a full disk, a NaN loss),
resumed with --resume, and compared bitwise with the uninterrupted run
(partialnet_mm.training.drill; tools/fault_table.py repeats them for the table)."""
import glob
import json
import os.path as osp
import shutil
import subprocess
import sys

import pytest

from partialnet_mm.training import PREEMPTED_EXIT_CODE
from partialnet_mm.training.drill import Drill, read_checkpoint_file

from helpers import REPO, run

pytestmark = pytest.mark.slow


def _unshare_works() -> bool:
    if shutil.which('unshare') is None:
        return False
    probe = subprocess.run(['unshare', '-rm', 'sh', '-c', 'mount -t tmpfs -o size=1m none /mnt'],
                           capture_output=True)
    return probe.returncode == 0


def test_fault_table_digits_every_fault_once(tmp_path):
    """Each row of the fault table once, on the digits classifier, through the table tool."""
    faults = 'sigterm,kill,kill-during-write,nan' + (',full-disk' if _unshare_works() else '')
    out = tmp_path / 'trials.json'
    code, log = run([sys.executable, 'tools/fault_table.py', '--models', 'digits', '--runs', '1',
                     '--faults', faults, '--folder', str(tmp_path / 'drills'), '--json', str(out)],
                    timeout=900)
    assert code == 0, log[-4000:]
    trials = {t['fault']: t for t in json.loads(out.read_text())}
    assert set(trials) == set(faults.split(',')) and all(t['passed'] for t in trials.values())
    assert trials['sigterm']['exit'] == PREEMPTED_EXIT_CODE and trials['sigterm']['equal']
    assert trials['kill']['exit'] == -9 and trials['kill']['lost'] <= 2
    assert trials['kill-during-write']['partial']  # the kill did land inside a write
    assert 'loss=nan' in trials['nan']['message']
    for fault in faults.split(','):
        assert f'| {fault} | digits | 1 | 1/1 |' in log


@pytest.mark.parametrize('name', ['digits-dpconv', 'mask-rcnn'])
def test_sigterm_then_resume_is_the_uninterrupted_run(name, coco_root, tmp_path):
    """DPConv's gates, Mask R-CNN's samplers: a run stopped by SIGTERM within an epoch and
    resumed ends with the uninterrupted run's weights and optimizer state, bit for bit."""
    drill = Drill(name, str(tmp_path), coco_root, seed=None)
    trial = drill.sigterm()
    assert trial.passed, (trial.at, {k: v for k, v in trial.detail.items()})
    assert trial.detail['equal'] and trial.detail['max_abs_diff'] == 0


def test_rtmdet_resumes_across_its_pipeline_switch_with_its_ema(coco_root, tmp_path):
    """RTMDet, 4 iterations an epoch, switching pipelines at the third epoch: stopped in the
    second epoch (before the switch) and in the third (after it), each resumed run ends with
    the uninterrupted run's weights and EMA weights."""
    drill = Drill('rtmdet', str(tmp_path), coco_root)
    reference = read_checkpoint_file(drill.reference())
    assert 'ema_state_dict' in reference
    for at in (5, 9):
        trial = drill.sigterm(at=at)
        assert trial.passed, (at, trial.detail)
    # stopped after the switch, the run and its resumed run each switched once
    logs = glob.glob(osp.join(str(tmp_path), 'sigterm_2', '*', '*.log'))
    assert len(logs) == 2
    for log in logs:
        with open(log) as f:
            assert f.read().count('Switch pipeline now!') == 1, log


def test_mmengines_own_loop_does_not_resume_within_an_epoch(tmp_path):
    """The control: with mmengine's EpochBasedTrainLoop the same drill fails (the resumed
    run repeats the epoch's first batches), so the equality above is not a given."""
    drill = Drill('digits', str(tmp_path), extra="train_cfg = dict(type='EpochBasedTrainLoop')\n")
    trial = drill.sigterm(at=13)  # in the second epoch
    assert trial.detail['exit'] == PREEMPTED_EXIT_CODE and trial.detail['resume_exit'] == 0
    assert not trial.detail['equal'] and trial.detail['max_abs_diff'] > 0


def test_a_stop_during_validation_saves_the_epochs_end_and_resumes_after_it(tmp_path):
    """A SIGTERM during the validation after epoch 1 (its checkpoint not due: every 2 epochs,
    within epochs every 3 iterations): the run saves the epoch's end (iteration 10), exits 75,
    and the resumed run starts epoch 2, ending as the uninterrupted run."""
    drill = Drill('digits', str(tmp_path), every=3, extra=(
        "train_cfg.update(val_interval=1)\ndefault_hooks['checkpoint']['interval'] = 2\n"))
    trial = drill.sigterm(at='val')
    assert trial.passed, trial.detail
    assert trial.detail['stopped_after'] == 10 and not trial.detail['left_behind']


def test_dist_train_passes_sigusr1_to_the_processes_and_exits_75(tmp_path):
    """tools/dist_train.sh, 2 processes on CPU: Slurm's SIGUSR1 sent to the script stops both
    processes after the same iteration with a checkpoint, the script exits 75, and --resume
    ends as the uninterrupted 2-process run."""
    drill = Drill('digits', str(tmp_path), nproc=2)
    trial = drill.sigterm(sig='SIGUSR1')
    assert trial.passed, (trial.at, trial.detail)
    assert trial.detail['exit'] == PREEMPTED_EXIT_CODE


def test_the_published_fault_table_is_its_trials_table():
    """docs/training.md's fault table is what table() makes of the trials it was run with
    (docs/bench/fault_table.json, tools/fault_table.py --json): a row per fault and model."""
    from partialnet_mm.training.fault_table import table
    trials = json.loads(open(osp.join(REPO, 'docs', 'bench', 'fault_table.json')).read())
    rows = table(trials).splitlines()
    doc = open(osp.join(REPO, 'docs', 'training.md')).read()
    assert len(rows) == 2 + len({(t['fault'], t['model']) for t in trials}) > 2 + 5
    missing = [row for row in rows if row not in doc]
    assert not missing, missing
