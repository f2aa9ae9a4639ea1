"""Data: the generated COCO set, the config data checks (pure Python), and the digits
dataset for mmpretrain (``digits``, imported on registration)."""
from .preflight import DataConfigError, check_coco_annotation, check_data
from .synthetic_coco import make_synthetic_coco

__all__ = ['DataConfigError', 'check_coco_annotation', 'check_data', 'make_synthetic_coco']
