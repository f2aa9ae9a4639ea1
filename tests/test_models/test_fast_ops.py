"""The deployed graph's fast paths: patch and pointwise convs, one-pass statistics, the CUDA paths."""
import pytest
import torch
import torch.nn as nn

from partialnet_mm.deploy import fused_copy, randomize_norms
from partialnet_mm.models import PartialNetClassifier, mean_std_pool
from partialnet_mm.models.layers.attention import one_pass_mean_std


def test_one_pass_mean_std_matches_two_pass():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 13, 11) * 3 + 10  # |mean| > std: the one-pass weak spot
    mean, std = one_pass_mean_std(x)
    ref = mean_std_pool(x)
    assert torch.allclose(mean, ref[..., 0, 0], atol=1e-5)
    assert torch.allclose(std, ref[..., 0, 1], rtol=1e-4)
    mean, std = one_pass_mean_std(torch.full((1, 3, 1, 1), 2.0))
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
        for got, want in zip(one_pass_mean_std(stats), mean_std_pool(stats).unbind(-1)):
            torch.testing.assert_close(got, want[:, :, 0], atol=1e-4, rtol=1e-4)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
