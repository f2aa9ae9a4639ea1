"""DPConv's two loss terms (complexity against a budget, gate order) as mmengine loss-dict
entries, over every gate set of a model."""
import math
from typing import Dict, Iterable, List, Tuple

import torch
import torch.nn as nn

from ..models.layers.gates import ChannelGates


def collect_gates(model: nn.Module) -> List[Tuple[str, ChannelGates]]:
    """Every DPConv gate set in ``model``, by module name (in registration order)."""
    return [(name[:-len('.gates')] if name.endswith('.gates') else name, m)
            for name, m in model.named_modules() if isinstance(m, ChannelGates)]


def budget_cost(channels: Iterable[int], budget: float) -> float:
    """The budget B of DPConv's complexity loss: ``sum_l (C_l / b)**2`` over the gated layers'
    channels, the conv cost of split ratio ``1 / b`` everywhere."""
    return sum((c / budget) ** 2 for c in channels)


def conv_cost(conv_channels: Iterable[float]) -> float:
    """The conv cost R of a split: ``sum_l (conv channels_l)**2`` (what a gate set's
    ``cost()`` is for its current split)."""
    return sum(k ** 2 for k in conv_channels)


def dpconv_losses(model: nn.Module, task_loss: torch.Tensor, budget: float = 4.0,
                  alpha: float = -0.01, order_weight: float = 1.0) -> Dict[str, torch.Tensor]:
    """The two DPConv terms, as entries of an mmengine loss dict.

    Complexity: ``R = sum_l cost_l`` against ``B = sum_l (C_l / budget)**2`` (the cost of
    split ratio ``1 / budget``); when ``R > B`` the task loss is scaled by
    ``(B / R)**alpha``, written as the additive entry ``task * ((B / R)**alpha - 1)``
    so that mmengine's sum of the dict is the scaled loss. Order: ``order_weight *
    sum_l order_loss_l``. ``dpconv_cost_ratio`` (R / B, not a loss) is logged too.
    """
    gates = [g for _, g in collect_gates(model)]
    if not gates:
        raise ValueError('dpconv_losses: the model has no DPConv gates (build the backbone '
                         'with dpconv=dict(...))')
    check_budget(budget, [g.channels for g in gates])
    cost = torch.stack([g.cost() for g in gates]).sum()
    limit = budget_cost([g.channels for g in gates], budget)
    scale = (limit / cost) ** alpha if cost.item() > limit else cost.new_ones(())
    order = torch.stack([g.order_loss() for g in gates]).sum()
    return dict(loss_dpconv_complexity=task_loss * (scale - 1),
                loss_dpconv_order=order_weight * order,
                dpconv_cost_ratio=(cost / limit).detach())


def check_budget(budget: float, channels: List[int]) -> None:
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0 \
            or math.isinf(budget):
        raise ValueError(f'DPConv budget b must be a positive number (the budget is the cost '
                         f'of split ratio 1/b), got {budget!r}')
    if channels and budget > min(channels):
        raise ValueError(f'DPConv budget b={budget} is larger than the smallest gated layer '
                         f'({min(channels)} channels): split ratio 1/b would leave it less than '
                         f'one channel')
