from .partialnet_classifier import PartialNetClassifier, load_classifier_checkpoint

__all__ = ['PartialNetClassifier', 'load_classifier_checkpoint']
