"""PartialNet (arXiv 2502.01303) as an OpenMMLab plugin.

``custom_imports = dict(imports=['partialnet_mm'])`` in an mmdet or mmpretrain
config makes ``type='PartialNet'`` available. Importing this package also fixes
mmengine 0.10.7's checkpoint loading on torch >= 2.6 (see ``compat``).
"""
import warnings

# mmengine 0.10.7, mmpretrain and mmseg import pkg_resources, which setuptools deprecates with
# a UserWarning, printed twice or three times by every command: nothing there for the user
warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API',
                        category=UserWarning)
# mmdet 3.3's CSPNeXt (RTMDet's backbone) calls torch.cuda.amp.autocast, which torch deprecates
# with a FutureWarning on every validation: mmdet's to change, nothing for the user
warnings.filterwarnings('ignore',
                        message=r'`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated',
                        category=FutureWarning, module='mmdet')

import importlib.util  # noqa: E402

from .compat import patch_mmengine_checkpoint_loading  # noqa: E402
from .dpconv import collect_gates, dpconv_losses, freeze_state_dict  # noqa: E402
from .models import *  # noqa: F401,F403,E402
from .models import __all__ as _model_names  # noqa: E402
from .registration import register_all  # noqa: E402
from .version import __version__  # noqa: E402

patch_mmengine_checkpoint_loading()
REGISTERED = register_all()
if importlib.util.find_spec('mmengine') is not None:  # hooks, loop, file backend (mmengine's)
    from . import training  # noqa: F401,E402
if importlib.util.find_spec('timm') is not None:  # timm.create_model('partialnet_s')
    from . import timm_models  # noqa: F401,E402

__all__ = ['__version__', 'collect_gates', 'dpconv_losses', 'freeze_state_dict',
           'patch_mmengine_checkpoint_loading', 'register_all'] + _model_names
