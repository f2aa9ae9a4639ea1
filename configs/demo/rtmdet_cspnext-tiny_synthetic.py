# The RTMDet demo's yardstick: rtmdet_partialnet-t0_synthetic.py with RTMDet-tiny's own
# backbone, CSPNeXt-tiny (mmdet's rtmdet_tiny_8xb32-300e_coco.py settings), not pretrained.
# Same data, pipeline, schedule, optimiser and EMA; `tools/demo.py --detector rtmdet` trains both.
_base_ = './rtmdet_partialnet-t0_synthetic.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='CSPNeXt',
        arch='P5',
        expand_ratio=0.5,
        deepen_factor=0.167,
        widen_factor=0.375,
        channel_attention=True,
        norm_cfg=dict(type='SyncBN'),
        act_cfg=dict(type='SiLU', inplace=True)),
    neck=dict(in_channels=[96, 192, 384]))
