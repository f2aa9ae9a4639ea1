"""The layers: PATConv and its splits, the attentions, iRPE, PAT_sp, the MLP and blocks, builders."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from partialnet_mm.deploy import randomize_norms
from partialnet_mm.models import (GaussianChannelAttention, ImageRelativePositionBias, PartialMLP,
                                  PartialNetBlock, PartialNetBlockV2, PATChannel, PATConv,
                                  PATSelfAttention, PATSpatial, SEAttention, SRMAttention,
                                  mean_std_pool)
from partialnet_mm.models.layers.attention import (DeployStyleAttention, InplaceSpatialGate,
                                                   RelPosSelfAttention, irpe_bucket)
from partialnet_mm.models.layers.utils import DropPath, build_act, build_norm, fuse_conv_bn


def irpe_euclidean_buckets(height: int, width: int, alpha: float, beta: int,
                           gamma: float) -> torch.Tensor:
    """Bucket of every (query, key) pair on an H x W grid, (H*W, H*W): the reference form
    of what :class:`ImageRelativePositionBias` computes from relative offsets."""
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64),
                                torch.arange(width, dtype=torch.float64),
                                indexing='ij')
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    dist = ((rows[:, None] - rows[None, :]) ** 2 + (cols[:, None] - cols[None, :]) ** 2).sqrt()
    return irpe_bucket(dist, alpha, beta, gamma)


@pytest.mark.parametrize('ratio', [0, 0.0, 1, 1.0, -0.25, 1.5])
def test_split_ratio_out_of_range(ratio):
    with pytest.raises(ValueError, match='split ratio must be strictly between 0 and 1'):
        PATChannel(32, ratio)


@pytest.mark.parametrize('channels,ratio', [(3, 0.1), (8, 0.95), (4, 0.05)])
def test_split_ratio_leaving_empty_part(channels, ratio):
    with pytest.raises(ValueError, match='leaves an empty part'):
        PATChannel(channels, ratio)


def test_split_ratio_type():
    with pytest.raises(TypeError, match='split ratio must be a number'):
        PATConv(16, nn.Identity, ratio='1/4')


def test_patconv_split_sizes_and_order():
    m = PATChannel(48, 0.25)
    assert (m.conv_channels, m.attn_channels) == (12, 36)
    assert m.conv.weight.shape == (12, 12, 3, 3) and m.conv.bias is None
    assert m.attn.attention.cfc.conv.weight.shape == (36, 36, 1, 2)


def test_patconv_branches_are_parallel_and_independent():
    torch.manual_seed(0)
    m = PATChannel(32).eval()
    x = torch.randn(2, 32, 9, 9)
    y = m(x)
    x2 = x.clone()
    x2[:, 8:] += torch.randn(2, 24, 9, 9)  # change only the attention part's input
    y2 = m(x2)
    # conv part (first 8 output channels) reads only the first 8 input channels
    assert torch.equal(y[:, :8], y2[:, :8])
    assert not torch.allclose(y[:, 8:], y2[:, 8:])
    # conv part is exactly a 3x3 conv of the first quarter
    assert torch.allclose(y[:, :8], F.conv2d(x[:, :8], m.conv.weight, padding=1), atol=1e-6)


def test_mean_std_pool_unbiased():
    x = torch.randn(2, 5, 4, 3)
    s = mean_std_pool(x)
    assert s.shape == (2, 5, 1, 2)
    flat = x.reshape(2, 5, -1)
    n = flat.shape[-1]
    std = ((flat - flat.mean(-1, keepdim=True)) ** 2).sum(-1).div(n - 1).sqrt()
    assert torch.allclose(s[..., 0, 0], flat.mean(-1), atol=1e-6)
    assert torch.allclose(s[..., 0, 1], std, atol=1e-6)
    # one position: std defined as 0, not NaN
    assert torch.equal(mean_std_pool(torch.ones(1, 3, 1, 1))[..., 1], torch.zeros(1, 3, 1))


def test_gaussian_channel_attention_formula():
    torch.manual_seed(0)
    m = randomize_norms(GaussianChannelAttention(6)).eval()
    x = torch.randn(2, 6, 5, 5)
    stats = torch.stack([x.mean((2, 3)), x.std((2, 3))], -1).unsqueeze(2)
    z = F.conv2d(stats, m.cfc.conv.weight)  # dense (1, 2) conv C -> C
    z = F.batch_norm(z, m.cfc.norm.running_mean, m.cfc.norm.running_var, m.cfc.norm.weight,
                     m.cfc.norm.bias, eps=1e-5)
    w = torch.clamp(z + 3, 0, 6) / 6  # Hardsigmoid = relu6(x + 3) / 6
    assert torch.allclose(m(x), x * w, atol=1e-6)


def test_channel_attention_variants():
    x = torch.randn(2, 24, 6, 6)
    for cls in (GaussianChannelAttention, SEAttention, SRMAttention):
        m = cls(24).eval()
        assert m(x).shape == x.shape
    # SRM's channel-wise FC has 2 weights per channel, the Gaussian one is dense
    assert SRMAttention(24).cfc.conv.weight.numel() == 24 * 2
    assert GaussianChannelAttention(24).cfc.conv.weight.numel() == 24 * 24 * 2
    assert sum(p.numel() for p in SEAttention(24, reduction=4).parameters()) == 24 * 8 + 8 + 8 * 24 + 24


def _reference_bucket(d2, alpha=20, beta=40, gamma=160):
    d = round(math.sqrt(d2))
    if d <= alpha:
        return d + beta
    return min(beta, round(alpha + math.log(d / alpha) / math.log(gamma / alpha) * (beta - alpha))) + beta


def test_irpe_buckets_match_formula():
    ids = irpe_euclidean_buckets(1, 300, 20, 40, 160)
    assert ids.shape == (300, 300)
    for j in [0, 1, 7, 19, 20, 21, 25, 30, 50, 100, 159, 160, 161, 299]:
        assert ids[0, j].item() == _reference_bucket(j * j), j
        assert ids[j, 0].item() == ids[0, j].item()  # symmetric
    assert ids[0, 0] == 40 and ids[0, 20] == 60 and ids[0, 30] == 64 and ids[0, 160] == 80
    grid = irpe_euclidean_buckets(7, 9, 20, 40, 160)
    # position (r=2, c=3) vs (r=5, c=7): distance 5
    assert grid[2 * 9 + 3, 5 * 9 + 7] == 45
    assert int(grid.min()) >= 40 and int(grid.max()) <= 80


def test_rpe_bias_table_shape_and_lookup():
    rpe = ImageRelativePositionBias(4)
    assert rpe.lookup_table_bias.shape == (4, 81)
    assert torch.equal(rpe.lookup_table_bias, torch.zeros(4, 81))
    with torch.no_grad():
        rpe.lookup_table_bias.copy_(torch.arange(4 * 81.).reshape(4, 81))
    bias = rpe(3, 5)
    assert bias.shape == (4, 15, 15)
    ids = irpe_euclidean_buckets(3, 5, 20, 40, 160)
    assert torch.equal(bias[2], (2 * 81 + ids).float())


@pytest.mark.parametrize('hw', [(1, 1), (3, 5), (7, 9), (1, 300), (200, 3), (25, 42)])
def test_rpe_bias_from_offsets_equals_the_pairwise_formula(hw):
    """The bias is built from the buckets of the relative offsets (a fixed table up to the
    distance where buckets saturate): the same as bucketing every pair's distance, also
    for offsets far past saturation (300 > gamma = 160)."""
    rpe = ImageRelativePositionBias(2)
    assert rpe.saturation == 152 and rpe.offset_buckets.shape == (153, 153)
    assert 'offset_buckets' not in rpe.state_dict()  # derived, not learned: no new keys
    with torch.no_grad():
        rpe.lookup_table_bias.copy_(torch.arange(2 * 81.).reshape(2, 81))
    ids = irpe_euclidean_buckets(*hw, 20, 40, 160)
    assert torch.equal(rpe(*hw), torch.stack((ids, 81 + ids)).float())
    assert rpe(*hw, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize('hw', [(7, 7), (3, 5), (1, 1), (13, 4)])
def test_self_attention_matches_reference(hw):
    torch.manual_seed(0)
    attn = RelPosSelfAttention(32, num_heads=4).eval()
    with torch.no_grad():
        attn.rpe_k.lookup_table_bias.normal_()
    x = torch.randn(2, 32, *hw)
    tokens = x.flatten(2).transpose(1, 2)
    q, k, v = attn.qkv(tokens).reshape(2, -1, 3, 4, 8).permute(2, 0, 3, 1, 4)
    bias = attn.rpe_k(*hw)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    ref = attn.proj(ref.transpose(1, 2).reshape(2, -1, 32)).transpose(1, 2).reshape(x.shape)
    assert torch.allclose(attn(x), ref, atol=1e-5)


def test_self_attention_heads_must_divide():
    with pytest.raises(ValueError, match='divisible by num_heads'):
        RelPosSelfAttention(30, num_heads=4)
    with pytest.raises(ValueError, match='divisible by num_heads'):
        PATSelfAttention(40, 0.25, num_heads=4)  # attention part: 30 channels


def test_pat_sf_layernorm_and_order():
    torch.manual_seed(0)
    m = PATSelfAttention(64).eval()
    assert m.attn.norm.eps == 1e-6
    assert m.attn.attn.qkv.bias is None and m.attn.attn.proj.bias is not None
    x = torch.randn(1, 64, 5, 6)
    y = m(x)
    ln = F.layer_norm(x[:, 16:].permute(0, 2, 3, 1), (48,), m.attn.norm.weight, m.attn.norm.bias,
                      1e-6).permute(0, 3, 1, 2)
    assert torch.allclose(y[:, 16:], m.attn.attn(ln), atol=1e-6)
    assert torch.allclose(y[:, :16], m.conv(x[:, :16]), atol=1e-6)


def test_pat_sp_formula():
    torch.manual_seed(0)
    m = randomize_norms(PATSpatial(16)).eval()
    x = torch.randn(2, 16, 5, 5)
    y = m(x)
    x1, x2 = x[:, :8], x[:, 8:]
    w = torch.clamp(F.conv2d(x1, m.attn.conv.weight) + 3, 0, 6) / 6
    assert m.attn.conv.weight.shape == (1, 8, 1, 1)
    assert torch.allclose(y[:, :8], m.attn.norm(x1 * w), atol=1e-6)
    assert torch.allclose(y[:, 8:], m.mix.conv(m.mix.norm(x2)), atol=1e-6)


@pytest.mark.parametrize('with_pat_sp', [True, False])
def test_mlp_deploy_folds_pat_sp(with_pat_sp):
    torch.manual_seed(0)
    mlp = randomize_norms(PartialMLP(16, 2.0, dict(type='ReLU'), dict(type='BN'), with_pat_sp)).eval()
    x = torch.randn(2, 16, 6, 6)
    ref = mlp(x)
    fused = mlp.fuse()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.fc1.modules())
    if with_pat_sp:
        assert isinstance(fused.pat_sp, InplaceSpatialGate) and fused.fc2.bias is not None
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert torch.allclose(fused(x), ref, atol=1e-5)
    assert torch.equal(mlp(x), ref)  # fuse() leaves the trained module as it was


def _mlp(c):
    return PartialMLP(c, 2.0, dict(type='GELU'), dict(type='BN'))


def test_block_v1_single_shortcut():
    torch.manual_seed(0)
    block = PartialNetBlock(PATChannel(16), _mlp(16)).eval()
    x = torch.randn(2, 16, 8, 8)
    assert torch.allclose(block(x), x + block.mlp(block.token_mixer(x)), atol=1e-6)


def test_block_v2_modified_shortcut():
    torch.manual_seed(0)
    block = PartialNetBlockV2(PATSelfAttention(32), _mlp(32)).eval()
    x = torch.randn(2, 32, 4, 4)
    t = x + block.token_mixer(x)
    assert torch.allclose(block(x), t + block.mlp(t), atol=1e-6)


def test_block_deploy_folds_attention_norm():
    torch.manual_seed(0)
    block = randomize_norms(PartialNetBlock(PATChannel(32), _mlp(32))).eval()
    x = torch.randn(2, 32, 7, 7)
    ref = block(x)
    fused = block.fuse()
    # PAT_ch's attention part is the deploy attention alone: its closing BN went into fc1
    assert isinstance(fused.token_mixer.attn, DeployStyleAttention)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert torch.allclose(fused(x), ref, atol=1e-5)


def test_drop_path():
    dp = DropPath(0.5)
    x = torch.ones(1000, 3, 2, 2)
    assert torch.equal(dp.eval()(x), x)
    y = dp.train()(x)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}  # whole samples dropped, rest rescaled
    assert 0.4 < (per_sample[:, 0] == 0).float().mean() < 0.6
    with pytest.raises(ValueError):
        DropPath(1.0)


def test_fuse_conv_bn():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    bn = randomize_norms(nn.BatchNorm2d(6)).eval()
    x = torch.randn(1, 4, 5, 5)
    assert torch.allclose(fuse_conv_bn(conv, bn)(x), bn(conv(x)), atol=1e-5)


def test_builders_reject_unknown_types():
    with pytest.raises(KeyError, match='unsupported norm type'):
        build_norm(dict(type='FancyNorm'), 8)
    with pytest.raises(KeyError, match='unsupported activation type'):
        build_act(dict(type='Mish2'))
    assert not build_norm(dict(type='BN', requires_grad=False), 8).weight.requires_grad
    assert isinstance(build_norm(dict(type='GN', num_groups=2), 8), nn.GroupNorm)
