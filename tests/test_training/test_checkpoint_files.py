"""The parts of training that survives its cluster, one at a time: atomic files, the checkpoint
hook's arguments, stop signals, skipping the batches seen, the invalid-loss stop."""
import errno
import os
import signal
import types

import pytest
import torch
from mmengine.dataset import DefaultSampler
from mmengine.logging import MessageHub, MMLogger
from torch.utils.data import BatchSampler, DataLoader

from partialnet_mm.checkpoint import (CheckpointWriteError, atomic_file, read_checkpoint_file,
                                      write_checkpoint)
from partialnet_mm.training import (InvalidLossError, InvalidLossHook, ResumableCheckpointHook,
                                    ResumableEpochBasedTrainLoop, ResumeMismatch, StopSignal,
                                    seed_iteration)
from partialnet_mm.training.loop import EPOCH_LENGTH, without_seen_batches
from partialnet_mm.training.storage import AtomicLocalBackend


# ---------------------------------------------------------------------------- atomic files
def test_atomic_file_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / 'sub' / 'epoch_1.pth'
    write_checkpoint({'w': torch.arange(3)}, target)
    assert torch.equal(read_checkpoint_file(target)['w'], torch.arange(3))
    with pytest.raises(KeyboardInterrupt):  # a stop in the middle of a write
        with atomic_file(target) as partial:
            with open(partial, 'wb') as f:
                f.write(b'half a checkpoint')
            raise KeyboardInterrupt
    assert torch.equal(read_checkpoint_file(target)['w'], torch.arange(3))  # the old one
    assert os.listdir(target.parent) == ['epoch_1.pth']  # no partial file left


def test_a_full_disk_is_named_and_the_previous_file_stays(tmp_path, monkeypatch):
    target = tmp_path / 'last_checkpoint'
    backend = AtomicLocalBackend()
    backend.put_text('epoch_1.pth', target)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, 'replace', full)  # the disk fills as the file is finished
    with pytest.raises(CheckpointWriteError, match='the disk is full') as err:
        backend.put(b'x' * 100, tmp_path / 'epoch_2.pth')
    assert err.value.errno == errno.ENOSPC and 'epoch_2.pth' in str(err.value)
    assert target.read_text() == 'epoch_1.pth'
    assert sorted(os.listdir(tmp_path)) == ['last_checkpoint']
    with pytest.raises(CheckpointWriteError, match='PermissionError'):  # other causes by name
        with atomic_file(tmp_path / 'x.pth'):
            raise PermissionError(errno.EACCES, 'denied')


# ---------------------------------------------------------------------------- the hook
def test_checkpoint_hook_checks_its_arguments():
    hook = ResumableCheckpointHook(interval=1, iter_interval=500)
    assert hook.backend_args == dict(backend='atomic_local') and hook.iter_interval == 500
    assert ResumableCheckpointHook(backend_args=dict(backend='local')).backend_args == \
        dict(backend='local')  # a backend of the user's is kept
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match='iter_interval must be a positive'):
            ResumableCheckpointHook(iter_interval=bad)
    with pytest.raises(ValueError, match='with by_epoch=False set interval'):
        ResumableCheckpointHook(by_epoch=False, iter_interval=10)
    with pytest.raises(ValueError, match=r"unknown signal\(s\) \['SIGNOPE'\]"):
        ResumableCheckpointHook(stop_signals=('SIGTERM', 'SIGNOPE'))


def test_stop_signal_records_the_first_signal_and_restores_handlers():
    before = signal.getsignal(signal.SIGUSR1)
    stop = StopSignal()
    stop.install()
    try:
        assert stop.requested() is None
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)  # the process lives on: only recorded
        assert stop.requested() == 'SIGUSR1'
    finally:
        stop.uninstall()
    assert signal.getsignal(signal.SIGUSR1) is before


# ---------------------------------------------------------------------------- the loop
class _Images(torch.utils.data.Dataset):
    """Index datasets with mmdet's data info: odd indices portrait, even landscape."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i

    def get_data_info(self, i):
        return dict(width=100, height=60) if i % 2 == 0 else dict(width=60, height=100)


def _batches(loader):
    return [b.tolist() for b in loader]


@pytest.mark.parametrize('grouping', ['plain', 'aspect_ratio'])
def test_skipping_seen_batches_leaves_the_later_batches_as_they_were(grouping):
    from mmdet.datasets.samplers import AspectRatioBatchSampler
    sampler = DefaultSampler(_Images(45), shuffle=True, seed=3)
    sampler.set_epoch(2)
    kind = BatchSampler if grouping == 'plain' else AspectRatioBatchSampler
    loader = DataLoader(_Images(45), batch_sampler=kind(sampler, 4, drop_last=False))
    everything = _batches(loader)
    for seen in (1, 5, len(everything) - 1):
        with without_seen_batches(loader, seen):
            assert len(loader) == len(everything)  # hooks count the epoch's batches by it
            assert _batches(loader) == everything[seen:], seen
        assert loader.batch_sampler.sampler is sampler  # put back
        assert _batches(loader) == everything


def _loop(iteration, epoch, length, recorded=None):
    hub = MessageHub.get_instance('test_resume_loop')
    hub.runtime_info.pop(EPOCH_LENGTH, None)
    if recorded is not None:
        hub.update_info(EPOCH_LENGTH, recorded)
    runner = types.SimpleNamespace(message_hub=hub, logger=MMLogger.get_current_instance())
    return types.SimpleNamespace(_iter=iteration, _epoch=epoch, dataloader=[0] * length,
                                 runner=runner)


def test_the_loop_finds_where_in_the_epoch_it_stopped():
    seen = ResumableEpochBasedTrainLoop._seen_batches
    assert seen(_loop(0, 0, 10)) == 0  # a fresh run
    assert seen(_loop(27, 2, 10, recorded=10)) == 7  # 7 batches into the third epoch
    assert seen(_loop(30, 3, 10, recorded=10)) == 0  # an epoch checkpoint
    assert seen(_loop(60, 3, 10, recorded=20)) == 0  # ...even after the batch size changed
    with pytest.raises(ResumeMismatch, match=r'batch 7 of epoch 3 with 10 batches per epoch, '
                                             r'but the training dataloader now has 5'):
        seen(_loop(27, 2, 5, recorded=10))


def test_iterations_draw_the_same_numbers_wherever_a_run_starts():
    seed_iteration(7, 41)
    first = (torch.rand(3), torch.randint(0, 100, (2,)))
    torch.rand(5)
    seed_iteration(7, 41)
    assert torch.equal(torch.rand(3), first[0]) and torch.equal(torch.randint(0, 100, (2,)),
                                                                first[1])
    seed_iteration(7, 42)
    assert not torch.equal(torch.rand(3), first[0])


# ---------------------------------------------------------------------------- invalid loss
def _runner(last_ckpt=None):
    hub = MessageHub.get_instance('test_invalid_loss')
    hub.runtime_info.pop('last_ckpt', None)
    if last_ckpt:
        hub.update_info('last_ckpt', last_ckpt)
    return types.SimpleNamespace(iter=36, epoch=1, message_hub=hub)


def test_invalid_loss_names_the_iteration_the_terms_and_the_checkpoint():
    hook = InvalidLossHook()
    fine = dict(loss=torch.tensor(1.5), loss_cls=torch.tensor(1.0), acc=torch.tensor(0.5))
    hook.after_train_iter(_runner(), 3, outputs=fine)  # no error
    bad = dict(loss=torch.tensor(float('nan')), loss_cls=torch.tensor(0.25),
               loss_bbox=torch.tensor(float('inf')), acc=torch.tensor(0.5))
    with pytest.raises(InvalidLossError) as err:
        hook.after_train_iter(_runner('work_dirs/x/iter_30.pth'), 3, outputs=bad)
    text = str(err.value)
    assert 'at iteration 37 (epoch 2, batch 4)' in text
    assert 'loss=nan, loss_cls=0.25, loss_bbox=inf' in text and 'acc' not in text
    assert 'loss, loss_bbox not finite' in text and 'work_dirs/x/iter_30.pth' in text
    with pytest.raises(InvalidLossError, match='no checkpoint was written before it'):
        hook.after_train_iter(_runner(), 3, outputs=bad)


def test_train_warns_before_a_run_that_a_sigterm_would_lose():
    from mmengine.config import Config

    from partialnet_mm.toolkit.launch import _warn_unless_resumable
    with pytest.warns(UserWarning, match="'CheckpointHook', not ResumableCheckpointHook"):
        _warn_unless_resumable(Config(dict(default_hooks=dict(checkpoint=dict(
            type='CheckpointHook')))))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        _warn_unless_resumable(Config(dict(default_hooks=dict(checkpoint=dict(
            type='ResumableCheckpointHook')))))
