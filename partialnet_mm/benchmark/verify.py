"""The fused == unfused check that comes before any speed figure (the export tool and the
tests use it too, without timing anything)."""
import copy

import torch
import torch.nn as nn

FUSE_TOLERANCE = 1e-4


class FusionMismatch(RuntimeError):
    """The fused model does not compute the unfused one: no speed is reported."""


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters, so that the
    fused == unfused check tests the folding (fresh BNs are identities)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                if m.affine:  # scales of both signs, so sign handling in folds is tested
                    m.weight.copy_(torch.randn(c, generator=g) * 0.5 + 1)
                    m.bias.copy_(torch.randn(c, generator=g) * 0.5)
    return model


def max_abs_diff(a, b) -> float:
    if isinstance(a, torch.Tensor):
        return (a.float() - b.float()).abs().max().item()
    return max(max_abs_diff(x, y) for x, y in zip(a, b, strict=True))


def check_fused(unfused: nn.Module, fused: nn.Module, inputs: torch.Tensor,
                tolerance: float = FUSE_TOLERANCE, what: str = 'model') -> float:
    """fp32 max abs difference of the two on ``inputs``; FusionMismatch above tolerance."""
    with torch.no_grad():
        diff = max_abs_diff(unfused(inputs), fused(inputs))
    if not diff <= tolerance:  # also catches NaN
        raise FusionMismatch(f'fused {what} differs from the unfused one by {diff:.3g} '
                             f'(max abs, fp32) > {tolerance:g}: refusing to report its speed')
    return diff


def deployed(model: nn.Module) -> nn.Module:
    """A fused copy of a PartialNet classifier or backbone (the original is kept)."""
    fused = copy.deepcopy(model)
    fused.switch_to_deploy()
    return fused
