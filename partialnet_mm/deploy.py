"""Fuse and verify: the one check that a fused (deployed) PartialNet computes its training
graph, shared by the reparameterize tool, the benchmark, the ONNX export and the tests.

A fused model is correct when, on the same input, its outputs differ from the unfused
model's by at most :data:`FUSE_TOLERANCE` of the largest output magnitude (absolute for
outputs up to 1); anything else is a :class:`FusionMismatch`, and no tool writes or times it.
Pure torch.
"""
import copy
from typing import Tuple

import torch
import torch.nn as nn

FUSE_TOLERANCE = 1e-4


class FusionMismatch(RuntimeError):
    """The fused model does not compute the unfused one."""


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
    """Largest absolute difference of two tensors or two sequences of tensors (fp32)."""
    if isinstance(a, torch.Tensor):
        return (a.float() - b.float()).abs().max().item()
    return max(max_abs_diff(x, y) for x, y in zip(a, b, strict=True))


def max_abs(a) -> float:
    if isinstance(a, torch.Tensor):
        return a.float().abs().max().item()
    return max(max_abs(x) for x in a)


def fused_copy(model: nn.Module) -> nn.Module:
    """A fused copy of a PartialNet, a PartialNetClassifier, or an MM model whose backbone is
    a PartialNet (detector, segmentor, classifier); the original is kept."""
    fused = copy.deepcopy(model)
    target = fused if hasattr(fused, 'switch_to_deploy') else getattr(fused, 'backbone', None)
    if not hasattr(target, 'switch_to_deploy'):
        raise TypeError(f'{type(model).__name__} has no switch_to_deploy() and no backbone '
                        f'with one: nothing to fuse')
    target.switch_to_deploy()
    return fused


def compare_outputs(ref, got, tolerance: float = FUSE_TOLERANCE) -> Tuple[float, str]:
    """``(max abs difference, '')`` when ``got`` matches ``ref`` (tensors or sequences of
    them) to ``tolerance`` times the largest magnitude of ``ref`` (at least 1); else the
    difference and the sentence that says by how much. The one comparison of fused against
    unfused, and of an export against PyTorch."""
    diff = max_abs_diff(ref, got)
    scale = max(1.0, max_abs(ref))
    if diff <= tolerance * scale:  # False for NaN
        return diff, ''
    return diff, (f'{diff:.3g} (max abs, fp32; outputs up to {scale:.3g}) > {tolerance:g} x '
                  f'{scale:.3g}')


def check_fused(unfused: nn.Module, fused: nn.Module, inputs: torch.Tensor,
                tolerance: float = FUSE_TOLERANCE, what: str = 'model',
                action: str = 'use it') -> float:
    """The max abs difference of the two models' outputs on ``inputs``; a
    :class:`FusionMismatch` (saying it refuses to ``action``) above ``tolerance`` times the
    largest output magnitude (at least 1)."""
    with torch.no_grad():
        diff, excess = compare_outputs(unfused(inputs), fused(inputs), tolerance)
    if excess:
        raise FusionMismatch(f'fused {what} differs from the unfused one by {excess}: '
                             f'refusing to {action}')
    return diff


def fuse_and_check(model: nn.Module, inputs: torch.Tensor, what: str = 'model',
                   action: str = 'use it') -> Tuple[nn.Module, float]:
    """:func:`fused_copy` of ``model`` checked against it on ``inputs`` (:func:`check_fused`);
    returns the fused copy and the difference."""
    fused = fused_copy(model)
    return fused, check_fused(model, fused, inputs, what=what, action=action)
