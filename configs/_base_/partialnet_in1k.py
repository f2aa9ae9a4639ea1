# PartialNet on ImageNet-1k with mmpretrain: the paper's appendix Tab. 8 recipe.
# Variant files set: arch, head channels/activation, batch size, lr, weight decay, drop path,
# RandAugment magnitude, mixup alpha, gradient clipping.
_base_ = 'mmpretrain::_base_/default_runtime.py'
custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)

data_root = 'data/imagenet'
train_scales = (128, 160, 192, 224, 256, 288)  # multi-scale training, drawn per batch
bgr_mean = [103.53, 116.28, 123.675]

model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        type='MultiScaleClsDataPreprocessor', scales=train_scales, num_classes=1000,
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    backbone=dict(type='PartialNet', out_indices=(3,), with_out_norm=False),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='PartialNetClsHead', num_classes=1000, mid_channels=1280,
              loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    # mixup / cutmix, one of them per batch; variants set the mixup alpha
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.1), dict(type='CutMix', alpha=1.0)]))

# Crop at the largest training scale; the data preprocessor resizes each batch to a drawn
# scale. No random erasing, no repeated augmentation, no EMA (table 8).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=max(train_scales), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
# test at 224 with crop ratio 0.9: short edge to floor(224 / 0.9) = 248, center crop 224
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=248, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=512, num_workers=8, persistent_workers=True, pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='ImageNet', data_root=data_root, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=256, num_workers=8, persistent_workers=True, pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ImageNet', data_root=data_root, split='val', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator

# AdamW (0.9, 0.999), mixed precision. Biases and norms are not decayed (timm's rule,
# which the authors' training code follows).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=0.004, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))  # variants set clip_grad
# 300 epochs: 20 linear warm-up epochs, then cosine (start factor and floor: mmpretrain's
# usual values, table 8 does not give them)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=280, eta_min=1e-5, by_epoch=True, begin=20, end=300),
]
# Preemption, kills and NaN (docs/training.md): SIGTERM/SIGUSR1 saves and exits 75, a checkpoint
# every 100 iterations within an epoch (an epoch is 313 at 8x512, 626 at 8x256), atomic
# checkpoints, --resume continues within the epoch, a NaN/inf loss stops the run
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=300, val_interval=1)
default_hooks = dict(checkpoint=dict(type='ResumableCheckpointHook', iter_interval=100),
                     invalid_loss=dict(type='InvalidLossHook'))
val_cfg = dict()
test_cfg = dict()
# lr values are for the total batch of 8 GPUs (variants set base_batch_size)
auto_scale_lr = dict(base_batch_size=4096)
