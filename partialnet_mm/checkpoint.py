"""Checkpoint files: the one ``torch.load`` of the package, the one (atomic) way to write a
file, and the backbone's loading rules (which form a checkpoint holds, and a strict load with
errors naming each key).

Every checkpoint this package writes, and every checkpoint of a training run (through
:mod:`partialnet_mm.training`'s file backend), goes through :func:`atomic_file`: a reader sees
the previous file or the complete new one, never a part, and a full disk is an error that says
so.

Local checkpoints are the user's own files (mmengine's, Lightning's), which hold more than
tensors, so they are read with ``weights_only=False``. A missing, truncated or corrupt file
is one error that names it, wherever it is read: ``init_cfg``, ``load_from`` and mmdet's /
mmpretrain's own tools (through :mod:`partialnet_mm.compat`), and this package's tools.
"""
import contextlib
import errno
import os
import os.path as osp
import shutil
from typing import Dict, Iterable, Iterator, Mapping, Optional, Tuple

import torch



class CheckpointError(RuntimeError):
    """A checkpoint file that exists but cannot be read."""


def read_checkpoint_file(filename, map_location='cpu'):
    """``torch.load`` of a local, trusted checkpoint (``weights_only=False``), with an
    error naming the file when it is missing, truncated or not a PyTorch checkpoint."""
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        return torch.load(filename, map_location=map_location, weights_only=False)
    except Exception as err:  # zip, pickle and EOF errors alike: none names the file
        raise CheckpointError(
            f'cannot read checkpoint {filename} ({osp.getsize(filename)} bytes): '
            f'{type(err).__name__}: {str(err).rstrip(".")}. The file is truncated (an '
            f'interrupted save or download), corrupt, or not a PyTorch checkpoint') from err


class CheckpointWriteError(OSError):
    """A file that could not be written (a full disk, say); the file it would have replaced,
    if any, is unchanged."""


PARTIAL_SUFFIX = '.partial'  # what an interrupted write leaves behind, never a checkpoint


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(filename: str, err: OSError) -> CheckpointWriteError:
    folder = osp.dirname(osp.abspath(filename))
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f'{shutil.disk_usage(folder).free / 2 ** 20:.1f} MiB free'
        except OSError:
            free = 'free space unknown'
        cause = f'the disk is full ({free} on {folder}; {os.strerror(err.errno)})'
    else:
        cause = f'{type(err).__name__}: {err}'
    return CheckpointWriteError(err.errno, f'cannot write {filename}: {cause}. Nothing was '
                                           f'written there; files already there are unchanged')


@contextlib.contextmanager
def atomic_file(filename) -> Iterator[str]:
    """Write ``filename`` all at once: the caller writes the path this yields (beside
    ``filename``, with :data:`PARTIAL_SUFFIX`), which is then flushed to disk and renamed
    over ``filename``. A reader sees the old file or the complete new one, never a part of
    it, whatever kills the writer. On an error the partial file is removed and an
    :class:`CheckpointWriteError` names the file and the cause (a full disk by name)."""
    filename = str(filename)
    folder = osp.dirname(osp.abspath(filename))
    partial = filename + PARTIAL_SUFFIX
    try:
        os.makedirs(folder, exist_ok=True)
        yield partial
        _fsync(partial)  # on disk before it has the name: a node crash leaves no empty file
        os.replace(partial, filename)
        _fsync(folder)  # and the rename itself
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.remove(partial)
        if isinstance(err, OSError) and not isinstance(err, CheckpointWriteError):
            raise _write_error(filename, err) from err
        raise


def write_checkpoint(obj, filename) -> str:
    """``torch.save`` into ``filename`` (folders made) with :func:`atomic_file`, so that an
    interrupted save never leaves a truncated checkpoint behind."""
    filename = str(filename)
    with atomic_file(filename) as partial:
        torch.save(obj, partial)
    return filename


def state_dict_of(ckpt, source) -> Dict[str, torch.Tensor]:
    """The state dict a loaded checkpoint holds: its ``state_dict`` entry or the checkpoint
    itself; a ValueError naming ``source`` for anything else."""
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ValueError(f'{source}: expected a state dict or a dict with "state_dict"')
    return state


def read_checkpoint(path: str) -> Tuple[object, Dict[str, torch.Tensor]]:
    """Load a local checkpoint file; returns ``(checkpoint, state_dict)``
    (see :func:`read_checkpoint_file` and :func:`state_dict_of`)."""
    ckpt = read_checkpoint_file(path)
    return ckpt, state_dict_of(ckpt, path)


def format_keys(keys: Iterable[str], limit: int = 5) -> str:
    """The first ``limit`` keys, and how many there are when that is not all of them."""
    keys = list(keys)
    return ', '.join(keys[:limit]) + (f' ... ({len(keys)} in all)' if len(keys) > limit else '')


def key_problems(expected: Iterable[str], given: Mapping[str, torch.Tensor],
                 shapes: Optional[Mapping[str, torch.Size]] = None,
                 optional: Iterable[str] = ()) -> str:
    """What keeps ``given`` from a strict load into a model with ``expected`` keys (missing,
    unexpected and, with ``shapes``, mis-shaped keys; ``optional`` keys may be missing), as
    one sentence; '' when it fits."""
    expected, optional = set(expected), set(optional)
    missing = sorted(expected - set(given) - optional)
    unexpected = sorted(set(given) - expected)
    problems = []
    if missing:
        problems.append(f'missing keys: {format_keys(missing)}')
    if unexpected:
        problems.append(f'unexpected keys: {format_keys(unexpected)}')
    if shapes is not None:
        mismatched = sorted(k for k in expected & set(given) if shapes[k] != given[k].shape)
        if mismatched:
            problems.append('shape mismatch: ' + format_keys(
                [f'{k} {tuple(given[k].shape)} vs {tuple(shapes[k])}' for k in mismatched]))
    return '; '.join(problems)


# ------------------------------------------------------------------ PartialNet checkpoints
def checkpoint_form(keys, prefix: str = '') -> Optional[str]:
    """'fused' or 'training' for a PartialNet state dict (by its stem), else None."""
    if prefix + 'patch_embed.conv.weight' in keys:
        return 'training'
    if prefix + 'patch_embed.weight' in keys:
        return 'fused'
    return None


class CheckpointFormError(KeyError):
    """A fused checkpoint met the training graph of a PartialNet, or the other way round.
    ``needs`` is what the user does about it: ``'fuse'`` (fuse the checkpoint first) or
    ``'deploy'`` (build the model with deploy=True); a tool adds its command line."""

    def __init__(self, message: str, needs: str):
        super().__init__(message)
        self.needs = needs


def check_checkpoint_form(model, keys, prefix: str = '', source: Optional[str] = None) -> None:
    """A clear error when a fused checkpoint meets the training graph of a PartialNet
    ``model`` or the other way round (loading would otherwise leave the model's weights at
    their initialisation)."""
    form = checkpoint_form(keys, prefix)
    what = f'checkpoint {source}' if source else 'the checkpoint'
    if form == 'training' and model.deploy:
        raise CheckpointFormError(
            f'{what} holds a training (unfused) PartialNet, but the model was built with '
            f'deploy=True (the fused graph). Load it without deploy=True, or fuse it first '
            f'(switch_to_deploy() on the trained model; for a checkpoint file, the '
            f'reparameterize_model tool), then load the fused file with '
            f'model.backbone.deploy=True', needs='fuse')
    if form == 'fused' and not model.deploy:
        raise CheckpointFormError(
            f'{what} holds a fused PartialNet (written by switch_to_deploy() or the '
            f'reparameterize_model tool), but the model is the training graph. Build it with '
            f'deploy=True (--cfg-options model.backbone.deploy=True) to load it',
            needs='deploy')


def load_backbone_checkpoint(model, checkpoint: Optional[str],
                             prefix: Optional[str] = None) -> None:
    """Load a backbone checkpoint into a PartialNet ``model``, failing loudly on anything
    that does not fit (what ``init_cfg=dict(type='Pretrained', ...)`` runs).

    The model's output norms (``model.output_norm_keys()``) may be absent (a classifier
    checkpoint has none); they then keep their fresh initialisation. Any other missing,
    unexpected or mis-shaped key is an error naming the file.
    """
    from mmengine.logging import MMLogger
    from mmengine.runner.checkpoint import CheckpointLoader

    if not checkpoint:
        raise ValueError('init_cfg type "Pretrained" needs a checkpoint path (init_cfg.checkpoint)')
    if '://' not in str(checkpoint) and not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'PartialNet init_cfg.checkpoint: no file at {checkpoint!r}. Set `pretrained` in the '
            f'config (or --cfg-options model.backbone.init_cfg.checkpoint=PATH) to an ImageNet '
            f'backbone checkpoint, or init_cfg=None to train from scratch')
    ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    try:
        state = state_dict_of(ckpt, checkpoint)
    except ValueError as err:
        raise TypeError(str(err)) from None
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise KeyError(f'{checkpoint}: no key starts with prefix {prefix!r}')
    state = {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}
    check_checkpoint_form(model, state, source=checkpoint)

    own = model.state_dict()
    problems = key_problems(own, state, {k: v.shape for k, v in own.items()},
                            optional=model.output_norm_keys())
    if problems:
        raise KeyError(f'checkpoint {checkpoint} does not fit PartialNet(arch={model.arch}) '
                       f'(prefix={prefix!r}): {problems}. Check the arch, with_pat_sp and '
                       'prefix settings, or convert authors\' checkpoints with '
                       'tools/convert_authors_checkpoint.py')
    fresh = sorted(set(own) - set(state))
    model.load_state_dict(state, strict=False)
    MMLogger.get_current_instance().info(
        f'PartialNet: loaded {len(state)} tensors from {checkpoint}'
        + (f'; output norms initialised fresh: {fresh}' if fresh else ''))
