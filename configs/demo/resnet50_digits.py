# mmpretrain's ResNet-50 on scikit-learn's digits with the recipe of partialnet-t0_digits.py:
# the third model of the INT8 table (tools/quantize.py), beside PartialNet-T0 and FasterNet-T0.
_base_ = './partialnet-t0_digits.py'

model = dict(
    backbone=dict(_delete_=True, type='ResNet', depth=50, out_indices=(3, )),
    head=dict(in_channels=2048))
