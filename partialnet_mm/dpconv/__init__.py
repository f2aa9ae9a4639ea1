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
same gate state: the 3x3 conv on the chosen channels and, on the others, PATConv's
attention branch (:class:`DynamicPATChannel`, :class:`DynamicPATSelfAttention`). Training
writes it with 0/1 channel masks so the gates get gradients; evaluation may slice.
``freeze()`` / :func:`freeze_state_dict` turn a trained layer into the plain module with a
fixed split.
"""
# The layers (gates, the dynamic PATConv mixers) live beside PATConv in models/layers; the
# rest builds on them. The framework parts (``classifier`` for mmpretrain, ``hook`` for
# mmengine) are imported by partialnet_mm.registration when their framework is installed.
from ..models.layers.dynamic_patconv import (DynamicPATChannel, DynamicPATConv,
                                             DynamicPATSelfAttention, masked_self_attention,
                                             slice_mixer_state)
from ..models.layers.gates import ChannelGates, power_of_two_part
from .freeze import freeze_state_dict, gate_state_ratio
from .losses import check_budget, collect_gates, dpconv_losses

__all__ = ['ChannelGates', 'DynamicPATChannel', 'DynamicPATConv',
           'DynamicPATSelfAttention', 'check_budget', 'collect_gates',
           'dpconv_losses', 'freeze_state_dict', 'gate_state_ratio', 'masked_self_attention',
           'power_of_two_part', 'slice_mixer_state']
