"""One fix for mmengine 0.10.7 on torch >= 2.6, and one reader for local checkpoints.

torch 2.6 made ``torch.load(weights_only=True)`` the default. mmengine 0.10.7's
checkpoint loader calls ``torch.load`` without the argument, and its own
checkpoints hold more than tensors (message hub, history buffers, numpy
scalars), so resuming, ``load_from`` and mmdet's/mmpretrain's ``tools/test.py``
fail on checkpoints mmengine itself wrote. Importing ``partialnet_mm`` (directly
or through a config's ``custom_imports``) re-registers mmengine's loader for local
files with ``weights_only=False``: the behaviour mmengine was written for. Remote
schemes (http, s3, ...) are left to mmengine. Nothing in site-packages is edited.

The same reader serves this package's tools, so a truncated or corrupt file gives one
error that names it, wherever it is loaded (``init_cfg``, ``load_from``, the converters).
"""
import os
import os.path as osp

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


def load_from_local(filename, map_location=None):
    # Local checkpoints are the user's own files (written by mmengine's Runner).
    return read_checkpoint_file(filename, map_location=map_location)


def patch_mmengine_checkpoint_loading() -> bool:
    """Register the local-file loader; returns False if mmengine is absent."""
    try:
        from mmengine.runner.checkpoint import CheckpointLoader
    except ImportError:
        return False
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
    return True
