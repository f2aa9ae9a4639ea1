"""The paper's classification head as an mmpretrain head (needs mmpretrain)."""
from typing import Tuple

import torch
import torch.nn as nn
from mmpretrain.models.heads import ClsHead
from mmpretrain.registry import MODELS

from .partialnet_head import PartialNetPreLogits


@MODELS.register_module()
class PartialNetClsHead(ClsHead):
    """The paper's head after global pooling: linear (= 1x1 conv) to ``mid_channels``
    without bias, activation, linear classifier."""

    def __init__(self, num_classes: int, in_channels: int, mid_channels: int = 1280,
                 act_cfg: dict = dict(type='ReLU'),
                 init_cfg: dict = dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.0),
                 **kwargs):
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes < 1:
            raise ValueError(f'num_classes={num_classes} must be a positive integer')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.pre_logits_layers = PartialNetPreLogits(in_channels, mid_channels, act_cfg)
        self.fc = nn.Linear(mid_channels, num_classes)

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        return self.pre_logits_layers(feats[-1])

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        return self.fc(self.pre_logits(feats))
