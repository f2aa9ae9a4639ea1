"""Register PartialNet and ECA in MMSegmentation's MODELS registry, and load the module that
registers the generated segmentation set and the checked label loader at their definition."""
from mmseg.registry import MODELS

from ..datasets import segmentation  # noqa: F401
from ..models import ECA, PartialNet

MODELS.register_module(module=PartialNet, force=True)
MODELS.register_module(module=ECA, force=True)
