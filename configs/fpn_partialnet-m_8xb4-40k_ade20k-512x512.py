# Semantic FPN 40k on ADE20K 512x512, PartialNet-M backbone: PoolFormer's recipe in mmseg
# (see _base_/fpn_partialnet_40k_ade20k.py); drop path 0.2 as in the detection config. No paper
# figures to match (the paper reports no semantic segmentation).
_base_ = './_base_/fpn_partialnet_40k_ade20k.py'

# The ImageNet-pretrained backbone, the same file as configs/mask_rcnn_partialnet_m_1x.py:
#   .venv/bin/python tools/extract_backbone.py CLS.pth checkpoints/partialnet_m_in1k_backbone.pth
# or override it: --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/partialnet_m_in1k_backbone.pth'

model = dict(
    backbone=dict(
        arch='m',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
