"""PATConv: a partial 3x3 conv in parallel with attention on the other channels.

``PATConv`` is the mechanism; ``PATChannel`` (PAT_ch), ``PATSelfAttention``
(PAT_sf) and ``PATSpatial`` (PAT_sp) are the paper's three blocks built on it.
"""
from typing import Callable, Type

import torch
import torch.nn as nn

from .attention import (DeployRelPosSelfAttention, GaussianChannelAttention, LayerNorm2d,
                        RelPosSelfAttention, SpatialAttentionGate, tracing)
from .utils import build_norm, check_split


class PATConv(nn.Module):
    """Split the channels ``[ratio*C, (1-ratio)*C]``; a 3x3 conv (no bias) on the first
    part and ``attn_layer(channels)`` on the second, both reading the same input,
    concatenated in that order (conv part first)."""

    def __init__(self, channels: int, attn_layer: Callable[[int], nn.Module],
                 ratio: float = 0.25):
        super().__init__()
        self.channels = channels
        self.conv_channels = check_split(channels, ratio, type(self).__name__)
        self.attn_channels = channels - self.conv_channels
        self.conv = nn.Conv2d(self.conv_channels, self.conv_channels, 3, 1, 1, bias=False)
        self.attn = attn_layer(self.attn_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_conv, x_attn = torch.split(x, [self.conv_channels, self.attn_channels], dim=1)
        return torch.cat((self.conv(x_conv), self.attn(x_attn)), dim=1)

    def switch_to_deploy(self) -> None:
        if hasattr(self.attn, 'switch_to_deploy'):
            self.attn.switch_to_deploy()


class ChannelAttentionBranch(nn.Module):
    """``BN(attention(x))``: the attention part of PAT_ch."""

    def __init__(self, channels: int, attention: Type[nn.Module], norm_cfg: dict):
        super().__init__()
        self.attention = attention(channels, norm_cfg=norm_cfg)
        self.norm = build_norm(norm_cfg, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.attention(x))

    def switch_to_deploy(self) -> None:
        if hasattr(self.attention, 'switch_to_deploy'):
            self.attention.switch_to_deploy()


class PATChannel(PATConv):
    """PAT_ch: partial 3x3 conv + channel attention (Gaussian by default) then BN."""

    def __init__(self, channels: int, ratio: float = 0.25,
                 attention: Type[nn.Module] = GaussianChannelAttention,
                 norm_cfg: dict = dict(type='BN')):
        super().__init__(
            channels,
            lambda c: ChannelAttentionBranch(c, attention, norm_cfg),
            ratio)

    def pop_trailing_norm(self) -> nn.Module:
        """Detach the BN on the attended part (for folding into the next 1x1 conv)."""
        norm, self.attn.norm = self.attn.norm, nn.Identity()
        return norm


class DeployPATChannel(nn.Module):
    """Deploy form of :class:`PATChannel` once its closing BN is folded into the next
    1x1 conv: the conv part and the attended part are written straight into one output
    tensor (no concat copy). Same parameters and keys. Under autograd, torch.compile or
    export it concatenates as the training graph does."""

    def __init__(self, pat: PATChannel):
        super().__init__()
        if not isinstance(pat.attn.norm, nn.Identity):
            raise ValueError('fold PAT_ch\'s closing BN (pop_trailing_norm) before deploying it')
        if not hasattr(pat.attn.attention, 'weights'):
            raise TypeError(f'{type(pat.attn.attention).__name__} has no weights(x) method')
        self.conv_channels, self.attn_channels = pat.conv_channels, pat.attn_channels
        self.conv = pat.conv
        self.attn = pat.attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_conv, x_attn = torch.split(x, [self.conv_channels, self.attn_channels], dim=1)
        if tracing() or torch.is_grad_enabled():
            return torch.cat((self.conv(x_conv), self.attn(x_attn)), dim=1)
        out = torch.empty_like(x)
        torch.mul(x_attn, self.attn.attention.weights(x_attn), out=out[:, self.conv_channels:])
        out[:, :self.conv_channels] = self.conv(x_conv)
        return out

    def switch_to_deploy(self) -> None:
        """Already deployed."""


class SelfAttentionBranch(nn.Module):
    """``MHSA(LayerNorm(x))`` with iRPE: the attention part of PAT_sf."""

    def __init__(self, channels: int, num_heads: int = 4, attn_drop: float = 0.1,
                 proj_drop: float = 0.1, rpe_alpha: float = 20):
        super().__init__()
        self.norm = LayerNorm2d(channels, eps=1e-6)
        self.attn = RelPosSelfAttention(channels, num_heads, attn_drop, proj_drop, rpe_alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.norm(x))

    def switch_to_deploy(self) -> None:
        if isinstance(self.attn, RelPosSelfAttention):
            self.attn = DeployRelPosSelfAttention(self.norm, self.attn)
            self.norm = nn.Identity()


class PATSelfAttention(PATConv):
    """PAT_sf: partial 3x3 conv + global multi-head self-attention with iRPE."""

    def __init__(self, channels: int, ratio: float = 0.25, num_heads: int = 4,
                 attn_drop: float = 0.1, proj_drop: float = 0.1, rpe_alpha: float = 20):
        super().__init__(
            channels,
            lambda c: SelfAttentionBranch(c, num_heads, attn_drop, proj_drop, rpe_alpha),
            ratio)


class PATSpatial(nn.Module):
    """PAT_sp: split ``[C/2, C/2]``; spatial attention gate on the first half,
    ``conv1x1(BN(x))`` on the second; concatenated (attention half first).

    The second half is linear, so it folds into a preceding 1x1 conv: see
    :meth:`PartialMLP.switch_to_deploy`.
    """

    def __init__(self, channels: int, norm_cfg: dict = dict(type='BN')):
        super().__init__()
        self.attn_channels = check_split(channels, 0.5, 'PATSpatial')
        self.mix_channels = channels - self.attn_channels
        self.attn = SpatialAttentionGate(self.attn_channels, norm_cfg)
        self.mix = nn.Sequential()
        self.mix.add_module('norm', build_norm(norm_cfg, self.mix_channels))
        self.mix.add_module('conv', nn.Conv2d(self.mix_channels, self.mix_channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_attn, x_mix = torch.split(x, [self.attn_channels, self.mix_channels], dim=1)
        return torch.cat((self.attn(x_attn), self.mix(x_mix)), dim=1)
