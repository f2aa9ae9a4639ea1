"""mmengine's CheckpointHook made safe to resume from on a cluster."""
import glob
import os
import os.path as osp
from typing import Optional, Sequence

from mmengine.dist import barrier, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from ..checkpoint import PARTIAL_SUFFIX, CheckpointWriteError, atomic_file
from .stop_signal import PREEMPTED_EXIT_CODE, STOP_SIGNALS, StopSignal
from .storage import BACKEND

POINTER = 'last_checkpoint'  # the file in the work dir that `--resume` (auto) reads
WITHIN_EPOCH = 'iter_{}.pth'


@HOOKS.register_module()
class ResumableCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (every argument of it works), with four changes:

    - **atomic files**: checkpoints go through the ``atomic_local`` file backend (a temporary
      file renamed when complete) unless ``backend_args`` names another backend, and the
      ``last_checkpoint`` pointer is replaced the same way; the pointer moves only after the
      new checkpoint is complete, and old checkpoints (``max_keep_ckpts``) are deleted only
      after that (mmengine deletes the oldest first, then writes). Partial files a kill left
      behind are deleted when the next run starts. A failed write (a full disk) stops the run
      with an error naming the file, the cause and the previous checkpoint, which is intact.
    - **within an epoch**: with ``iter_interval=N`` an epoch-based run also saves every N
      iterations as ``iter_<iteration>.pth``; only the newest such file is kept (it is
      deleted when the next checkpoint is complete).
    - **stop signals**: SIGTERM and SIGUSR1 (``stop_signals``) during training finish the
      current iteration (or validation step), save ``iter_<iteration>.pth``, and exit with
      :data:`PREEMPTED_EXIT_CODE` (75) on every rank.
    - every checkpoint records where in its epoch it was written (mmengine's ``epoch`` and
      ``iter``), which :class:`ResumableEpochBasedTrainLoop` continues from.
    """

    def __init__(self, *args, iter_interval: Optional[int] = None,
                 stop_signals: Sequence[str] = STOP_SIGNALS, **kwargs):
        if kwargs.get('backend_args') is None and kwargs.get('file_client_args') is None:
            kwargs['backend_args'] = dict(backend=BACKEND)
        super().__init__(*args, **kwargs)
        if iter_interval is not None and (not isinstance(iter_interval, int)
                                          or isinstance(iter_interval, bool)
                                          or iter_interval < 1):
            raise ValueError(f'ResumableCheckpointHook: iter_interval must be a positive number '
                             f'of iterations or None, got {iter_interval!r}')
        if iter_interval is not None and not self.by_epoch:
            raise ValueError('ResumableCheckpointHook: iter_interval saves within an epoch of an '
                             'epoch-based run; with by_epoch=False set interval instead')
        self.iter_interval = iter_interval
        self.stop_signal = StopSignal(stop_signals)
        self.within_epoch_ckpt: Optional[str] = None
        self._last_iter: Optional[int] = None  # the iteration of the newest checkpoint

    # ------------------------------------------------------------------ run boundaries
    def before_train(self, runner) -> None:
        super().before_train(runner)
        hub = runner.message_hub
        self.within_epoch_ckpt = hub.get_info('within_epoch_ckpt')
        if is_main_process() and self._local():
            for partial in glob.glob(osp.join(glob.escape(self.out_dir), '*' + PARTIAL_SUFFIX)):
                runner.logger.warning(f'removing {partial}: a checkpoint write that was '
                                      f'interrupted (the checkpoint before it is intact)')
                os.remove(partial)
        loop = type(runner.train_loop).__name__
        if self.by_epoch and loop == 'EpochBasedTrainLoop':
            runner.logger.warning(
                'ResumableCheckpointHook: with train_cfg type EpochBasedTrainLoop a checkpoint '
                'written within an epoch (a stop signal, iter_interval) is resumed from the '
                "start of its epoch, its first batches seen twice; set train_cfg type="
                "'ResumableEpochBasedTrainLoop' to continue where it stopped")
        self.stop_signal.install()  # installed while training, validation during it included

    def after_train(self, runner) -> None:
        self.stop_signal.uninstall()
        super().after_train(runner)

    def _local(self) -> bool:
        return isinstance(self.file_backend, LocalBackend)

    # ------------------------------------------------------------------ when to save
    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        signal = self.stop_signal.requested()
        if signal:
            self._save_within_epoch(runner, runner.iter + 1)
            self._stop(runner, signal, f'iteration {runner.iter + 1} (epoch {runner.epoch + 1}, '
                                       f'batch {batch_idx + 1} of {len(runner.train_dataloader)})')
        if (self.iter_interval and self.every_n_train_iters(runner, self.iter_interval)
                and not (self.end_of_epoch(runner.train_dataloader, batch_idx)
                         and self._epoch_save_due(runner))):
            runner.logger.info(f'Saving checkpoint within epoch {runner.epoch + 1} at '
                               f'{runner.iter + 1} iterations')
            self._save_within_epoch(runner, runner.iter + 1)

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self.stop_signal.installed:  # a validation outside training
            return
        signal = self.stop_signal.requested()
        if signal:  # validation after an epoch: the training state is that epoch's end
            self._save_within_epoch(runner, runner.iter, epoch=runner.epoch)
            self._stop(runner, signal, f'epoch {runner.epoch} during its validation (which a '
                                       f'resumed run does not repeat)')

    def _epoch_save_due(self, runner) -> bool:
        return self.every_n_epochs(runner, self.interval, self.save_begin) or (
            self.save_last and self.is_last_train_epoch(runner))

    def _stop(self, runner, signal: str, where: str) -> None:
        barrier()  # every rank waits for the checkpoint of rank 0
        runner.logger.warning(
            f'{signal} received: stopped after {where}; saved {self.last_ckpt}. Exiting with '
            f'code {PREEMPTED_EXIT_CODE} (requeue); the same command with --resume continues '
            f'from there')
        self.stop_signal.uninstall()
        raise SystemExit(PREEMPTED_EXIT_CODE)

    # ------------------------------------------------------------------ how to save
    def _save_within_epoch(self, runner, iteration: int, epoch: Optional[int] = None) -> None:
        if self._last_iter == iteration:  # e.g. the epoch's checkpoint, just before validation
            return
        previous, filename = self.within_epoch_ckpt, WITHIN_EPOCH.format(iteration)
        # recorded before the write, so that the checkpoint itself knows to delete itself later
        self.within_epoch_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('within_epoch_ckpt', self.within_epoch_ckpt)
        meta = dict(epoch=runner.epoch if epoch is None else epoch, iter=iteration)
        self._write(runner, filename, meta)
        if previous != self.within_epoch_ckpt:
            self._remove(previous)

    def _save_checkpoint_with_step(self, runner, step, meta):
        """mmengine's order is: delete the oldest checkpoint, write the new one, point to it.
        Here: write the new one, point to it, then delete what is no longer kept."""
        stale = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                stale.append(self.file_backend.join_path(
                    self.out_dir, self.filename_tmpl.format(self.keep_ckpt_ids.popleft())))
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        if self.within_epoch_ckpt is not None:
            stale.append(self.within_epoch_ckpt)
            self.within_epoch_ckpt = None
            runner.message_hub.update_info('within_epoch_ckpt', None)
        self._write(runner, self.filename_tmpl.format(step), meta)
        for path in stale:
            self._remove(path)

    def _write(self, runner, filename: str, meta: dict) -> None:
        previous = self.last_ckpt
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        self._last_iter = meta['iter']
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        try:
            runner.save_checkpoint(
                self.out_dir, filename, self.file_client_args, save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta,
                by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        except CheckpointWriteError as err:
            kept = previous or 'none: no checkpoint was written before this one'
            raise CheckpointWriteError(
                err.errno, f'{err.strerror}. Training stopped at epoch {runner.epoch + 1}, '
                           f'iteration {runner.iter + 1}; the last complete checkpoint is '
                           f'{kept}, which --resume continues from') from err
        if is_main_process():  # the pointer moves once the checkpoint is complete
            with atomic_file(osp.join(runner.work_dir, POINTER)) as partial, \
                    open(partial, 'w') as f:
                f.write(self.last_ckpt)

    def _remove(self, path: Optional[str]) -> None:
        if path and path != self.last_ckpt and is_main_process() \
                and self.file_backend.isfile(path):
            self.file_backend.remove(path)
