"""Attention branches used on the attention part of a PATConv split.

Channel attentions (each maps ``x -> x * weights(x)`` with weights of shape
(B, C, 1, 1)): the paper's Gaussian channel attention (PAT_ch), SE and SRM (the
paper's table-12 comparison). Spatial attention gate of PAT_sp. Multi-head
self-attention with image relative position encoding (iRPE) for PAT_sf.
"""
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .eca import ECA
from .fast_ops import (SizeCache, channel_mean_std, scale_shift_, spread_offsets,
                       style_statistics, tracing)
from .utils import ChannelReweighting, ConvNorm, bn_affine, build_norm


def check_pooled_batch(norm: nn.Module, x: torch.Tensor, where: str) -> None:
    """A per-GPU BatchNorm over pooled (B, C, 1, 1) statistics needs B >= 2 in training."""
    if x.shape[0] == 1 and norm.training and isinstance(norm, nn.BatchNorm2d):
        raise ValueError(f'{where} normalises pooled channel statistics with BatchNorm, which '
                         f'needs at least 2 samples per GPU in training; got batch size 1. Use '
                         f'batch >= 2 per GPU, norm_cfg=dict(type="SyncBN") across GPUs, or '
                         f'norm_eval=True')


def mean_std_pool(x: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and unbiased std over H x W (:func:`channel_mean_std`; the std of one
    position is 0), stacked to (B, C, 1, 2)."""
    return torch.stack(channel_mean_std(x), dim=-1).unsqueeze(2)


class MeanStdPool(nn.Module):
    """(B, C, H, W) -> (B, C, 1, 2) [mean, std]: the training graph's style pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mean_std_pool(x)


class DeployStyleAttention(nn.Module):
    """Deploy form of the style-pooling channel attentions (Gaussian, SRM): mean and std
    in one read of x each (:func:`style_statistics`), then the (1, 2) conv with its BN
    folded as one linear map of the (B, 2C) statistics ``[means | stds]``, then the gate."""

    def __init__(self, channels: int, gate: nn.Module):
        super().__init__()
        self.channels = channels
        self.fc = nn.Linear(2 * channels, channels)
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.gate(self.fc(style_statistics(x)))
        return x * weights.view(x.shape[0], self.channels, 1, 1)


class GaussianChannelAttention(ChannelReweighting):
    """PAT_ch's channel attention: [mean, std] -> dense (1, 2) conv -> BN -> Hardsigmoid.

    Args:
        channels (int): channels of the input (and of the weights).
        norm_cfg (dict): the BN after the (1, 2) conv. Defaults to ``dict(type='BN')``.
        groups (int): groups of the (1, 2) conv; 1 (dense, the paper's) or ``channels``
            (SRM's channel-wise FC). Defaults to 1.
    """

    gate_layer = nn.Hardsigmoid
    label = 'Gaussian (PAT_ch, paper)'
    # zeroed input channels drop out exactly (pooled statistics mixed linearly)
    dpconv_exact = True

    def __init__(self, channels: int, norm_cfg: dict = dict(type='BN'), groups: int = 1):
        super().__init__()
        self.channels = channels
        self.pool = MeanStdPool()
        self.cfc = ConvNorm(channels, channels, (1, 2), groups=groups, norm_cfg=norm_cfg)
        self.gate = self.gate_layer()

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel attention weights, (B, C, 1, 1)."""
        check_pooled_batch(self.cfc.norm, x, type(self).__name__)
        return self.gate(self.cfc(self.pool(x)))

    @classmethod
    def deploy_form(cls, channels: int) -> DeployStyleAttention:
        """An empty deploy form, as ``PartialNet(deploy=True)`` builds it."""
        return DeployStyleAttention(channels, cls.gate_layer())

    @torch.no_grad()
    def fuse(self) -> DeployStyleAttention:
        """The deploy form with this layer's weights: BN folded into the (1, 2) conv, which
        (grouped or dense) becomes one dense (C, 2C) linear map."""
        conv = self.cfc.fuse()
        per = self.channels // conv.groups
        twin = self.deploy_form(self.channels).to(conv.weight)
        dense = [torch.block_diag(*conv.weight[:, :, 0, k].split(per)) for k in (0, 1)]
        twin.fc.weight.copy_(torch.cat(dense, dim=1))
        twin.fc.bias.copy_(conv.bias)
        return twin


class SRMAttention(GaussianChannelAttention):
    """Style-based recalibration (Lee et al. 2019): the same style pooling with a
    channel-wise (depthwise) FC and a sigmoid gate.

    Args:
        channels (int): channels of the input.
        norm_cfg (dict): the BN after the channel-wise FC. Defaults to ``dict(type='BN')``.
    """

    gate_layer = nn.Sigmoid
    label = 'SRM'

    def __init__(self, channels: int, norm_cfg: dict = dict(type='BN')):
        super().__init__(channels, norm_cfg, groups=channels)


class SEAttention(ChannelReweighting):
    """Squeeze-and-excitation (Hu et al. 2018): GAP -> FC(C/r) -> ReLU -> FC(C) -> sigmoid.
    Nothing to fold: the deploy form is the layer itself.

    Args:
        channels (int): channels of the input.
        norm_cfg (dict): unused (SE has no norm); accepted for the attention-branch interface.
        reduction (int): hidden width ``channels // reduction``. Defaults to 16.
        min_channels (int): the smallest hidden width. Defaults to 8.
    """

    label = 'SE'

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


# name -> class, for PartialNet(channel_attention=...): the one list of channel attentions
# (in the paper's table-12 order). Each class says what it is called in tables (``label``)
# and whether DPConv can learn a PAT_ch split with it (``dpconv_exact``).
CHANNEL_ATTENTIONS = {
    'srm': SRMAttention,
    'se': SEAttention,
    'gaussian': GaussianChannelAttention,
    'eca': ECA,
}


def channel_attention_class(name: str) -> type:
    """The channel attention called ``name`` in :data:`CHANNEL_ATTENTIONS`."""
    if name not in CHANNEL_ATTENTIONS:
        raise KeyError(f'unknown channel_attention {name!r}; choose one of '
                       f'{sorted(CHANNEL_ATTENTIONS)}')
    return CHANNEL_ATTENTIONS[name]


class SpatialAttentionGate(nn.Module):
    """PAT_sp's attention half: ``BN(x * Hardsigmoid(conv1x1(x)))`` with a 1-channel map.

    Args:
        channels (int): channels of the gated half.
        norm_cfg (dict): the closing BN. Defaults to ``dict(type='BN')``.
    """

    def __init__(self, channels: int, norm_cfg: dict = dict(type='BN')):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1, bias=False)
        self.gate = nn.Hardsigmoid()
        self.norm = build_norm(norm_cfg, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x * self.gate(self.conv(x)))

    @torch.no_grad()
    def inplace_form(self) -> 'InplaceSpatialGate':
        """Its deploy form, which gates a tensor its caller owns in place (so not a drop-in
        replacement: :meth:`PATSpatial.fuse` builds the module that uses it)."""
        twin = InplaceSpatialGate(self.conv.in_channels).to(self.conv.weight)
        scale, shift = bn_affine(self.norm)
        twin.conv.weight.copy_(self.conv.weight)
        twin.scale.copy_(scale.reshape(twin.scale.shape))
        twin.shift.copy_(shift.reshape(twin.shift.shape))
        return twin


class InplaceSpatialGate(nn.Module):
    """Deploy form of :class:`SpatialAttentionGate`, applied in place to the first
    ``channels`` channels of a tensor the caller owns (the MLP's fresh fc2 output), with
    the BN as a per-channel scale and shift. Inference only. Traced (exporters), it writes a
    new tensor: TorchScript's ONNX exporter loses in-place writes into a channel slice.

    Args:
        channels (int): channels of the gated part (the first ones of the input).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(channels, 1, 1, bias=False)
        self.register_buffer('scale', torch.ones(1, channels, 1, 1))
        self.register_buffer('shift', torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        part = x[:, :self.channels]
        gate = F.hardsigmoid(self.conv(part))
        if tracing():
            return torch.cat((part * gate * self.scale + self.shift, x[:, self.channels:]), 1)
        part.mul_(gate)
        scale_shift_(part, self.scale, self.shift)
        return x


def pixel_layer_norm(x: torch.Tensor, channels: int, eps: float,
                     weight: Optional[torch.Tensor] = None,
                     bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """LayerNorm over the ``channels`` of an NCHW map at each position, returned channels
    last (B, H, W, C): the one channel LayerNorm of PAT_sf (training, deployed and
    INT8-friendly forms). ``channels`` is a constant of the caller, so exporters trace it
    with dynamic sizes."""
    return F.layer_norm(x.permute(0, 2, 3, 1), (channels,), weight, bias, eps)


def relpos_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                     scale: float, dropout_p: float = 0.0) -> torch.Tensor:
    """``softmax(q k^T * scale + bias) v`` over (B, heads, N, head_dim) queries, keys and
    values with the (1, heads, N, N) iRPE bias, dropout ``dropout_p`` on the weights: the one
    attention of PAT_sf's training, deployed, INT8-friendly and DPConv-masked forms. PyTorch's
    fused kernel (the bias is a float mask, so the iRPE table gets its gradients)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p,
                                          scale=scale)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor, at each position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_layer_norm(x, self.normalized_shape[0], self.eps, self.weight,
                                self.bias).permute(0, 3, 1, 2)


def irpe_bucket(dist: torch.Tensor, alpha: float, beta: int, gamma: float) -> torch.Tensor:
    """iRPE's euclidean bucket of a distance: d = round(dist); index = d if d <= alpha else
    min(beta, round(alpha + ln(d / alpha) / ln(gamma / alpha) * (beta - alpha)));
    bucket = index + beta (long)."""
    d = dist.round()
    far = alpha + torch.log(d.clamp(min=alpha) / alpha) / math.log(gamma / alpha) \
        * (beta - alpha)
    far = far.round().clamp(max=beta)
    return (torch.where(d <= alpha, d, far) + beta).long()


class ImageRelativePositionBias(nn.Module):
    """iRPE (Wu et al. ICCV 2021) in bias mode on keys: a learned scalar per head and bucket.

    Works for any H x W and keeps nothing per input size: each call looks up the bucket
    of every relative offset (a fixed table over offsets up to the distance where the
    buckets saturate) and spreads those (2H - 1) x (2W - 1) biases over the query-key pairs.

    Args:
        num_heads (int): one learned bias table per head.
        alpha, beta, gamma (float): iRPE's euclidean bucketing (exact up to ``alpha``,
            logarithmic up to ``gamma``, ``2 beta + 1`` buckets). Defaults to 20, 40, 160.
    """

    def __init__(self, num_heads: int, alpha: float = 20, beta: int = 40, gamma: float = 160):
        super().__init__()
        if not 0 < alpha < gamma or beta < alpha:
            raise ValueError(f'iRPE needs 0 < alpha < gamma and beta >= alpha, got '
                             f'alpha={alpha}, beta={beta}, gamma={gamma}')
        self.alpha, self.beta, self.gamma = alpha, int(beta), gamma
        self.lookup_table_bias = nn.Parameter(torch.zeros(num_heads, 2 * self.beta + 1))
        # buckets are monotone in the distance and reach the last one by d = gamma: offsets
        # beyond `saturation` on either axis are all in the last bucket
        last = irpe_bucket(torch.arange(math.ceil(gamma) + 1, dtype=torch.float64), alpha,
                           self.beta, gamma)
        self.saturation = int((last < 2 * self.beta).sum())
        axis = torch.arange(self.saturation + 1, dtype=torch.float64)
        table = irpe_bucket((axis[:, None] ** 2 + axis[None, :] ** 2).sqrt(), alpha, self.beta,
                            gamma)
        self.register_buffer('offset_buckets', table, persistent=False)  # fixed, input-free

    def forward(self, height: int, width: int, dtype=None) -> torch.Tensor:
        """The (heads, N, N) bias added to the attention logits (in ``dtype`` if given)."""
        table = self.lookup_table_bias if dtype is None else self.lookup_table_bias.to(dtype)
        if tracing():
            return self.pairwise(table, height, width)
        device = table.device
        rows = torch.arange(1 - height, height, device=device).abs_().clamp_(max=self.saturation)
        cols = torch.arange(1 - width, width, device=device).abs_().clamp_(max=self.saturation)
        buckets = self.offset_buckets.index_select(0, rows).index_select(1, cols)
        per_offset = table.index_select(1, buckets.flatten()).view(-1, *buckets.shape)
        return spread_offsets(per_offset, height, width)

    def pairwise(self, table: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The same bias by one gather over the (N, N) bucket indices of every query-key pair,
        built from aranges of the size: the form exporters trace with symbolic H and W (the
        strided view of :func:`spread_offsets` would freeze the traced size)."""
        device = table.device
        rows = torch.arange(height, device=device)[:, None].expand(height, width).reshape(-1)
        cols = torch.arange(width, device=device)[None, :].expand(height, width).reshape(-1)
        d_row = (rows[:, None] - rows[None, :]).abs().clamp(max=self.saturation)
        d_col = (cols[:, None] - cols[None, :]).abs().clamp(max=self.saturation)
        buckets = self.offset_buckets.flatten()[d_row * (self.saturation + 1) + d_col]
        return table[:, buckets]

    def extra_repr(self) -> str:
        return (f'alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}, '
                'method=euclidean, mode=bias')


class RelPosSelfAttention(nn.Module):
    """Multi-head self-attention over all H x W positions of an NCHW map, with iRPE on keys.

    Args:
        channels (int): channels (divisible by ``num_heads``).
        num_heads (int): heads. Defaults to 4.
        attn_drop (float): dropout on the attention weights. Defaults to 0.1.
        proj_drop (float): dropout after the output projection. Defaults to 0.1.
        rpe_alpha (float): iRPE's alpha (beta = 2 alpha, gamma = 8 alpha). Defaults to 20.
    """

    def __init__(self, channels: int, num_heads: int = 4, attn_drop: float = 0.1,
                 proj_drop: float = 0.1, rpe_alpha: float = 20):
        super().__init__()
        check_heads(channels, num_heads)
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
        out = relpos_attention(q, k, v, self.rpe_k(h, w, q.dtype)[None], self.scale,
                               self.attn_drop.p if self.training else 0.0)
        out = out.transpose(1, 2).reshape(b, h * w, c)
        out = self.proj_drop(self.proj(out))
        return out.transpose(1, 2).reshape(b, c, h, w)


def check_heads(channels: int, num_heads: int) -> None:
    if num_heads < 1 or channels % num_heads:
        raise ValueError(f'self-attention over {channels} channels cannot use {num_heads} '
                         f'heads: channels must be divisible by num_heads')


class DeployRelPosSelfAttention(nn.Module):
    """Deploy form of ``RelPosSelfAttention(LayerNorm2d(x))`` (PAT_sf's attention part).

    The LayerNorm runs on the pixels directly (channels_last: no copies) with its affine part
    folded into ``qkv`` (which gains a bias); attention is PyTorch's fused kernel with the
    iRPE bias in the activations' dtype, kept for the last few input sizes
    (:class:`SizeCache`, bounded) so that a stream of same-sized inputs builds it once.
    Dropout is gone (inference only). Returns the tokens as a channels_last view of the
    NCHW map. Channel counts are constants of the module, so the TorchScript ONNX exporter
    traces it with dynamic sizes.

    Args:
        channels (int): channels (divisible by ``num_heads``).
        num_heads (int): heads. Defaults to 4.
        rpe_alpha (float): iRPE's alpha. Defaults to 20.
        eps (float): the LayerNorm's epsilon. Defaults to 1e-6.
    """

    bias_cache_size = 4  # input sizes (x dtype, device) whose iRPE bias is kept

    def __init__(self, channels: int, num_heads: int = 4, rpe_alpha: float = 20,
                 eps: float = 1e-6):
        super().__init__()
        check_heads(channels, num_heads)
        self.channels, self.num_heads, self.eps = channels, num_heads, eps
        self.head_dim = channels // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.rpe_k = ImageRelativePositionBias(num_heads, alpha=rpe_alpha, beta=2 * rpe_alpha,
                                               gamma=8 * rpe_alpha)
        self.bias_cache = SizeCache(self.bias_cache_size)

    def attention_bias(self, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
        """The (1, heads, N, N) iRPE bias; from the cache unless traced. The key holds the
        table's version, so a load_state_dict (or any in-place change) is seen."""
        def make():
            return self.rpe_k(height, width, dtype)[None]

        if tracing():
            return make()
        table = self.rpe_k.lookup_table_bias
        key = (height, width, dtype, table.device, table.data_ptr(), table._version)
        return self.bias_cache.get(key, make)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        pixels = pixel_layer_norm(x, self.channels, self.eps)
        qkv = self.qkv(pixels).reshape(b, h * w, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        # the CPU flash kernel takes the bias as a 4-d mask
        out = relpos_attention(q, k, v, self.attention_bias(h, w, q.dtype), self.scale)
        out = self.proj(out.transpose(1, 2).reshape(b, h * w, self.channels))
        return out.reshape(b, h, w, self.channels).permute(0, 3, 1, 2)
