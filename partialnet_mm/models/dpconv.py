"""Dynamic partial convolution (DPConv): learn each layer's split ratio, then freeze it.

A layer with ``C = m * 2**K`` channels (``m`` odd, ``K >= 1``) has ``K`` binary gates
``b_k = step(g_k)`` (straight-through: the gradient passes where ``|g_k| < 1``). The
paper's Kronecker mask is ``U = kron_k(b_k * ones(2, 2) + (1 - b_k) * I_2)``; its first
row picks the channels the 3x3 conv covers: index ``j`` (of ``2**K``, each standing for
``m`` channels) is taken when every set bit ``k`` of ``j`` has ``b_k = 1``. With the
gates "on" for the low bits only (the legal, prefix order) that is the first
``C * 2**(sum(b) - K)`` channels, i.e. split ratio ``2**-(#gates off)``. A gate counts
only while all gates below it are on (cumulative product), so every state is a prefix
split that freezes exactly; the order loss pulls the inert gates of an illegal raw state
(a gate on above an off one) towards zero.

Unlike the authors' version, training and evaluation compute the same function for the
same gate state: the 3x3 conv on the chosen channels and, on the others, identity
(:class:`DPConv`) or PATConv's attention branch (:class:`DynamicPATChannel`,
:class:`DynamicPATSelfAttention`). Training writes it with 0/1 channel masks so the
gates get gradients; evaluation may slice. ``freeze()`` / :func:`freeze_state_dict`
turn a trained layer into the plain module with a fixed split.
"""
import math
from typing import Dict, List, Optional, Tuple, Type

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import GaussianChannelAttention, SRMAttention
from .patconv import ChannelAttentionBranch, PATChannel, PATSelfAttention, SelfAttentionBranch
from .utils import check_input_channels, check_split


def power_of_two_part(channels: int, what: str = 'DPConv') -> Tuple[int, int]:
    """``channels = m * 2**K`` with ``m`` odd: returns ``(K, m)``; ``K >= 1`` is required."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 2:
        raise ValueError(f'{what}: channels must be an int >= 2, got {channels!r}')
    k = (channels & -channels).bit_length() - 1
    if k == 0:
        raise ValueError(f'{what}: {channels} channels have no factor of 2; DPConv gates act on '
                         f'the power-of-two part of the channel count, so it needs an even '
                         f'number of channels')
    return k, channels >> k


class _StraightThroughStep(torch.autograd.Function):
    """``b = 1[g > 0]`` forward; gradient passed unchanged where ``|g| < 1``."""

    @staticmethod
    def forward(ctx, gate):
        ctx.save_for_backward(gate)
        return (gate > 0).to(gate.dtype)

    @staticmethod
    def backward(ctx, grad):
        gate, = ctx.saved_tensors
        return grad * (gate.abs() < 1).to(grad.dtype)


class ChannelGates(nn.Module):
    """The ``K`` Kronecker gates of one layer and the channel mask they imply.

    Args:
        channels (int): C, with at least one factor of 2.
        init_ratio (float): the split ratio the gates start at; ``C * init_ratio`` must
            be a reachable count ``m * 2**s`` with ``min_on <= s <= max_on``.
        min_on (int): the lowest ``min_on`` gates are fixed on (at least ``m * 2**min_on``
            channels go to the conv).
        max_on (int | None): gates ``>= max_on`` are fixed off (at most ``m * 2**max_on``
            channels go to the conv); None allows the full conv.
        init_scale (float): magnitude of the initial gate values (FACTS: 1e-8).

    Only the free gates are parameters (``gate``).
    """

    def __init__(self, channels: int, init_ratio: float = 0.25, min_on: int = 0,
                 max_on: Optional[int] = None, init_scale: float = 1e-8):
        super().__init__()
        self.channels = channels
        self.num_bits, self.group = power_of_two_part(channels)
        max_on = self.num_bits if max_on is None else max_on
        if not 0 <= min_on < max_on <= self.num_bits:
            raise ValueError(f'DPConv over {channels} channels (= {self.group} x 2^{self.num_bits})'
                             f' has no learnable gate between min_on={min_on} and max_on={max_on}')
        if not init_scale > 0:
            raise ValueError(f'DPConv init_scale must be positive, got {init_scale}')
        self.min_on, self.max_on = min_on, max_on
        reachable = {self.group * 2 ** s / channels: s for s in range(min_on, max_on + 1)}
        if init_ratio not in reachable:
            raise ValueError(f'DPConv init_ratio {init_ratio} is not reachable for {channels} '
                             f'channels; choose one of {sorted(reachable)}')
        on = reachable[init_ratio]
        init = [init_scale if s < on else -init_scale for s in range(min_on, max_on)]
        self.gate = nn.Parameter(torch.tensor(init, dtype=torch.float32))
        # per bit: 1 fixed on, 0 fixed off, -1 learned (saved, so a checkpoint alone
        # tells the split: see gate_state_ratio)
        fixed = [1] * min_on + [-1] * (max_on - min_on) + [0] * (self.num_bits - max_on)
        self.register_buffer('fixed', torch.tensor(fixed, dtype=torch.long))

    # ------------------------------------------------------------------ state
    def raw_bits(self) -> torch.Tensor:
        """All K binary gates ``b_k`` (fixed ones included), with straight-through gradients."""
        free = _StraightThroughStep.apply(self.gate)
        return torch.cat((free.new_ones(self.min_on), free,
                          free.new_zeros(self.num_bits - self.max_on)))

    def bits(self) -> torch.Tensor:
        """The effective gates: a gate counts only while every gate below it is on
        (cumulative product), so every state is a prefix split and freezes exactly.
        Gates on above an off one are inert; the order loss pulls them to zero."""
        return torch.cumprod(self.raw_bits(), 0)

    def index_mask(self) -> torch.Tensor:
        """First row of the Kronecker mask U: 1 for the 2**K indices the conv covers."""
        mask = self.gate.new_ones(1)
        for b in self.bits():
            mask = torch.cat((mask, mask * b))  # bit k set -> needs b_k
        return mask

    def channel_mask(self) -> torch.Tensor:
        """(C,) 0/1 mask of the channels the conv covers (differentiable in the gates)."""
        return self.index_mask().repeat_interleave(self.group)

    def kronecker_mask(self) -> torch.Tensor:
        """The paper's (2**K, 2**K) mask ``U`` (for inspection and tests)."""
        eye = torch.eye(2, dtype=self.gate.dtype, device=self.gate.device)
        u = self.gate.new_ones(1, 1)
        for b in self.bits():
            u = torch.kron(b * torch.ones_like(eye) + (1 - b) * eye, u)
        return u

    def conv_channels(self) -> int:
        return int(self.group * 2 ** int(self.bits().sum().item()))

    def ratio(self) -> float:
        return self.conv_channels() / self.channels

    def is_prefix(self) -> bool:
        """Whether the raw gates are in legal order (no gate on above one that is off)."""
        return is_prefix(self.raw_bits().tolist())

    # ------------------------------------------------------------------ losses
    def cost(self) -> torch.Tensor:
        """Complexity of the conv part: (channels it covers)**2, i.e. the non-zeros of
        the first block of U times m**2 (per output pixel, per kernel tap)."""
        return self.channel_mask().sum() ** 2

    def order_loss(self) -> torch.Tensor:
        """``sum |g|`` over the free gates from the first illegal 0-then-1 step on."""
        step = first_illegal_step(self.raw_bits().tolist())
        if step is None:
            return self.gate.abs().sum() * 0
        return self.gate[max(step - self.min_on, 0):].abs().sum()

    def extra_repr(self) -> str:
        return (f'channels={self.channels}, bits={self.num_bits}, group={self.group}, '
                f'free=[{self.min_on}, {self.max_on})')


class PartialConv3x3(nn.Module):
    """FasterNet-style partial conv: 3x3 conv (no bias) on the first ``ratio * C``
    channels, identity on the rest. The frozen form of :class:`DPConv`."""

    def __init__(self, channels: int, ratio: float = 0.25):
        super().__init__()
        self.channels = channels
        if ratio == 1:
            self.conv_channels = channels
        else:
            self.conv_channels = check_split(channels, ratio, 'PartialConv3x3')
        self.conv = nn.Conv2d(self.conv_channels, self.conv_channels, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv_channels == self.channels:
            return self.conv(x)
        x_conv, x_id = torch.split(x, [self.conv_channels, self.channels - self.conv_channels], 1)
        return torch.cat((self.conv(x_conv), x_id), dim=1)


class DPConv(nn.Module):
    """Dynamic partial 3x3 conv with identity on the channels it does not take.

    Training: ``a * conv(x * a) + (1 - a) * x`` with the 0/1 channel mask ``a`` (so the
    gates get gradients). Evaluation: the conv runs on the chosen channels only. Both
    are the same function of the input for the same gate state.
    """

    def __init__(self, channels: int, init_ratio: float = 0.25, init_scale: float = 1e-8):
        super().__init__()
        self.channels = channels
        self.gates = ChannelGates(channels, init_ratio, init_scale=init_scale)
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_channels(x, self.channels, type(self).__name__)
        if self.training:
            a = self.gates.channel_mask().to(x.dtype).view(1, -1, 1, 1)
            return a * self.conv(x * a) + (1 - a) * x
        k = self.gates.conv_channels()  # always a channel prefix
        y = F.conv2d(x[:, :k], self.conv.weight[:k, :k], padding=1)
        return torch.cat((y, x[:, k:]), dim=1)

    @torch.no_grad()
    def freeze(self) -> PartialConv3x3:
        k = self.gates.conv_channels()
        frozen = PartialConv3x3(self.channels, k / self.channels).to(self.conv.weight)
        frozen.conv.weight.copy_(self.conv.weight[:k, :k])
        return frozen


class DynamicPATConv(nn.Module):
    """PATConv whose split is decided by DPConv gates.

    The conv and the attention branch are built over all C channels (any channel may
    fall on either side). Output: ``a * conv(x * a) + (1 - a) * attend(x * (1 - a))``,
    where ``attend`` must compute, on the channels it keeps, exactly what the plain
    branch built for those channels computes: so the function equals the plain
    PATConv with the gate-chosen split (checked by ``freeze``'s tests). Parameter names
    equal the plain module's, plus ``gates.gate``.

    At most half the channels go to the conv (``max_on = K - 1``), so the attention
    branch is never empty.
    """

    def __init__(self, channels: int, attn_layer, gates: ChannelGates):
        super().__init__()
        self.channels = channels
        self.gates = gates
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.attn = attn_layer(channels)

    def attend(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return self.attn(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_channels(x, self.channels, type(self).__name__)
        a = self.gates.channel_mask().to(x.dtype).view(1, -1, 1, 1)
        keep = 1 - a
        return a * self.conv(x * a) + keep * self.attend(x * keep, keep)

    def make_plain(self, ratio: float) -> nn.Module:
        raise NotImplementedError

    @torch.no_grad()
    def freeze(self) -> nn.Module:
        """The plain PATConv with the learned split and this layer's weights."""
        k = self.gates.conv_channels()
        plain = self.make_plain(k / self.channels).to(self.conv.weight)
        state = {key: v for key, v in self.state_dict().items() if not key.startswith('gates.')}
        plain.load_state_dict(slice_mixer_state(state, self.channels, k))
        return plain

    def fuse(self):
        raise RuntimeError(f'{type(self).__name__}: freeze the learned split first '
                           f'(tools/export_split_ratios.py), then deploy the plain model')


# Channel attentions for which zeroed input channels drop out exactly (they only mix
# channels linearly through pooled statistics, or not at all).
DPCONV_CHANNEL_ATTENTIONS = (GaussianChannelAttention, SRMAttention)


class DynamicPATChannel(DynamicPATConv):
    """PAT_ch with a learned split. Zeroed channels contribute nothing to the Gaussian
    (or SRM) attention's pooled statistics and its per-channel ops, so the attention
    over all C channels of ``x * (1 - a)`` equals the plain branch on the kept ones."""

    def __init__(self, channels: int, ratio: float = 0.25,
                 attention: Type[nn.Module] = GaussianChannelAttention,
                 norm_cfg: dict = dict(type='BN'), init_scale: float = 1e-8):
        if attention not in DPCONV_CHANNEL_ATTENTIONS:
            raise ValueError(f'DPConv cannot learn the split of PAT_ch with '
                             f'{attention.__name__}: its output for the kept channels depends on '
                             f'the split size. Supported: '
                             f'{[a.__name__ for a in DPCONV_CHANNEL_ATTENTIONS]}')
        k, _ = power_of_two_part(channels, type(self).__name__)
        gates = ChannelGates(channels, ratio, max_on=k - 1, init_scale=init_scale)
        super().__init__(channels, lambda c: ChannelAttentionBranch(c, attention, norm_cfg), gates)
        self.attention, self.norm_cfg = attention, norm_cfg

    def make_plain(self, ratio: float) -> nn.Module:
        return PATChannel(self.channels, ratio, self.attention, self.norm_cfg)


class DynamicPATSelfAttention(DynamicPATConv):
    """PAT_sf with a learned split. The kept channels get a LayerNorm over themselves
    only and are dealt to the heads in order, as the plain branch built for them would
    do; the lowest gates stay on so that the kept count is divisible by the heads."""

    def __init__(self, channels: int, ratio: float = 0.25, num_heads: int = 4,
                 attn_drop: float = 0.1, proj_drop: float = 0.1, rpe_alpha: float = 20,
                 init_scale: float = 1e-8):
        k, m = power_of_two_part(channels, type(self).__name__)
        # kept = m * 2**s * (2**(k - s) - 1): divisible by the heads once m * 2**s is
        min_on = next((s for s in range(k) if (m * 2 ** s) % num_heads == 0), k)
        if min_on > k - 1:
            raise ValueError(f'DynamicPATSelfAttention: no split of {channels} channels leaves '
                             f'a multiple of num_heads={num_heads} for the attention')
        gates = ChannelGates(channels, ratio, min_on=min_on, max_on=k - 1, init_scale=init_scale)
        settings = dict(num_heads=num_heads, attn_drop=attn_drop, proj_drop=proj_drop,
                        rpe_alpha=rpe_alpha)
        super().__init__(channels, lambda c: SelfAttentionBranch(c, **settings), gates)
        self.settings = settings

    def attend(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return masked_self_attention(self.attn, x, keep.flatten())

    def make_plain(self, ratio: float) -> nn.Module:
        return PATSelfAttention(self.channels, ratio, **self.settings)


def masked_self_attention(branch: SelfAttentionBranch, x: torch.Tensor,
                          keep: torch.Tensor) -> torch.Tensor:
    """``branch`` restricted to the channels where ``keep`` (C,) is 1, written over all C.

    LayerNorm statistics over the kept channels; kept channels dealt to the heads in
    order (head_dim = kept / heads, scale from it); dropped channels are zero.
    """
    attn = branch.attn
    b, c, h, w = x.shape
    kept = int(keep.detach().sum().item())
    heads = attn.num_heads
    if kept == 0 or kept % heads:
        raise ValueError(f'masked self-attention: {kept} kept channels cannot be split into '
                         f'{heads} heads')
    head_dim = kept // heads
    # LayerNorm over the kept channels at each position
    t = x.flatten(2).transpose(1, 2)  # B, N, C
    mean = (t * keep).sum(-1, keepdim=True) / kept
    var = (((t - mean) * keep) ** 2).sum(-1, keepdim=True) / kept
    t = ((t - mean) * torch.rsqrt(var + branch.norm.eps) * branch.norm.weight
         + branch.norm.bias) * keep
    # channel -> head assignment of the kept channels, in channel order
    rank = torch.cumsum(keep.detach(), 0) - 1
    head_of = torch.where(keep.detach() > 0, torch.div(rank, head_dim, rounding_mode='floor'),
                          torch.full_like(rank, -1))
    heads_mask = (head_of[None, :] == torch.arange(heads, device=x.device)[:, None]).to(x.dtype)
    q, k, v = attn.qkv(t).reshape(b, h * w, 3, c).unbind(2)  # each B, N, C
    q = q * keep * head_dim ** -0.5
    logits = torch.einsum('bnc,hc,bmc->bhnm', q, heads_mask, k) + attn.rpe_k(h, w)
    probs = attn.attn_drop(logits.softmax(dim=-1))
    out = torch.einsum('bhnm,bmc,hc->bnc', probs, v, heads_mask)
    out = attn.proj_drop(attn.proj(out))
    return out.transpose(1, 2).reshape(b, c, h, w)


# ---------------------------------------------------------------------- freezing
def slice_mixer_state(state: Dict[str, torch.Tensor], channels: int,
                      conv_channels: int) -> Dict[str, torch.Tensor]:
    """Cut a dynamic mixer's full-width tensors down to the plain mixer's shapes.

    ``conv.*``: the first ``conv_channels`` along every C-long dim. ``attn.*``: the
    remaining channels along every C-long dim, and along 3C-long dims read as stacked
    q / k / v. (The other dims of these tensors, such as kernel sizes, heads and iRPE
    buckets, are never C or 3C for a gated layer: the plain model's strict load checks.)
    """
    k, c = conv_channels, channels
    out = {}
    for key, value in state.items():
        for dim, size in enumerate(value.shape):
            if key.startswith('conv.') and size == c:
                value = value.narrow(dim, 0, k)
            elif key.startswith('attn.') and size == c:
                value = value.narrow(dim, k, c - k)
            elif key.startswith('attn.') and size == 3 * c:
                value = torch.cat([value.narrow(dim, i * c + k, c - k) for i in range(3)], dim)
        out[key] = value.clone()
    return out


def first_illegal_step(bits: List[int]) -> Optional[int]:
    """Index of the first gate that is on above an off one (a 0-then-1 step), or None."""
    return next((k for k in range(1, len(bits)) if bits[k - 1] == 0 and bits[k] == 1), None)


def is_prefix(bits: List[int]) -> bool:
    """No gate on above one that is off (no 0-then-1 step from the low bits up)."""
    return first_illegal_step(bits) is None


def gate_state_ratio(gate: torch.Tensor, fixed: torch.Tensor,
                     channels: int) -> Tuple[float, List[int]]:
    """Split ratio and the K effective bits from a saved ``gates.gate`` / ``gates.fixed``."""
    num_bits, group = power_of_two_part(channels)
    free = iter((gate > 0).long().tolist())
    bits = [int(f) if f >= 0 else next(free) for f in fixed.tolist()]
    if len(bits) != num_bits or next(free, None) is not None:
        raise ValueError(f'gate tensors {tuple(gate.shape)} / {tuple(fixed.shape)} do not fit '
                         f'{channels} channels ({num_bits} gates)')
    bits = [int(all(bits[:k + 1])) for k in range(num_bits)]  # effective: cumulative product
    return group * 2 ** sum(bits) / channels, bits


def freeze_state_dict(state: Dict[str, torch.Tensor]
                      ) -> Tuple[Dict[str, torch.Tensor], Dict[str, float]]:
    """Freeze every DPConv layer in a (backbone or whole-model) state dict.

    Returns the state dict of the plain model with the learned splits (gates removed,
    full-width tensors cut to the split) and ``{mixer prefix: split ratio}``.
    """
    gate_keys = sorted(k for k in state if k.endswith('gates.gate'))
    if not gate_keys:
        raise KeyError('no DPConv gates ("...gates.gate") in this state dict: it is not a '
                       'DPConv model, so there is no learned split ratio to export')
    out = dict(state)
    ratios = {}
    for key in gate_keys:
        prefix = key[:-len('gates.gate')]
        for need in ('gates.fixed', 'conv.weight'):
            if prefix + need not in state:
                raise KeyError(f'DPConv layer {prefix!r} has a gate but no {need!r}')
        channels = state[prefix + 'conv.weight'].shape[0]
        ratio, _ = gate_state_ratio(state[key], state[prefix + 'gates.fixed'], channels)
        mixer = {k[len(prefix):]: v for k, v in state.items()
                 if k.startswith(prefix) and not k.startswith(prefix + 'gates.')}
        for k in [k for k in out if k.startswith(prefix)]:
            del out[k]
        sliced = slice_mixer_state(mixer, channels, int(round(ratio * channels)))
        out.update({prefix + k: v for k, v in sliced.items()})
        ratios[prefix.rstrip('.')] = ratio
    return out, ratios


def collect_gates(model: nn.Module) -> List[Tuple[str, ChannelGates]]:
    """Every DPConv gate set in ``model``, by module name (in registration order)."""
    return [(name[:-len('.gates')] if name.endswith('.gates') else name, m)
            for name, m in model.named_modules() if isinstance(m, ChannelGates)]


def dpconv_losses(model: nn.Module, task_loss: torch.Tensor, budget: float = 4.0,
                  alpha: float = -0.01, order_weight: float = 1.0) -> Dict[str, torch.Tensor]:
    """The two DPConv terms, as entries of an mmengine loss dict.

    Complexity: ``R = sum_l cost_l`` against ``B = sum_l (C_l / budget)**2`` (the cost of
    split ratio ``1 / budget``); when ``R > B`` the task loss is scaled by
    ``(B / R)**alpha``, written as the additive entry ``task * ((B / R)**alpha - 1)``
    so that mmengine's sum of the dict is the scaled loss. Order: ``order_weight *
    sum_l order_loss_l``. ``dpconv_cost_ratio`` (R / B, not a loss) is logged too.
    """
    gates = [g for _, g in collect_gates(model)]
    if not gates:
        raise ValueError('dpconv_losses: the model has no DPConv gates (build the backbone '
                         'with dpconv=dict(...))')
    check_budget(budget, [g.channels for g in gates])
    cost = torch.stack([g.cost() for g in gates]).sum()
    limit = sum((g.channels / budget) ** 2 for g in gates)
    scale = (limit / cost) ** alpha if cost.item() > limit else cost.new_ones(())
    order = torch.stack([g.order_loss() for g in gates]).sum()
    return dict(loss_dpconv_complexity=task_loss * (scale - 1),
                loss_dpconv_order=order_weight * order,
                dpconv_cost_ratio=(cost / limit).detach())


def check_budget(budget: float, channels: List[int]) -> None:
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0 \
            or math.isinf(budget):
        raise ValueError(f'DPConv budget b must be a positive number (the budget is the cost '
                         f'of split ratio 1/b), got {budget!r}')
    if channels and budget > min(channels):
        raise ValueError(f'DPConv budget b={budget} is larger than the smallest gated layer '
                         f'({min(channels)} channels): split ratio 1/b would leave it less than '
                         f'one channel')
