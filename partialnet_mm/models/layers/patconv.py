"""PATConv: a partial 3x3 conv in parallel with attention on the other channels, and the
paper's three partial-attention blocks.

``PATConv`` is the mechanism; ``PATChannel`` (PAT_ch) and ``PATSelfAttention`` (PAT_sf) are
built on it. ``PATSpatial`` (PAT_sp) splits the channels the same way but has no 3x3 conv:
spatial attention on one half, BN + 1x1 conv on the other.
"""
from typing import Callable, Optional, Type

import torch
import torch.nn as nn

from .attention import (DeployRelPosSelfAttention, GaussianChannelAttention,
                        InplaceSpatialGate, LayerNorm2d, RelPosSelfAttention,
                        SpatialAttentionGate)
from .fast_ops import PointwiseConv
from .utils import ChannelScaleShift, bn_affine, build_norm, check_split


class PATConv(nn.Module):
    """Split the channels ``[ratio*C, (1-ratio)*C]``; a 3x3 conv (no bias) on the first
    part and ``attn_layer(channels)`` on the second, both reading the same input,
    concatenated in that order (conv part first).

    Args:
        channels (int): input and output channels C.
        attn_layer (callable): builds the attention branch from its channel count.
        ratio (float): the conv's share of the channels, in (0, 1), leaving both parts at
            least one channel. Defaults to 0.25.
    """

    def __init__(self, channels: int, attn_layer: Callable[[int], nn.Module],
                 ratio: float = 0.25):
        super().__init__()
        self.channels, self.ratio = channels, ratio
        self.conv_channels = check_split(channels, ratio, type(self).__name__)
        self.attn_channels = channels - self.conv_channels
        self.conv = nn.Conv2d(self.conv_channels, self.conv_channels, 3, 1, 1, bias=False)
        self.attn = attn_layer(self.attn_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_conv, x_attn = torch.split(x, [self.conv_channels, self.attn_channels], dim=1)
        return torch.cat((self.conv(x_conv), self.attn(x_attn)), dim=1)


class ChannelAttentionBranch(nn.Module):
    """``BN(attention(x))``: the attention part of PAT_ch.

    Args:
        channels (int): channels of the attended part.
        attention (type): a channel attention class of :data:`CHANNEL_ATTENTIONS`.
        norm_cfg (dict): the closing BN (and the attention's own norm).
    """

    def __init__(self, channels: int, attention: Type[nn.Module], norm_cfg: dict):
        super().__init__()
        self.attention = attention(channels, norm_cfg=norm_cfg)
        self.norm = build_norm(norm_cfg, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.attention(x))


class PATChannel(PATConv):
    """PAT_ch: partial 3x3 conv + channel attention (Gaussian by default) then BN.

    ``deploy=True`` builds the inference form: the attention's deploy form, and the closing
    BN as a scale and shift on the attended channels (``closing_norm``) — or, with
    ``closing_norm=False``, none: in a block the MLP's first 1x1 conv absorbs it
    (:func:`~partialnet_mm.models.layers.blocks.fold_closing_norm`).

    Args:
        channels (int): input and output channels.
        ratio (float): the 3x3 conv's share of the channels. Defaults to 0.25.
        attention (type): the channel attention class. Defaults to
            :class:`GaussianChannelAttention` (the paper's).
        norm_cfg (dict): the BNs. Defaults to ``dict(type='BN')``.
        deploy (bool): build the inference form. Defaults to False.
        closing_norm (bool): deploy form only: keep the closing BN. Defaults to True.
    """

    def __init__(self, channels: int, ratio: float = 0.25,
                 attention: Type[nn.Module] = GaussianChannelAttention,
                 norm_cfg: dict = dict(type='BN'), deploy: bool = False,
                 closing_norm: bool = True):
        if deploy:
            layer = attention.deploy_form
        else:
            def layer(c):
                return ChannelAttentionBranch(c, attention, norm_cfg)
        super().__init__(channels, layer, ratio)
        self.attention, self.norm_cfg, self.deploy = attention, norm_cfg, deploy
        self.closing_norm = ChannelScaleShift(self.conv_channels, self.attn_channels) \
            if deploy and closing_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return self.closing_norm(x) if self.closing_norm is not None else x

    @torch.no_grad()
    def fuse(self) -> 'PATChannel':
        """The deploy form with this layer's weights (a deployed layer returns itself)."""
        if self.deploy:
            return self
        twin = PATChannel(self.channels, self.ratio, self.attention, self.norm_cfg,
                          deploy=True).to(self.conv.weight)
        twin.conv.load_state_dict(self.conv.state_dict())
        twin.attn.load_state_dict(self.attn.attention.fuse().state_dict())
        twin.closing_norm = ChannelScaleShift.of_norm(self.attn.norm, self.conv_channels)
        return twin

    def pop_closing_norm(self) -> Optional[ChannelScaleShift]:
        """Deploy form: hand the closing BN (a scale and shift) to whatever absorbs it, and
        stop applying it here."""
        if not self.deploy:
            raise ValueError('pop_closing_norm() is for the deploy form: fuse() first')
        norm, self.closing_norm = self.closing_norm, None
        return norm


class SelfAttentionBranch(nn.Module):
    """``MHSA(LayerNorm(x))`` with iRPE: the attention part of PAT_sf.

    Args:
        channels (int): channels of the attended part (divisible by ``num_heads``).
        num_heads, attn_drop, proj_drop, rpe_alpha: as :class:`RelPosSelfAttention`.
    """

    def __init__(self, channels: int, num_heads: int = 4, attn_drop: float = 0.1,
                 proj_drop: float = 0.1, rpe_alpha: float = 20):
        super().__init__()
        self.norm = LayerNorm2d(channels, eps=1e-6)
        self.attn = RelPosSelfAttention(channels, num_heads, attn_drop, proj_drop, rpe_alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.norm(x))

    @torch.no_grad()
    def fuse(self) -> DeployRelPosSelfAttention:
        """The deploy form: the LayerNorm's affine part folded into ``qkv``."""
        norm, attn = self.norm, self.attn
        twin = DeployRelPosSelfAttention(attn.qkv.in_features, attn.num_heads, attn.rpe_k.alpha,
                                         norm.eps).to(attn.qkv.weight)
        weight = attn.qkv.weight
        twin.qkv.weight.copy_(weight * norm.weight[None, :])
        twin.qkv.bias.copy_(weight @ norm.bias)
        twin.proj.load_state_dict(attn.proj.state_dict())
        twin.rpe_k.load_state_dict(attn.rpe_k.state_dict())
        return twin


class PATSelfAttention(PATConv):
    """PAT_sf: partial 3x3 conv + global multi-head self-attention with iRPE.

    Args:
        channels (int): input and output channels.
        ratio (float): the 3x3 conv's share of the channels. Defaults to 0.25.
        num_heads, attn_drop, proj_drop, rpe_alpha: as :class:`SelfAttentionBranch`.
        deploy (bool): build the inference form (LayerNorm's affine folded into ``qkv``,
            fused attention kernel, no dropout). Defaults to False.
    """

    def __init__(self, channels: int, ratio: float = 0.25, num_heads: int = 4,
                 attn_drop: float = 0.1, proj_drop: float = 0.1, rpe_alpha: float = 20,
                 deploy: bool = False):
        if deploy:
            def layer(c):
                return DeployRelPosSelfAttention(c, num_heads, rpe_alpha)
        else:
            def layer(c):
                return SelfAttentionBranch(c, num_heads, attn_drop, proj_drop, rpe_alpha)
        super().__init__(channels, layer, ratio)
        self.deploy = deploy
        self.settings = dict(num_heads=num_heads, attn_drop=attn_drop, proj_drop=proj_drop,
                             rpe_alpha=rpe_alpha)

    @torch.no_grad()
    def fuse(self) -> 'PATSelfAttention':
        """The deploy form with this layer's weights (a deployed layer returns itself)."""
        if self.deploy:
            return self
        twin = PATSelfAttention(self.channels, self.ratio, **self.settings,
                                deploy=True).to(self.conv.weight)
        twin.conv.load_state_dict(self.conv.state_dict())
        twin.attn.load_state_dict(self.attn.fuse().state_dict())
        return twin


class PATSpatial(nn.Module):
    """PAT_sp: split ``[C/2, C/2]``; spatial attention gate on the first half,
    ``conv1x1(BN(x))`` on the second; concatenated (attention half first).

    Deploy form: the gate with its BN as a scale and shift, applied in place to the fresh
    concatenation, and the second half as one 1x1 conv with bias. Inside the MLP that conv
    folds into the MLP's second 1x1 conv (:func:`~partialnet_mm.models.layers.blocks.
    fold_pat_sp`).

    Args:
        channels (int): input and output channels (at least 2).
        norm_cfg (dict): the two BNs. Defaults to ``dict(type='BN')``.
        deploy (bool): build the inference form. Defaults to False.
    """

    def __init__(self, channels: int, norm_cfg: dict = dict(type='BN'), deploy: bool = False):
        super().__init__()
        self.channels, self.norm_cfg, self.deploy = channels, norm_cfg, deploy
        self.attn_channels = check_split(channels, 0.5, 'PATSpatial')
        self.mix_channels = channels - self.attn_channels
        if deploy:
            self.attn = InplaceSpatialGate(self.attn_channels)
            self.mix = PointwiseConv(self.mix_channels, self.mix_channels)
            return
        self.attn = SpatialAttentionGate(self.attn_channels, norm_cfg)
        self.mix = nn.Sequential()
        self.mix.add_module('norm', build_norm(norm_cfg, self.mix_channels))
        self.mix.add_module('conv', nn.Conv2d(self.mix_channels, self.mix_channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_attn, x_mix = torch.split(x, [self.attn_channels, self.mix_channels], dim=1)
        if self.deploy:  # the gate works in place on a tensor of its own
            return self.attn(torch.cat((x_attn, self.mix(x_mix)), dim=1))
        return torch.cat((self.attn(x_attn), self.mix(x_mix)), dim=1)

    @torch.no_grad()
    def fuse(self) -> 'PATSpatial':
        """The deploy form with this layer's weights (a deployed layer returns itself):
        ``conv(BN(x)) = (W * scale) x + W shift`` as one conv."""
        if self.deploy:
            return self
        twin = PATSpatial(self.channels, self.norm_cfg, deploy=True).to(self.mix.conv.weight)
        twin.attn.load_state_dict(self.attn.inplace_form().state_dict())
        scale, shift = bn_affine(self.mix.norm)
        weight = self.mix.conv.weight[:, :, 0, 0]
        twin.mix.weight.copy_((weight * scale[None, :])[:, :, None, None])
        twin.mix.bias.copy_(weight @ shift)
        return twin
