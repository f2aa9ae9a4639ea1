"""tools/train.py, tools/test.py and tools/dist_train.sh on the generated COCO set."""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest

from helpers import DEMO, REPO, coco_data_options, run, tool_env


@pytest.mark.slow
def test_train_then_test_tools_give_coco_metrics(coco_root, tmp_path):
    work = str(tmp_path / 'work')
    code, out = run([sys.executable, 'tools/train.py', DEMO, '--work-dir', work,
                      '--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                      'train_dataloader.batch_size=2', *coco_data_options(coco_root)])
    assert code == 0, out[-3000:]
    assert re.search(r'Epoch\(train\) +\[1\]\[4/4\]', out), out[-2000:]
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    code, out = run([sys.executable, 'tools/test.py', DEMO, ckpt, '--work-dir', work,
                      '--cfg-options', *coco_data_options(coco_root)])
    assert code == 0, out[-3000:]
    assert re.search(r'coco/bbox_mAP: [0-9.]+', out) and re.search(r'coco/segm_mAP: [0-9.]+', out)


@pytest.mark.slow
def test_distributed_training_two_processes_gloo(coco_root, tmp_path):
    env_py = f'PYTHON={sys.executable}'
    code, out = run(['bash', '-c', f'{env_py} PORT=29533 bash tools/dist_train.sh {DEMO} 2 '
                      f'--work-dir {tmp_path} --cfg-options train_cfg.max_epochs=1 '
                      f'train_cfg.val_interval=1 train_dataloader.batch_size=2 '
                      + ' '.join(coco_data_options(coco_root))])
    assert code == 0, out[-3000:]
    # 8 images, 2 per process: 2 iterations per epoch with 2 processes (4 with one)
    assert re.search(r'Epoch\(train\) +\[1\]\[2/2\]', out), out[-2000:]
    assert 'Distributed training: True' in out
    assert osp.isfile(osp.join(tmp_path, 'epoch_1.pth'))


@pytest.mark.slow
def test_train_tool_reports_bad_data_root(tmp_path):
    code, out = run([sys.executable, 'tools/train.py', DEMO, '--cfg-options',
                      f'train_dataloader.dataset.data_root={tmp_path}/none/'])
    assert code != 0
    assert f'train_dataloader.dataset.data_root: directory not found: {tmp_path}/none/' in out


# --- more than one machine: the shell scripts' interpreter, two nodes, Slurm -----------------

def _stub(folder, name, body):
    path = folder / name
    path.write_text('#!/usr/bin/env bash\n' + body)
    path.chmod(0o755)


def _slurm_stubs(folder):
    """A stub ``srun`` that records its arguments one per line in $SRUN_RECORD and, when
    $SRUN_EXEC is set, runs the command as Slurm's only task; a stub ``scontrol``."""
    folder.mkdir(exist_ok=True)
    _stub(folder, 'srun', 'printf "%s\\n" "$@" > "$SRUN_RECORD"\n'
                          '[[ -n "${SRUN_EXEC:-}" ]] || exit 0\n'
                          'while [[ $# -gt 0 ]]; do case $1 in -p) shift 2;; -*) shift;; '
                          '*) break;; esac; done\n'
                          'export SLURM_PROCID=0 SLURM_NTASKS=1 SLURM_LOCALID=0 '
                          'SLURM_NODELIST=node-0\nexec "$@"\n')
    _stub(folder, 'scontrol', 'echo 127.0.0.1\n')
    return folder


def _env(**extra):
    """A tool's environment without PYTHON, as a user who never set it has."""
    return tool_env(unset=('PYTHON',), **extra)


def test_shell_scripts_use_the_repository_venv_unless_python_is_set(tmp_path):
    find = osp.join(REPO, 'tools', 'find_python.sh')
    show = ['bash', '-c', f'source {find}; echo "$PYTHON"']
    venv = osp.join(REPO, '.venv', 'bin', 'python')
    got = subprocess.run(show, env=_env(), capture_output=True, text=True).stdout.strip()
    assert got == (venv if os.access(venv, os.X_OK) else 'python')
    got = subprocess.run(show, env=_env(PYTHON='/opt/py/bin/python3'), capture_output=True,
                         text=True).stdout.strip()
    assert got == '/opt/py/bin/python3'
    # a copy of the tools outside any repository with a .venv (an installed package's .mim)
    shutil.copytree(osp.join(REPO, 'tools'), tmp_path / 'tools')
    show[-1] = f'source {tmp_path}/tools/find_python.sh; echo "$PYTHON"'
    assert subprocess.run(show, env=_env(), capture_output=True, text=True).stdout.strip() == 'python'


def test_slurm_scripts_pass_mmdets_arguments_to_srun(tmp_path):
    stubs = _slurm_stubs(tmp_path / 'bin')
    record = tmp_path / 'srun_args'
    env = _env(PATH=f'{stubs}{os.pathsep}{os.environ["PATH"]}', SRUN_RECORD=str(record),
               PYTHON='/venv/bin/python', GPUS='16', GPUS_PER_NODE='8', CPUS_PER_TASK='3',
               SRUN_ARGS='--time=10 --exclusive')
    proc = subprocess.run(['bash', 'tools/slurm_train.sh', 'gpu', 'pn-s', 'configs/a b.py',
                           'work_dirs/s', '--amp', '--cfg-options', 'x=1'],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    tools = osp.join(REPO, 'tools')
    assert record.read_text().splitlines() == [
        '-p', 'gpu', '--job-name=pn-s', '--gres=gpu:8', '--ntasks=16', '--ntasks-per-node=8',
        '--cpus-per-task=3', '--kill-on-bad-exit=1', '--signal=USR1@180', '--time=10',
        '--exclusive', '/venv/bin/python', '-u', f'{tools}/train.py', 'configs/a b.py',
        '--work-dir=work_dirs/s', '--launcher=slurm', '--resume', '--amp', '--cfg-options', 'x=1']
    # defaults: 8 tasks, 8 per node, 5 cores each, no extra srun arguments
    env = _env(PATH=env['PATH'], SRUN_RECORD=str(record), PYTHON='py', GPUS='2')
    proc = subprocess.run(['bash', 'tools/slurm_test.sh', 'p', 'j', 'c.py', 'e.pth'],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert record.read_text().splitlines() == [
        '-p', 'p', '--job-name=j', '--gres=gpu:2', '--ntasks=2', '--ntasks-per-node=2',
        '--cpus-per-task=5', '--kill-on-bad-exit=1', 'py', '-u', f'{tools}/test.py', 'c.py',
        'e.pth', '--launcher=slurm']
    for script in ('slurm_train.sh', 'slurm_test.sh'):
        proc = subprocess.run(['bash', f'tools/{script}', 'p', 'j', 'c.py'], cwd=REPO, env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 2 and 'usage:' in proc.stderr


def test_slurm_train_requeues_a_stopped_batch_job_and_resumes(tmp_path):
    """srun's tasks exit 75 after their checkpoint (a signal): in a batch job the script
    requeues it, and the requeued command resumes; a --resume of the user's is kept."""
    from partialnet_mm.training import PREEMPTED_EXIT_CODE
    stubs = _slurm_stubs(tmp_path / 'bin')
    _stub(stubs, 'srun', f'printf "%s\\n" "$@" > "$SRUN_RECORD"; exit {PREEMPTED_EXIT_CODE}\n')
    _stub(stubs, 'scontrol', 'echo "$@" > "$SCONTROL_RECORD"\n')
    record, requeue = tmp_path / 'srun_args', tmp_path / 'scontrol_args'
    base = dict(PATH=f'{stubs}{os.pathsep}{os.environ["PATH"]}', SRUN_RECORD=str(record),
                SCONTROL_RECORD=str(requeue), PYTHON='py', SIGNAL_LEAD='300')
    args = ['bash', 'tools/slurm_train.sh', 'p', 'j', 'c.py', 'w']
    proc = subprocess.run(args, cwd=REPO, env=_env(SLURM_JOB_ID='4242', **base),
                          capture_output=True, text=True)
    assert proc.returncode == PREEMPTED_EXIT_CODE, proc.stderr
    assert requeue.read_text().split() == ['requeue', '4242']
    srun = record.read_text().splitlines()
    assert '--signal=USR1@300' in srun and srun[-1] == '--resume'
    requeue.unlink()
    proc = subprocess.run(args + ['--resume', 'w/epoch_3.pth'], cwd=REPO, env=_env(**base),
                          capture_output=True, text=True)
    assert proc.returncode == PREEMPTED_EXIT_CODE and not requeue.exists()  # no batch job
    assert 'run the same command to continue' in proc.stderr
    assert record.read_text().splitlines()[-3:] == ['--launcher=slurm', '--resume',
                                                    'w/epoch_3.pth']


@pytest.mark.slow
def test_two_nodes_train_then_slurm_test_evaluates_the_checkpoint(coco_root, tmp_path):
    """Two "machines" on this one: two tools/dist_train.sh, NNODES=2, one process each,
    rendezvous on 127.0.0.1 over gloo; no PYTHON, no activated venv (the README's way)."""
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    from helpers import mm_build
    args = ['--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=2',
            'train_dataloader.batch_size=2', *coco_data_options(coco_root)]
    procs = [subprocess.Popen(['bash', 'tools/dist_train.sh', DEMO, '1', '--work-dir',
                               str(tmp_path / f'node{rank}'), *args], cwd=REPO,
                              env=_env(NNODES='2', NODE_RANK=str(rank), MASTER_ADDR='127.0.0.1',
                                       PORT='29537'),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    logs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    # 8 images, 2 per process, world size 2: 2 iterations per epoch
    assert re.search(r'Epoch\(train\) +\[1\]\[2/2\]', logs[0]), logs[0][-2000:]
    assert 'Distributed training: True' in logs[0]
    ckpt = tmp_path / 'node0' / 'epoch_1.pth'
    assert ckpt.is_file() and not (tmp_path / 'node1' / 'epoch_1.pth').exists()
    model = mm_build('mmdet', Config.fromfile(DEMO).model)
    load_checkpoint(model, str(ckpt), map_location='cpu', strict=True)

    stubs = _slurm_stubs(tmp_path / 'bin')
    record = tmp_path / 'srun_args'
    env = _env(PATH=f'{stubs}{os.pathsep}{os.environ["PATH"]}', SRUN_RECORD=str(record),
               SRUN_EXEC='1', GPUS='1', MASTER_PORT='29538')
    proc = subprocess.run(['bash', 'tools/slurm_test.sh', 'cpu', 'pn-t0', DEMO, str(ckpt),
                           '--work-dir', str(tmp_path / 'test'), '--cfg-options',
                           *coco_data_options(coco_root)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert re.search(r'coco/bbox_mAP: [0-9.]+', out), out[-2000:]
    assert '--launcher=slurm' in record.read_text().splitlines()
