"""Fuse the PartialNet backbone of a trained classifier or detector checkpoint.

The fused checkpoint loads into the model its config builds with
``model.backbone.deploy=True``, so the frameworks' own test tools evaluate it:

    python tools/reparameterize_model.py CONFIG CHECKPOINT OUT
    python tools/test.py CONFIG OUT --cfg-options model.backbone.deploy=True
"""
import copy
import importlib
import os.path as osp
from typing import Optional

import torch

from ..checkpoint import read_checkpoint_file, write_checkpoint
from ..models import PartialNet, checkpoint_form

FUSE_TOLERANCE = 1e-4  # of the largest output magnitude (>= 1)


def build_model(cfg):
    """The model of an mmdet or mmpretrain config (chosen by its ``default_scope``),
    built without touching the global default scope."""
    from mmengine.registry import DefaultScope

    scope = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmpretrain'):
        raise ValueError(f"config default_scope is {scope!r}: expected 'mmdet' or 'mmpretrain'")
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(copy.deepcopy(cfg.model))


def load_config(config: str, cfg_options: Optional[dict] = None):
    from mmengine.config import Config

    import partialnet_mm  # noqa: F401  (registration)
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    backbone = cfg.model.get('backbone') or {}
    if str(backbone.get('type', '')).split('.')[-1] != 'PartialNet':
        raise ValueError(f'{config}: model.backbone is {backbone.get("type")!r}, not PartialNet')
    if backbone.get('deploy'):
        raise ValueError(f'{config} builds the fused backbone already (model.backbone.deploy='
                         f'True): give the training config the checkpoint was trained with')
    return cfg


def reparameterize(config: str, checkpoint: str, out: str,
                   cfg_options: Optional[dict] = None) -> dict:
    """Load ``checkpoint`` into ``config``'s model (strictly), fuse its PartialNet backbone,
    check the fused backbone against the unfused one, and write ``out`` (the checkpoint's
    ``meta`` kept). Returns what it did."""
    cfg = load_config(config, cfg_options)
    ckpt = read_checkpoint_file(checkpoint)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ValueError(f'{checkpoint}: expected a state dict or a dict with "state_dict"')
    if checkpoint_form(state, 'backbone.') == 'fused':
        raise ValueError(f'{checkpoint} holds a fused PartialNet already; test it with '
                         f'--cfg-options model.backbone.deploy=True')
    model = build_model(cfg).eval()
    if not isinstance(getattr(model, 'backbone', None), PartialNet):
        raise ValueError(f'{config}: the built backbone is not a PartialNet')
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        def show(keys):
            return ', '.join(keys[:5]) + (f' ... ({len(keys)} in all)' if len(keys) > 5 else '')
        raise KeyError(f'{checkpoint} does not fit the model of {config}: '
                       + '; '.join(p for p in (missing and f'missing keys: {show(missing)}',
                                               unexpected and f'unexpected keys: '
                                               f'{show(unexpected)}') if p))
    unfused = copy.deepcopy(model.backbone)
    params_before = sum(p.numel() for p in model.parameters())
    model.backbone.switch_to_deploy()
    diff = check_backbones(unfused, model.backbone)

    meta = dict(ckpt.get('meta') or {}) if isinstance(ckpt, dict) else {}
    meta['partialnet_deploy'] = dict(source=osp.abspath(checkpoint), max_abs_diff=diff,
                                     load_with='model.backbone.deploy=True')
    write_checkpoint(dict(meta=meta, state_dict=model.state_dict()), out)
    return dict(out=out, max_abs_diff=diff, params_before=params_before,
                params_after=sum(p.numel() for p in model.parameters()))


def check_backbones(unfused: PartialNet, fused: PartialNet, size=(224, 224)) -> float:
    """Max abs difference of the two on a random input; an error above ``FUSE_TOLERANCE``
    of the largest output magnitude."""
    x = torch.randn(2, unfused.in_channels, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, got = unfused.eval()(x), fused(x)
    diff = max((a - b).abs().max().item() for a, b in zip(ref, got, strict=True))
    scale = max(1.0, max(a.abs().max().item() for a in ref))
    if not diff <= FUSE_TOLERANCE * scale:  # also catches NaN
        raise RuntimeError(f'the fused backbone differs from the unfused one by {diff:.3g} '
                           f'(outputs up to {scale:.3g}): refusing to write it')
    return diff
