"""The PartialNet models in pure torch (+ mmengine's BaseModule): layers, the backbone, the
paper's head and classifier. The mmpretrain parts (``heads.cls_head``,
``data_preprocessors``) are imported by partialnet_mm.registration when mmpretrain is there."""
from ..dpconv import (ChannelGates, DPConv, DynamicPATChannel, DynamicPATConv,
                      DynamicPATSelfAttention, PartialConv3x3, collect_gates, dpconv_losses,
                      freeze_state_dict)
from .backbones import PartialNet, checkpoint_form, load_backbone_checkpoint
from .classifiers import PartialNetClassifier
from .heads import PartialNetHead, PartialNetPreLogits
from .layers import *  # noqa: F401,F403
from .layers import __all__ as _layer_names

__all__ = ['PartialNet', 'PartialNetClassifier', 'PartialNetHead', 'PartialNetPreLogits',
           'checkpoint_form', 'load_backbone_checkpoint', 'ChannelGates', 'DPConv',
           'DynamicPATChannel', 'DynamicPATConv', 'DynamicPATSelfAttention', 'PartialConv3x3',
           'collect_gates', 'dpconv_losses', 'freeze_state_dict'] + _layer_names
