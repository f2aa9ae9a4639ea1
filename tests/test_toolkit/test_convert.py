"""The authors' checkpoint converter and the backbone extractor (module and tools)."""
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config

from partialnet_mm.deploy import randomize_norms
from partialnet_mm.models import PartialNetClassifier
from partialnet_mm.toolkit.convert import convert_authors_state_dict

from helpers import REPO, authors_t0_state_dict, mm_build, run


@pytest.mark.parametrize('pat_sp', [True, False])
@pytest.mark.parametrize('prefix', ['model.', ''])
def test_convert_authors_layout_loads_strictly(pat_sp, prefix):
    sd = authors_t0_state_dict(pat_sp, prefix)
    converted, info = convert_authors_state_dict(sd)
    assert info == dict(with_pat_sp=pat_sp, embed_dims=32, depths=(1, 2, 8, 2))
    assert len(converted) == len(sd)
    model = PartialNetClassifier('t0', with_pat_sp=pat_sp)
    model.load_state_dict(converted, strict=True)
    # values land where they should
    assert torch.equal(model.backbone.stages[3].blocks[1].token_mixer.attn.attn.rpe_k.lookup_table_bias,
                       sd[prefix + 'stages.6.blocks.1.spatial_mixing.attn.rpe_k.lookup_table_bias'])
    assert torch.equal(model.backbone.stages[2].downsample.conv.weight,
                       sd[prefix + 'stages.3.reduction.weight'])
    assert torch.equal(model.head.pre_logits_layers.fc.weight,
                       sd[prefix + 'avgpool_pre_head.1.weight'].flatten(1))


def test_convert_rejects_foreign_keys():
    sd = authors_t0_state_dict()
    sd['model.stages.0.blocks.0.extra.weight'] = torch.zeros(1)
    with pytest.raises(KeyError, match="not in the authors' PartialNet layout: stages.0.blocks.0.extra"):
        convert_authors_state_dict(sd)
    with pytest.raises(ValueError, match='empty'):
        convert_authors_state_dict({})


# ------------------------------------------------------------------ checkpoints
@pytest.mark.slow
def test_convert_authors_checkpoint_tool(tmp_path):
    src = tmp_path / 'authors.ckpt'
    sd = authors_t0_state_dict()
    torch.save({'state_dict': sd, 'hyper_parameters': {'lr': 0.004}}, src)
    dst = tmp_path / 'ours.pth'
    code, out = run([sys.executable, 'tools/convert_authors_checkpoint.py', str(src), str(dst)])
    assert code == 0, out
    assert 'PartialNet-T0, PAT_sp on' in out
    # loads strictly into the mmpretrain config's model and computes the same function
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'partialnet-t0_8xb512_in1k.py'))
    model = mm_build('mmpretrain', cfg.model).eval()
    state = torch.load(dst, weights_only=False)['state_dict']
    model.load_state_dict(state, strict=True)
    ref = PartialNetClassifier('t0').eval()
    ref.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x, mode='tensor')
        assert torch.isfinite(out).all() and out.abs().max() > 0
        assert torch.allclose(out, ref(x), atol=1e-5)
    # a file that is not an authors' checkpoint is refused with its name
    other = tmp_path / 'other.pth'
    torch.save({'foo.weight': torch.zeros(1)}, other)
    code, out = run([sys.executable, 'tools/convert_authors_checkpoint.py', str(other),
                      str(tmp_path / 'x.pth')])
    assert code != 0 and 'other.pth' in out and "not in the authors' PartialNet layout" in out


@pytest.mark.slow
def test_extract_backbone_tool_feeds_detection_config(tmp_path):
    cls = randomize_norms(PartialNetClassifier('t0'))
    src = tmp_path / 'cls.pth'
    torch.save({'state_dict': cls.state_dict(), 'meta': {'epoch': 300}}, src)
    dst = tmp_path / 'backbone.pth'
    code, out = run([sys.executable, 'tools/extract_backbone.py', str(src), str(dst)])
    assert code == 0, out
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'mask_rcnn_partialnet_t0_1x.py'))
    cfg.model.backbone.init_cfg.checkpoint = str(dst)
    backbone = mm_build('mmdet', cfg.model.backbone)
    backbone.init_weights()
    for k, v in cls.backbone.state_dict().items():
        assert torch.equal(backbone.state_dict()[k], v), k
    code, out = run([sys.executable, 'tools/extract_backbone.py', str(dst), str(tmp_path / 'y.pth')])
    assert code != 0 and "no key starts with 'backbone.'" in out
