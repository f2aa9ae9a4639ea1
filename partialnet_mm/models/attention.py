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
from .utils import ConvNorm, bn_affine, build_norm


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


def one_pass_mean_std(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and unbiased std over H x W, each (B, C), in one pass.

    Both statistics come from the sums of x and x**2, two independent reductions
    that each read x once; ``torch.std`` (Welford) is about 15x slower on one CPU
    core. The price is cancellation when |mean| >> std: the relative error of the
    variance is about 1e-7 * (mean / std)**2, far below the deploy tolerance for
    activations of a trained network.

    On CUDA, ``torch.var_mean`` already reads x once (one Welford kernel with float
    accumulators), while the sums would write x**2 to memory and, under AMP, read x
    again as float32: there it is used instead.
    """
    flat = x.flatten(2)
    n = flat.shape[-1]
    if x.is_cuda:
        var, mean = torch.var_mean(flat, dim=-1, correction=1 if n > 1 else 0)
        return mean, var.sqrt()
    total = flat.sum(-1)
    mean = total / n
    if n == 1:
        return mean, torch.zeros_like(mean)
    var = ((flat * flat).sum(-1) - total * mean) / (n - 1)
    return mean, var.clamp_min(0).sqrt()


class MeanStdPool(nn.Module):
    """(B, C, H, W) -> (B, C, 1, 2) [mean, std]: the training graph's style pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mean_std_pool(x)


class OnePassMeanStdPool(nn.Module):
    """(B, C, H, W) -> (B, 2C) [means, stds], by :func:`one_pass_mean_std` (deploy)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(one_pass_mean_std(x), dim=1)


class StyleLinear(nn.Module):
    """The (1, 2) conv over stacked [mean, std] (with its BN folded) as one linear map
    of the (B, 2C) one-pass statistics; returns (B, C, 1, 1)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.kernel_size != (1, 2) or conv.bias is None:
            raise ValueError('StyleLinear takes a fused (1, 2) conv with bias')
        c, g = conv.out_channels, conv.groups
        per = c // g
        # a grouped conv is a block-diagonal dense map; (C, 2C) = [mean part | std part]
        dense = [torch.block_diag(*conv.weight[:, :, 0, k].detach().split(per)) for k in (0, 1)]
        self.linear = nn.Linear(2 * c, c).to(conv.weight)
        with torch.no_grad():
            self.linear.weight.copy_(torch.cat(dense, dim=1))
            self.linear.bias.copy_(conv.bias)

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        return self.linear(stats)[:, :, None, None]


class GaussianChannelAttention(nn.Module):
    """PAT_ch's channel attention: [mean, std] -> dense (1, 2) conv -> BN -> Hardsigmoid.

    ``switch_to_deploy`` computes the statistics in one pass and applies the conv
    with its BN folded as one linear map (:class:`OnePassMeanStdPool`,
    :class:`StyleLinear`).
    """

    def __init__(self, channels: int, norm_cfg: dict = dict(type='BN'), groups: int = 1,
                 gate: Optional[nn.Module] = None):
        super().__init__()
        self.pool = MeanStdPool()
        self.cfc = ConvNorm(channels, channels, (1, 2), groups=groups, norm_cfg=norm_cfg)
        self.gate = gate if gate is not None else nn.Hardsigmoid()

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel attention weights, (B, C, 1, 1)."""
        if isinstance(self.cfc, ConvNorm):
            check_pooled_batch(self.cfc.norm, x, type(self).__name__)
        return self.gate(self.cfc(self.pool(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        if isinstance(self.cfc, StyleLinear):
            return
        self.cfc.switch_to_deploy()
        self.cfc = StyleLinear(self.cfc.conv)
        self.pool = OnePassMeanStdPool()


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

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel attention weights, (B, C, 1, 1)."""
        return self.gate(self.expand(self.act(self.reduce(F.adaptive_avg_pool2d(x, 1)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


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


class InplaceSpatialGate(nn.Module):
    """Deploy form of :class:`SpatialAttentionGate`, applied in place to the first
    ``channels`` channels of a tensor the caller owns (the MLP's fresh fc2 output),
    with the BN as a per-channel scale and shift. Inference only."""

    def __init__(self, gate: SpatialAttentionGate):
        super().__init__()
        self.channels = gate.conv.in_channels
        self.conv = gate.conv
        scale, shift = bn_affine(gate.norm)
        self.register_buffer('scale', scale.detach().reshape(1, -1, 1, 1).clone())
        self.register_buffer('shift', shift.detach().reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        part = x[:, :self.channels]
        part.mul_(F.hardsigmoid(self.conv(part)))
        if part.is_cuda and not torch.is_grad_enabled():  # out= has no autograd
            # one pass instead of two; on CPU addcmul's three broadcast operands run
            # about 4x slower than the two in-place ops
            torch.addcmul(self.shift.to(part.dtype), part, self.scale.to(part.dtype), out=part)
        else:
            part.mul_(self.scale).add_(self.shift)
        return x


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor, at each position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def tracing() -> bool:
    """Inside torch.compile / torch.export / ONNX export / jit tracing, where per-size
    caches keyed by Python ints cannot be used."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def irpe_euclidean_buckets(height: int, width: int, alpha: float, beta: int, gamma: float,
                           device=None) -> torch.Tensor:
    """Bucket index of every (query, key) pair on an H x W grid: iRPE, euclidean method.

    d = round(sqrt(dr^2 + dc^2)); index = d if d <= alpha else
    min(beta, round(alpha + ln(d / alpha) / ln(gamma / alpha) * (beta - alpha)));
    bucket = index + beta. Returns a (H*W, H*W) long tensor.
    """
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64, device=device),
                                torch.arange(width, dtype=torch.float64, device=device),
                                indexing='ij')
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    dist = ((rows[:, None] - rows[None, :]) ** 2 + (cols[:, None] - cols[None, :]) ** 2).sqrt()
    dist = dist.round()
    far = alpha + torch.log(dist.clamp(min=alpha) / alpha) / math.log(gamma / alpha) \
        * (beta - alpha)
    far = far.round().clamp(max=beta)
    index = torch.where(dist <= alpha, dist, far)
    return (index + beta).long()


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
        if tracing():  # symbolic sizes: compute in the graph
            return irpe_euclidean_buckets(height, width, self.alpha, self.beta, self.gamma, device)
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
        return (f'alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}, '
                'method=euclidean, mode=bias')


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


class DeployRelPosSelfAttention(nn.Module):
    """Deploy form of ``RelPosSelfAttention(LayerNorm2d(x))``.

    The LayerNorm runs on the tokens directly (no NCHW permutes) and its affine part is
    folded into ``qkv`` (which gains a bias); attention is PyTorch's fused
    ``scaled_dot_product_attention`` with the iRPE bias gathered once per input size,
    device and dtype and kept. Dropout is gone (inference only).
    """

    def __init__(self, norm: nn.LayerNorm, attn: RelPosSelfAttention):
        super().__init__()
        channels = attn.qkv.in_features
        self.num_heads, self.scale, self.eps = attn.num_heads, attn.scale, norm.eps
        weight = attn.qkv.weight.detach()
        self.qkv = nn.Linear(channels, 3 * channels).to(weight)
        with torch.no_grad():
            self.qkv.weight.copy_(weight * norm.weight.detach()[None, :])
            self.qkv.bias.copy_(weight @ norm.bias.detach())
        self.proj = attn.proj
        self.rpe_k = attn.rpe_k
        self._bias: Dict[Tuple[int, int, torch.device, torch.dtype], torch.Tensor] = {}

    def attn_bias(self, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
        """The (1, heads, N, N) iRPE bias for an H x W map, computed once and kept (a 4-d
        mask lets PyTorch pick its fused CPU kernel)."""
        table = self.rpe_k.lookup_table_bias
        if tracing():  # torch.compile / export: part of the graph, sizes may be symbolic
            return self.rpe_k(height, width).to(dtype)[None]
        key = (height, width, table.device, dtype)
        if key not in self._bias:
            with torch.no_grad():
                self._bias[key] = self.rpe_k(height, width).to(dtype)[None].contiguous()
        return self._bias[key]

    def _load_from_state_dict(self, *args, **kwargs):
        self._bias.clear()  # new weights: the kept biases are stale
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = F.layer_norm(x.flatten(2).transpose(1, 2), (c,), eps=self.eps)
        qkv = self.qkv(tokens).reshape(b, h * w, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.attn_bias(h, w, q.dtype)
        if torch.onnx.is_in_onnx_export():
            # the same attention in plain ops: the exporter's decomposition of the fused
            # kernel's output layout fails with symbolic sizes (torch 2.14)
            out = ((q * self.scale) @ k.transpose(-2, -1) + bias).softmax(-1) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        out = self.proj(out.transpose(1, 2).reshape(b, h * w, c))
        # the tokens as a channels_last map: a view, not a copy
        return out.reshape(b, h, w, c).permute(0, 3, 1, 2)
