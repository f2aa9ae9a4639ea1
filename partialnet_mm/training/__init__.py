"""Training that survives its cluster: resumable checkpoints, stop signals, invalid losses.

Importing this package registers, into mmengine's root registries (so every framework's
configs find them): :class:`ResumableCheckpointHook` (atomic checkpoints, checkpoints within
an epoch, SIGTERM/SIGUSR1 -> checkpoint -> exit 75), :class:`ResumableEpochBasedTrainLoop`
(continues within an epoch, skipping the batches already seen), :class:`InvalidLossHook`
(stops at the first NaN/inf loss) and the ``atomic_local`` file backend. docs/training.md
says what a preempted or killed run does and how to resume it.
"""
from .checkpoint_hook import POINTER, ResumableCheckpointHook
from .invalid_loss import InvalidLossError, InvalidLossHook
from .loop import ResumableEpochBasedTrainLoop, ResumeMismatch, seed_iteration
from .stop_signal import PREEMPTED_EXIT_CODE, STOP_SIGNALS, StopSignal
from .storage import BACKEND, AtomicLocalBackend

__all__ = ['ResumableCheckpointHook', 'ResumableEpochBasedTrainLoop', 'InvalidLossHook',
           'InvalidLossError', 'ResumeMismatch', 'AtomicLocalBackend', 'StopSignal',
           'PREEMPTED_EXIT_CODE', 'STOP_SIGNALS', 'POINTER', 'BACKEND', 'seed_iteration']
