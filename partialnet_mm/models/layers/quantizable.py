"""The INT8-friendly form of a deployed PartialNet: the same function, rewritten so that
everything that runs on a full feature map has an INT8 kernel in ONNX Runtime (Conv, Mul,
Add, Concat, GlobalAveragePool) and only (B, C, 1, 1) arithmetic stays fp32.

- PAT_ch's statistics: the mean as a global average pool of x and the second moment as one of
  x * x; the variance, the unbiased factor and the square root then act on (B, C, 1, 1).
- The Hardsigmoid gate: ``clip(z / 6 + 1/2, 0, 1)``, its scale and offset folded into the
  1x1 conv before it, so it is a Clip (absorbed into the quantized conv's output range).
- PAT_sp after fc2: the BN scale of the gated half folded into fc2's rows, and the gate's
  1-channel conv read from fc2's input (``w_gate (W2 h + b2) = (w_gate W2) h + w_gate b2``), so
  fc2 is two convs and the gate a third, with no channel slices and one multiply.
- PAT_sf: its ``qkv`` and output projections in INT8; the LayerNorm and the attention
  (scores, iRPE bias, softmax) fp32.

:func:`quantizable` turns a deployed (fused) model into this form. What must stay fp32 (the
statistics gate, PAT_sf's attention) sits under a :class:`KeepFP32` module, whose exported
node names contain ``/fp32/``: the quantizer leaves those nodes alone. Inference only.
"""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import (DeployRelPosSelfAttention, DeployStyleAttention, InplaceSpatialGate,
                        pixel_layer_norm, relpos_attention)
from .fast_ops import tracing, unbiased_scale

FP32_MARK = '/fp32/'  # in the ONNX node names of everything under a KeepFP32 module


class KeepFP32(nn.Module):
    """Runs ``module`` as it is; its ONNX nodes are named ``.../fp32/...`` so that the INT8
    quantizer keeps them in fp32."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.fp32 = module

    def forward(self, *args):
        return self.fp32(*args)


def unbiased_factor(x: torch.Tensor):
    """``n / (n - 1)`` for the ``n = H * W`` positions of ``x`` (0 for a single position, whose
    std is 0: :func:`unbiased_scale`): a
    Python number eagerly, a tensor of the (symbolic) size when traced."""
    if tracing():
        n = torch._shape_as_tensor(x)[2:].prod().to(x.dtype)
    else:
        n = x.shape[-2] * x.shape[-1]
    return n * unbiased_scale(n)


class StatisticsGate(nn.Module):
    """(B, C, 1, 1) mean and second moment -> (B, C, 1, 1) attention weights: the unbiased
    std, the dense map over ``[mean | std]`` as a 1x1 conv, then the gate (a Clip for a
    Hardsigmoid, whose ``/6 + 1/2`` is folded into the conv)."""

    def __init__(self, attention: DeployStyleAttention):
        super().__init__()
        fc, gate = attention.fc, attention.gate
        self.hard = isinstance(gate, nn.Hardsigmoid)
        if not self.hard and not isinstance(gate, nn.Sigmoid):
            raise TypeError(f'no INT8-friendly form for the gate {type(gate).__name__}')
        self.fc = nn.Conv2d(fc.in_features, fc.out_features, 1).to(fc.weight)
        weight, bias = (fc.weight / 6, fc.bias / 6 + 0.5) if self.hard else (fc.weight, fc.bias)
        with torch.no_grad():
            self.fc.weight.copy_(weight[:, :, None, None])
            self.fc.bias.copy_(bias)

    def forward(self, x: torch.Tensor, mean: torch.Tensor, second: torch.Tensor
                ) -> torch.Tensor:
        """Weights from the (B, C, 1, 1) ``mean`` and ``second`` moment of ``x`` (which only
        gives the number of positions)."""
        std = ((second - mean * mean) * unbiased_factor(x)).clamp_min(0).sqrt()
        z = self.fc(torch.cat((mean, std), dim=1))
        return z.clamp(0, 1) if self.hard else torch.sigmoid(z)


class QuantizableStyleAttention(nn.Module):
    """INT8-friendly :class:`DeployStyleAttention` (PAT_ch's Gaussian attention, SRM):
    ``x * gate([mean | std])`` with the statistics from two global average pools."""

    def __init__(self, attention: DeployStyleAttention):
        super().__init__()
        self.gate = KeepFP32(StatisticsGate(attention))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = F.adaptive_avg_pool2d(x, 1)
        second = F.adaptive_avg_pool2d(x * x, 1)
        return x * self.gate(x, mean, second)


class QuantizablePartialMLP(nn.Module):
    """INT8-friendly deployed :class:`PartialMLP` with PAT_sp: ``h = act(fc1(x))``, then
    ``cat(fc2_gated(h) * clip(gate(h), 0, 1) + shift, fc2_rest(h))``."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        spatial = mlp.pat_sp
        if not isinstance(spatial, InplaceSpatialGate):
            raise TypeError('QuantizablePartialMLP takes a deployed PartialMLP with PAT_sp')
        self.fc1, self.act = copy.deepcopy(mlp.fc1), copy.deepcopy(mlp.act)
        c = spatial.channels
        weight, bias = mlp.fc2.weight[:, :, 0, 0], mlp.fc2.bias
        scale, shift = spatial.scale.flatten(), spatial.shift.flatten()
        # Hardsigmoid(w . z) = clip(w . z / 6 + 1/2, 0, 1) with z = W2[:c] h + b2[:c]
        w_gate = spatial.conv.weight[0, :, 0, 0] / 6
        hidden, channels = weight.shape[1], weight.shape[0]
        self.fc2_gated = nn.Conv2d(hidden, c, 1).to(weight)
        self.fc2_rest = nn.Conv2d(hidden, channels - c, 1).to(weight)
        self.gate = nn.Conv2d(hidden, 1, 1).to(weight)
        with torch.no_grad():
            self.fc2_gated.weight.copy_((scale[:, None] * weight[:c])[:, :, None, None])
            self.fc2_gated.bias.copy_(scale * bias[:c])
            self.fc2_rest.weight.copy_(weight[c:, :, None, None])
            self.fc2_rest.bias.copy_(bias[c:])
            self.gate.weight.copy_((w_gate @ weight[:c])[None, :, None, None])
            self.gate.bias.copy_((w_gate @ bias[:c] + 0.5).reshape(1))
        self.register_buffer('shift', shift.reshape(1, c, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(x))
        gated = self.fc2_gated(h) * self.gate(h).clamp(0, 1) + self.shift
        return torch.cat((gated, self.fc2_rest(h)), dim=1)


class PixelLayerNorm(nn.Module):
    """LayerNorm over the channels of an NCHW map, returned channels last (B, H, W, C), with
    no affine part (the deployed attention folded it into ``qkv``)."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.channels, self.eps = channels, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_layer_norm(x, self.channels, self.eps)


class AttentionCore(nn.Module):
    """Multi-head attention with the iRPE bias over the (B, H, W, 3C) output of ``qkv``:
    (B, H * W, C) before the output projection."""

    def __init__(self, attention: DeployRelPosSelfAttention):
        super().__init__()
        self.channels, self.num_heads = attention.channels, attention.num_heads
        self.head_dim, self.scale = attention.head_dim, attention.scale
        self.rpe_k = copy.deepcopy(attention.rpe_k)

    def forward(self, qkv: torch.Tensor, height: int, width: int) -> torch.Tensor:
        b = qkv.shape[0]
        q, k, v = qkv.reshape(b, height * width, 3, self.num_heads, self.head_dim) \
            .permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.rpe_k(height, width, q.dtype)[None]
        out = relpos_attention(q, k, v, bias, self.scale)
        return out.transpose(1, 2).reshape(b, height * width, self.channels)


class QuantizableSelfAttention(nn.Module):
    """INT8-friendly :class:`DeployRelPosSelfAttention` (PAT_sf): the ``qkv`` and output
    projections in INT8, the LayerNorm and the attention itself (scores, bias, softmax)
    fp32."""

    def __init__(self, attention: DeployRelPosSelfAttention):
        super().__init__()
        self.channels = attention.channels
        self.norm = KeepFP32(PixelLayerNorm(attention.channels, attention.eps))
        self.qkv, self.proj = copy.deepcopy(attention.qkv), copy.deepcopy(attention.proj)
        self.attend = KeepFP32(AttentionCore(attention))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        out = self.proj(self.attend(self.qkv(self.norm(x)), h, w))
        return out.reshape(b, h, w, self.channels).permute(0, 3, 1, 2)


def _form(module: nn.Module):
    """The INT8-friendly replacement of one deployed module, or None to keep (and visit) it."""
    from .blocks import PartialMLP
    if isinstance(module, DeployStyleAttention):
        return QuantizableStyleAttention(module)
    if isinstance(module, PartialMLP) and isinstance(module.pat_sp, InplaceSpatialGate):
        return QuantizablePartialMLP(module)
    if isinstance(module, DeployRelPosSelfAttention):
        return QuantizableSelfAttention(module)
    return None


@torch.no_grad()
def quantizable(model: nn.Module) -> nn.Module:
    """A copy of the deployed ``model`` in its INT8-friendly form (eval mode). A model that
    still has training-form PartialNet layers is refused: fuse it first."""
    from .patconv import ChannelAttentionBranch, PATSpatial, SelfAttentionBranch
    training_forms = (ChannelAttentionBranch, PATSpatial, SelfAttentionBranch)
    unfused = [name for name, m in model.named_modules() if isinstance(m, training_forms)]
    if unfused:
        raise ValueError(f'quantizable() takes a deployed (fused) model; {unfused[0]} is in its '
                         f'training form: fuse the model first (deploy.fused_copy)')
    model = copy.deepcopy(model).eval()

    def convert(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            twin = _form(child)
            if twin is None:
                convert(child)
            else:
                setattr(parent, name, twin)

    convert(model)
    return model
