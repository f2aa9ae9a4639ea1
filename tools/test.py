#!/usr/bin/env python
"""Test any partialnet_mm config (detection or classification) with the installed
mmdet / mmpretrain tools/test.py; every flag of those tools is accepted, e.g.

    .venv/bin/python tools/test.py configs/mask_rcnn_partialnet_s_1x.py work_dirs/s/epoch_12.pth
"""
from partialnet_mm.toolkit.launch import run

if __name__ == '__main__':
    run('test')
