# Semantic FPN with a PartialNet backbone on ADE20K 512x512, 40k iterations: PoolFormer's
# recipe in mmseg (configs/poolformer/fpn_poolformer_*_8xb4-40k_ade20k-512x512.py): mmseg's
# Semantic FPN (FPN neck, FPNHead), AdamW lr 2e-4 and weight decay 1e-4, poly schedule
# (power 0.9) over 40k iterations, 4 images per GPU x 8 GPUs = 32, mixed precision.
# The PartialNet paper reports no semantic segmentation: there are no paper figures to match.
# Variant files set the arch, the drop path, the neck's input channels and the checkpoint.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py', './ade20k_partialnet.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_40k.py',
]
custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)

crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    # the base names an R50 checkpoint here, which EncoderDecoder would hand to the backbone:
    # PartialNet loads its ImageNet checkpoint through init_cfg instead
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='PartialNet',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_eval=False,
        norm_cfg=norm_cfg),
    decode_head=dict(num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', power=0.9, begin=0, end=40000, eta_min=0.0, by_epoch=False),
]
train_dataloader = dict(batch_size=4)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
# lr is for 32 images per iteration; `--auto-scale-lr` rescales for other totals
auto_scale_lr = dict(enable=False, base_batch_size=32)

# Preemption, kills and NaN (docs/training.md): SIGTERM/SIGUSR1 saves and exits 75, atomic
# checkpoints, a NaN/inf loss stops the run; mmengine's IterBasedTrainLoop resumes by iteration
default_hooks = dict(checkpoint=dict(type='ResumableCheckpointHook'),
                     invalid_loss=dict(type='InvalidLossHook'))
