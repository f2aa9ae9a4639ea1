import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

TINY = dict(embed_dims=16, depths=(1, 1, 2, 1), act_cfg=dict(type='GELU'))


@pytest.fixture
def tiny_arch():
    return dict(TINY)


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BN non-trivial statistics and affine parameters (so folding is tested)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.randn(n, generator=g) * 0.5 + 1)
                m.bias.copy_(torch.randn(n, generator=g) * 0.5)
    return model


def mm_build(scope: str, cfg: dict):
    """Build a model in an OpenMMLab scope ('mmdet' or 'mmpretrain') without leaving a
    global default scope behind for later tests."""
    import importlib

    from mmengine.registry import DefaultScope
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(cfg)
