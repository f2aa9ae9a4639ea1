# Semantic FPN 40k on ADE20K 512x512, PartialNet-S backbone: PoolFormer's recipe in mmseg
# (see _base_/fpn_partialnet_40k_ade20k.py); drop path 0.15 as in the detection config. No paper
# figures to match (the paper reports no semantic segmentation).
_base_ = './_base_/fpn_partialnet_40k_ade20k.py'

# The ImageNet-pretrained backbone, the same file as configs/mask_rcnn_partialnet_s_1x.py:
#   .venv/bin/python tools/extract_backbone.py CLS.pth checkpoints/partialnet_s_in1k_backbone.pth
# or override it: --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/partialnet_s_in1k_backbone.pth'

model = dict(
    backbone=dict(
        arch='s',
        drop_path_rate=0.15,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
