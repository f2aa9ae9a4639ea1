# Plain PartialNet-T0 on scikit-learn's handwritten digits (real 8x8 scans shipped in the
# scikit-learn wheel, upsampled to 64x64): an ImageNet-style classifier that trains on CPU in
# about a minute (8 epochs, the DPConv demo's schedule). docs/deployment.md's round trip uses it:
#   tools/train.py -> tools/reparameterize_model.py -> tools/test.py ... model.backbone.deploy=True
_base_ = './partialnet-t0-dpconv_digits.py'

model = dict(
    _delete_=True,
    type='ImageClassifier',
    data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=10,
                           mean=[127.5] * 3, std=[127.5] * 3),
    backbone=dict(type='PartialNet', arch='t0', out_indices=(3,), with_out_norm=False,
                  init_cfg=None),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='PartialNetClsHead', num_classes=10, in_channels=256, mid_channels=256,
              act_cfg=dict(type='GELU'), loss=dict(type='CrossEntropyLoss')))
optim_wrapper = dict(paramwise_cfg=dict(_delete_=True, norm_decay_mult=0.0,
                                        bias_decay_mult=0.0))
custom_hooks = []  # no DPConv ratios to log
