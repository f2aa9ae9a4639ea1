# Mask R-CNN 1x with an ECA-ResNet-50 backbone: mmdet's R50 1x recipe (SGD 0.02, 12 epochs,
# steps at 8 and 11, 2 images x 8 GPUs) with ECA after the last BN of every bottleneck,
# before the addition (ECA-Net, CVPR 2020), using the official per-stage kernel sizes
# 3 / 5 / 5 / 7 (80 extra parameters; the adaptive rule would give 5 / 5 / 5 / 7, 86).
#
# Targets (ECA-Net paper, COCO val2017, Mask R-CNN with ECA-Net50): box AP 39.0, mask AP 35.6
# (ECA-Net101: 41.3 / 37.4); Faster R-CNN box AP 38.0 / 40.3, RetinaNet 37.3 / 39.1.
# The ResNet-50 weights below have no ECA parameters; those start from their initialisation.
# Use an ImageNet ECA-ResNet-50 checkpoint for the paper's setting.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)

eca_kernels = (3, 5, 5, 7)
model = dict(
    backbone=dict(plugins=[
        dict(cfg=dict(type='ECA', kernel_size=k), position='after_conv3',
             stages=tuple(i == s for i in range(4)))
        for s, k in enumerate(eca_kernels)
    ]))

# Preemption, kills and NaN (docs/training.md): SIGTERM/SIGUSR1 saves and exits 75, a checkpoint
# every 1000 iterations within an epoch (a COCO epoch is 7330), atomic checkpoints, --resume continues within the
# epoch, a NaN/inf loss stops the run
train_cfg = dict(type='ResumableEpochBasedTrainLoop')
default_hooks = dict(checkpoint=dict(type='ResumableCheckpointHook', iter_interval=1000),
                     invalid_loss=dict(type='InvalidLossHook'))
