"""The PartialNet models in pure torch (+ mmengine's BaseModule): layers, the backbone, the
paper's head and classifier. The mmpretrain parts (``heads.cls_head``,
``data_preprocessors``) are imported by partialnet_mm.registration when mmpretrain is there."""
from ..checkpoint import checkpoint_form, load_backbone_checkpoint
from .backbones import PartialNet
from .classifiers import PartialNetClassifier
from .heads import PartialNetHead, PartialNetPreLogits
from .layers import *  # noqa: F401,F403
from .layers import __all__ as _layer_names
from .layers.dynamic_patconv import DynamicPATChannel, DynamicPATConv, DynamicPATSelfAttention
from .layers.gates import ChannelGates

__all__ = ['PartialNet', 'PartialNetClassifier', 'PartialNetHead', 'PartialNetPreLogits',
           'checkpoint_form', 'load_backbone_checkpoint', 'ChannelGates', 'DynamicPATChannel',
           'DynamicPATConv', 'DynamicPATSelfAttention'] + _layer_names
