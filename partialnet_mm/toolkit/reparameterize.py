"""Fuse the PartialNet backbone of a trained classifier, detector or segmentor checkpoint.

The fused checkpoint loads into the model its config builds with
``model.backbone.deploy=True``, so the frameworks' own test tools evaluate it:

    .venv/bin/python tools/reparameterize_model.py CONFIG CHECKPOINT OUT
    .venv/bin/python tools/test.py CONFIG OUT --cfg-options model.backbone.deploy=True
"""
import os.path as osp
from typing import Optional

import torch

from ..checkpoint import checkpoint_form, key_problems, read_checkpoint, write_checkpoint
from ..deploy import fuse_and_check
from ..models import PartialNet
from ..mmconfig import build_model


def training_config(config: str, cfg_options: Optional[dict] = None):
    """The config (with ``cfg_options`` merged) of a model with a PartialNet backbone in its
    training form: the config a checkpoint to fuse was trained with."""
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
    cfg = training_config(config, cfg_options)
    ckpt, state = read_checkpoint(checkpoint)
    if checkpoint_form(state, 'backbone.') == 'fused':
        raise ValueError(f'{checkpoint} holds a fused PartialNet already; test it with '
                         f'--cfg-options model.backbone.deploy=True')
    model = build_model(cfg).eval()
    if not isinstance(getattr(model, 'backbone', None), PartialNet):
        raise ValueError(f'{config}: the built backbone is not a PartialNet')
    problems = key_problems(model.state_dict(), state)
    if problems:
        raise KeyError(f'{checkpoint} does not fit the model of {config}: {problems}')
    model.load_state_dict(state)
    params_before = sum(p.numel() for p in model.parameters())
    unfused = model.backbone
    x = torch.randn(2, unfused.in_channels, 224, 224, generator=torch.Generator().manual_seed(0))
    model.backbone, diff = fuse_and_check(unfused, x, what='backbone', action='write it')

    meta = dict(ckpt.get('meta') or {}) if isinstance(ckpt, dict) else {}
    meta['partialnet_deploy'] = dict(source=osp.abspath(checkpoint), max_abs_diff=diff,
                                     load_with='model.backbone.deploy=True')
    write_checkpoint(dict(meta=meta, state_dict=model.state_dict()), out)
    return dict(out=out, max_abs_diff=diff, params_before=params_before,
                params_after=sum(p.numel() for p in model.parameters()))
