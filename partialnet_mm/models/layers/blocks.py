"""The MLP (with PAT_sp), PartialNet blocks v1 / v2 and a stage.

Each class builds its training form or, with ``deploy=True``, its inference form. The
``fuse()`` contract, the same for every module of the package that has an inference form:
``fuse() -> nn.Module`` returns a new module, its inference form with its weights, that
replaces it where it stands (same input, same output in eval mode); a module already in its
inference form returns itself. So ``timm.utils.reparameterize_model`` (``setattr(parent, name,
child.fuse())``) and :meth:`PartialNet.switch_to_deploy` build the same network. Where two
fused modules fold into each other, an explicit step here owns it: :func:`fold_pat_sp` (PAT_sp
into the MLP's second 1x1 conv) and :func:`fold_closing_norm` (PAT_ch's closing BN into the
MLP's first).
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp

from .attention import InplaceSpatialGate
from .fast_ops import PatchConv, PointwiseConv
from .patconv import PATChannel, PATSpatial
from .utils import (ConvNorm, DropPath, InplaceResidual, Residual, build_act, check_split,
                    fold_input_affine, inplace_act)


@torch.no_grad()
def fold_pat_sp(fc2: nn.Conv2d, pat_sp: PATSpatial, into: nn.Conv2d) -> None:
    """Write into ``into`` (a 1x1 conv with bias) the conv computing fc2 followed by the
    linear half of the deployed ``pat_sp``: its rows past the gated half become
    ``W_mix @ W2[start:]`` with bias ``b_mix``; the gated half stays fc2's."""
    if not pat_sp.deploy:
        raise ValueError('fold_pat_sp takes the deploy form of PATSpatial: fuse() it first')
    start = pat_sp.attn_channels
    weight = fc2.weight.clone()
    weight[start:, :, 0, 0] = pat_sp.mix.weight[:, :, 0, 0] @ weight[start:, :, 0, 0]
    bias = torch.zeros_like(into.bias)
    if fc2.bias is not None:
        bias[:start] = fc2.bias[:start]
        bias[start:] = pat_sp.mix.weight[:, :, 0, 0] @ fc2.bias[start:]
    bias[start:] += pat_sp.mix.bias
    into.weight.copy_(weight)
    into.bias.copy_(bias)


@torch.no_grad()
def fold_closing_norm(mixer: PATChannel, mlp: 'PartialMLP') -> None:
    """Block v1's fold: the closing BN the deployed PAT_ch keeps (a scale and shift on its
    attended channels) moves into the input columns of the deployed MLP's first 1x1 conv,
    which comes right after it (exact: a 1x1 conv mixes no positions)."""
    affine = mixer.pop_closing_norm()
    if affine is not None:
        mlp.fc1.load_state_dict(fold_input_affine(mlp.fc1, affine).state_dict())


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
        self.deploy = deploy
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
    def fuse(self) -> 'PartialMLP':
        """The deploy form with this MLP's weights (a deployed MLP returns itself)."""
        if self.deploy:
            return self
        twin = PartialMLP(**self.settings, deploy=True).to(self.fc2.weight)
        twin.fc1.load_state_dict(self.fc1.fuse().state_dict())
        if self.pat_sp is None:
            twin.fc2.load_state_dict(self.fc2.state_dict())
            return twin
        pat_sp = self.pat_sp.fuse()
        fold_pat_sp(self.fc2, pat_sp, into=twin.fc2)
        twin.pat_sp.load_state_dict(pat_sp.attn.state_dict())
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
        self.deploy = deploy
        self.drop_path = DropPath(drop_path) if drop_path > 0 and not deploy else nn.Identity()
        self.residual = InplaceResidual() if deploy else Residual()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x, self.drop_path(self.mlp(self.token_mixer(x))))

    @torch.no_grad()
    def fuse(self) -> 'PartialNetBlock':
        """The deploy form (a deployed block returns itself): the mixer and the MLP fused,
        then PAT_ch's closing BN folded into the MLP's first 1x1 conv."""
        if self.deploy:
            return self
        mixer, mlp = self.token_mixer.fuse(), self.mlp.fuse()
        fold_closing_norm(mixer, mlp)
        return type(self)(mixer, mlp, deploy=True)


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
        """The deploy form (a deployed block returns itself); nothing folds across the
        shortcut, which is added between the mixer and the MLP."""
        if self.deploy:
            return self
        return type(self)(self.token_mixer.fuse(), self.mlp.fuse(), deploy=True)


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
        """The deploy form: every block fused, the merging conv + BN as one
        :class:`PatchConv` (a deployed stage gives an equal stage of the same modules)."""
        downsample = PatchConv.from_conv(self.downsample.fuse()) \
            if isinstance(self.downsample, ConvNorm) else self.downsample
        if isinstance(downsample, nn.Identity):
            downsample = None
        return PartialNetStage(nn.Sequential(*[block.fuse() for block in self.blocks]),
                               downsample, self.with_cp)
