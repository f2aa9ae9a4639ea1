"""Registration of the pure-torch models into the OpenMMLab registries.

Each framework is registered only when it is installed, so the models import
and run with torch (+ mmengine) alone, e.g. on a benchmark machine.
"""
import importlib
import importlib.util
import warnings

# The one list of the frameworks we plug into: config default_scope -> our registration
# module. The tools (train/test, reparameterize, FLOPs) accept exactly these scopes.
FRAMEWORKS = {'mmdet': '.det', 'mmpretrain': '.cls', 'mmseg': '.seg'}


def check_scope(scope) -> str:
    """``scope`` when it is one of :data:`FRAMEWORKS`; else a ValueError naming them."""
    if scope not in FRAMEWORKS:
        raise ValueError(f"config default_scope is {scope!r}: partialnet_mm's tools run "
                         f"{', '.join(FRAMEWORKS)} configs (default_scope one of "
                         f"{tuple(FRAMEWORKS)})")
    return scope


def load_config(path):
    """A config file, or a package config (``mmdet::...``) of an installed framework."""
    from mmengine.config import Config
    from mmengine.hub import get_config
    return get_config(path) if '::' in str(path) else Config.fromfile(path)


def is_one_stage(model_cfg) -> bool:
    """A detector config's model with a dense head only (RTMDet, RetinaNet...), no RPN + RoI
    head."""
    return 'bbox_head' in model_cfg and 'roi_head' not in model_cfg


class NeckMismatch(ValueError):
    """A neck whose ``in_channels`` are not the channels the PartialNet backbone returns."""


def check_neck_channels(model_cfg) -> None:
    """Raise :class:`NeckMismatch` when ``model.neck.in_channels`` (a list) differs from the
    channels of a PartialNet backbone's ``out_indices``: the message names both lists and
    the setting that fits, at build time, instead of a shape error in the first forward.
    Other backbones, and necks without a list of input channels, are left alone."""
    from ..models import PartialNet

    backbone, neck = model_cfg.get('backbone') or {}, model_cfg.get('neck')
    if backbone.get('type') not in ('PartialNet', PartialNet) or not isinstance(neck, dict) \
            or not isinstance(neck.get('in_channels'), (list, tuple)):
        return
    arch = backbone.get('arch', 's')
    out_indices = backbone.get('out_indices', (0, 1, 2, 3))
    expected = PartialNet.output_channels(arch, out_indices)
    given = list(neck['in_channels'])
    if given != expected:
        name = f'PartialNet-{arch.upper()}' if isinstance(arch, str) else \
            'this PartialNet arch'
        raise NeckMismatch(
            f'model.neck.in_channels is {given}, but the backbone {name} with out_indices '
            f'{tuple(out_indices)} returns {len(expected)} feature maps of {expected} channels; '
            f'set model.neck.in_channels={expected} (or out_indices to the stages the neck '
            f'expects)')


def build_model(cfg, backbone_weights: bool = True):
    """The model of an mmdet, mmpretrain or mmseg config (chosen by its ``default_scope``),
    built without touching the global default scope. ``backbone_weights=False`` drops the
    backbone's ``init_cfg`` (for counting and timing, which need no checkpoint)."""
    import copy

    from mmengine.registry import DefaultScope

    scope = check_scope(cfg.get('default_scope'))
    check_neck_channels(cfg.model)
    model_cfg = copy.deepcopy(cfg.model)
    if not backbone_weights:
        model_cfg.get('backbone', {}).pop('init_cfg', None)
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(model_cfg)


def register_all() -> dict:
    """Register into every installed framework; returns {framework: registered?}."""
    done = {}
    for framework, module in FRAMEWORKS.items():
        if importlib.util.find_spec(framework) is None:
            done[framework] = False
            continue
        try:
            importlib.import_module(module, __name__)
            done[framework] = True
        except Exception as err:  # an installed but broken framework must not hide the models
            warnings.warn(f'partialnet_mm: {framework} is installed but failed to import, so '
                          f'PartialNet is not registered there: {type(err).__name__}: {err}', stacklevel=2)
            done[framework] = False
    return done
