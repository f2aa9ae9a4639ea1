"""Parameter and FLOP counts: the fused attention counted, the attention table, Mask R-CNN against
the paper."""
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config

from helpers import REPO, mm_build


@pytest.mark.parametrize('variant,paper', [('s', 46.9), ('m', 78.2), ('l', 122.0)])
def test_mask_rcnn_params_within_3pct_of_paper(variant, paper):
    cfg = Config.fromfile(osp.join(REPO, 'configs', f'mask_rcnn_partialnet_{variant}_1x.py'))
    cfg.model.backbone.init_cfg = None
    params = sum(p.numel() for p in mm_build('mmdet', cfg.model).parameters()) / 1e6
    assert abs(params / paper - 1) < 0.03, params


class _Attention(nn.Module):
    """A 1x1 conv 3 -> 8, then 2-head attention over the 8x8 positions."""

    def __init__(self, fused: bool):
        super().__init__()
        self.proj = nn.Conv2d(3, 8, 1, bias=False)
        self.fused = fused

    def forward(self, x):
        q = k = v = self.proj(x).flatten(2).transpose(1, 2).reshape(1, 64, 2, 4).transpose(1, 2)
        if self.fused:
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return (q @ k.transpose(-2, -1)).softmax(-1) @ v


def test_flop_count_sees_fused_attention():
    """The deployed PAT_sf runs scaled_dot_product_attention, which mmengine's counter
    has no handle for: ours counts it as the two matmuls of the explicit form."""
    from partialnet_mm.toolkit.complexity import count_flops

    expected = 64 * 3 * 8 + 2 * (2 * 64 * 64 * 4)
    assert count_flops(_Attention(fused=False), 8) == expected
    assert count_flops(_Attention(fused=True), 8) == expected


def test_attention_table_layout():
    from partialnet_mm.models import CHANNEL_ATTENTIONS
    from partialnet_mm.toolkit.complexity import attention_table
    table = attention_table('t0', input_size=64)
    rows = {r['attention']: r for r in table}
    assert list(rows) == list(CHANNEL_ATTENTIONS)  # one row per attention, in the list's order
    assert all(r['label'] == CHANNEL_ATTENTIONS[r['attention']].label != '' for r in table)
    assert rows['gaussian']['paper_top1'] == 80.2 and rows['eca']['paper_top1'] is None
    # ECA is the lightest branch, the dense Gaussian conv the heaviest
    assert rows['eca']['params'] < rows['srm']['params'] < rows['gaussian']['params']
    assert all(r['flops_deploy'] < r['flops_train'] for r in rows.values())
