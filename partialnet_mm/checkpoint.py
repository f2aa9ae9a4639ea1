"""Reading and writing checkpoint files: the one ``torch.load`` of the package.

Local checkpoints are the user's own files (mmengine's, Lightning's), which hold more than
tensors, so they are read with ``weights_only=False``. A missing, truncated or corrupt file
is one error that names it, wherever it is read: ``init_cfg``, ``load_from`` and mmdet's /
mmpretrain's own tools (through :mod:`partialnet_mm.compat`), and this package's tools.
"""
import os
import os.path as osp
from typing import Dict, Tuple

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


def write_checkpoint(obj, filename) -> str:
    """``torch.save`` into ``filename`` (folders made) through a temporary file renamed at
    the end, so that an interrupted save never leaves a truncated checkpoint behind."""
    filename = str(filename)
    os.makedirs(osp.dirname(osp.abspath(filename)), exist_ok=True)
    partial = filename + '.partial'
    torch.save(obj, partial)
    os.replace(partial, filename)
    return filename


def read_checkpoint(path: str) -> Tuple[object, Dict[str, torch.Tensor]]:
    """Load a local checkpoint file; returns ``(checkpoint, state_dict)``, the state dict
    being its ``state_dict`` entry or the file itself. Lightning and mmengine files hold
    more than tensors, so this reads the (trusted, local) file with weights_only=False;
    a missing, truncated or corrupt file is an error naming it."""
    ckpt = read_checkpoint_file(path)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f'{path}: expected a state dict or a dict with "state_dict"')
    return ckpt, state
