"""The paper's classifier in pure torch (for FLOPs and benchmarks without mmpretrain)."""
import torch
import torch.nn as nn

from ...checkpoint import key_problems, read_checkpoint
from ..backbones import PartialNet
from ..heads import PartialNetHead


class PartialNetClassifier(nn.Module):
    """Backbone (last stage, no output norm) -> global average pool -> pre-logits -> linear.

    The same network, with the same state-dict keys, as mmpretrain's ImageClassifier
    built from our configs; kept in pure torch so FLOPs and speed can be measured
    without mmpretrain.
    """

    def __init__(self, arch='s', num_classes: int = 1000, mid_channels: int = 1280,
                 **backbone_kwargs):
        super().__init__()
        backbone_kwargs.setdefault('out_indices', (3,))
        backbone_kwargs.setdefault('with_out_norm', False)
        self.backbone = PartialNet(arch=arch, **backbone_kwargs)
        act_cfg = backbone_kwargs.get('act_cfg') or self.backbone.arch['act_cfg']
        self.head = PartialNetHead(self.backbone.channels[-1], num_classes, mid_channels, act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[-1].mean((2, 3)))

    def switch_to_deploy(self) -> None:
        self.backbone.switch_to_deploy()


def load_classifier_checkpoint(model: PartialNetClassifier, path: str) -> None:
    """Load an mmpretrain ImageClassifier checkpoint of ours (strict on backbone and head)."""
    _, state = read_checkpoint(path)
    state = {k: v for k, v in state.items() if k.startswith(('backbone.', 'head.'))}
    problems = key_problems(model.state_dict(), state)
    if problems:
        raise KeyError(f'{path} does not fit {type(model).__name__}: {problems}')
    model.load_state_dict(state)
