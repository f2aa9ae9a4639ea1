# Mask R-CNN 1x with a PartialNet backbone: the paper's COCO recipe (tables 2 and 7).
# Built on mmdet's own Mask R-CNN R50-FPN 1x config: 1333x800, 12 epochs, linear warm-up
# over 500 iterations, lr x0.1 at epochs 8 and 11, 2 images per GPU (x8 GPUs = 16),
# CocoMetric for bbox and segm. Variant files set the arch, lr, drop path and neck.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='PartialNet',
        out_indices=(0, 1, 2, 3),
        # The authors train every BN of the backbone (no frozen stage, no norm_eval);
        # set frozen_stages=1, norm_eval=True for the ResNet-style alternative.
        frozen_stages=-1,
        norm_eval=False,
        norm_cfg=dict(type='BN', requires_grad=True),
        with_cp=False))

# AdamW, weight decay 1e-4 (the paper). No decay on normalisation layers: decaying BN/LN
# scales and shifts only fights the normalisation and is the usual MM setting for AdamW
# backbones (mmdet's Swin and ConvNeXt configs do the same); the paper does not say.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0.0))

train_dataloader = dict(batch_size=2)
# lr values are for 16 images per iteration; `--auto-scale-lr` rescales for other totals.
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Preemption, kills and NaN (docs/training.md): SIGTERM/SIGUSR1 saves and exits 75, a checkpoint
# every 1000 iterations within an epoch (a COCO epoch is 7330), atomic checkpoints, --resume continues within the
# epoch, a NaN/inf loss stops the run
train_cfg = dict(type='ResumableEpochBasedTrainLoop')
default_hooks = dict(checkpoint=dict(type='ResumableCheckpointHook', iter_interval=1000),
                     invalid_loss=dict(type='InvalidLossHook'))
