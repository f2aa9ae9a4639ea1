# PartialNet-T0 with DPConv on scikit-learn's handwritten digits (real 8x8 scans shipped in
# the scikit-learn wheel, upsampled to 64x64): learns every block's split ratio on CPU in
# minutes, starting from the largest split (1/2). tools/dpconv_digits.py runs it at several
# budgets and reports the figures; set the budget with --cfg-options model.dpconv_loss.budget=8.
_base_ = 'mmpretrain::_base_/default_runtime.py'
custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)

image_size = 64
model = dict(
    type='DPConvImageClassifier',
    # alpha -0.1: with the authors' ImageNet value (-0.01) the 8-epoch b=8 run ended over
    # budget (cost 1.22x); -0.1 holds the budget here
    dpconv_loss=dict(budget=4, alpha=-0.1, order_weight=1.0),
    data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=10,
                           mean=[127.5] * 3, std=[127.5] * 3),
    backbone=dict(type='PartialNet', arch='t0', out_indices=(3,), with_out_norm=False,
                  partial_ratio=0.5, dpconv=dict(init_scale=1e-8), init_cfg=None),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='PartialNetClsHead', num_classes=10, in_channels=256, mid_channels=256,
              act_cfg=dict(type='GELU'), loss=dict(type='CrossEntropyLoss')))

train_pipeline = [
    dict(type='RandomResizedCrop', scale=image_size, crop_ratio_range=(0.7, 1.0),
         aspect_ratio_range=(0.85, 1.15), backend='cv2'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='DigitsDataset', split='train', size=image_size, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=120, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='DigitsDataset', split='test', size=image_size, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1,))
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'.gates.gate': dict(decay_mult=0.0)}))
max_epochs = 8
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, eta_min=1e-5, by_epoch=True, begin=1,
         end=max_epochs),
]
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=max_epochs)
val_cfg = dict()
test_cfg = dict()

custom_hooks = [dict(type='DPConvRatioHook')]
default_hooks = dict(logger=dict(type='LoggerHook', interval=10),
                     checkpoint=dict(type='ResumableCheckpointHook', interval=max_epochs,
                                     max_keep_ckpts=1),
                     invalid_loss=dict(type='InvalidLossHook'))
randomness = dict(seed=0, deterministic=False)
