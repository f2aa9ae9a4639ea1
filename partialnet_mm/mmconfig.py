"""Config helpers for the tools: load an mmdet / mmpretrain / mmseg config (a file or a
package config), check a PartialNet neck against the backbone before anything is built, and
build the config's model in its own scope without touching the global one."""
import importlib

from .registration import check_scope


def load_config(path):
    """A config file, or a package config (``mmdet::...``) of an installed framework."""
    from mmengine.config import Config
    from mmengine.hub import get_config
    return get_config(path) if '::' in str(path) else Config.fromfile(path)


def is_detector_config(path: str) -> bool:
    """An mmdet config (a file, or an ``mmdet::`` name); a variant name (``t0``) is not."""
    if '::' in str(path):
        return str(path).startswith('mmdet::')
    if not str(path).endswith('.py'):
        return False
    return load_config(path).get('default_scope') == 'mmdet'


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
    from .models import PartialNet

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


def classifier_from_config(path: str) -> dict:
    """PartialNetClassifier arguments from an mmpretrain config of ours."""
    from mmengine.config import Config

    cfg = Config.fromfile(path)
    backbone = dict(cfg.model.get('backbone') or {})
    if str(backbone.get('type', '')).split('.')[-1] != 'PartialNet':
        raise ValueError(f'{path}: model.backbone is not a PartialNet ({backbone.get("type")!r})')
    if cfg.model.get('type') not in (None, 'ImageClassifier', 'DPConvImageClassifier'):
        raise ValueError(f'{path} is a {cfg.model.type} config, not a classifier (a detector: '
                         f'tools/benchmark.py --det CONFIG, tools/export_onnx.py CONFIG OUT)')
    for key in ('type', 'init_cfg', 'drop_path_rate', 'frozen_stages', 'norm_eval', 'with_cp',
                'out_indices', 'with_out_norm', 'deploy'):
        backbone.pop(key, None)
    if backbone.get('dpconv'):
        raise ValueError(f'{path} learns split ratios (dpconv); benchmark the exported plain '
                         f'config (tools/export_split_ratios.py)')
    head = cfg.model.get('head') or {}
    return dict(backbone, num_classes=head.get('num_classes', 1000),
                mid_channels=head.get('mid_channels', 1280))


def classifier_kwargs(model: str) -> dict:
    """PartialNetClassifier arguments for a variant name (``t0`` ... ``l``) or an mmpretrain
    config of ours (:func:`classifier_from_config`)."""
    return classifier_from_config(model) if str(model).endswith('.py') else dict(arch=model)


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
