"""mmengine's epoch-based training loop, resumable within an epoch."""
import collections
import contextlib
import itertools
import random
from typing import Counter, Iterator, Tuple

import numpy as np
import torch
from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop
from torch.utils.data import Sampler

EPOCH_LENGTH = 'train_epoch_length'  # message hub key: batches per epoch, kept in checkpoints


class ResumeMismatch(RuntimeError):
    """A checkpoint written within an epoch that does not fit the current dataloader."""


class WithoutSeen(Sampler):
    """``sampler`` without the indices its batch sampler already gave to the first batches of
    this epoch. Removing exactly those samples leaves every later batch as it was, for plain
    batching and for any batch sampler that groups samples first in, first out (mmdet's
    aspect-ratio grouping too). Its length stays the epoch's (hooks count batches by it)."""

    def __init__(self, sampler, seen: Counter):
        self.sampler, self.seen = sampler, seen

    def __iter__(self) -> Iterator[int]:
        left = collections.Counter(self.seen)
        for index in self.sampler:
            if left[index]:
                left[index] -= 1
                continue
            yield index

    def __len__(self) -> int:
        return len(self.sampler)

    def __getattr__(self, name):  # dataset, epoch, seed... of the wrapped sampler
        if name == 'sampler':
            raise AttributeError(name)
        return getattr(self.sampler, name)


@contextlib.contextmanager
def without_seen_batches(dataloader, seen: int):
    """During the block, ``dataloader`` skips the first ``seen`` batches of its epoch without
    loading them (the batch sampler's indices are read, no image is)."""
    batch_sampler = getattr(dataloader, 'batch_sampler', None)
    sampler = getattr(batch_sampler, 'sampler', None)
    if not seen:
        yield
        return
    if sampler is None:
        raise ResumeMismatch('cannot skip the batches seen before the checkpoint: the training '
                             'dataloader has no batch sampler (batch_size=None?)')
    batches = list(batch_sampler)  # the whole epoch: a grouping sampler ends in its start state
    batch_sampler.sampler = WithoutSeen(sampler, collections.Counter(
        itertools.chain.from_iterable(batches[:seen])))
    try:
        yield
    finally:
        batch_sampler.sampler = sampler


def seed_iteration(seed: int, iteration: int) -> None:
    """Seed Python's, NumPy's and torch's generators from the run's seed and the iteration."""
    value = int(np.random.SeedSequence([seed % 2 ** 32, iteration]).generate_state(1)[0])
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` (same arguments) that resumes a checkpoint written within an
    epoch (a stop signal, ``ResumableCheckpointHook(iter_interval=...)``) at the next batch
    of that epoch: the batches already trained on are skipped without being loaded, and the
    run continues as the uninterrupted run would.

    For that, every iteration draws its randomness in the main process (dropout, drop path,
    batch augments such as Mixup/CutMix, data augmentation when ``num_workers=0``) from
    generators seeded with the run's seed and the iteration number, so that a resumed run
    draws what the uninterrupted one drew. Dataloader workers (``num_workers > 0``) keep
    their own generators, which start again when a resumed run starts its workers: data order
    is still exact, those random augmentations after the resume are not.
    """

    def run(self) -> torch.nn.Module:
        self._seen = self._seen_batches()
        self.runner.message_hub.update_info(EPOCH_LENGTH, len(self.dataloader))
        return super().run()

    def _seen_batches(self) -> int:
        """Batches of the current epoch trained before the checkpoint this run resumed."""
        length = len(self.dataloader)
        recorded = self.runner.message_hub.get_info(EPOCH_LENGTH, length)
        seen = self._iter - self._epoch * recorded
        if seen == 0:  # an epoch boundary (or a fresh run)
            return 0
        if recorded != length or not 0 < seen <= length:
            raise ResumeMismatch(
                f'the checkpoint was written after iteration {self._iter}, batch {seen} of '
                f'epoch {self._epoch + 1} with {recorded} batches per epoch, but the training '
                f'dataloader now has {length} batches per epoch (the batch size, the number of '
                f'GPUs or the dataset changed since): a run cannot continue within that epoch. '
                f'Resume with the settings it was written with, or resume from an epoch '
                f'checkpoint (epoch_N.pth)')
        self.runner.logger.info(f'Resuming within epoch {self._epoch + 1}: its first {seen} '
                                f'of {length} batches were trained before the checkpoint and '
                                f'are skipped')
        return seen

    def run_epoch(self) -> None:
        self.runner.call_hook('before_train_epoch')  # the sampler's epoch is set here
        self.runner.model.train()
        seen, self._seen = self._seen, 0
        with without_seen_batches(self.dataloader, seen):
            for idx, data_batch in self._batches(seen):
                self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    def _batches(self, start: int) -> Iterator[Tuple[int, object]]:
        batches = iter(self.dataloader)
        for idx in itertools.count(start):
            seed_iteration(self.runner.seed, self._iter)  # before the batch is made
            try:
                data_batch = next(batches)
            except StopIteration:
                return
            yield idx, data_batch
