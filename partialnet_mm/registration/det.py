"""Register PartialNet in MMDetection's MODELS registry (type='PartialNet')."""
from mmdet.registry import MODELS

from ..models import PartialNet

MODELS.register_module(module=PartialNet, force=True)
