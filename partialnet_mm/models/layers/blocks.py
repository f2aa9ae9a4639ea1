"""The MLP (with PAT_sp), PartialNet blocks v1 / v2 and a stage.

Each class builds its training form or, with ``deploy=True``, its inference form, and
``fuse()`` returns the inference form of a trained module: it fuses its own children
and copies the fused weights in.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp

from .attention import InplaceSpatialGate
from .fast_ops import PatchConv, PointwiseConv
from .patconv import PATSpatial
from .utils import (ChannelAffine, ConvNorm, DropPath, InplaceResidual, Residual, bn_affine,
                    build_act, check_split, fold_input_affine, inplace_act)


class PartialMLP(nn.Module):
    """1x1 conv C->rC, BN, act, 1x1 conv rC->C (no biases), then PAT_sp (optional).

    Deploy form: fc1 with its BN folded in, the activation in place, fc2 with PAT_sp's
    second half (BN then 1x1 conv) folded into its rows, PAT_sp's attention half in place
    on fc2's fresh output.

    Args:
        channels (int): input and output channels C.
        mlp_ratio (float): hidden channels ``int(C * mlp_ratio)``. Defaults to 2.0.
        act_cfg (dict): the activation. Defaults to ``dict(type='ReLU')``.
        norm_cfg (dict): the BNs. Defaults to ``dict(type='BN')``.
        with_pat_sp (bool): PAT_sp after fc2. Defaults to True.
        deploy (bool): build the inference form. Defaults to False.
    """

    def __init__(self, channels: int, mlp_ratio: float = 2.0, act_cfg: dict = dict(type='ReLU'),
                 norm_cfg: dict = dict(type='BN'), with_pat_sp: bool = True,
                 deploy: bool = False):
        super().__init__()
        hidden = int(channels * mlp_ratio)
        if hidden < 1:
            raise ValueError(f'mlp_ratio {mlp_ratio} leaves no hidden channels for {channels}')
        self.settings = dict(channels=channels, mlp_ratio=mlp_ratio, act_cfg=act_cfg,
                             norm_cfg=norm_cfg, with_pat_sp=with_pat_sp)
        if deploy:
            self.fc1 = PointwiseConv(channels, hidden)
            self.act = inplace_act(build_act(act_cfg))
            self.fc2 = PointwiseConv(hidden, channels, bias=with_pat_sp)
            self.pat_sp = InplaceSpatialGate(check_split(channels, 0.5, 'PATSpatial')) \
                if with_pat_sp else None
        else:
            self.fc1 = ConvNorm(channels, hidden, 1, norm_cfg=norm_cfg)
            self.act = build_act(act_cfg)
            self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
            self.pat_sp = PATSpatial(channels, norm_cfg) if with_pat_sp else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc2(self.act(self.fc1(x)))
        return self.pat_sp(x) if self.pat_sp is not None else x

    @torch.no_grad()
    def fuse(self, input_affine: Optional[ChannelAffine] = None) -> 'PartialMLP':
        """The deploy form with this MLP's weights; ``input_affine`` (the map the token
        mixer leaves on its output) is folded into fc1's input columns."""
        twin = PartialMLP(**self.settings, deploy=True).to(self.fc2.weight)
        fc1 = self.fc1.fuse()
        twin.fc1.load_state_dict(
            (fc1 if input_affine is None else fold_input_affine(fc1, input_affine)).state_dict())
        if self.pat_sp is None:
            twin.fc2.load_state_dict(self.fc2.state_dict())
            return twin
        # mix(z) = W_mix (scale * z + shift) on z = W2[start:] h: fold it into fc2's rows
        start = self.pat_sp.attn_channels
        scale, shift = bn_affine(self.pat_sp.mix.norm)
        w_mix = self.pat_sp.mix.conv.weight[:, :, 0, 0]
        weight = self.fc2.weight.clone()
        weight[start:, :, 0, 0] = w_mix @ (scale[:, None] * weight[start:, :, 0, 0])
        bias = torch.zeros_like(twin.fc2.bias)
        bias[start:] = w_mix @ shift
        twin.fc2.weight.copy_(weight)
        twin.fc2.bias.copy_(bias)
        twin.pat_sp.load_state_dict(self.pat_sp.attn.fuse().state_dict())
        return twin


class PartialNetBlock(nn.Module):
    """Block v1 (stages 1-3): ``y = x + DropPath(MLP(PAT_ch(x)))``.

    Deploy form: no DropPath, and the shortcut added in place into the MLP's fresh output.

    Args:
        token_mixer (nn.Module): the spatial mixer (:class:`PATChannel`).
        mlp (PartialMLP): the channel MLP.
        drop_path (float): stochastic depth of the residual branch. Defaults to 0.
        deploy (bool): build the inference form. Defaults to False.
    """

    def __init__(self, token_mixer: nn.Module, mlp: PartialMLP, drop_path: float = 0.0,
                 deploy: bool = False):
        super().__init__()
        self.token_mixer = token_mixer
        self.mlp = mlp
        self.drop_path = DropPath(drop_path) if drop_path > 0 and not deploy else nn.Identity()
        self.residual = InplaceResidual() if deploy else Residual()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x, self.drop_path(self.mlp(self.token_mixer(x))))

    @torch.no_grad()
    def fuse(self) -> 'PartialNetBlock':
        """The deploy form; the affine map PAT_ch leaves on its output (its closing BN)
        folds into the MLP's first 1x1 conv, which comes right after it."""
        mixer, affine = self.token_mixer.fuse()
        return type(self)(mixer, self.mlp.fuse(affine), deploy=True)


class PartialNetBlockV2(PartialNetBlock):
    """Block v2 (stage 4), the modified shortcut: ``x = x + PAT_sf(x)``;
    ``y = x + DropPath(MLP(x))``.

    Args: as :class:`PartialNetBlock`, with :class:`PATSelfAttention` as the mixer.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.residual(x, self.token_mixer(x))
        return self.residual(x, self.drop_path(self.mlp(x)))

    @torch.no_grad()
    def fuse(self) -> 'PartialNetBlockV2':
        mixer, affine = self.token_mixer.fuse()
        if affine is not None:  # the shortcut is added between the mixer and the MLP
            raise ValueError(f'block v2 cannot fold the affine map {type(mixer).__name__} '
                             f'leaves on its output: the shortcut is added before the MLP')
        return type(self)(mixer, self.mlp.fuse(), deploy=True)


class PartialNetStage(nn.Module):
    """An optional downsampling layer (conv 2x2 s2 + BN; deployed: :class:`PatchConv`)
    followed by blocks.

    Args:
        blocks (nn.Sequential): the stage's blocks.
        downsample (nn.Module | None): the merging layer; None for the first stage.
        with_cp (bool): gradient checkpointing per block while training. Defaults to False.
    """

    def __init__(self, blocks: nn.Sequential, downsample: Optional[nn.Module] = None,
                 with_cp: bool = False):
        super().__init__()
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.blocks = blocks
        self.with_cp = with_cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        for block in self.blocks:
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x

    @torch.no_grad()
    def fuse(self) -> 'PartialNetStage':
        downsample = PatchConv.from_conv(self.downsample.fuse()) \
            if isinstance(self.downsample, ConvNorm) else None
        return PartialNetStage(nn.Sequential(*[block.fuse() for block in self.blocks]),
                               downsample, self.with_cp)
