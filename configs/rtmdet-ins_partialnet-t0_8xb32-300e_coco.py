# RTMDet-Ins-tiny with a PartialNet-T0 backbone: mmdet's own RTMDet-Ins-tiny recipe
# (rtmdet-ins_tiny_8xb32-300e_coco.py),
# inherited whole (300 epochs, CachedMosaic/MixUp then the stage-2 pipeline for the last 20,
# EMA, AdamW with flat-then-cosine lr, SyncBN); only the backbone and the neck's input
# channels change. Instance segmentation: RTMDet-Ins-tiny's neck and mask head (96 channels).
_base_ = 'mmdet::rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py'
custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)

# The ImageNet-pretrained backbone, the same file as the other downstream configs. Make it with
#   .venv/bin/python tools/extract_backbone.py CLS.pth checkpoints/partialnet_t0_in1k_backbone.pth
# or override it: --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/partialnet_t0_in1k_backbone.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='PartialNet',
        arch='t0',
        out_indices=(1, 2, 3),  # strides 8, 16, 32, as CSPNeXt's
        drop_path_rate=0.0,
        norm_cfg=dict(type='SyncBN', requires_grad=True),  # as RTMDet's CSPNeXt
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # PartialNet-T0's stages 1-3 (docs/backbone.md's channel table)
    neck=dict(in_channels=[64, 128, 256]))

# Preemption, kills and NaN (docs/training.md): SIGTERM/SIGUSR1 saves and exits 75, a checkpoint
# every 200 iterations within an epoch (an epoch is 462; mmdet's
# RTMDet saves every 10 epochs), atomic checkpoints, --resume continues within the
# epoch, a NaN/inf loss stops the run
train_cfg = dict(type='ResumableEpochBasedTrainLoop')
default_hooks = dict(checkpoint=dict(type='ResumableCheckpointHook', iter_interval=200),
                     invalid_loss=dict(type='InvalidLossHook'))
