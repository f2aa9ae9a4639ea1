# UperNet with a PartialNet backbone on ADE20K 512x512, 160k iterations: mmseg's ConvNeXt
# recipe (configs/convnext/convnext-*_upernet_8xb2-amp-160k_ade20k-512x512.py): UPerHead plus
# the FCN auxiliary head on stage 3, AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05,
# linear warm-up over 1500 iterations then poly (power 1.0) to 160k, 2 images per GPU x 8 GPUs
# = 16, mixed precision, sliding-window test (512 crops, stride 341). One departure: ConvNeXt's
# layer-wise lr decay (LearningRateDecayOptimizerConstructor) reads ConvNeXt's module names, so
# it is left out; like that constructor, no weight decay on norms and biases.
# The PartialNet paper reports no semantic segmentation: there are no paper figures to match.
# Variant files set the arch, the drop path, the heads' input channels and the checkpoint.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py', './ade20k_partialnet.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)

crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,  # the base's R50 checkpoint; PartialNet loads through init_cfg
    backbone=dict(
        _delete_=True,
        type='PartialNet',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_eval=False,
        norm_cfg=norm_cfg),
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    loss_scale='dynamic')
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, begin=1500, end=160000, eta_min=0.0, by_epoch=False),
]
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Preemption, kills and NaN (docs/training.md): SIGTERM/SIGUSR1 saves and exits 75, atomic
# checkpoints, a NaN/inf loss stops the run; mmengine's IterBasedTrainLoop resumes by iteration
default_hooks = dict(checkpoint=dict(type='ResumableCheckpointHook'),
                     invalid_loss=dict(type='InvalidLossHook'))
