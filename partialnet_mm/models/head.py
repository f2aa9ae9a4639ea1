"""The paper's classification head and a pure-torch classifier (for FLOPs, benchmarks)."""

import torch
import torch.nn as nn

from .partialnet import PartialNet
from .utils import build_act


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


class PartialNetClassifier(nn.Module):
    """Backbone (last stage, no output norm) -> global average pool -> pre-logits -> linear.

    The same network, with the same state-dict keys, as mmpretrain's ImageClassifier
    built from our configs; kept in pure torch so FLOPs and speed can be measured
    without mmpretrain.
    """

    def __init__(self, arch='s', num_classes: int = 1000, mid_channels: int = 1280,
                 **backbone_kwargs):
        super().__init__()
        backbone_kwargs.setdefault('out_indices', (3,))
        backbone_kwargs.setdefault('with_out_norm', False)
        self.backbone = PartialNet(arch=arch, **backbone_kwargs)
        act_cfg = backbone_kwargs.get('act_cfg') or self.backbone.arch['act_cfg']
        self.head = PartialNetHead(self.backbone.channels[-1], num_classes, mid_channels, act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[-1].mean((2, 3)))

    def switch_to_deploy(self) -> None:
        self.backbone.switch_to_deploy()
