"""Small pure-torch helpers: norm/activation builders, DropPath, conv-BN folding."""
import copy
from typing import Optional, Tuple

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

_NORMS = {
    'BN': nn.BatchNorm2d,
    'BN2d': nn.BatchNorm2d,
    'SyncBN': nn.SyncBatchNorm,
}

_ACTS = {
    'GELU': nn.GELU,
    'ReLU': nn.ReLU,
    'ReLU6': nn.ReLU6,
    'SiLU': nn.SiLU,
    'Swish': nn.SiLU,
    'Hardswish': nn.Hardswish,
    'HSwish': nn.Hardswish,
}


def build_norm(cfg: dict, channels: int) -> nn.Module:
    """Build a 2d normalisation layer from an MM-style config.

    Supported: ``BN``/``BN2d``, ``SyncBN`` (extra keys: eps, momentum, affine,
    track_running_stats, requires_grad) and ``GN`` (num_groups).
    """
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'norm_cfg must be a dict with a "type" key, got {cfg!r}')
    cfg = dict(cfg)
    kind = cfg.pop('type')
    requires_grad = cfg.pop('requires_grad', True)
    if kind == 'GN':
        if 'num_groups' not in cfg:
            raise KeyError('norm_cfg type "GN" needs num_groups')
        layer = nn.GroupNorm(num_channels=channels, **cfg)
    elif kind in _NORMS:
        layer = _NORMS[kind](channels, **cfg)
    else:
        raise KeyError(f'unsupported norm type {kind!r}; choose one of '
                       f'{sorted(list(_NORMS) + ["GN"])}')
    for p in layer.parameters():
        p.requires_grad = requires_grad
    return layer


def build_act(cfg: dict) -> nn.Module:
    """Build an activation from an MM-style config (``dict(type='GELU')``)."""
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'act_cfg must be a dict with a "type" key, got {cfg!r}')
    cfg = dict(cfg)
    kind = cfg.pop('type')
    if kind not in _ACTS:
        raise KeyError(f'unsupported activation type {kind!r}; choose one of {sorted(_ACTS)}')
    if kind in ('ReLU', 'ReLU6', 'SiLU', 'Swish', 'Hardswish', 'HSwish'):
        cfg.setdefault('inplace', False)
    return _ACTS[kind](**cfg)


class InplaceGELU(nn.GELU):
    """GELU written over its input (for tensors the caller owns; inference)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten.gelu_(x, approximate=self.approximate)


def inplace_act(act: nn.Module) -> nn.Module:
    """The in-place form of an activation built by :func:`build_act` (same function)."""
    if type(act) is nn.GELU:
        return InplaceGELU(approximate=act.approximate)
    if hasattr(act, 'inplace'):
        act = copy.copy(act)
        act.inplace = True
    return act


class ChannelReweighting(nn.Module):
    """A channel attention: ``x * weights(x)`` with (B, C, 1, 1) weights. With nothing to
    fold, its deploy form (as ``deploy=True`` builds it, and as ``fuse()`` returns it) is
    the layer itself.

    Class attributes: ``label``, its name in tables; ``dpconv_exact``, whether its output on
    the kept channels is unchanged when the other input channels are zeroed (then DPConv can
    learn a PAT_ch split with it).
    """

    label = ''
    dpconv_exact = False

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)

    @classmethod
    def deploy_form(cls, channels: int) -> nn.Module:
        """An empty deploy form, as ``PartialNet(deploy=True)`` builds it."""
        return cls(channels)

    def fuse(self) -> nn.Module:
        return copy.deepcopy(self)


class Residual(nn.Module):
    """``shortcut + branch``."""

    def forward(self, shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return shortcut + branch


class InplaceResidual(Residual):
    """Deploy form: adds the shortcut into the branch's fresh output, no new tensor."""

    def forward(self, shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return branch.add_(shortcut)


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f'drop path probability must be in [0, 1), got {drop_prob}')
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


def bn_affine(bn: _BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as ``y = scale * x + shift`` (per channel)."""
    if not isinstance(bn, _BatchNorm) or not bn.track_running_stats:
        raise TypeError(f'only BatchNorm layers with running statistics can be folded, got {bn}')
    std = (bn.running_var + bn.eps).sqrt()
    weight = bn.weight if bn.affine else torch.ones_like(std)
    bias = bn.bias if bn.affine else torch.zeros_like(std)
    scale = weight / std
    return scale, bias - bn.running_mean * scale


def fuse_conv_bn(conv: nn.Conv2d, bn: _BatchNorm) -> nn.Conv2d:
    """Return a conv with bias computing ``bn(conv(x))`` in eval mode."""
    scale, shift = bn_affine(bn)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True,
                      padding_mode=conv.padding_mode).to(conv.weight)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_(bias * scale + shift)
    return fused


class ChannelScaleShift(nn.Module):
    """``y[:, start:] = scale * x[:, start:] + shift``, the first ``start`` channels unchanged:
    a BN in eval mode as the deploy form keeps it (PAT_ch's closing BN), until a 1x1 conv after
    it absorbs it (:func:`fold_input_affine`).

    Args:
        start (int): the first channel the map applies to.
        channels (int): how many channels it applies to (the rest of the input).
    """

    def __init__(self, start: int, channels: int):
        super().__init__()
        self.start = start
        self.register_buffer('scale', torch.ones(1, channels, 1, 1))
        self.register_buffer('shift', torch.zeros(1, channels, 1, 1))

    @classmethod
    @torch.no_grad()
    def of_norm(cls, bn: _BatchNorm, start: int) -> 'ChannelScaleShift':
        """The eval-mode ``bn`` on the channels from ``start`` on."""
        scale, shift = bn_affine(bn)
        layer = cls(start, scale.numel()).to(scale)
        layer.scale.copy_(scale.view_as(layer.scale))
        layer.shift.copy_(shift.view_as(layer.shift))
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x[:, :self.start], x[:, self.start:] * self.scale + self.shift), 1)


def fold_input_affine(conv: nn.Conv2d, affine: ChannelScaleShift) -> nn.Conv2d:
    """A conv with bias computing ``conv(affine(x))``; exact for a 1x1 conv without padding
    or groups (the map commutes with no spatial mixing)."""
    if conv.kernel_size != (1, 1) or conv.groups != 1 or conv.padding not in ((0, 0), 'valid'):
        raise ValueError('an affine map can only be folded into a following 1x1 conv')
    stop = affine.start + affine.scale.numel()
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, 1, conv.stride,
                      bias=True).to(conv.weight)
    w = conv.weight.detach().clone()
    bias = conv.bias.detach().clone() if conv.bias is not None else w.new_zeros(conv.out_channels)
    with torch.no_grad():
        cols = w[:, affine.start:stop, 0, 0]
        bias += cols @ affine.shift.flatten()
        w[:, affine.start:stop, 0, 0] = cols * affine.scale.flatten()
        fused.weight.copy_(w)
        fused.bias.copy_(bias)
    return fused


class ConvNorm(nn.Sequential):
    """``norm(conv(x))`` with a bias-free conv; ``fuse()`` returns both as one conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 groups: int = 1, norm_cfg: Optional[dict] = None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                              groups=groups, bias=False)
        self.norm = build_norm(norm_cfg or dict(type='BN'), out_channels)

    def fuse(self) -> nn.Conv2d:
        """The deployed twin: one conv with bias computing ``norm(conv(x))`` (eval mode)."""
        return fuse_conv_bn(self.conv, self.norm)


def check_input_channels(x: torch.Tensor, channels: int, what: str) -> None:
    """An NCHW input with ``channels`` channels, or a ValueError naming ``what``."""
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f'{what} expects input of shape (B, {channels}, H, W), '
                         f'got {tuple(x.shape)}')


def check_split(channels: int, ratio: float, what: str) -> int:
    """Number of channels of the first part when ``channels`` are split by ``ratio``.

    Raises a ValueError naming ``what`` if the ratio is not in (0, 1) or if either
    part would be empty.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise TypeError(f'{what}: split ratio must be a number, got {ratio!r}')
    if not 0.0 < ratio < 1.0:
        raise ValueError(f'{what}: split ratio must be strictly between 0 and 1, got {ratio}')
    first = int(round(channels * ratio))
    if first <= 0 or first >= channels:
        raise ValueError(f'{what}: split ratio {ratio} of {channels} channels leaves an empty '
                         f'part ({first} / {channels - first}); use a ratio that gives both parts '
                         f'at least one channel')
    return first
