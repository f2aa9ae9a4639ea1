"""Register PartialNet, the paper's classification head, and DPConv training
(classifier with the DPConv losses, ratio-logging hook, a small real dataset) in MMPretrain."""
import random
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.datasets import BaseDataset
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.models.heads import ClsHead
from mmpretrain.models.utils import ClsDataPreprocessor
from mmpretrain.registry import DATASETS, HOOKS, MODELS

from ..dpconv_hook import DPConvRatioHook
from ..models import ECA, PartialNet, PartialNetPreLogits, collect_gates, dpconv_losses
from ..models.dpconv import check_budget


class PartialNetClsHead(ClsHead):
    """The paper's head after global pooling: linear (= 1x1 conv) to ``mid_channels``
    without bias, activation, linear classifier."""

    def __init__(self, num_classes: int, in_channels: int, mid_channels: int = 1280,
                 act_cfg: dict = dict(type='ReLU'),
                 init_cfg: dict = dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.0),
                 **kwargs):
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes < 1:
            raise ValueError(f'num_classes={num_classes} must be a positive integer')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.pre_logits_layers = PartialNetPreLogits(in_channels, mid_channels, act_cfg)
        self.fc = nn.Linear(mid_channels, num_classes)

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        return self.pre_logits_layers(feats[-1])

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        return self.fc(self.pre_logits(feats))


class MultiScaleClsDataPreprocessor(ClsDataPreprocessor):
    """ClsDataPreprocessor that, in training, resizes each batch to a resolution drawn
    from ``scales`` (the paper's multi-scale training: {128, ..., 288}).

    The pipeline crops at the largest scale; every batch is then resized (bilinear,
    antialiased) to one drawn size, so the resolution varies batch by batch. The draw
    uses Python's ``random``, which mmengine seeds. Evaluation is left untouched.
    """

    def __init__(self, scales: Sequence[int] = (128, 160, 192, 224, 256, 288), **kwargs):
        super().__init__(**kwargs)
        if not scales or any(int(s) < 1 for s in scales):
            raise ValueError(f'scales must be positive ints, got {scales}')
        self.scales = tuple(int(s) for s in scales)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        if training:
            size = random.choice(self.scales)
            inputs = data['inputs']
            if tuple(inputs.shape[-2:]) != (size, size):
                data['inputs'] = F.interpolate(inputs, size=(size, size), mode='bilinear',
                                               align_corners=False, antialias=True)
        return data


class DPConvImageClassifier(ImageClassifier):
    """ImageClassifier that adds DPConv's two terms to the loss dict it returns:
    ``loss_dpconv_complexity`` (the task loss scaled by ``(budget_cost / cost)**alpha``
    while the cost is over budget, as an additive entry) and ``loss_dpconv_order``;
    ``dpconv_cost_ratio`` (cost / budget) is logged alongside.

    Args:
        dpconv_loss (dict): ``budget`` b (the budget is the cost of split ratio 1/b),
            ``alpha`` (negative; FACTS: -0.01) and ``order_weight``.
    """

    def __init__(self, *args, dpconv_loss: dict = dict(budget=4.0, alpha=-0.01, order_weight=1.0),
                 **kwargs):
        super().__init__(*args, **kwargs)
        unknown = set(dpconv_loss) - {'budget', 'alpha', 'order_weight'}
        if unknown:
            raise KeyError(f'unknown dpconv_loss settings {sorted(unknown)}; accepted: budget, '
                           f'alpha, order_weight')
        gates = collect_gates(self.backbone)
        if not gates:
            raise ValueError('DPConvImageClassifier needs a backbone with DPConv gates, e.g. '
                             'PartialNet(dpconv=dict())')
        self.dpconv_loss = dict(dict(budget=4.0, alpha=-0.01, order_weight=1.0), **dpconv_loss)
        check_budget(self.dpconv_loss['budget'], [g.channels for _, g in gates])
        if not self.dpconv_loss['alpha'] < 0:
            raise ValueError(f'dpconv_loss alpha must be negative (it penalises cost above '
                             f'budget), got {self.dpconv_loss["alpha"]}')

    def loss(self, inputs: torch.Tensor, data_samples) -> dict:
        losses = super().loss(inputs, data_samples)
        task = sum(v for k, v in losses.items() if 'loss' in k)
        losses.update(dpconv_losses(self.backbone, task, **self.dpconv_loss))
        return losses


class DigitsDataset(BaseDataset):
    """scikit-learn's handwritten digits (1797 real 8x8 scans, 10 classes), upsampled to
    ``size`` x ``size`` RGB: a small real image set that ships inside a PyPI package.

    The split is fixed: every ``test_every``-th image is in 'test', the rest in 'train'.
    """

    METAINFO = dict(classes=tuple(str(i) for i in range(10)))

    def __init__(self, split: str = 'train', size: int = 64, test_every: int = 5, **kwargs):
        if split not in ('train', 'test'):
            raise ValueError(f'DigitsDataset split must be "train" or "test", got {split!r}')
        if size < 8:
            raise ValueError(f'DigitsDataset size must be >= 8, got {size}')
        self.split, self.size, self.test_every = split, int(size), int(test_every)
        kwargs.setdefault('ann_file', '')
        super().__init__(**kwargs)

    def load_data_list(self) -> List[dict]:
        import cv2
        try:
            from sklearn.datasets import load_digits
        except ImportError as err:
            raise ImportError('DigitsDataset needs scikit-learn (pip install scikit-learn)') \
                from err
        digits = load_digits()
        data = []
        for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
            if (i % self.test_every == 0) != (self.split == 'test'):
                continue
            img = np.clip(image / 16.0 * 255.0, 0, 255).astype(np.uint8)
            img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
            data.append(dict(img=np.repeat(img[:, :, None], 3, axis=2), gt_label=int(label)))
        return data


MODELS.register_module(module=PartialNet, force=True)
MODELS.register_module(module=DPConvImageClassifier, force=True)
HOOKS.register_module(module=DPConvRatioHook, force=True)
DATASETS.register_module(module=DigitsDataset, force=True)
MODELS.register_module(module=PartialNetClsHead, force=True)
MODELS.register_module(module=MultiScaleClsDataPreprocessor, force=True)
MODELS.register_module(module=ECA, force=True)  # plugin of mmdet's ResNet used from mmpretrain
