#!/usr/bin/env python
"""Train any partialnet_mm config (detection or classification) with the installed
mmdet / mmpretrain tools/train.py; every flag of those tools is accepted, e.g.

    .venv/bin/python tools/train.py configs/mask_rcnn_partialnet_s_1x.py --work-dir work_dirs/s \
        --amp
"""
from partialnet_mm.toolkit.launch import run

if __name__ == '__main__':
    run('train')
