"""The deployed graph's fast paths: the one place where forward code looks at the device
or the memory layout.

Every choice here computes the same function both ways (tested); each says what it buys,
as measured in docs/benchmarks.md. The rest of the network is written once, for every
device and layout.
"""
import math
from collections import OrderedDict
from typing import Callable, Hashable, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """The layout a 4-d tensor is in: channels_last, or the default (NCHW) otherwise."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def in_layout(x: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    """``x`` in the memory ``layout``: itself when it is already (no operation), else a copy."""
    if not tracing() and x.is_contiguous(memory_format=layout):
        return x
    return x.contiguous(memory_format=layout)


def unbiased_scale(n):
    """``1 / (n - 1)``, the factor that turns the sum of squared deviations over ``n``
    positions into the unbiased variance; 0 for a single position, whose std is taken as 0
    (no spread) instead of NaN. PartialNet's one rule for one position, used by every
    mean/std of the package (``n`` an int, or a tensor when the size is symbolic)."""
    if isinstance(n, torch.Tensor):
        return torch.where(n > 1, 1 / (n - 1).clamp_min(1), torch.zeros_like(n))
    return 1.0 / (n - 1) if n > 1 else 0.0


def channel_mean_std(x: torch.Tensor, fast: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and unbiased std over H x W, each (B, C): the one implementation of
    the statistics of PAT_ch's Gaussian and SRM attentions.

    ``fast=False`` (the training graph): ``torch.std_mean``, Welford's accurate one pass,
    with gradients. ``fast=True`` (the deployed graph): CUDA the same (one kernel reads x
    once, while sums would write x**2 to memory and, under AMP, read x again as float32);
    CPU the mean and the 2-norm, each one read of x, then the variance from them in place
    (8 operations; Welford is about 15x slower on one core), or from the sums of x and x**2
    when traced (the sizes may be symbolic). The price is cancellation when |mean| >> std:
    the relative error of the variance is about 1e-7 * (mean / std)**2, far below the
    deploy tolerance.
    """
    n = x.shape[-2] * x.shape[-1]
    if not fast or (x.is_cuda and not tracing()):
        # the biased std (torch's std backward is safe at 0, where sqrt's is not) rescaled
        std, mean = torch.std_mean(x, dim=(2, 3), correction=0)
        return mean, std * math.sqrt(n * unbiased_scale(n))
    if tracing():
        flat = x.flatten(2)
        total = flat.sum(-1)
        mean = total / n
        var = ((flat * flat).sum(-1) - total * mean) * unbiased_scale(n)
        return mean, var.clamp_min(0).sqrt()
    mean = x.mean((2, 3))
    # (n - 1) var = sum(x^2) - n mean^2
    var = torch.linalg.vector_norm(x, 2, (2, 3)).square_().addcmul_(mean, mean, value=-n)
    return mean, var.clamp_min_(0).mul_(unbiased_scale(n)).sqrt_()


def tracing() -> bool:
    """Whether this forward is being traced or compiled (TorchScript's tracer, the dynamo
    exporter, torch.compile): sizes may be symbolic, so no Python number may be derived from
    them and no cache may be consulted."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def style_statistics(x: torch.Tensor) -> torch.Tensor:
    """``[mean | std]`` per channel (:func:`channel_mean_std`, fast), (B, 2C): the input of
    the deployed Gaussian / SRM attention's folded linear map."""
    return torch.cat(channel_mean_std(x, fast=True), dim=1)


class SizeCache:
    """At most ``size`` values by key, the least recently used dropped first: what the
    deployed graph keeps per input size (and dtype, device), with a fixed bound however many
    sizes it sees. The entries are a plain dict attribute, so memory counts see them."""

    def __init__(self, size: int = 4):
        if size < 1:
            raise ValueError(f'SizeCache needs size >= 1, got {size}')
        self.size = size
        self.entries: 'OrderedDict[Hashable, torch.Tensor]' = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        value = self.entries[key] = make()
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return value


def scale_shift_(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``x * scale + shift`` written over ``x`` (per-channel (1, C, 1, 1) scale and shift).

    CUDA: one pass (``addcmul`` into x). CPU: two in-place passes, because addcmul's three
    broadcast operands run about 4x slower there.
    """
    if x.is_cuda:
        return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype), out=x)
    return x.mul_(scale).add_(shift)


def space_to_depth(x: torch.Tensor, k: int) -> torch.Tensor:
    """Non-overlapping k x k patches to channels, offset-major: output channel
    ``(i * k + j) * C + c`` at ``(h, w)`` is input channel ``c`` at ``(k h + i, k w + j)``.

    One permuted copy; unlike ``pixel_unshuffle`` (channel-major) it moves whole rows
    (NCHW) or whole pixels (channels_last) at a time, 3-5x faster on CPU. The permute is
    chosen by layout, so a channels_last input stays channels_last.
    """
    n, c, h, w = x.shape
    if memory_format_of(x) == torch.channels_last:
        y = x.permute(0, 2, 3, 1).reshape(n, h // k, k, w // k, k, c)
        return y.permute(0, 1, 3, 2, 4, 5).reshape(n, h // k, w // k, k * k * c) \
            .permute(0, 3, 1, 2)
    y = x.reshape(n, c, h // k, k, w // k, k).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(n, k * k * c, h // k, w // k)


def spread_offsets(per_offset: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(..., 2H - 1, 2W - 1) values of relative offsets -> (..., H*W, H*W) values of every
    (query, key) pair: ``out[..., q, k] = per_offset[..., rq - rk + H - 1, cq - ck + W - 1]``.

    The H*W x H*W map is the windows of ``per_offset`` (a strided view) flipped over the
    key axes: one copy. A gather by a (H*W, H*W) index is 5x slower on CPU at detection
    sizes. (The ONNX exporter turns the view into gathers.)
    """
    *lead, _, _ = per_offset.shape
    *strides, row, col = per_offset.stride()
    windows = per_offset.as_strided((*lead, height, width, height, width),
                                    (*strides, row, col, row, col))
    return windows.flip(-2, -1).reshape(*lead, height * width, height * width)


class PointwiseConv(nn.Conv2d):
    """A 1x1 conv (deploy form of fc1, fc2 and the merging convs; the keys of nn.Conv2d).

    A channels_last CUDA input runs as a GEMM over its (B*H*W, C) rows (``F.linear``),
    where cuBLAS adds the bias in the GEMM's epilogue; cuDNN's conv adds it in a second
    pass over the output. Everything else (CPU, NCHW) runs the conv, the faster path
    there (the GEMM form was about 3% slower on CPU).
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 1, bias=bias)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> 'PointwiseConv':
        if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1 or \
                conv.padding not in ((0, 0), 'valid') or conv.dilation != (1, 1):
            raise ValueError(f'PointwiseConv takes a plain 1x1 conv, got {conv}')
        pw = cls(conv.in_channels, conv.out_channels, bias=conv.bias is not None).to(
            conv.weight)
        with torch.no_grad():
            pw.weight.copy_(conv.weight)
            if conv.bias is not None:
                pw.bias.copy_(conv.bias)
        return pw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda and x.is_contiguous(memory_format=torch.channels_last):
            return F.linear(x.permute(0, 2, 3, 1), self.weight[:, :, 0, 0],
                            self.bias).permute(0, 3, 1, 2)
        return super().forward(x)


class PatchConv(PointwiseConv):
    """Deploy form of a k x k, stride k conv (non-overlapping patches): :func:`space_to_depth`
    then a 1x1 conv over the ``k * k * C`` patch channels, one plain GEMM (oneDNN's
    strided 2x2 conv is the slower path at batch 1 on CPU). Trailing rows and columns
    that do not fill a patch are dropped, as the strided conv drops them."""

    def __init__(self, in_channels: int, out_channels: int, patch: int, bias: bool = True):
        super().__init__(in_channels * patch * patch, out_channels, bias=bias)
        self.patch = patch

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> 'PatchConv':
        k = conv.kernel_size[0]
        if conv.kernel_size != (k, k) or conv.stride != (k, k) or conv.groups != 1 or \
                conv.padding not in ((0, 0), 'valid') or conv.dilation != (1, 1):
            raise ValueError(f'PatchConv needs a k x k conv with stride k, no padding or '
                             f'groups, got {conv}')
        patch = cls(conv.in_channels, conv.out_channels, k, bias=conv.bias is not None).to(
            conv.weight)
        with torch.no_grad():
            # space_to_depth puts input channel c, offset (i, j) at (i * k + j) * C + c
            patch.weight.copy_(conv.weight.permute(0, 2, 3, 1).reshape(
                conv.out_channels, -1, 1, 1))
            if conv.bias is not None:
                patch.bias.copy_(conv.bias)
        return patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.patch
        if tracing() or x.shape[-2] % k or x.shape[-1] % k:
            x = x[..., :x.shape[-2] // k * k, :x.shape[-1] // k * k]
        return super().forward(space_to_depth(x, k))

    def extra_repr(self) -> str:
        return super().extra_repr() + f', patch={self.patch}'
