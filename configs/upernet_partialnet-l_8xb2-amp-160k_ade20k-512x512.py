# UperNet 160k on ADE20K 512x512, PartialNet-L backbone: mmseg's ConvNeXt recipe (see
# _base_/upernet_partialnet_160k_ade20k.py); drop path 0.3 as in the detection config. No paper
# figures to match (the paper reports no semantic segmentation).
_base_ = './_base_/upernet_partialnet_160k_ade20k.py'

# The ImageNet-pretrained backbone, the same file as configs/mask_rcnn_partialnet_l_1x.py:
#   .venv/bin/python tools/extract_backbone.py CLS.pth checkpoints/partialnet_l_in1k_backbone.pth
# or override it: --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'checkpoints/partialnet_l_in1k_backbone.pth'

model = dict(
    backbone=dict(
        arch='l',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[160, 320, 640, 1280]),
    auxiliary_head=dict(in_channels=640))
