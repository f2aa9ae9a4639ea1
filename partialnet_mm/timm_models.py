"""PartialNet in timm: ``timm.create_model('partialnet_s')`` after ``import partialnet_mm``.

The models are written the way timm's own are (``@register_model``, ``default_cfgs``,
``build_model_with_cfg``, ``feature_info``, ``forward_features`` / ``forward_head`` /
``forward_intermediates``, ``reset_classifier``), around our :class:`PartialNet` and
:class:`PartialNetHead`: the same modules, the same state-dict keys (``backbone.*``,
``head.*``) and so the same outputs as our mmpretrain classifier for the same weights.
``features_only=True`` gives the four stages. ``timm.utils.reparameterize_model`` fuses the
backbone (its ``switch_to_deploy``), as our tools do.

No weights are published: ``pretrained=True`` is an error unless a file is given, timm's way:
``pretrained_cfg_overlay=dict(file='epoch_300.pth')`` (one of our mmpretrain checkpoints, or
the authors', converted on load by :func:`checkpoint_filter_fn`).
"""
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from .checkpoint import key_problems, read_checkpoint
from .models.backbones import PartialNet
from .models.heads import PartialNetHead
from .toolkit.convert import convert_authors_state_dict

__all__ = ['TimmPartialNet', 'checkpoint_filter_fn', 'VARIANTS']

VARIANTS = tuple(PartialNet.arch_zoo)  # t0 t1 t2 s m l
NO_WEIGHTS = ('no PartialNet weights are published (by the authors or by partialnet_mm); '
              'train one with configs/partialnet-*_in1k.py, then load it with '
              "pretrained=True, pretrained_cfg_overlay=dict(file='epoch_300.pth')")


class TimmPartialNet(nn.Module):
    """The paper's classifier with timm's model interface.

    Args:
        arch (str): ``t0`` ... ``l``.
        num_classes (int): classifier outputs (0: no classifier, pooled pre-logits out).
        in_chans (int): input channels.
        global_pool (str): ``'avg'``, the only pooling of the paper's head.
        drop_rate (float): dropout before the classifier (training only).
        drop_path_rate (float | None): stochastic depth (None: the arch's, as our configs).
        mid_channels (int): the head's pre-logits width. Defaults to 1280.
        **kwargs: more :class:`PartialNet` arguments (``with_pat_sp``, ``deploy``, ...).
    """

    def __init__(self, arch: str = 's', num_classes: int = 1000, in_chans: int = 3,
                 global_pool: str = 'avg', drop_rate: float = 0.0,
                 drop_path_rate: Optional[float] = None, mid_channels: int = 1280, **kwargs):
        super().__init__()
        self._check_pool(global_pool)
        if drop_path_rate is not None:
            kwargs['drop_path_rate'] = drop_path_rate
        self.backbone = PartialNet(arch=arch, in_channels=in_chans, out_indices=(3,),
                                   with_out_norm=False, **kwargs)
        act_cfg = kwargs.get('act_cfg') or self.backbone.arch['act_cfg']
        self.num_classes = num_classes
        self.num_features = self.backbone.channels[-1]
        self.head_hidden_size = mid_channels
        self.head = PartialNetHead(self.num_features, max(num_classes, 1), mid_channels, act_cfg)
        if num_classes == 0:
            self.head.fc = nn.Identity()
        self.head_drop = nn.Dropout(drop_rate)
        self.feature_info = [dict(num_chs=c, reduction=4 * 2 ** i, module=f'backbone.stages.{i}')
                             for i, c in enumerate(self.backbone.channels)]

    @staticmethod
    def _check_pool(global_pool: Optional[str]) -> None:
        if global_pool not in (None, 'avg'):
            raise ValueError(f"PartialNet's head pools by average; global_pool={global_pool!r} "
                             f"is not supported")

    # timm's classifier interface
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self._check_pool(global_pool)
        self.num_classes = num_classes
        device = self.head.pre_logits_layers.fc.weight.device
        self.head.fc = nn.Linear(self.head_hidden_size, num_classes, device=device) \
            if num_classes > 0 else nn.Identity()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.backbone.stages:
            stage.with_cp = enable

    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r'^backbone\.patch_embed',
                    blocks=r'^backbone\.stages\.(\d+)' if coarse else
                    [(r'^backbone\.stages\.(\d+)\.downsample', (0,)),
                     (r'^backbone\.stages\.(\d+)\.blocks\.(\d+)', None)])

    # forward
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_stages(x, (len(self.backbone.stages) - 1,))[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head.pre_logits_layers(x.mean((2, 3)))
        return x if pre_logits else self.head.fc(self.head_drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor,
                              indices: Optional[Union[int, List[int]]] = None,
                              norm: bool = False, stop_early: bool = False,
                              output_fmt: str = 'NCHW', intermediates_only: bool = False
                              ) -> Union[List[torch.Tensor],
                                         Tuple[torch.Tensor, List[torch.Tensor]]]:
        """The stage outputs ``indices`` (timm's convention: an int n is the last n stages),
        and unless ``intermediates_only`` the final features. There is no final norm, so
        ``norm`` changes nothing."""
        if output_fmt != 'NCHW':
            raise ValueError(f"output_fmt {output_fmt!r}: PartialNet's maps are NCHW")
        last = len(self.backbone.stages) - 1
        take, _ = feature_take_indices(last + 1, indices)
        if intermediates_only:
            return self.backbone.forward_stages(x, take)
        run = sorted(set(take) | {last})
        outs = self.backbone.forward_stages(x, run)
        intermediates = [o for i, o in zip(run, outs) if i in take]
        return outs[-1], intermediates

    def load_pretrained(self, path: str) -> None:
        """timm's ``custom_load`` hook for a weights file (``pretrained_cfg_overlay=dict(
        file=...)``): read by our checkpoint reader (mmengine's checkpoints hold more than
        tensors, which timm's ``weights_only`` loader refuses), mapped by
        :func:`checkpoint_filter_fn`, loaded strictly."""
        _, state = read_checkpoint(path)
        state = checkpoint_filter_fn(state, self)
        problems = key_problems(self.state_dict(), state, shapes={
            k: v.shape for k, v in self.state_dict().items()})
        if problems:
            raise KeyError(f'{path} does not fit {self.pretrained_cfg.get("architecture")} '
                           f'with {self.num_classes} classes: {problems}')
        self.load_state_dict(state)

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1,
                                  prune_norm: bool = False, prune_head: bool = True
                                  ) -> List[int]:
        """Drop the stages after the last of ``indices`` (and the head): what
        ``features_only=True`` keeps."""
        take, max_index = feature_take_indices(len(self.backbone.stages), indices)
        self.backbone.stages = self.backbone.stages[:max_index + 1]
        if prune_head:
            self.head = nn.Identity()
            self.num_classes = 0
        return take


def checkpoint_filter_fn(state_dict: Dict[str, Any], model: nn.Module) -> Dict[str, Any]:
    """Our mmpretrain checkpoints (``state_dict`` with ``backbone.*`` and ``head.*``) as they
    are, the authors' (their Lightning ``model.*`` files or plain ``stages.*`` dicts) through
    our converter."""
    state_dict = state_dict.get('state_dict', state_dict)
    if any(k.startswith(('backbone.', 'head.')) for k in state_dict):
        return {k: v for k, v in state_dict.items() if k.startswith(('backbone.', 'head.'))}
    converted, _ = convert_authors_state_dict(state_dict)
    return dict(converted)


def _cfg(**kwargs: Any) -> Dict[str, Any]:
    return dict(url='', num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7),
                crop_pct=0.9, interpolation='bicubic', mean=IMAGENET_DEFAULT_MEAN,
                std=IMAGENET_DEFAULT_STD, first_conv='backbone.patch_embed.conv',
                classifier='head.fc', license='apache-2.0', notes=(NO_WEIGHTS,), custom_load=True,
                **kwargs)


default_cfgs = generate_default_cfgs({f'partialnet_{v}': _cfg() for v in VARIANTS})


def _names_weights(cfg) -> bool:
    """A pretrained cfg (a dict, timm's ``PretrainedCfg``, a tag or None) naming weights."""
    if isinstance(cfg, str) or cfg is None:
        return False
    get = cfg.get if isinstance(cfg, dict) else lambda key: getattr(cfg, key, None)
    return any(get(key) for key in ('file', 'state_dict', 'url', 'hf_hub_id'))


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> TimmPartialNet:
    if pretrained and not (_names_weights(kwargs.get('pretrained_cfg_overlay'))
                           or _names_weights(kwargs.get('pretrained_cfg'))):
        raise RuntimeError(f'{variant}: {NO_WEIGHTS}')
    return build_model_with_cfg(
        TimmPartialNet, variant, pretrained, arch=variant.split('_', 1)[1],
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls='getter', out_indices=(0, 1, 2, 3)), **kwargs)


@register_model
def partialnet_t0(pretrained: bool = False, **kwargs: Any) -> TimmPartialNet:
    return _create('partialnet_t0', pretrained, **kwargs)


@register_model
def partialnet_t1(pretrained: bool = False, **kwargs: Any) -> TimmPartialNet:
    return _create('partialnet_t1', pretrained, **kwargs)


@register_model
def partialnet_t2(pretrained: bool = False, **kwargs: Any) -> TimmPartialNet:
    return _create('partialnet_t2', pretrained, **kwargs)


@register_model
def partialnet_s(pretrained: bool = False, **kwargs: Any) -> TimmPartialNet:
    return _create('partialnet_s', pretrained, **kwargs)


@register_model
def partialnet_m(pretrained: bool = False, **kwargs: Any) -> TimmPartialNet:
    return _create('partialnet_m', pretrained, **kwargs)


@register_model
def partialnet_l(pretrained: bool = False, **kwargs: Any) -> TimmPartialNet:
    return _create('partialnet_l', pretrained, **kwargs)
