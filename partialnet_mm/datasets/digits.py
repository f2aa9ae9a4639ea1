"""scikit-learn's handwritten digits as an mmpretrain dataset: a small real image set that
ships inside a PyPI package (needs mmpretrain, scikit-learn, OpenCV)."""
from typing import List

import numpy as np
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS


@DATASETS.register_module()
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
