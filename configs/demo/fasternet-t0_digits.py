# timm's FasterNet-T0 (mmpretrain's TIMMBackbone) on scikit-learn's digits with the recipe of
# partialnet-t0_digits.py: the peer that tools/quantize.py quantizes beside PartialNet-T0.
# timm's classifier is reset; its last 1x1 conv (to 1280 channels) stays in the backbone.
_base_ = './partialnet-t0_digits.py'

model = dict(
    backbone=dict(_delete_=True, type='TIMMBackbone', model_name='fasternet_t0',
                  pretrained=False),
    head=dict(in_channels=1280))
