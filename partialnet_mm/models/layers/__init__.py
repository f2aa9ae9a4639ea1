"""The building blocks, smallest first: utils -> attention (and ECA) -> PATConv -> blocks;
fast_ops holds the deployed graph's device- and layout-specific choices. Pure torch."""
from .attention import (CHANNEL_ATTENTIONS, GaussianChannelAttention, ImageRelativePositionBias,
                        LayerNorm2d, RelPosSelfAttention, SEAttention, SpatialAttentionGate,
                        SRMAttention, mean_std_pool)
from .blocks import PartialMLP, PartialNetBlock, PartialNetBlockV2, PartialNetStage
from .eca import ECA, eca_kernel_size
from .patconv import PATChannel, PATConv, PATSelfAttention, PATSpatial
from .quantizable import quantizable

__all__ = [
    'CHANNEL_ATTENTIONS', 'ECA', 'GaussianChannelAttention', 'ImageRelativePositionBias',
    'LayerNorm2d', 'PATChannel', 'PATConv', 'PATSelfAttention', 'PATSpatial', 'PartialMLP',
    'PartialNetBlock', 'PartialNetBlockV2', 'PartialNetStage', 'RelPosSelfAttention',
    'SEAttention', 'SRMAttention', 'SpatialAttentionGate', 'eca_kernel_size',
    'mean_std_pool', 'quantizable'
]
