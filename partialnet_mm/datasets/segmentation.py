"""MMSegmentation parts, registered at their definition (imported only when mmseg is
installed): the generated shapes dataset and a label loader whose errors name the file."""
import os.path as osp

import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import DATASETS, TRANSFORMS

from .shapes import SEG_CLASSES, SEG_PALETTE


@DATASETS.register_module()
class SyntheticShapesSegDataset(BaseSegDataset):
    """The set ``.venv/bin/python -m partialnet_mm.datasets.synthetic_seg`` writes (4 classes,
    label 0 is the background and is learned, 255 is ignored)."""
    METAINFO = dict(classes=SEG_CLASSES, palette=SEG_PALETTE)

    def __init__(self, img_suffix='.png', seg_map_suffix='.png', reduce_zero_label=False,
                 **kwargs):
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, **kwargs)


@TRANSFORMS.register_module()
class LoadCheckedSegAnnotations(LoadAnnotations):
    """mmseg's ``LoadAnnotations`` that refuses, naming the file, a label PNG that is missing
    or holds values that are neither a class (``0 .. num_classes - 1`` after
    ``reduce_zero_label``) nor ``ignore_index``: such values would otherwise reach the loss
    and IoUMetric as out-of-range class indices."""

    def __init__(self, num_classes: int, ignore_index: int = 255, **kwargs):
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f'LoadCheckedSegAnnotations: num_classes must be >= 1, got {num_classes}')
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def _load_seg_map(self, results: dict) -> None:
        path = results['seg_map_path']
        if '://' not in str(path) and not osp.isfile(path):
            raise FileNotFoundError(f'label file not found: {path} (the label of image '
                                    f"{results.get('img_path')})")
        super()._load_seg_map(results)
        seg = results['gt_seg_map']
        # the values present: a counting pass over the uint8 map (np.unique sorts it)
        values = (np.flatnonzero(np.bincount(seg.ravel(), minlength=256))
                  if seg.dtype == np.uint8 else np.unique(seg))
        bad = values[(values >= self.num_classes) & (values != self.ignore_index)]
        if bad.size:
            raise ValueError(f'{path}: label values {bad.tolist()} are not among the '
                             f'{self.num_classes} classes (0..{self.num_classes - 1}) nor the '
                             f'ignore index {self.ignore_index}')

    def __repr__(self):
        return (f'{super().__repr__()[:-1]}, num_classes={self.num_classes}, '
                f'ignore_index={self.ignore_index})')
