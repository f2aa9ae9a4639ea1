# PartialNet-T0 on ImageNet-1k, 8 GPUs x 512 = 4096 images per iteration (paper table 8).
_base_ = './_base_/partialnet_in1k.py'

model = dict(
    backbone=dict(arch='t0', drop_path_rate=0.0),
    head=dict(in_channels=256, act_cfg=dict(type='GELU')),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.05), dict(type='CutMix', alpha=1.0)]))

# no RandAugment for T0
train_dataloader = dict(batch_size=512)

optim_wrapper = dict(optimizer=dict(lr=0.004, weight_decay=0.005), clip_grad=None)
auto_scale_lr = dict(base_batch_size=4096)
