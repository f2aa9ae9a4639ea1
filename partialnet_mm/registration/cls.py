"""Register PartialNet and the paper's classification head in MMPretrain."""
import random
from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.heads import ClsHead
from mmpretrain.models.utils import ClsDataPreprocessor
from mmpretrain.registry import MODELS

from ..models import ECA, PartialNet, PartialNetPreLogits


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


class MultiScaleClsDataPreprocessor(ClsDataPreprocessor):
    """ClsDataPreprocessor that, in training, resizes each batch to a resolution drawn
    from ``scales`` (the paper's multi-scale training: {128, ..., 288}).

    The pipeline crops at the largest scale; every batch is then resized (bilinear,
    antialiased) to one drawn size, so the resolution varies batch by batch. The draw
    uses Python's ``random``, which mmengine seeds. Evaluation is left untouched.
    """

    def __init__(self, scales: Sequence[int] = (128, 160, 192, 224, 256, 288), **kwargs):
        super().__init__(**kwargs)
        if not scales or any(int(s) < 1 for s in scales):
            raise ValueError(f'scales must be positive ints, got {scales}')
        self.scales = tuple(int(s) for s in scales)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        if training:
            size = random.choice(self.scales)
            inputs = data['inputs']
            if tuple(inputs.shape[-2:]) != (size, size):
                data['inputs'] = F.interpolate(inputs, size=(size, size), mode='bilinear',
                                               align_corners=False, antialias=True)
        return data


MODELS.register_module(module=PartialNet, force=True)
MODELS.register_module(module=PartialNetClsHead, force=True)
MODELS.register_module(module=MultiScaleClsDataPreprocessor, force=True)
MODELS.register_module(module=ECA, force=True)  # plugin of mmdet's ResNet used from mmpretrain
