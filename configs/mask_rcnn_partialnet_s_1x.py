# Mask R-CNN 1x, PartialNet-S backbone (the paper: lr 2e-4, stochastic depth 0.15).
_base_ = './_base_/mask_rcnn_partialnet_1x.py'

# The ImageNet-pretrained backbone: the one setting to change. Make it with
#   .venv/bin/python tools/extract_backbone.py CLS.pth checkpoints/partialnet_s_in1k_backbone.pth
# or override it: --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/partialnet_s_in1k_backbone.pth'

model = dict(
    backbone=dict(
        arch='s',
        drop_path_rate=0.15,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))

optim_wrapper = dict(optimizer=dict(lr=0.0002))
