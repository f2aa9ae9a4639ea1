"""An mmengine hook that writes every DPConv layer's learned split ratio to the log."""
from typing import Dict

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from .losses import collect_gates


def learned_ratios(model) -> Dict[str, float]:
    """``{layer name: split ratio}`` for every DPConv layer of a model (or wrapped model)."""
    if is_model_wrapper(model):
        model = model.module
    return {name: gates.ratio() for name, gates in collect_gates(model)}


def format_ratios(ratios: Dict[str, float]) -> str:
    width = max(len(n) for n in ratios)
    return '\n'.join(f'  {name:<{width}}  1/{1 / r:g}  ({r:.5f})' for name, r in ratios.items())


@HOOKS.register_module()
class DPConvRatioHook(Hook):
    """After every training epoch: log the split ratio of each DPConv layer (through the
    runner's logger) and send them to the visualizer as ``dpconv_ratio/<layer>`` scalars
    (so they land in ``vis_data/scalars.json`` and any TensorBoard/W&B backend)."""

    priority = 'LOW'

    def before_train(self, runner) -> None:
        if not learned_ratios(runner.model):
            raise ValueError('DPConvRatioHook: the model has no DPConv layer; build the backbone '
                             'with dpconv=dict(...) or remove the hook')

    def after_train_epoch(self, runner) -> None:
        ratios = learned_ratios(runner.model)
        runner.logger.info(f'DPConv split ratios after epoch {runner.epoch}:\n'
                           + format_ratios(ratios))
        runner.visualizer.add_scalars({f'dpconv_ratio/{n}': r for n, r in ratios.items()},
                                      step=runner.epoch)
