"""Run the installed MMDetection / MMPretrain / MMSegmentation ``tools/train.py`` and
``tools/test.py``.

Our tools are thin: they import ``partialnet_mm`` (registration and the
mmengine checkpoint fix), pick the framework from the config's ``default_scope``
and hand every argument to that framework's own tool, so every flag of mmdet's
and mmpretrain's tools works. On a machine without CUDA a ``--launcher pytorch``
run uses the gloo backend and DDP without device ids (mmengine assumes CUDA); so does a
``--launcher slurm`` run, with torch's rendezvous variables taken from Slurm's.
"""
import importlib.util
import os
import runpy
import sys
from pathlib import Path
from typing import List, Optional

from .. import commands
from ..checkpoint import CheckpointFormError
from ..registration import check_scope
from ..training import PREEMPTED_EXIT_CODE, ResumableCheckpointHook

TOOLS = ('train', 'test')


def framework_tool(scope: str, kind: str) -> Path:
    if kind not in TOOLS:
        raise ValueError(f'unknown tool {kind!r}; choose one of {TOOLS}')
    check_scope(scope)
    spec = importlib.util.find_spec(scope)
    if spec is None or spec.origin is None:
        raise ImportError(f'{scope} is not installed (see tools/setup_env.sh)')
    tool = Path(spec.origin).parent / '.mim' / 'tools' / f'{kind}.py'
    if not tool.is_file():
        raise FileNotFoundError(f'{scope} ships no {kind} tool at {tool}')
    return tool


USAGE = """\
usage: tools/train.py CONFIG [args of the framework's tools/train.py]
       tools/test.py CONFIG CHECKPOINT [args of the framework's tools/test.py]

Run the installed mmdet / mmpretrain / mmseg tools/train.py or tools/test.py, chosen by the
config's default_scope, after importing partialnet_mm: every flag of those tools works
(--work-dir, --resume, --amp, --auto-scale-lr, --cfg-options, --launcher, ...), and
`tools/train.py CONFIG --help` lists them. Before the run, a neck whose in_channels do not fit
the backbone, a missing data root and a malformed COCO annotation file are errors naming the
config setting.
"""


def _config_arg(argv: List[str]) -> str:
    positional = [a for a in argv if not a.startswith('-')]
    if not positional:
        if {'-h', '--help'} & set(argv):
            print(USAGE, end='')
            raise SystemExit(0)
        sys.stderr.write(USAGE)
        raise SystemExit(2)
    config = positional[0]
    if not os.path.isfile(config):
        raise SystemExit(f'config file not found: {config}')
    return config


def _launcher(argv: List[str]) -> str:
    for i, a in enumerate(argv):
        if a == '--launcher' and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith('--launcher='):
            return a.split('=', 1)[1]
    return 'none'


def _add_cfg_options(argv: List[str], options: List[str]) -> List[str]:
    """Append ``key=value`` options to the (single) --cfg-options of argv."""
    argv = list(argv)
    if '--cfg-options' in argv:
        i = argv.index('--cfg-options') + 1
        while i < len(argv) and not argv[i].startswith('--'):
            i += 1
        return argv[:i] + options + argv[i:]
    return argv + ['--cfg-options'] + options


def _torch_env_from_slurm() -> None:
    """torch's rendezvous variables from Slurm's, as mmengine's slurm init sets them (it then
    calls ``torch.cuda.set_device``, which a machine without CUDA cannot)."""
    import subprocess
    os.environ.setdefault('RANK', os.environ['SLURM_PROCID'])
    os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
    os.environ.setdefault('LOCAL_RANK', os.environ.get('SLURM_LOCALID', '0'))
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        nodes = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(
            f'scontrol show hostname {nodes} | head -n1').strip()


def _cpu_distributed(argv: List[str]) -> List[str]:
    import torch.distributed as dist
    if _launcher(argv) == 'slurm':
        _torch_env_from_slurm()
    if not dist.is_initialized():  # mmengine skips its own init (which needs CUDA) then
        dist.init_process_group(backend='gloo')
    return _add_cfg_options(argv, ['model_wrapper_cfg.type=MMDistributedDataParallel',
                                   'model_wrapper_cfg.device_ids=None',
                                   'model_wrapper_cfg.broadcast_buffers=False'])


def config_with_options(config: str, argv: List[str]):
    """The config as the tool will see it: the file plus its --cfg-options."""
    import argparse

    from mmengine.config import Config, DictAction
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    known, _ = parser.parse_known_args(argv)
    cfg = Config.fromfile(config)
    if known.cfg_options:
        cfg.merge_from_dict(known.cfg_options)
    return cfg


def run(kind: str, argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    config = _config_arg(argv)
    import torch

    import partialnet_mm  # noqa: F401  registration + checkpoint-loading fix
    from partialnet_mm.datasets.preflight import DataConfigError, check_data
    from partialnet_mm.mmconfig import NeckMismatch, check_neck_channels

    cfg = config_with_options(config, argv)
    if not {'-h', '--help'} & set(argv):  # --help: the framework tool's own, no checks
        try:
            check_neck_channels(cfg.model)  # before the data: a model error costs no data check
            check_data(cfg, ['test_dataloader'] if kind == 'test' else
                       ['train_dataloader', 'val_dataloader'])
        except (NeckMismatch, DataConfigError) as err:
            raise SystemExit(f'{config}: {err}')
    tool = framework_tool(cfg.get('default_scope', None), kind)
    if _launcher(argv) != 'none' and not torch.cuda.is_available():
        argv = _cpu_distributed(argv)
    if kind == 'train':
        _warn_unless_resumable(cfg)
    sys.argv = [str(tool)] + argv
    try:
        runpy.run_path(str(tool), run_name='__main__')
    except CheckpointFormError as err:  # the checkpoint reader says what; we say how
        if err.needs == 'fuse':
            raise SystemExit(f'{err.args[0]}:\n  ' + commands.tool(
                'reparameterize_model', config, 'CHECKPOINT', 'OUT')) from err
        raise SystemExit(f'{err.args[0]}:\n  ' + commands.tool(
            kind, *_add_cfg_options(argv, ['model.backbone.deploy=True']))) from err
    except SystemExit as stop:
        if stop.code == PREEMPTED_EXIT_CODE:  # every rank saved and agreed to stop
            _close_process_group()
        raise
    _close_process_group()


def _warn_unless_resumable(cfg) -> None:
    """A config trained without our checkpoint hook dies on SIGTERM with nothing saved since
    its last checkpoint: say so before the run, with the settings that change it."""
    import warnings
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    if hook.get('type') not in ('ResumableCheckpointHook', ResumableCheckpointHook):
        warnings.warn(
            f"default_hooks.checkpoint is {hook.get('type')!r}, not ResumableCheckpointHook: a "
            f"SIGTERM (preemption) ends this run without a checkpoint, and a kill during a "
            f"checkpoint write can leave a truncated last checkpoint. docs/training.md has the "
            f"settings our configs use", stacklevel=2)


def _close_process_group() -> None:
    """After a distributed run that ended well: every rank waits for the others, then the
    process group is closed. Left to interpreter exit, gloo's threads can abort a rank
    ("terminate called without an active exception") while another still talks to it."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
