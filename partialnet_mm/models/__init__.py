from .attention import (CHANNEL_ATTENTIONS, GaussianChannelAttention, ImageRelativePositionBias,
                        LayerNorm2d, RelPosSelfAttention, SEAttention, SpatialAttentionGate,
                        SRMAttention, irpe_euclidean_buckets, mean_std_pool)
from .blocks import PartialMLP, PartialNetBlock, PartialNetBlockV2, PartialNetStage
from .dpconv import (ChannelGates, DPConv, DynamicPATChannel, DynamicPATConv,
                     DynamicPATSelfAttention, PartialConv3x3, collect_gates, dpconv_losses,
                     freeze_state_dict)
from .eca import ECA, eca_kernel_size
from .head import PartialNetClassifier, PartialNetHead, PartialNetPreLogits
from .partialnet import PartialNet, checkpoint_form, load_backbone_checkpoint
from .patconv import PATChannel, PATConv, PATSelfAttention, PATSpatial

__all__ = [
    'ECA', 'eca_kernel_size', 'ChannelGates', 'DPConv', 'DynamicPATChannel', 'DynamicPATConv',
    'DynamicPATSelfAttention', 'PartialConv3x3', 'collect_gates', 'dpconv_losses',
    'freeze_state_dict',
    'CHANNEL_ATTENTIONS', 'GaussianChannelAttention', 'ImageRelativePositionBias', 'LayerNorm2d',
    'RelPosSelfAttention', 'SEAttention', 'SpatialAttentionGate', 'SRMAttention',
    'irpe_euclidean_buckets', 'mean_std_pool', 'PartialMLP', 'PartialNetBlock',
    'PartialNetBlockV2', 'PartialNetStage', 'PartialNetClassifier', 'PartialNetHead',
    'PartialNetPreLogits', 'PartialNet', 'checkpoint_form', 'load_backbone_checkpoint',
    'PATChannel', 'PATConv', 'PATSelfAttention', 'PATSpatial'
]
