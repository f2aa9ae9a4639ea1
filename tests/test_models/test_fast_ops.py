"""The deployed graph's fast paths: patch and pointwise convs, one-pass statistics, the CUDA paths."""
import pytest
import torch
import torch.nn as nn

from partialnet_mm.deploy import fused_copy, randomize_norms
from partialnet_mm.models import PartialNetClassifier, mean_std_pool
from partialnet_mm.models.layers.fast_ops import channel_mean_std


def test_fast_mean_std_matches_welford():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 13, 11) * 3 + 10  # |mean| > std: the one-pass weak spot
    mean, std = channel_mean_std(x, fast=True)
    ref = mean_std_pool(x)
    assert torch.allclose(mean, ref[..., 0, 0], atol=1e-5)
    assert torch.allclose(std, ref[..., 0, 1], rtol=1e-4)
    mean, std = channel_mean_std(torch.full((1, 3, 1, 1), 2.0), fast=True)
    assert torch.equal(std, torch.zeros(1, 3)) and torch.equal(mean, torch.full((1, 3), 2.0))


@pytest.mark.parametrize('shape', [(2, 8, 6, 10), (1, 8, 7, 9)])
def test_patch_conv_equals_strided_conv_both_memory_formats(shape):
    from partialnet_mm.models.layers.fast_ops import PatchConv

    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 2, 2).eval()
    patch = PatchConv.from_conv(conv)
    x = torch.randn(shape)
    with torch.no_grad():
        ref = conv(x)
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            out = patch(inp)
            assert out.shape == ref.shape
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_pointwise_conv_keeps_the_conv_and_refuses_other_kernels():
    from partialnet_mm.models.layers.fast_ops import PointwiseConv

    torch.manual_seed(0)
    conv = nn.Conv2d(8, 12, 1).eval()
    pw = PointwiseConv.from_conv(conv)
    assert pw.state_dict().keys() == conv.state_dict().keys()
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            torch.testing.assert_close(pw(inp), conv(x), atol=1e-6, rtol=1e-6)
    for bad in (nn.Conv2d(8, 12, 3, padding=1), nn.Conv2d(8, 12, 1, stride=2),
                nn.Conv2d(8, 12, 1, groups=4)):
        with pytest.raises(ValueError, match='plain 1x1 conv'):
            PointwiseConv.from_conv(bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('arch', ['t0', 't2'])
def test_fused_classifier_on_cuda_both_layouts_and_amp(arch):
    """The CUDA-only paths (1x1 convs as GEMMs on channels_last maps, var_mean statistics)."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        torch.manual_seed(0)
        model = randomize_norms(PartialNetClassifier(arch)).eval().cuda()
        fused = fused_copy(model)
        x = torch.randn(4, 3, 96, 96, device='cuda')
        with torch.no_grad():
            expected = model(x)
            torch.testing.assert_close(fused(x), expected, atol=1e-4, rtol=0)
            fused_cl = fused.to(memory_format=torch.channels_last)
            torch.testing.assert_close(fused_cl(x.to(memory_format=torch.channels_last)),
                                       expected, atol=1e-4, rtol=0)
        with torch.no_grad(), torch.autocast('cuda', dtype=torch.float16):
            ref, out = model(x), fused_cl(x.to(memory_format=torch.channels_last))
        assert out.dtype == torch.float16 and torch.isfinite(out).all()
        assert (ref.float() - out.float()).abs().max() <= 1e-2 * ref.float().abs().max()
        stats = torch.randn(2, 5, 13, 11, device='cuda') * 3 + 10
        for got, want in zip(channel_mean_std(stats, fast=True), mean_std_pool(stats).unbind(-1)):
            torch.testing.assert_close(got, want[:, :, 0], atol=1e-4, rtol=1e-4)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


# ------------------------------------------------------------------ the lean deployed graph
@pytest.mark.parametrize('shape', [(2, 24, 7, 9), (1, 8, 1, 1), (3, 5, 1, 6)])
def test_style_statistics_eager_equals_the_traced_form(shape):
    from partialnet_mm.models.layers.fast_ops import style_statistics
    x = torch.randn(*shape, dtype=torch.float64) * 3 + 1
    mean, std = mean_std_pool(x).unbind(-1)
    expected = torch.cat((mean, std), 1).flatten(1)
    got = style_statistics(x)
    torch.testing.assert_close(got, expected)
    with torch.no_grad():  # the exporters' path
        traced = torch.jit.trace(lambda t: style_statistics(t), (x,))
    torch.testing.assert_close(traced(x), expected)


def test_size_cache_keeps_a_fixed_number_least_recently_used_first():
    from partialnet_mm.models.layers.fast_ops import SizeCache
    cache, made = SizeCache(2), []

    def make(key):
        made.append(key)
        return torch.tensor(key)

    for key in (1, 2, 1, 3, 2, 1):
        cache.get(key, lambda k=key: make(k))
    assert made == [1, 2, 3, 2, 1] and list(cache.entries) == [2, 1]
    with pytest.raises(ValueError, match='size >= 1'):
        SizeCache(0)


def test_cached_irpe_bias_follows_new_weights():
    """The deployed attention keeps its bias per size; a load_state_dict must be seen."""
    from partialnet_mm.models.layers.attention import DeployRelPosSelfAttention
    torch.manual_seed(0)
    attn = DeployRelPosSelfAttention(16, 4).eval()
    x = torch.randn(1, 16, 3, 5)
    with torch.no_grad():
        first = attn(x)
        state = {k: v.clone() for k, v in attn.state_dict().items()}
        state['rpe_k.lookup_table_bias'].normal_()
        attn.load_state_dict(state)
        second = attn(x)
        fresh = DeployRelPosSelfAttention(16, 4).eval()
        fresh.load_state_dict(state)
        torch.testing.assert_close(second, fresh(x))
    assert not torch.allclose(first, second)
    assert len(attn.bias_cache.entries) <= attn.bias_cache.size


def test_deployed_graph_runs_fewer_operations_than_the_training_graph():
    from partialnet_mm.timing import count_ops
    torch.manual_seed(0)
    model = randomize_norms(PartialNetClassifier('t0')).eval()
    fused = fused_copy(model)
    x = torch.randn(1, 3, 224, 224)
    ops_train, ops_fused = count_ops(lambda: model(x)), count_ops(lambda: fused(x))
    # the counts docs/benchmarks.md publishes (the deployed T0 ran 433 operations before the
    # lean graph: iRPE bias cached per size, 8-operation statistics, no empty layout changes)
    documented = documented_op_counts()['T0']
    assert (ops_fused, ops_train) == (documented['deployed, now'], documented['unfused']), \
        'the operation counts changed: measure them again and update docs/benchmarks.md'
    assert ops_fused < ops_train


def documented_op_counts() -> dict:
    """docs/benchmarks.md's "Operations per forward" table: {variant: {column: count}}."""
    import os.path as osp
    text = open(osp.join(osp.dirname(__file__), '..', '..', 'docs', 'benchmarks.md')).read()
    table = text.split('### Operations per forward', 1)[1].split('\n\n')[2].splitlines()
    columns = [c.strip() for c in table[0].strip('|').split('|')]
    return {cells[0]: dict(zip(columns[1:], map(float, cells[1:])))
            for cells in ([c.strip() for c in row.strip('|').split('|')] for row in table[2:])}
