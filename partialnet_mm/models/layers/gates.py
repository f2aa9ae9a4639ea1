"""DPConv's Kronecker gates: the binary, straight-through gates of one layer and the
prefix split of its channels they imply."""
from typing import List, Optional, Tuple

import torch
import torch.nn as nn


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
        init_scale (float): magnitude of the initial gate values (the authors' code: 1e-8).

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

    def conv_channels(self) -> int:
        return int(self.group * 2 ** int(self.bits().sum().item()))

    def ratio(self) -> float:
        return self.conv_channels() / self.channels

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


def first_illegal_step(bits: List[int]) -> Optional[int]:
    """Index of the first gate that is on above an off one (a 0-then-1 step), or None."""
    return next((k for k in range(1, len(bits)) if bits[k - 1] == 0 and bits[k] == 1), None)
