"""The PartialNet backbone (T0/T1/T2/S/M/L) with the OpenMMLab backbone contract."""
import copy
import warnings
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ...checkpoint import check_checkpoint_form, load_backbone_checkpoint
from ..layers.dynamic_patconv import DynamicPATChannel, DynamicPATConv, DynamicPATSelfAttention
from ..layers.attention import channel_attention_class
from ..layers.blocks import PartialMLP, PartialNetBlock, PartialNetBlockV2, PartialNetStage
from ..layers.fast_ops import PatchConv, in_layout, memory_format_of
from ..layers.patconv import PATChannel, PATSelfAttention
from ..layers.utils import ConvNorm, build_norm, check_input_channels

FOLDABLE_NORMS = ('BN', 'BN2d', 'SyncBN')


class PartialNet(BaseModule):
    """PartialNet backbone ("Partial Channel Network: Compute Fewer, Perform Better").

    Stem (conv 4x4 s4 + BN), then four stages of ``embed_dims * 2**i`` channels;
    stages 1-3 use block v1 (PAT_ch + MLP with PAT_sp), stage 4 block v2 (PAT_sf
    with the modified shortcut). Each requested output goes through its own norm.

    Args:
        arch (str | dict): 't0', 't1', 't2', 's', 'm', 'l', or a dict with keys
            ``embed_dims`` (int), ``depths`` (4 ints) and ``act_cfg`` (dict).
        in_channels (int): input image channels.
        out_indices (Sequence[int]): stages to output (0..3, negatives allowed).
        frozen_stages (int): -1 freezes nothing, 0 the stem, i the stem and stages 1..i.
        norm_eval (bool): keep every BN in eval mode during training.
        with_cp (bool): gradient checkpointing per block (saves memory).
        drop_path_rate (float): stochastic depth, linearly increasing over blocks.
        mlp_ratio (float): MLP expansion.
        partial_ratio (float | Sequence): share of channels given to the 3x3 conv in
            PAT_ch / PAT_sf: one float, one per stage (4 floats), or one per block (4
            sequences of ``depths[i]`` floats, e.g. learned by DPConv and written by
            tools/export_split_ratios.py). With ``dpconv`` it is the gates' start.
        dpconv (dict | None): learn every block's split ratio with DPConv gates
            (``dict(init_scale=1e-8)``); PAT_ch uses the Gaussian or SRM attention then.
            Freeze the learned ratios with tools/export_split_ratios.py.
        num_heads (int), attn_drop (float), proj_drop (float): PAT_sf's attention.
        channel_attention (str): PAT_ch's attention: 'gaussian' (the paper's), 'se', 'srm',
            'eca'.
        with_pat_sp (bool): PAT_sp at the end of every MLP (the paper's parameter
            counts need it; the authors' released configs switch it off for most variants).
        with_out_norm (bool): a norm on each output (detection); classification
            heads in the paper read the last stage without one.
        deploy (bool): build the fused inference graph (what :meth:`switch_to_deploy`
            turns a trained model into), so that a fused checkpoint loads. It runs
            channels_last, stays in eval mode, and its parameters are frozen: heads can
            be trained on top of it, but gradients cannot flow through it.
        norm_cfg (dict): norm for every BN in the network. act_cfg (dict | None):
            activation; None takes the arch's (GELU for T0/T1, ReLU otherwise).
        pretrained (str | None): a checkpoint path, the deprecated spelling of
            ``init_cfg=dict(type='Pretrained', checkpoint=...)`` that mmseg's
            ``EncoderDecoder`` hands on from ``model.pretrained``; not with init_cfg.
        init_cfg (dict | list | None): None gives truncated-normal init;
            ``dict(type='Pretrained', checkpoint=..., prefix=...)`` loads weights and
            fails with a clear error when the keys or shapes do not fit.
    """

    arch_zoo: Dict[str, dict] = {
        't0': dict(embed_dims=32, depths=(1, 2, 8, 2), act_cfg=dict(type='GELU')),
        't1': dict(embed_dims=48, depths=(1, 2, 8, 2), act_cfg=dict(type='GELU')),
        't2': dict(embed_dims=64, depths=(2, 2, 6, 4), act_cfg=dict(type='ReLU')),
        's': dict(embed_dims=96, depths=(2, 2, 9, 4), act_cfg=dict(type='ReLU')),
        'm': dict(embed_dims=128, depths=(2, 3, 16, 4), act_cfg=dict(type='ReLU')),
        'l': dict(embed_dims=160, depths=(2, 3, 20, 4), act_cfg=dict(type='ReLU')),
    }
    num_stages = 4
    min_input_size = 32  # total stride: every stage must keep at least one position

    def __init__(self,
                 arch: Union[str, dict] = 's',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.0,
                 mlp_ratio: float = 2.0,
                 partial_ratio: Union[float, Sequence] = 0.25,
                 dpconv: Optional[dict] = None,
                 num_heads: int = 4,
                 attn_drop: float = 0.1,
                 proj_drop: float = 0.1,
                 channel_attention: str = 'gaussian',
                 with_pat_sp: bool = True,
                 with_out_norm: bool = True,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 act_cfg: Optional[dict] = None,
                 deploy: bool = False,
                 init_cfg: Optional[Union[dict, list]] = None,
                 pretrained: Optional[str] = None):
        super().__init__(init_cfg=self.parse_init_cfg(init_cfg, pretrained))
        self.arch = self.parse_arch(arch)
        embed_dims, depths = self.arch['embed_dims'], self.arch['depths']
        act_cfg = copy.deepcopy(act_cfg if act_cfg is not None else self.arch['act_cfg'])

        self.out_indices = self.parse_out_indices(out_indices)
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages must be in [-1, {self.num_stages}], got {frozen_stages}')
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f'drop_path_rate must be in [0, 1), got {drop_path_rate}')
        self.in_channels = in_channels
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.channels = [embed_dims * 2 ** i for i in range(self.num_stages)]
        ratios = self.parse_partial_ratio(partial_ratio, depths)
        dpconv = self.parse_dpconv(dpconv)
        self.dpconv = dpconv is not None
        self.norm_cfg = norm_cfg
        if deploy:
            self.check_deployable()

        self.patch_embed = self._make_stem(in_channels, embed_dims, deploy)
        drop_path_rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        for i, block_ratios in enumerate(ratios):
            first = sum(depths[:i])
            self.stages.append(self._make_stage(
                i, block_ratios, drop_path_rates[first:first + depths[i]], act_cfg, mlp_ratio,
                with_pat_sp, channel_attention_class(channel_attention), dpconv,
                dict(num_heads=num_heads, attn_drop=attn_drop, proj_drop=proj_drop), deploy))

        self.with_out_norm = with_out_norm
        for i in self.out_indices:
            norm = build_norm(norm_cfg, self.channels[i]) if with_out_norm else nn.Identity()
            self.add_module(f'norm{i}', norm)

        self.deploy = False
        if deploy:
            self._enter_deploy_mode()
        self._freeze_stages()

    # ------------------------------------------------------------------ layers
    def _make_stem(self, in_channels: int, embed_dims: int, deploy: bool) -> nn.Module:
        """Conv 4x4 stride 4 + BN (deployed: the conv with the BN folded in)."""
        if deploy:
            return nn.Conv2d(in_channels, embed_dims, 4, 4)
        return ConvNorm(in_channels, embed_dims, 4, 4, norm_cfg=self.norm_cfg)

    def _make_stage(self, index: int, ratios: Sequence[float], drop_paths: Sequence[float],
                    act_cfg: dict, mlp_ratio: float, with_pat_sp: bool,
                    attention: type, dpconv: Optional[dict], attention_cfg: dict,
                    deploy: bool) -> PartialNetStage:
        """Stage ``index``: a merging layer (conv 2x2 s2 + BN) unless it is the first, then
        one block per split ratio: block v1 (PAT_ch) in stages 1-3, block v2 (PAT_sf) in the
        last stage; with ``dpconv`` the mixers learn their split."""
        dim = self.channels[index]
        last = index == self.num_stages - 1
        blocks = nn.Sequential()
        for ratio, drop_path in zip(ratios, drop_paths, strict=True):
            if dpconv is not None and last:
                mixer = DynamicPATSelfAttention(dim, ratio, **attention_cfg, **dpconv)
            elif dpconv is not None:
                mixer = DynamicPATChannel(dim, ratio, attention, self.norm_cfg, **dpconv)
            elif last:
                mixer = PATSelfAttention(dim, ratio, **attention_cfg, deploy=deploy)
            else:
                mixer = PATChannel(dim, ratio, attention, self.norm_cfg, deploy=deploy,
                                   closing_norm=False)  # folded into the MLP's fc1
            mlp = PartialMLP(dim, mlp_ratio, act_cfg, self.norm_cfg, with_pat_sp, deploy)
            block = PartialNetBlockV2 if last else PartialNetBlock
            blocks.append(block(mixer, mlp, drop_path, deploy))
        downsample = None
        if index > 0:
            downsample = PatchConv(dim // 2, dim, 2) if deploy else \
                ConvNorm(dim // 2, dim, 2, 2, norm_cfg=self.norm_cfg)
        return PartialNetStage(blocks, downsample, self.with_cp)

    # ------------------------------------------------------------------ config
    @staticmethod
    def parse_init_cfg(init_cfg, pretrained: Optional[str]):
        """``init_cfg``, with mmseg's deprecated ``pretrained=`` turned into it; None gives
        truncated-normal init."""
        if pretrained is not None:  # mmseg's EncoderDecoder hands on its model.pretrained
            if not isinstance(pretrained, str):
                raise TypeError(f'pretrained must be a checkpoint path or None, got '
                                f'{type(pretrained).__name__}')
            if init_cfg is not None:
                raise ValueError(f'PartialNet got both pretrained={pretrained!r} and init_cfg: '
                                 'set pretrained=None (model.pretrained in an mmseg config) and '
                                 "load the checkpoint with init_cfg=dict(type='Pretrained', "
                                 'checkpoint=...)')
            warnings.warn('PartialNet: pretrained= is deprecated, as in mmseg\'s own backbones; '
                          "use init_cfg=dict(type='Pretrained', checkpoint=...)", stacklevel=2)
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        if init_cfg is None:
            init_cfg = [dict(type='TruncNormal', layer=['Conv2d', 'Linear'], std=0.02, bias=0.0)]
        return init_cfg

    @classmethod
    def parse_arch(cls, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                raise KeyError(f'unknown PartialNet arch {arch!r}; choose one of '
                               f'{list(cls.arch_zoo)} or pass a dict')
            return copy.deepcopy(cls.arch_zoo[key])
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch).__name__}')
        required = {'embed_dims', 'depths', 'act_cfg'}
        missing = required - set(arch)
        if missing:
            raise KeyError(f'custom PartialNet arch dict misses {sorted(missing)}; it needs '
                           f'{sorted(required)}')
        depths = tuple(arch['depths'])
        if len(depths) != cls.num_stages or any(int(d) < 1 for d in depths):
            raise ValueError(f'arch depths must be {cls.num_stages} positive ints, got {depths}')
        if int(arch['embed_dims']) < 1:
            raise ValueError(f'arch embed_dims must be positive, got {arch["embed_dims"]}')
        return dict(embed_dims=int(arch['embed_dims']), depths=depths,
                    act_cfg=copy.deepcopy(arch['act_cfg']))

    @classmethod
    def parse_partial_ratio(cls, ratio, depths: Sequence[int]) -> List[List[float]]:
        """A float, 4 per-stage floats or 4 per-block lists -> one float per block."""
        def number(r, where):
            if isinstance(r, bool) or not isinstance(r, (int, float)):
                raise TypeError(f'partial_ratio{where} must be a number, got {r!r}')
            return float(r)

        if not isinstance(ratio, (list, tuple)):
            return [[number(ratio, '')] * d for d in depths]
        if len(ratio) != cls.num_stages:
            raise ValueError(f'partial_ratio needs one entry per stage ({cls.num_stages}), got '
                             f'{len(ratio)}: {ratio!r}')
        result = []
        for i, (r, d) in enumerate(zip(ratio, depths, strict=True)):
            if isinstance(r, (list, tuple)):
                if len(r) != d:
                    raise ValueError(f'partial_ratio[{i}] has {len(r)} entries but stage {i} has '
                                     f'{d} blocks')
                result.append([number(x, f'[{i}][{j}]') for j, x in enumerate(r)])
            else:
                result.append([number(r, f'[{i}]')] * d)
        return result

    @staticmethod
    def parse_dpconv(dpconv: Optional[dict]) -> Optional[dict]:
        if dpconv is None:
            return None
        if not isinstance(dpconv, dict):
            raise TypeError(f'dpconv must be None or a dict, got {dpconv!r}')
        unknown = set(dpconv) - {'init_scale'}
        if unknown:
            raise KeyError(f'unknown dpconv settings {sorted(unknown)}; accepted: init_scale')
        return dict(dpconv)

    def split_ratios(self) -> List[List[float]]:
        """The conv share of every PAT_ch / PAT_sf block (learned ones for DPConv)."""
        result = []
        for stage in self.stages:
            row = []
            for block in stage.blocks:
                mixer = block.token_mixer
                if isinstance(mixer, DynamicPATConv):
                    row.append(mixer.gates.ratio())
                else:
                    row.append(mixer.conv_channels / mixer.channels)
            result.append(row)
        return result

    @classmethod
    def output_channels(cls, arch: Union[str, dict] = 's',
                        out_indices: Sequence[int] = (0, 1, 2, 3)) -> List[int]:
        """The channels of the feature maps ``forward`` returns for ``arch`` and
        ``out_indices``, without building the network (what a neck's in_channels must be)."""
        embed_dims = cls.parse_arch(arch)['embed_dims']
        return [embed_dims * 2 ** i for i in cls.parse_out_indices(out_indices)]

    @classmethod
    def parse_out_indices(cls, out_indices) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = (out_indices,)
        result = []
        for i in out_indices:
            if not -cls.num_stages <= i < cls.num_stages:
                raise IndexError(f'out_indices entry {i} is out of range for {cls.num_stages} stages')
            result.append(i % cls.num_stages)
        if not result:
            raise ValueError('out_indices is empty')
        return tuple(sorted(set(result)))

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.forward_stages(x, self.out_indices))

    def forward_stages(self, x: torch.Tensor, indices: Sequence[int]) -> List[torch.Tensor]:
        """The outputs of the stages in ``indices`` (through their output norms, where the
        backbone has them), in the input's memory layout; the stages after the last index
        do not run."""
        check_input_channels(x, self.in_channels, 'PartialNet')
        if min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(f'PartialNet needs H and W >= {self.min_input_size} (total stride '
                             f'32), got {tuple(x.shape[-2:])}')
        layout = memory_format_of(x)  # the outputs go back in the caller's layout
        if self.deploy:
            self._refuse_gradients(x)
            # every conv and GEMM of the deployed graph is fastest channels_last (oneDNN on
            # CPU, PointwiseConv's GEMMs on CUDA), and PAT_sf's tokens are its pixels
            x = in_layout(x, torch.channels_last)
        x = self.patch_embed(x)
        outs = []
        for i, stage in enumerate(self.stages[:max(indices) + 1]):
            x = stage(x)
            if i in indices:
                norm = getattr(self, f'norm{i}', None)
                outs.append(in_layout(norm(x) if norm is not None else x, layout))
        return outs

    def _refuse_gradients(self, x: torch.Tensor) -> None:
        if torch.is_grad_enabled() and (
                x.requires_grad or any(p.requires_grad for p in self.parameters())):
            raise RuntimeError(
                'PartialNet(deploy=True) is an inference graph (BNs folded away, in-place '
                'ops): gradients cannot flow through it. Keep its parameters frozen (as '
                'deploy=True and switch_to_deploy() leave them) and its input free of '
                'requires_grad to train heads on top of it, or train the unfused model '
                '(deploy=False) and fuse it afterwards')

    # ------------------------------------------------------------------ training
    def _freeze_stages(self) -> None:
        modules = []
        if self.frozen_stages >= 0:
            modules.append(self.patch_embed)
        for i in range(self.frozen_stages):
            modules.append(self.stages[i])
            if i in self.out_indices:
                modules.append(getattr(self, f'norm{i}'))
        for m in modules:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode and not self.deploy)  # a deployed backbone stays in eval mode
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # ------------------------------------------------------------------ weights
    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            load_backbone_checkpoint(self, cfg.get('checkpoint'), cfg.get('prefix'))
            self._is_init = True
            return
        super().init_weights()

    def check_deployable(self) -> None:
        """Raise if this configuration has no fused form."""
        if self.dpconv:
            raise ValueError('PartialNet(dpconv=...) learns its split ratios and has no fused '
                             'form: export them with tools/export_split_ratios.py and deploy '
                             'the plain PartialNet built from them')
        norm = self.norm_cfg.get('type') if isinstance(self.norm_cfg, dict) else None
        if norm not in FOLDABLE_NORMS:
            raise ValueError(f'the fused PartialNet folds every BN into the conv beside it; '
                             f'norm_cfg type {norm!r} cannot be folded (use one of '
                             f'{FOLDABLE_NORMS})')

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Turn this trained model into ``PartialNet(deploy=True)`` with the fused weights:
        every BN folded into the conv next to it, PAT_sp's BN + 1x1 conv into the MLP's
        second 1x1 conv. Eval-mode outputs are unchanged; the result is for inference."""
        if self.deploy:
            return
        self.check_deployable()
        self.patch_embed = self.patch_embed.fuse()
        for i, stage in enumerate(self.stages):
            self.stages[i] = stage.fuse()
        self._enter_deploy_mode()

    def _enter_deploy_mode(self) -> None:
        self.to(memory_format=torch.channels_last)  # the 4-d weights, as the maps run
        self.requires_grad_(False)
        self.deploy = True
        self.eval()

    def output_norm_keys(self) -> Set[str]:
        """State-dict keys of the output norms, which a classifier checkpoint lacks."""
        names = {f'norm{i}' for i in range(self.num_stages)}
        return {k for k in self.state_dict() if k.split('.', 1)[0] in names}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        check_checkpoint_form(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
