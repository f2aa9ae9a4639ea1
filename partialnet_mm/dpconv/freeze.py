"""Freeze a trained DPConv model: read each layer's learned split from its saved gates and
cut the full-width tensors down to the plain PartialNet with those splits."""
from typing import Dict, List, Tuple

import torch

from ..models.layers.dynamic_patconv import slice_mixer_state
from ..models.layers.gates import power_of_two_part


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
