from .partialnet import PartialNet, checkpoint_form, load_backbone_checkpoint

__all__ = ['PartialNet', 'checkpoint_form', 'load_backbone_checkpoint']
