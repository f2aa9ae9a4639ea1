"""DPConv layers, beside the PATConv they generalise: the PATConv mixers whose split the gates
(:mod:`.gates`) decide, and the cut of their full-width tensors to a fixed split. The losses,
the freezing of a whole model and the framework parts are in :mod:`partialnet_mm.dpconv`."""
from typing import Dict, Type

import torch
import torch.nn as nn

from .attention import CHANNEL_ATTENTIONS, GaussianChannelAttention, relpos_attention
from .gates import ChannelGates, power_of_two_part
from .patconv import ChannelAttentionBranch, PATChannel, PATSelfAttention, SelfAttentionBranch
from .utils import check_input_channels


class DynamicPATConv(nn.Module):
    """PATConv whose split is decided by DPConv gates.

    The conv and the attention branch are built over all C channels (any channel may
    fall on either side). Output: ``a * conv(x * a) + (1 - a) * attend(x * (1 - a))``,
    where ``attend`` must compute, on the channels it keeps, exactly what the plain
    branch built for those channels computes: so the function equals the plain
    PATConv with the gate-chosen split (checked by ``freeze``'s tests). Parameter names
    equal the plain module's, plus ``gates.gate``.

    Args:
        channels (int): input and output channels C.
        attn_layer (callable): builds the attention branch over all C channels.
        gates (ChannelGates): the gates that choose the conv's channel prefix.

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

    @torch.no_grad()
    def fuse(self) -> nn.Module:
        """The deploy form of the plain layer with the split the gates hold now
        (:meth:`freeze`, then its ``fuse()``): the same function in eval mode."""
        return self.freeze().fuse()


class DynamicPATChannel(DynamicPATConv):
    """PAT_ch with a learned split. Zeroed channels contribute nothing to the Gaussian
    (or SRM) attention's pooled statistics and its per-channel ops, so the attention
    over all C channels of ``x * (1 - a)`` equals the plain branch on the kept ones.

    Args:
        channels (int): C, with a factor of 2 (the gates act on its power-of-two part).
        ratio (float): the split the gates start at. Defaults to 0.25.
        attention (type): a channel attention with ``dpconv_exact`` (Gaussian, SRM).
        norm_cfg (dict): the BNs. Defaults to ``dict(type='BN')``.
        init_scale (float): the gates' initial magnitude. Defaults to 1e-8.
    """

    def __init__(self, channels: int, ratio: float = 0.25,
                 attention: Type[nn.Module] = GaussianChannelAttention,
                 norm_cfg: dict = dict(type='BN'), init_scale: float = 1e-8):
        if not attention.dpconv_exact:
            supported = [a.__name__ for a in CHANNEL_ATTENTIONS.values() if a.dpconv_exact]
            raise ValueError(f'DPConv cannot learn the split of PAT_ch with '
                             f'{attention.__name__}: its output for the kept channels depends on '
                             f'the split size. Supported: {supported}')
        k, _ = power_of_two_part(channels, type(self).__name__)
        gates = ChannelGates(channels, ratio, max_on=k - 1, init_scale=init_scale)
        super().__init__(channels, lambda c: ChannelAttentionBranch(c, attention, norm_cfg), gates)
        self.attention, self.norm_cfg = attention, norm_cfg

    def make_plain(self, ratio: float) -> nn.Module:
        return PATChannel(self.channels, ratio, self.attention, self.norm_cfg)


class DynamicPATSelfAttention(DynamicPATConv):
    """PAT_sf with a learned split. The kept channels get a LayerNorm over themselves
    only and are dealt to the heads in order, as the plain branch built for them would
    do; the lowest gates stay on so that the kept count is divisible by the heads.

    Args:
        channels (int): C, with a factor of 2.
        ratio (float): the split the gates start at. Defaults to 0.25.
        num_heads, attn_drop, proj_drop, rpe_alpha: as PAT_sf's attention branch.
        init_scale (float): the gates' initial magnitude. Defaults to 1e-8.
    """

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
    # head i sees the kept channels dealt to it: per-head copies of q and v masked to them
    # (B, heads, N, C), k shared; the heads' outputs are then summed back onto the channels
    per_head = heads_mask[None, :, None, :]
    out = relpos_attention((q * keep)[:, None] * per_head, k[:, None].expand(-1, heads, -1, -1),
                           v[:, None] * per_head, attn.rpe_k(h, w, q.dtype)[None],
                           head_dim ** -0.5, attn.attn_drop.p if attn.training else 0.0).sum(1)
    out = attn.proj_drop(attn.proj(out))
    return out.transpose(1, 2).reshape(b, c, h, w)


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
