"""One fix for mmengine 0.10.7 on torch >= 2.6.

torch 2.6 made ``torch.load(weights_only=True)`` the default. mmengine 0.10.7's
checkpoint loader calls ``torch.load`` without the argument, and its own
checkpoints hold more than tensors (message hub, history buffers, numpy
scalars), so resuming, ``load_from`` and mmdet's/mmpretrain's ``tools/test.py``
fail on checkpoints mmengine itself wrote. Importing ``partialnet_mm`` (directly
or through a config's ``custom_imports``) re-registers mmengine's loader for local
files with ``weights_only=False``: the behaviour mmengine was written for. Remote
schemes (http, s3, ...) are left to mmengine. Nothing in site-packages is edited.

The loader is :func:`partialnet_mm.checkpoint.read_checkpoint_file`, whose errors name the
file.
"""
from .checkpoint import read_checkpoint_file


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
