"""Every command block of the README and of the docs pages, run as written from a fresh folder,
without an activated environment: the quick commands as they are, the long ones with
tiny-schedule flags appended. Each command must have a rule below (a new command without one
fails the test), so the docs cannot drift from what runs."""
import os
import os.path as osp
import re
import subprocess

import pytest

from helpers import REPO, tool_env

EPOCHS_1 = ['--cfg-options', 'train_cfg.max_epochs=1', 'default_hooks.checkpoint.interval=1']
# (pattern matched against the start of a command, what to do): 'skip: why', or a list of
# arguments appended (a trailing dict: substitutions in the command, for files a shortened
# earlier command wrote under another name)
RULES = [
    (r'bash tools/setup_env\.sh$', 'skip: CI runs it (.ci/run) before this suite'),
    (r'\.venv/bin/python -m pytest', 'skip: this suite itself'),
    (r'\.venv/bin/python -m partialnet_mm\.toolkit\.tool_reference',
     'skip: tests/test_docs.py renders the page and compares it with docs/tools.md'),
    (r'FORCE_CUDA=1', 'skip: needs nvcc and a GPU'),
    (r'\.venv/bin/python tools/demo\.py$',
     ['--epochs', '1', '--num-train', '8', '--num-val', '4', '--pictures', '1']),
    (r'\.venv/bin/python tools/demo\.py --detector rtmdet',
     ['--epochs', '1', '--num-train', '8', '--num-val', '4', '--pictures', '1']),
    (r'\.venv/bin/python -m partialnet_mm\.datasets\.synthetic_coco',
     ['--num-train', '8', '--num-val', '4']),
    (r'\.venv/bin/python tools/train\.py configs/demo/mask_rcnn', EPOCHS_1),
    (r'\.venv/bin/python tools/train\.py configs/demo/partialnet-t0_digits', EPOCHS_1),
    (r'\.venv/bin/python tools/(test|reparameterize_model)\.py configs/demo/(mask_rcnn|partialnet)',
     [{'epoch_12': 'epoch_1', 'epoch_8': 'epoch_1'}]),
    (r'\.venv/bin/python tools/quantize\.py', [{'epoch_8': 'epoch_1', 'epoch_12': 'epoch_1'}]),
    (r'\.venv/bin/python tools/export_onnx\.py', [{'epoch_12': 'epoch_1'}]),
    (r'\.venv/bin/python tools/deploy_test\.py', [{'epoch_12': 'epoch_1'}]),
    (r'\.venv/bin/python tools/deploy_infer\.py', []),
    (r'(pip install onnxruntime|python tools/deploy_infer\.py end2end\.onnx IMAGE)',
     'skip: a runtime-only machine; tests/test_toolkit/test_detector_export.py runs '
     'deploy_infer.py with torch and OpenMMLab unimportable'),
    (r'\.venv/bin/python tools/benchmark\.py', ['--smoke']),
    (r'\.venv/bin/python tools/demo_seg\.py',
     ['--iters', '2', '--num-train', '8', '--num-val', '4']),
    (r'\.venv/bin/python -m partialnet_mm\.datasets\.synthetic_seg',
     ['--num-train', '8', '--num-val', '4']),
    (r'\.venv/bin/python tools/train\.py configs/demo/fpn',
     ['--cfg-options', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
      'default_hooks.checkpoint.interval=2']),
    (r'\.venv/bin/python tools/test\.py configs/demo/fpn', [{'iter_800': 'iter_2'}]),
    (r'\.venv/bin/python tools/get_flops\.py', []),
    (r'\.venv/bin/python tools/dpconv_digits\.py', ['--budgets', '8', '--epochs', '2', '--quiet']),
    (r'\.venv/bin/python tools/(attention_table|fidelity)\.py', []),
    (r'\.venv/bin/python tools/fault_table\.py',
     'skip: 68 trials, 27 minutes; tests/test_training/ make each fault once'),
    (r'(git clone https://github\.com/huggingface|\.venv/bin/python tools/timm_script\.py)',
     "skip: needs timm's repository (no network here); tests/test_timm.py runs the steps of "
     'its scripts and tools/timm_script.py'),
    (r'(NNODES=|GPUS=|bash tools/dist_t|bash tools/slurm_|sbatch )',
     'skip: 8 GPUs per machine (or a Slurm cluster) and the full datasets'),
    (r'\.venv/bin/python tools/extract_backbone\.py work_dirs/s_in1k',
     'skip: needs the ImageNet run above (tests/test_toolkit cover the tool)'),
]


# The pages in the order their commands run: later pages use what earlier ones wrote (the
# deployment page the demo's checkpoint; the training page's --resume the digits run).
PAGES = ['README.md', 'docs/demo.md', 'docs/deployment.md', 'docs/training.md', 'docs/rtmdet.md',
         'docs/segmentation.md', 'docs/dpconv.md', 'docs/eca.md', 'docs/fidelity.md',
         'docs/model_zoo.md', 'docs/backbone.md', 'docs/install.md', 'docs/contributing.md',
         'docs/tools.md', 'docs/benchmarks.md', 'docs/timm.md']


def page_commands(page):
    """The commands of a page's ```bash blocks, in order: continuation lines joined, comments
    (whole lines, and a trailing `` # ...``) and blank lines dropped."""
    with open(osp.join(REPO, page)) as f:
        blocks = re.findall(r'```bash\n(.*?)```', f.read(), re.S)
    commands = []
    for block in blocks:
        for command in block.replace('\\\n', ' ').splitlines():
            command = ' '.join(command.split(' # ', 1)[0].split())
            if command and not command.startswith('#'):
                commands.append(command)
    return commands


def readme_commands():
    """Every page's commands, pages in PAGES order."""
    return [c for page in PAGES for c in page_commands(page)]


def test_every_page_is_in_the_run_order():
    import glob
    pages = {osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'docs', '*.md'))}
    assert pages | {'README.md'} == set(PAGES), 'add the new page to PAGES'


def rule(command):
    for pattern, action in RULES:
        if re.match(pattern, command):
            return action
    raise AssertionError(f'README command without a rule in tests/test_readme.py: {command}')


def test_every_readme_command_has_a_rule():
    commands = readme_commands()
    assert len(commands) > 40
    for command in commands:
        rule(command)
    assert sum(not isinstance(rule(c), str) for c in commands) >= 15  # most of them run


@pytest.mark.slow
@pytest.mark.skipif(not osp.isfile(osp.join(REPO, '.venv', 'bin', 'python')),
                    reason='the README runs the set-up script\'s .venv')
def test_readme_commands_run_as_written_without_activation(tmp_path):
    """A fresh folder holding the repository's tools, configs and .venv (links), no data and
    no work_dirs; an environment without VIRTUAL_ENV, PYTHONPATH or the venv on PATH."""
    for name in ('tools', 'configs', '.venv'):
        os.symlink(osp.join(REPO, name), tmp_path / name)
    env = tool_env(unset=('VIRTUAL_ENV', 'PYTHONPATH', 'PYTHONHOME', 'CONDA_PREFIX'),
                   PATH='/usr/local/bin:/usr/bin:/bin')
    ran = []
    for command in readme_commands():
        action = rule(command)
        if isinstance(action, str) or command in ran:  # a page repeating an earlier command
            continue
        ran.append(command)  # as written: a later page's copy is skipped above
        extra = [a for a in action if isinstance(a, str)]
        for old, new in next((a for a in action if isinstance(a, dict)), {}).items():
            command = command.replace(old, new)
        if '--cfg-options' in extra and '--cfg-options' in command:
            extra.remove('--cfg-options')
        full = ' '.join([command] + extra)
        proc = subprocess.run(['bash', '-c', full], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=900)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f'{full}\n{out[-4000:]}'
        # what issue 25 found printed on every command: gone
        assert 'pkg_resources is deprecated' not in out, full
        assert 'found in sys.modules' not in out, full
        assert 'has been called more than once' not in out, full
    assert len(ran) >= 25
    # the ONNX file stands alone: no external-data sidecar
    assert (tmp_path / 'work_dirs' / 't0.onnx').is_file()
    assert not list((tmp_path / 'work_dirs').glob('*.onnx.data'))
