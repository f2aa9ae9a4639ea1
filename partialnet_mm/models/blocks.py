"""The MLP (with PAT_sp), PartialNet blocks v1 / v2 and a stage."""
from typing import Optional

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp

from .attention import InplaceSpatialGate
from .patconv import DeployPATChannel, PATChannel, PATSpatial
from .utils import (ConvNorm, DropPath, InplaceResidual, PatchConv, PointwiseConv, Residual,
                    bn_affine, build_act, fold_affine_into_next_conv, inplace_act)


class PartialMLP(nn.Module):
    """1x1 conv C->rC, BN, act, 1x1 conv rC->C (no biases), then PAT_sp (optional)."""

    def __init__(self, channels: int, mlp_ratio: float = 2.0, act_cfg: dict = dict(type='ReLU'),
                 norm_cfg: dict = dict(type='BN'), with_pat_sp: bool = True):
        super().__init__()
        hidden = int(channels * mlp_ratio)
        if hidden < 1:
            raise ValueError(f'mlp_ratio {mlp_ratio} leaves no hidden channels for {channels}')
        self.fc1 = ConvNorm(channels, hidden, 1, norm_cfg=norm_cfg)
        self.act = build_act(act_cfg)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.pat_sp = PATSpatial(channels, norm_cfg) if with_pat_sp else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc2(self.act(self.fc1(x)))
        return self.pat_sp(x) if self.pat_sp is not None else x

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fuse fc1+BN; fold PAT_sp's second half (BN then 1x1 conv) into fc2's rows; run
        the activation and PAT_sp's attention half in place on the fresh conv outputs."""
        if isinstance(self.pat_sp, InplaceSpatialGate):
            return
        self.fc1.switch_to_deploy()
        self.fc1.conv = PointwiseConv.from_conv(self.fc1.conv)
        self.act = inplace_act(self.act)
        if self.pat_sp is None:
            return
        start = self.pat_sp.attn_channels
        scale, shift = bn_affine(self.pat_sp.mix.norm)
        w_mix = self.pat_sp.mix.conv.weight[:, :, 0, 0]  # (C/2, C/2)
        w2 = self.fc2.weight.detach().clone()
        b2 = self.fc2.bias.detach().clone() if self.fc2.bias is not None \
            else w2.new_zeros(w2.shape[0])
        # mix(z) = W_mix (scale * z + shift), z = W2[start:] h + b2[start:]
        w2[start:, :, 0, 0] = w_mix @ (scale[:, None] * w2[start:, :, 0, 0])
        b2[start:] = w_mix @ (scale * b2[start:] + shift)
        fc2 = PointwiseConv(self.fc2.in_channels, self.fc2.out_channels, 1, bias=True).to(w2)
        fc2.weight.copy_(w2)
        fc2.bias.copy_(b2)
        self.fc2 = fc2
        self.pat_sp = InplaceSpatialGate(self.pat_sp.attn)


class PartialNetBlock(nn.Module):
    """Block v1 (stages 1-3): ``y = x + DropPath(MLP(PAT_ch(x)))``."""

    def __init__(self, token_mixer: nn.Module, mlp: PartialMLP, drop_path: float = 0.0):
        super().__init__()
        self.token_mixer = token_mixer
        self.mlp = mlp
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.residual = Residual()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x, self.drop_path(self.mlp(self.token_mixer(x))))

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        self.token_mixer.switch_to_deploy()
        # The BN closing PAT_ch's attention part is an affine map right before the
        # MLP's first 1x1 conv: fold it into that conv's input columns.
        if hasattr(self.token_mixer, 'pop_trailing_norm') and \
                not isinstance(self.token_mixer.attn.norm, nn.Identity):
            scale, shift = bn_affine(self.token_mixer.attn.norm)
            fc1 = self.mlp.fc1
            fc1.conv = fold_affine_into_next_conv(fc1.conv, self.token_mixer.conv_channels,
                                                  scale, shift)
            self.token_mixer.pop_trailing_norm()
        if type(self.token_mixer) is PATChannel and \
                hasattr(self.token_mixer.attn.attention, 'weights'):
            self.token_mixer = DeployPATChannel(self.token_mixer)
        self.mlp.switch_to_deploy()
        # both branches (the MLP's last conv, PATConv's output) return fresh tensors
        self.residual = InplaceResidual()


class PartialNetBlockV2(PartialNetBlock):
    """Block v2 (stage 4), the modified shortcut: ``x = x + PAT_sf(x)``;
    ``y = x + DropPath(MLP(x))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.residual(x, self.token_mixer(x))
        return self.residual(x, self.drop_path(self.mlp(x)))


class PartialNetStage(nn.Module):
    """An optional downsampling layer (conv 2x2 s2 + BN) followed by blocks.

    Deployed, a stage of self-attention blocks (v2) runs channels_last: attention works on
    (B, H*W, C) tokens, which a channels_last map already is, and at the last stage's few
    positions the 1x1 convs' GEMMs and the 3x3 conv run faster in that layout on CPU. The
    output is handed back in the input's layout.
    """

    def __init__(self, blocks: nn.Sequential, downsample: Optional[nn.Module] = None,
                 with_cp: bool = False):
        super().__init__()
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.blocks = blocks
        self.with_cp = with_cp
        self.channels_last = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        restore = self.channels_last and not x.is_contiguous(memory_format=torch.channels_last)
        if restore:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.downsample(x)
        for block in self.blocks:
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x.contiguous() if restore else x

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        if isinstance(self.downsample, ConvNorm) and \
                not isinstance(self.downsample.conv, PatchConv):  # deploying twice is a no-op
            self.downsample.switch_to_deploy()
            self.downsample.conv = PatchConv(self.downsample.conv)
        for block in self.blocks:
            block.switch_to_deploy()
        if any(isinstance(block, PartialNetBlockV2) for block in self.blocks):
            self.to(memory_format=torch.channels_last)  # the 4-d weights too
            self.channels_last = True
