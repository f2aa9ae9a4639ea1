"""ECA: the module, the mmdet ResNet plugin, and ECA as PATConv's attention branch."""
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from partialnet_mm.deploy import randomize_norms
from partialnet_mm.models import ECA, PartialNet, eca_kernel_size

from helpers import REPO, mm_build


def test_kernel_size_rule():
    assert {c: eca_kernel_size(c) for c in (64, 128, 256, 512, 1024, 2048)} == \
        {64: 3, 128: 5, 256: 5, 512: 5, 1024: 5, 2048: 7}
    for c in range(64, 2049):
        t = int(abs((math.log2(c) + 1) / 2))
        k = eca_kernel_size(c)
        assert k % 2 == 1 and k == (t if t % 2 else t + 1)
    assert ECA(2048).kernel_size == 7 and ECA(256, kernel_size=3).kernel_size == 3


def test_eca_matches_hand_computation():
    x = torch.arange(16, dtype=torch.float32).reshape(1, 4, 2, 2) / 10
    eca = ECA(4, kernel_size=3)
    with torch.no_grad():
        eca.conv.weight.copy_(torch.tensor([[[0.5, -1.0, 2.0]]]))
    means = [sum(x[0, c].flatten().tolist()) / 4 for c in range(4)]
    w = (0.5, -1.0, 2.0)
    expected = torch.empty_like(x)
    for c in range(4):  # zero-padded cross-correlation over channels
        z = sum(w[j] * means[c + j - 1] for j in range(3) if 0 <= c + j - 1 < 4)
        expected[0, c] = x[0, c] * (1 / (1 + math.exp(-z)))
    out = eca(x)
    assert out.shape == x.shape
    assert torch.allclose(out, expected, atol=1e-6)
    assert sum(p.numel() for p in eca.parameters()) == 3  # no bias, no reduction


@pytest.mark.parametrize('kwargs,match', [
    (dict(in_channels=64, kernel_size=4), 'positive odd'),
    (dict(in_channels=64, kernel_size=0), 'positive odd'),
    (dict(in_channels=64, kernel_size=-3), 'positive odd'),
    (dict(in_channels=4, kernel_size=5), 'larger than the channel count 4'),
    (dict(in_channels=0), 'positive int'),
])
def test_eca_bad_kernel(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ECA(**kwargs)


def _resnet(plugins=None):
    cfg = dict(type='ResNet', depth=50)
    if plugins is not None:
        cfg['plugins'] = plugins
    return mm_build('mmdet', cfg)


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_eca_resnet50_adds_80_parameters_with_official_kernels():
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'mask_rcnn_eca_r50_1x.py'))
    eca_r50 = mm_build('mmdet', cfg.model.backbone)
    base = _resnet()
    assert _params(eca_r50) - _params(base) == 80  # 3*3 + 4*5 + 6*5 + 3*7
    assert [getattr(eca_r50, f'layer{i}')[0].eca.kernel_size for i in range(1, 5)] == [3, 5, 5, 7]
    # the adaptive rule gives 5 / 5 / 5 / 7 for 256 / 512 / 1024 / 2048 channels: 86 parameters
    adaptive = _resnet([dict(cfg=dict(type='ECA'), position='after_conv3')])
    assert _params(adaptive) - _params(base) == 86
    eca_r50.eval()  # mmdet's ResNet.train() returns None: no chaining
    out = eca_r50(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in out] == [256, 512, 1024, 2048]


def test_eca_sits_after_last_bn_before_addition():
    r = _resnet([dict(cfg=dict(type='ECA'), position='after_conv3')])
    r.eval()
    block = r.layer1[0]
    seen = {}
    block.norm3.register_forward_hook(lambda m, i, o: seen.__setitem__('norm3', o))
    # clone: the block adds the identity in place to the plugin's output
    block.eca.register_forward_hook(lambda m, i, o: seen.update(eca_in=i[0], eca_out=o.clone()))
    x = torch.randn(1, 64, 16, 16)
    with torch.no_grad():
        y = block(x)
        identity = block.downsample(x)
    assert torch.equal(seen['eca_in'], seen['norm3'])  # right after the last BN
    assert torch.allclose(y, F.relu(seen['eca_out'] + identity), atol=1e-6)  # before the addition


def test_eca_plugin_bad_kernel_in_config_fails_at_build():
    with pytest.raises(ValueError, match='positive odd'):
        _resnet([dict(cfg=dict(type='ECA', kernel_size=4), position='after_conv3')])


@pytest.mark.parametrize('arch', ['t0', 't1', 't2', 's', 'm', 'l'])
def test_pat_eca_every_variant_builds_and_fuses(arch):
    torch.manual_seed(0)
    model = randomize_norms(PartialNet(arch, channel_attention='eca')).eval()
    mixer = model.stages[0].blocks[0].token_mixer
    assert isinstance(mixer.attn.attention, ECA)
    assert mixer.attn.attention.in_channels == mixer.attn_channels
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        model.switch_to_deploy()
        out = model(x)
    for a, b in zip(ref, out, strict=True):
        assert (a - b).abs().max() <= 1e-4
