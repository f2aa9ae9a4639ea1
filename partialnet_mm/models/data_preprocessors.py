"""The paper's multi-scale ImageNet training as an mmpretrain data preprocessor (needs
mmpretrain)."""
import random
from typing import Sequence

import torch.nn.functional as F
from mmpretrain.models.utils import ClsDataPreprocessor
from mmpretrain.registry import MODELS


@MODELS.register_module()
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
