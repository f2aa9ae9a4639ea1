# Mask R-CNN 1x, PartialNet-T1 backbone (not in the paper: our small-budget default (ImageNet drop path)).
_base_ = './_base_/mask_rcnn_partialnet_1x.py'

# The ImageNet-pretrained backbone: the one setting to change. Make it with
#   .venv/bin/python tools/extract_backbone.py CLS.pth checkpoints/partialnet_t1_in1k_backbone.pth
# or override it: --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/partialnet_t1_in1k_backbone.pth'

model = dict(
    backbone=dict(
        arch='t1',
        drop_path_rate=0.02,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[48, 96, 192, 384]))

optim_wrapper = dict(optimizer=dict(lr=0.0002))
