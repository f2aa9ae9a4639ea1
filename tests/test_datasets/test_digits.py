"""The digits dataset (scikit-learn's real handwritten digits)."""
import pytest


def test_digits_dataset():
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import DATASETS

    import partialnet_mm  # noqa: F401
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        train = DATASETS.build(dict(type='DigitsDataset', split='train', size=32))
        test = DATASETS.build(dict(type='DigitsDataset', split='test', size=32))
    assert (len(train), len(test)) == (1437, 360)  # sklearn's 1797 real digits
    info = train.get_data_info(0)
    assert info['img'].shape == (32, 32, 3) and info['img'].dtype.name == 'uint8'
    assert sorted({test.get_data_info(i)['gt_label'] for i in range(len(test))}) == list(range(10))
    with DefaultScope.overwrite_default_scope('mmpretrain'), \
            pytest.raises(ValueError, match='split'):
        DATASETS.build(dict(type='DigitsDataset', split='val'))
