# RTMDet-s with a PartialNet-T1 backbone: mmdet's own RTMDet-s recipe
# (rtmdet_s_8xb32-300e_coco.py),
# inherited whole (300 epochs, CachedMosaic/MixUp then the stage-2 pipeline for the last 20,
# EMA, AdamW with flat-then-cosine lr, SyncBN); only the backbone and the neck's input
# channels change. Neck and head: RTMDet-s's (128 channels).
_base_ = 'mmdet::rtmdet/rtmdet_s_8xb32-300e_coco.py'
custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)

# The ImageNet-pretrained backbone, the same file as the other downstream configs. Make it with
#   .venv/bin/python tools/extract_backbone.py CLS.pth checkpoints/partialnet_t1_in1k_backbone.pth
# or override it: --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/partialnet_t1_in1k_backbone.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='PartialNet',
        arch='t1',
        out_indices=(1, 2, 3),  # strides 8, 16, 32, as CSPNeXt's
        drop_path_rate=0.02,
        norm_cfg=dict(type='SyncBN', requires_grad=True),  # as RTMDet's CSPNeXt
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # PartialNet-T1's stages 1-3 (docs/backbone.md's channel table)
    neck=dict(in_channels=[96, 192, 384]))

# Preemption, kills and NaN (docs/training.md): SIGTERM/SIGUSR1 saves and exits 75, a checkpoint
# every 200 iterations within an epoch (an epoch is 462; mmdet's
# RTMDet saves every 10 epochs), atomic checkpoints, --resume continues within the
# epoch, a NaN/inf loss stops the run
train_cfg = dict(type='ResumableEpochBasedTrainLoop')
default_hooks = dict(checkpoint=dict(type='ResumableCheckpointHook', iter_interval=200),
                     invalid_loss=dict(type='InvalidLossHook'))
