# ECA-ResNet-50 on ImageNet-1k with mmpretrain: mmpretrain's ResNet-50 recipe (8 GPUs x 32,
# SGD 0.1, 100 epochs, steps at 30/60/90), with mmdet's ResNet (which takes plugins) as the
# backbone and ECA after the last BN of every bottleneck, kernel sizes 3 / 5 / 5 / 7.
#
# Targets (ECA-Net paper): 77.48% top-1, 3.86 GFLOPs, 80 parameters more than ResNet-50 (the
# paper lists 24.37M; mmpretrain counts ResNet-50 with its classifier as 25.56M, so 25.56M + 80).
_base_ = [
    'mmpretrain::_base_/models/resnet50.py',
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['partialnet_mm', 'mmdet.models'], allow_failed_imports=False)

eca_kernels = (3, 5, 5, 7)
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmdet.ResNet',
        depth=50,
        num_stages=4,
        out_indices=(3,),
        style='pytorch',
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        plugins=[
            dict(cfg=dict(type='ECA', kernel_size=k), position='after_conv3',
                 stages=tuple(i == s for i in range(4)))
            for s, k in enumerate(eca_kernels)
        ]))

# Preemption, kills and NaN (docs/training.md): SIGTERM/SIGUSR1 saves and exits 75, a checkpoint
# every 500 iterations within an epoch (an epoch is 5005), atomic checkpoints, --resume continues
# within the epoch, a NaN/inf loss stops the run
train_cfg = dict(_delete_=True, type='ResumableEpochBasedTrainLoop', max_epochs=100,
                 val_interval=1)
default_hooks = dict(checkpoint=dict(type='ResumableCheckpointHook', iter_interval=500),
                     invalid_loss=dict(type='InvalidLossHook'))
