# Semantic FPN with a PartialNet-T0 backbone on the generated segmentation set, made by
#   .venv/bin/python -m partialnet_mm.datasets.synthetic_seg data/synthetic_seg
# Trains from scratch in a few minutes on 2 CPU cores and evaluates with mmseg's IoUMetric (mIoU
# over background, circle, square, triangle). mmseg's Semantic FPN is kept; the neck and head are
# narrowed.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py', 'mmseg::_base_/default_runtime.py',
]
custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)

data_root = 'data/synthetic_seg/'
crop_size = (128, 128)
num_classes = 4
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(_delete_=True, type='PartialNet', arch='t0', out_indices=(0, 1, 2, 3),
                  norm_cfg=norm_cfg, init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    decode_head=dict(in_channels=[64, 64, 64, 64], channels=64, num_classes=num_classes,
                     norm_cfg=norm_cfg, dropout_ratio=0.0))

load_labels = dict(type='LoadCheckedSegAnnotations', num_classes=num_classes, ignore_index=255)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    load_labels,
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    load_labels,
    dict(type='PackSegInputs'),
]
dataset = dict(type='SyntheticShapesSegDataset', data_root=data_root)
train_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(**dataset, data_prefix=dict(img_path='images/train',
                                             seg_map_path='annotations/train'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**dataset, data_prefix=dict(img_path='images/val',
                                             seg_map_path='annotations/val'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

max_iters = 800
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=0.9, begin=50, end=max_iters, eta_min=0.0, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='ResumableCheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1),
    invalid_loss=dict(type='InvalidLossHook'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
