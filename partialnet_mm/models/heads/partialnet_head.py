"""The paper's classification head in pure torch: pre-logits (1x1 conv to 1280, activation)
and the linear classifier."""

import torch
import torch.nn as nn

from ..layers.utils import build_act


class PartialNetPreLogits(nn.Module):
    """Global features -> 1x1 conv to ``mid_channels`` (no bias) -> activation.

    Works on pooled (B, C) features; a 1x1 conv on a 1x1 map is this linear layer.
    """

    def __init__(self, in_channels: int, mid_channels: int = 1280,
                 act_cfg: dict = dict(type='ReLU')):
        super().__init__()
        self.fc = nn.Linear(in_channels, mid_channels, bias=False)
        self.act = build_act(act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


class PartialNetHead(nn.Module):
    """Pooled features -> pre-logits (1x1 conv to 1280, activation) -> linear classifier."""

    def __init__(self, in_channels: int, num_classes: int = 1000, mid_channels: int = 1280,
                 act_cfg: dict = dict(type='ReLU')):
        super().__init__()
        self.pre_logits_layers = PartialNetPreLogits(in_channels, mid_channels, act_cfg)
        self.fc = nn.Linear(mid_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pre_logits_layers(x))
