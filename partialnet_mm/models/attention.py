"""Attention branches used on the attention part of a PATConv split.

Channel attentions (each maps ``x -> x * weights(x)`` with weights of shape
(B, C, 1, 1)): the paper's Gaussian channel attention (PAT_ch), SE and SRM (the
paper's table-12 comparison). Spatial attention gate of PAT_sp. Multi-head
self-attention with image relative position encoding (iRPE) for PAT_sf.
"""
import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .eca import ECA
from .utils import ConvNorm, build_norm


def check_pooled_batch(norm: nn.Module, x: torch.Tensor, where: str) -> None:
    """A per-GPU BatchNorm over pooled (B, C, 1, 1) statistics needs B >= 2 in training."""
    if x.shape[0] == 1 and norm.training and isinstance(norm, nn.BatchNorm2d):
        raise ValueError(f'{where} normalises pooled channel statistics with BatchNorm, which '
                         f'needs at least 2 samples per GPU in training; got batch size 1. Use '
                         f'batch >= 2 per GPU, norm_cfg=dict(type="SyncBN") across GPUs, or '
                         f'norm_eval=True')


def mean_std_pool(x: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and unbiased std over H x W, stacked to (B, C, 1, 2).

    The std of a single position is undefined; it is taken as 0 there (no spread)
    instead of propagating NaN.
    """
    flat = x.flatten(2)
    mean = flat.mean(-1)
    std = flat.std(-1) if flat.shape[-1] > 1 else torch.zeros_like(mean)
    return torch.stack((mean, std), dim=-1).unsqueeze(2)


class GaussianChannelAttention(nn.Module):
    """PAT_ch's channel attention: [mean, std] -> dense (1, 2) conv -> BN -> Hardsigmoid."""

    def __init__(self, channels: int, norm_cfg: dict = dict(type='BN'), groups: int = 1,
                 gate: Optional[nn.Module] = None):
        super().__init__()
        self.cfc = ConvNorm(channels, channels, (1, 2), groups=groups, norm_cfg=norm_cfg)
        self.gate = gate if gate is not None else nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_pooled_batch(self.cfc.norm, x, type(self).__name__)
        return x * self.gate(self.cfc(mean_std_pool(x)))

    def switch_to_deploy(self) -> None:
        self.cfc.switch_to_deploy()


class SRMAttention(GaussianChannelAttention):
    """Style-based recalibration (Lee et al. 2019): the same style pooling with a
    channel-wise (depthwise) FC and a sigmoid gate."""

    def __init__(self, channels: int, norm_cfg: dict = dict(type='BN')):
        super().__init__(channels, norm_cfg, groups=channels, gate=nn.Sigmoid())


class SEAttention(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): GAP -> FC(C/r) -> ReLU -> FC(C) -> sigmoid."""

    def __init__(self, channels: int, norm_cfg: dict = dict(type='BN'), reduction: int = 16,
                 min_channels: int = 8):
        super().__init__()
        hidden = max(channels // reduction, min_channels)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.expand(self.act(self.reduce(w))))


# name -> class, for PartialNet(channel_attention=...)
CHANNEL_ATTENTIONS = {
    'gaussian': GaussianChannelAttention,
    'se': SEAttention,
    'srm': SRMAttention,
    'eca': ECA,
}


class SpatialAttentionGate(nn.Module):
    """PAT_sp's attention half: ``BN(x * Hardsigmoid(conv1x1(x)))`` with a 1-channel map."""

    def __init__(self, channels: int, norm_cfg: dict = dict(type='BN')):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1, bias=False)
        self.gate = nn.Hardsigmoid()
        self.norm = build_norm(norm_cfg, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x * self.gate(self.conv(x)))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor, at each position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def irpe_euclidean_buckets(height: int, width: int, alpha: float, beta: int, gamma: float,
                           device=None) -> torch.Tensor:
    """Bucket index of every (query, key) pair on an H x W grid: iRPE, euclidean method.

    d = round(sqrt(dr^2 + dc^2)); index = d if d <= alpha else
    min(beta, round(alpha + ln(d / alpha) / ln(gamma / alpha) * (beta - alpha)));
    bucket = index + beta. Returns a (H*W, H*W) long tensor.
    """
    rows = torch.arange(height, dtype=torch.float64).repeat_interleave(width)
    cols = torch.arange(width, dtype=torch.float64).repeat(height)
    dist = ((rows[:, None] - rows[None, :]) ** 2 + (cols[:, None] - cols[None, :]) ** 2).sqrt()
    dist = dist.round()
    far = alpha + torch.log(dist.clamp(min=alpha) / alpha) / math.log(gamma / alpha) * (beta - alpha)
    far = far.round().clamp(max=beta)
    index = torch.where(dist <= alpha, dist, far)
    return (index + beta).long().to(device)


class ImageRelativePositionBias(nn.Module):
    """iRPE (Wu et al. ICCV 2021) in bias mode on keys: a learned scalar per head and bucket.

    Works for any H x W: the bucket map is computed from the grid size (and kept
    per module for the sizes seen, since it depends on nothing else).
    """

    def __init__(self, num_heads: int, alpha: float = 20, beta: int = 40, gamma: float = 160):
        super().__init__()
        if not 0 < alpha < gamma or beta < alpha:
            raise ValueError(f'iRPE needs 0 < alpha < gamma and beta >= alpha, got '
                             f'alpha={alpha}, beta={beta}, gamma={gamma}')
        self.alpha, self.beta, self.gamma = alpha, int(beta), gamma
        self.lookup_table_bias = nn.Parameter(torch.zeros(num_heads, 2 * self.beta + 1))
        self._buckets: Dict[Tuple[int, int, torch.device], torch.Tensor] = {}

    def buckets(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        key = (height, width, device)
        if key not in self._buckets:
            self._buckets[key] = irpe_euclidean_buckets(height, width, self.alpha, self.beta,
                                                        self.gamma, device)
        return self._buckets[key]

    def forward(self, height: int, width: int) -> torch.Tensor:
        """The (heads, N, N) bias added to the attention logits."""
        table = self.lookup_table_bias
        return table[:, self.buckets(height, width, table.device)]

    def extra_repr(self) -> str:
        return f'alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}, method=euclidean, mode=bias'


class RelPosSelfAttention(nn.Module):
    """Multi-head self-attention over all H x W positions of an NCHW map, with iRPE on keys."""

    def __init__(self, channels: int, num_heads: int = 4, attn_drop: float = 0.1,
                 proj_drop: float = 0.1, rpe_alpha: float = 20):
        super().__init__()
        if num_heads < 1 or channels % num_heads:
            raise ValueError(f'self-attention over {channels} channels cannot use {num_heads} '
                             f'heads: channels must be divisible by num_heads')
        self.num_heads = num_heads
        self.scale = (channels // num_heads) ** -0.5
        self.qkv = nn.Linear(channels, channels * 3, bias=False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(channels, channels)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rpe_k = ImageRelativePositionBias(num_heads, alpha=rpe_alpha, beta=2 * rpe_alpha,
                                               gamma=8 * rpe_alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # B, N, C
        qkv = self.qkv(tokens).reshape(b, h * w, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B, heads, N, head_dim
        logits = (q * self.scale) @ k.transpose(-2, -1) + self.rpe_k(h, w)
        attn = self.attn_drop(logits.softmax(dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(b, h * w, c)
        out = self.proj_drop(self.proj(out))
        return out.transpose(1, 2).reshape(b, c, h, w)
