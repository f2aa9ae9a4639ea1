"""DPConv training in mmpretrain: an ImageClassifier whose loss dict carries the DPConv
terms (needs mmpretrain)."""
import torch
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS

from .losses import check_budget, collect_gates, dpconv_losses


@MODELS.register_module()
class DPConvImageClassifier(ImageClassifier):
    """ImageClassifier that adds DPConv's two terms to the loss dict it returns:
    ``loss_dpconv_complexity`` (the task loss scaled by ``(budget_cost / cost)**alpha``
    while the cost is over budget, as an additive entry) and ``loss_dpconv_order``;
    ``dpconv_cost_ratio`` (cost / budget) is logged alongside.

    Args:
        dpconv_loss (dict): ``budget`` b (the budget is the cost of split ratio 1/b),
            ``alpha`` (negative; the authors' config: -0.01) and ``order_weight``.
    """

    def __init__(self, *args, dpconv_loss: dict = dict(budget=4.0, alpha=-0.01, order_weight=1.0),
                 **kwargs):
        super().__init__(*args, **kwargs)
        unknown = set(dpconv_loss) - {'budget', 'alpha', 'order_weight'}
        if unknown:
            raise KeyError(f'unknown dpconv_loss settings {sorted(unknown)}; accepted: budget, '
                           f'alpha, order_weight')
        gates = collect_gates(self.backbone)
        if not gates:
            raise ValueError('DPConvImageClassifier needs a backbone with DPConv gates, e.g. '
                             'PartialNet(dpconv=dict())')
        self.dpconv_loss = dict(dict(budget=4.0, alpha=-0.01, order_weight=1.0), **dpconv_loss)
        check_budget(self.dpconv_loss['budget'], [g.channels for _, g in gates])
        if not self.dpconv_loss['alpha'] < 0:
            raise ValueError(f'dpconv_loss alpha must be negative (it penalises cost above '
                             f'budget), got {self.dpconv_loss["alpha"]}')

    def loss(self, inputs: torch.Tensor, data_samples) -> dict:
        losses = super().loss(inputs, data_samples)
        task = sum(v for k, v in losses.items() if 'loss' in k)
        losses.update(dpconv_losses(self.backbone, task, **self.dpconv_loss))
        return losses
