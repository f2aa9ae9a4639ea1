"""ECA: efficient channel attention (Wang et al., CVPR 2020).

Global average pool -> 1D convolution across channels (kernel k, no bias, no
dimensionality reduction) -> sigmoid -> rescale the input. ``k`` adapts to the
channel count: ``t = int(|(log2(C) + b) / gamma|)``, ``k = t`` if odd else ``t + 1``.
"""
import math
from typing import Optional

import torch
import torch.nn as nn

from .utils import ChannelReweighting


def eca_kernel_size(channels: int, gamma: float = 2, b: float = 1) -> int:
    """The paper's adaptive kernel size (odd): 3 for C=64, 5 for C=128..1024, 7 for C=2048."""
    if channels < 1:
        raise ValueError(f'ECA needs a positive channel count, got {channels}')
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class ECA(ChannelReweighting):
    """Efficient channel attention; usable as an mmdet ResNet plugin
    (``plugins=[dict(cfg=dict(type='ECA'), position='after_conv3')]``) and as the
    attention branch of PATConv (``PartialNet(channel_attention='eca')``).

    Args:
        in_channels (int): channels of the input.
        kernel_size (int | None): odd, positive, at most ``in_channels``; None picks
            the adaptive size from ``gamma`` and ``b``.
        norm_cfg: unused (ECA has no norm); accepted for the attention-branch interface.
    """
    _abbr_ = 'eca'  # mmcv's build_plugin_layer names the layer after this
    label = 'ECA'

    def __init__(self, in_channels: int, kernel_size: Optional[int] = None, gamma: float = 2,
                 b: float = 1, norm_cfg: Optional[dict] = None):
        super().__init__()
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f'ECA in_channels must be a positive int, got {in_channels!r}')
        if kernel_size is None:
            kernel_size = eca_kernel_size(in_channels, gamma, b)
        elif isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or \
                kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f'ECA kernel_size must be a positive odd int, got {kernel_size!r}')
        if kernel_size > in_channels:
            raise ValueError(f'ECA kernel_size {kernel_size} is larger than the channel count '
                             f'{in_channels}')
        self.in_channels = in_channels
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.gate = nn.Sigmoid()

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel attention weights, (B, C, 1, 1)."""
        if x.shape[1] != self.in_channels:
            raise ValueError(f'ECA built for {self.in_channels} channels got {x.shape[1]}')
        y = self.conv(x.mean((2, 3)).unsqueeze(1))  # (B, 1, C): conv across channels
        return self.gate(y).transpose(1, 2).unsqueeze(-1)

    def extra_repr(self) -> str:
        return f'in_channels={self.in_channels}, kernel_size={self.kernel_size}'
