"""PartialNet (arXiv 2502.01303) as an OpenMMLab plugin.

``custom_imports = dict(imports=['partialnet_mm'])`` in an mmdet or mmpretrain
config makes ``type='PartialNet'`` available. Importing this package also fixes
mmengine 0.10.7's checkpoint loading on torch >= 2.6 (see ``compat``).
"""
from .compat import patch_mmengine_checkpoint_loading
from .models import *  # noqa: F401,F403
from .models import __all__ as _model_names
from .registration import register_all
from .version import __version__

patch_mmengine_checkpoint_loading()
REGISTERED = register_all()

__all__ = ['__version__', 'patch_mmengine_checkpoint_loading', 'register_all'] + _model_names
