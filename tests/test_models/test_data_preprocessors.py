"""The multi-scale data preprocessor (the paper's multi-scale ImageNet training)."""
import random

import torch

from helpers import mm_build


def test_multiscale_training_varies_resolution_per_batch():
    pre = mm_build('mmpretrain', dict(type='MultiScaleClsDataPreprocessor', num_classes=10,
                                      mean=[0., 0., 0.], std=[1., 1., 1.]))
    batch = dict(inputs=[torch.rand(3, 288, 288) * 255 for _ in range(2)], data_samples=None)
    random.seed(0)
    sizes = [pre(batch, training=True)['inputs'].shape[-1] for _ in range(30)]
    assert set(sizes) <= {128, 160, 192, 224, 256, 288}
    assert len(set(sizes)) >= 4  # really varies from batch to batch
    out = pre(batch, training=True)['inputs']
    assert out.shape[0] == 2 and out.shape[-1] == out.shape[-2]
    assert pre(batch, training=False)['inputs'].shape[-2:] == (288, 288)  # eval untouched
