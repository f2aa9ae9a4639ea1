"""Register PartialNet and ECA in MMPretrain's MODELS registry, and load the modules that
register the mmpretrain parts at their definition: the paper's head, the multi-scale data
preprocessor, DPConv's classifier and hook, the digits dataset."""
from mmpretrain.registry import MODELS

from ..datasets import digits  # noqa: F401
from ..dpconv import classifier, hook  # noqa: F401
from ..models import data_preprocessors  # noqa: F401
from ..models import ECA, PartialNet
from ..models.heads import cls_head  # noqa: F401

MODELS.register_module(module=PartialNet, force=True)
MODELS.register_module(module=ECA, force=True)  # plugin of mmdet's ResNet used from mmpretrain

# `mmpretrain.list_models('partialnet*')` / `get_model(name)` find our classifiers
from .model_index import register_model_index  # noqa: E402

register_model_index()
