# Mask R-CNN 1x, PartialNet-M backbone (the paper: lr 1e-4, stochastic depth 0.2).
_base_ = './_base_/mask_rcnn_partialnet_1x.py'

# The ImageNet-pretrained backbone: the one setting to change. Make it with
#   .venv/bin/python tools/extract_backbone.py CLS.pth checkpoints/partialnet_m_in1k_backbone.pth
# or override it: --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/partialnet_m_in1k_backbone.pth'

model = dict(
    backbone=dict(
        arch='m',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))

optim_wrapper = dict(optimizer=dict(lr=0.0001))
