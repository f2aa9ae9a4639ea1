"""Data: the generated COCO set, the config data checks (pure Python), and the digits
dataset for mmpretrain (``digits``, imported on registration)."""
from .preflight import DataConfigError, check_coco_annotation, check_data

__all__ = ['DataConfigError', 'check_coco_annotation', 'check_data', 'make_synthetic_coco']


def __getattr__(name):
    # imported on first use, so that `python -m partialnet_mm.datasets.synthetic_coco` runs a
    # module nothing imported before (runpy warns otherwise)
    if name == 'make_synthetic_coco':
        from .synthetic_coco import make_synthetic_coco
        return make_synthetic_coco
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
