"""Stop a run at the first NaN or infinite loss."""
import math

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from .stop_signal import any_rank


class InvalidLossError(FloatingPointError):
    """A training loss that is NaN or infinite."""


def _value(v) -> float:
    return float(v.item() if hasattr(v, 'item') else v)


@HOOKS.register_module()
class InvalidLossHook(Hook):
    """After every training iteration: when the loss or one of its terms is NaN or infinite
    (on any rank), stop the run at once with an error naming the iteration, every loss term
    with its value and the last checkpoint written before it, the one to resume from.

    mmdet's ``CheckInvalidLossHook`` checks every 50 iterations and says only that the loss
    became infinite or NaN; this one checks each iteration, before the checkpoint hook can
    save the damaged weights, and works in mmpretrain and mmseg runs too."""

    priority = 'VERY_HIGH'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        terms = {k: _value(v) for k, v in (outputs or {}).items() if 'loss' in k}
        bad = [k for k, v in terms.items() if not math.isfinite(v)]
        if not any_rank(bool(bad)):
            return
        values = ', '.join(f'{k}={v:.6g}' for k, v in terms.items())
        where = f'on this rank ({values})' if bad else \
            f'on another rank (here: {values})'
        last = runner.message_hub.get_info('last_ckpt')
        resume = (f'the last checkpoint, written before it, is {last}: --resume continues from '
                  f'it' if last else 'no checkpoint was written before it')
        raise InvalidLossError(
            f'the loss is not finite at iteration {runner.iter + 1} (epoch {runner.epoch + 1}, '
            f'batch {batch_idx + 1}) {where}: '
            + (f'{", ".join(bad)} not finite. ' if bad else '')
            + f'Training stopped; {resume}. Causes to look at: the learning rate (or its '
              f'warm-up), gradient clipping, --amp, the data of this batch')
