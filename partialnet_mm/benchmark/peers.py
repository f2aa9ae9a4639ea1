"""The roles of a benchmark table, written once: PartialNet's two graphs and the peers it is
timed against, each with how it is built, how its row is recognised in older JSON files, and
how the speed plot draws it. Adding a peer is one entry of :data:`ROLES`."""
import importlib.util
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch.nn as nn

UNFUSED, FUSED = 'unfused', 'fused'  # ratios are the fused row's against the others

FASTERNET = {'t0': 'fasternet_t0', 't1': 'fasternet_t1', 't2': 'fasternet_t2',
             's': 'fasternet_s', 'm': 'fasternet_m', 'l': 'fasternet_l'}


def fasternet(arch: str) -> Optional[Tuple[str, nn.Module]]:
    """timm's FasterNet of the same size, when timm is installed."""
    try:
        import timm
    except ImportError:
        return None
    if arch not in FASTERNET:
        return None
    return f'FasterNet-{arch.upper()} (timm)', timm.create_model(FASTERNET[arch])


class FeatureMaps(nn.Module):
    """A timm model's four stage outputs (``features_only``): a peer's detection backbone."""

    def __init__(self, model_name: str):
        super().__init__()
        import timm
        self.body = timm.create_model(model_name, features_only=True,
                                      out_indices=(-4, -3, -2, -1))

    def forward(self, x):
        return tuple(self.body(x))


def fasternet_backbone(arch: str) -> Optional[Tuple[str, nn.Module]]:
    """timm's FasterNet of the same size as a four-stage feature extractor."""
    if importlib.util.find_spec('timm') is None or arch not in FASTERNET:
        return None
    return f'FasterNet-{arch.upper()} (timm) backbone', FeatureMaps(FASTERNET[arch])


def resnet50_backbone(arch: str) -> Optional[Tuple[str, nn.Module]]:
    """timm's ResNet-50 as a four-stage feature extractor (C2..C5)."""
    if importlib.util.find_spec('timm') is None:
        return None
    return 'ResNet-50 (timm) backbone', FeatureMaps('resnet50')


def resnet50(arch: str) -> Optional[Tuple[str, nn.Module]]:
    """torchvision's ResNet-50 (timm's without torchvision), whatever the variant."""
    try:
        from torchvision.models import resnet50 as build
        return 'ResNet-50 (torchvision)', build()
    except ImportError:
        pass
    try:
        import timm
    except ImportError:
        return None
    return 'ResNet-50 (timm)', timm.create_model('resnet50')


@dataclass(frozen=True)
class Role:
    """One row of a classifier table."""
    name: str
    legend: str            # in the plot
    colour: str
    marker: str
    line: str              # matplotlib line style; '' draws points only
    named: Callable[[str], bool]   # recognises the row's model name (JSON without roles)
    build: Optional[Callable[[str], Optional[Tuple[str, nn.Module]]]] = None  # peers only
    build_backbone: Optional[Callable[[str], Optional[Tuple[str, nn.Module]]]] = None
    one_size: bool = False  # the same model whatever the variant: plotted as one point


ROLES: Dict[str, Role] = {r.name: r for r in (
    Role(FUSED, 'PartialNet (deployed)', 'tab:blue', 'o', '-',
         lambda name: name.endswith(' fused')),
    Role(UNFUSED, 'PartialNet (training graph)', 'tab:blue', 'o', ':',
         lambda name: name.endswith(' unfused')),
    Role('fasternet', 'FasterNet (timm)', 'tab:orange', 's', '-',
         lambda name: name.startswith('FasterNet'), fasternet, fasternet_backbone),
    Role('resnet50', 'ResNet-50 (torchvision)', 'tab:gray', '*', '',
         lambda name: name.startswith('ResNet-50'), resnet50, resnet50_backbone, one_size=True),
)}


def classifier_peers(arch: Optional[str], backbone: bool = False) -> Dict[str, tuple]:
    """By role, ``(display name, model)`` of every peer of :data:`ROLES` that can be built
    here for the variant ``arch``: the classifiers, or with ``backbone`` their four-stage
    feature extractors."""
    peers = {}
    for role in ROLES.values():
        build = role.build_backbone if backbone else role.build
        built = build(arch) if build is not None else None
        if built is not None:
            peers[role.name] = built
    return peers
