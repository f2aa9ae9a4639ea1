"""A local mmengine file backend whose writes are atomic (``backend='atomic_local'``).

mmengine's ``save_checkpoint`` hands the serialised checkpoint to a file backend's ``put``;
the local backend opens the final name and writes into it, so a kill during the write leaves
a truncated ``epoch_N.pth``. This backend writes through
:func:`partialnet_mm.checkpoint.atomic_file` instead: a temporary file, flushed, then renamed.
:class:`~partialnet_mm.training.ResumableCheckpointHook` uses it by default.
"""
from mmengine.fileio import LocalBackend, register_backend

from ..checkpoint import atomic_file

BACKEND = 'atomic_local'


class AtomicLocalBackend(LocalBackend):
    """:class:`mmengine.fileio.LocalBackend` with atomic ``put`` and ``put_text``."""

    def put(self, obj: bytes, filepath) -> None:
        with atomic_file(filepath) as partial, open(partial, 'wb') as f:
            f.write(obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        with atomic_file(filepath) as partial, open(partial, 'w', encoding=encoding) as f:
            f.write(obj)


register_backend(BACKEND, AtomicLocalBackend, force=True)
