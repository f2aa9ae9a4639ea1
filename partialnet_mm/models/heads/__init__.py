"""Pure-torch heads (``cls_head``, the mmpretrain head, is imported on registration)."""
from .partialnet_head import PartialNetHead, PartialNetPreLogits

__all__ = ['PartialNetHead', 'PartialNetPreLogits']
