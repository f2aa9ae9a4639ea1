# PartialNet-M on ImageNet-1k, 8 GPUs x 256 = 2048 images per iteration (paper table 8).
_base_ = './_base_/partialnet_in1k.py'

model = dict(
    backbone=dict(arch='m', drop_path_rate=0.2),
    head=dict(in_channels=1024, act_cfg=dict(type='ReLU')),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.5), dict(type='CutMix', alpha=1.0)]))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=288, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
         magnitude_level=7, magnitude_std=0.5,
         hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=256, dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(optimizer=dict(lr=0.002, weight_decay=0.05), clip_grad=dict(max_norm=1.0))
auto_scale_lr = dict(base_batch_size=2048)
