"""Register PartialNet and ECA in MMDetection's MODELS registry."""
from mmdet.registry import MODELS

from ..models import ECA, PartialNet

MODELS.register_module(module=PartialNet, force=True)
MODELS.register_module(module=ECA, force=True)  # a ResNet plugin: plugins=[dict(cfg=dict(type='ECA'), ...)]
