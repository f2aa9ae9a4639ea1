import pytest
import torch

from partialnet_mm.benchmark import randomize_norms

TINY = dict(embed_dims=16, depths=(1, 1, 2, 1), act_cfg=dict(type='GELU'))


@pytest.fixture
def tiny_arch():
    return dict(TINY)


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BN non-trivial statistics and affine parameters (so folding is tested):
    the helper the benchmark and export tools use for their fused == unfused check."""
    return randomize_norms(model, seed)


def mm_build(scope: str, cfg: dict):
    """Build a model in an OpenMMLab scope ('mmdet' or 'mmpretrain') without leaving a
    global default scope behind for later tests."""
    import importlib

    from mmengine.registry import DefaultScope
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(cfg)
