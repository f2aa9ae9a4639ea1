"""The deployed (fused) graph, the benchmark tool and the ONNX export (issue: fast inference)."""
import json
import os.path as osp
import sys

import pytest
import torch
import torch.nn as nn

from partialnet_mm.benchmark import FusionMismatch, check_fused, deployed, time_interleaved
from partialnet_mm.models import (PartialMLP, PartialNet, PartialNetBlock, PartialNetBlockV2,
                                  PartialNetClassifier, PATChannel, PATSelfAttention,
                                  mean_std_pool)
from partialnet_mm.models.attention import (CHANNEL_ATTENTIONS, DeployRelPosSelfAttention,
                                            RelPosSelfAttention, one_pass_mean_std)
from partialnet_mm.models.patconv import SelfAttentionBranch

from conftest import TINY, randomize_bn
from test_configs_tools import REPO, _run


def _fused_matches(module, *shapes, channels_last=False, tol=1e-5):
    module = randomize_bn(module).eval()
    fused = module.fuse()
    for shape in shapes:
        x = torch.randn(*shape) * 2 + 0.5
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
            fused = fused.to(memory_format=torch.channels_last)
        with torch.no_grad():
            assert (module(x) - fused(x)).abs().max() <= tol, shape
    return fused


def _mlp(c, act='GELU', with_pat_sp=True):
    return PartialMLP(c, 2.0, dict(type=act), dict(type='BN'), with_pat_sp)


@pytest.mark.parametrize('attention', sorted(CHANNEL_ATTENTIONS))
@pytest.mark.parametrize('act', ['GELU', 'ReLU'])
def test_fused_block_v1_every_channel_attention(attention, act):
    torch.manual_seed(0)
    block = PartialNetBlock(PATChannel(32, attention=CHANNEL_ATTENTIONS[attention]),
                            _mlp(32, act))
    fused = _fused_matches(block, (2, 32, 9, 7), (1, 32, 1, 1), (1, 32, 14, 14))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    # the deployed twin is what deploy=True builds: same classes, keys and shapes
    twin = PartialNetBlock(PATChannel(32, attention=CHANNEL_ATTENTIONS[attention], deploy=True),
                           PartialMLP(32, 2.0, dict(type=act), dict(type='BN'), deploy=True),
                           deploy=True)
    assert {k: v.shape for k, v in twin.state_dict().items()} == \
        {k: v.shape for k, v in fused.state_dict().items()}
    twin.load_state_dict(fused.state_dict())
    # with autograd on, the deployed block computes the same numbers
    x = torch.randn(2, 32, 9, 7)
    with torch.no_grad():
        expected = fused(x)
    torch.testing.assert_close(fused(x), expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize('with_pat_sp', [True, False])
def test_fused_mlp_with_and_without_pat_sp(with_pat_sp):
    torch.manual_seed(0)
    _fused_matches(_mlp(16, 'ReLU', with_pat_sp), (2, 16, 5, 6))


def test_fused_block_v2_sdpa_two_sizes_and_channels_last():
    torch.manual_seed(0)
    block = PartialNetBlockV2(PATSelfAttention(64, num_heads=4), _mlp(64))
    for m in block.modules():
        if isinstance(m, RelPosSelfAttention):
            m.rpe_k.lookup_table_bias.data.normal_()
    fused = _fused_matches(block, (2, 64, 7, 7), (1, 64, 4, 9))
    assert isinstance(fused.token_mixer.attn, DeployRelPosSelfAttention)
    _fused_matches(block, (2, 64, 7, 7), channels_last=True)


def test_deploy_attention_keeps_nothing_per_size_and_follows_loaded_weights():
    torch.manual_seed(0)
    branch = SelfAttentionBranch(32, num_heads=4).eval()
    branch.attn.rpe_k.lookup_table_bias.data.normal_()
    fused = branch.fuse()
    before = {id(t) for t in fused.state_dict(keep_vars=True).values()}
    with torch.no_grad():
        for size in [(5, 6), (3, 3), (8, 2)]:
            x = torch.randn(1, 32, *size)
            assert (fused(x) - branch(x)).abs().max() <= 1e-5
    assert [k for k in vars(fused) if isinstance(getattr(fused, k), (dict, torch.Tensor))
            and not k.startswith('_')] == []  # no cache attributes
    assert {id(t) for t in fused.state_dict(keep_vars=True).values()} == before
    x = torch.randn(1, 32, 5, 6)
    with torch.no_grad():
        old = fused(x)
        state = {k: v.clone() for k, v in fused.state_dict().items()}
        state['rpe_k.lookup_table_bias'].add_(torch.randn_like(state['rpe_k.lookup_table_bias']))
        fused.load_state_dict(state)
        assert (fused(x) - old).abs().max() > 1e-3  # new weights act at once: nothing stale


@pytest.mark.parametrize('arch', ['t0', 't1', 't2', 's', 'm', 'l'])
def test_fused_classifier_every_variant(arch):
    torch.manual_seed(0)
    model = randomize_bn(PartialNetClassifier(arch)).eval()
    fused = deployed(model)
    x = torch.randn(2, 3, 64, 64)
    assert check_fused(model, fused, x) <= 1e-4
    assert sum(p.numel() for p in fused.parameters()) < sum(p.numel() for p in model.parameters())


def test_fused_backbone_multiscale_channels_last_batch_one():
    torch.manual_seed(0)
    model = randomize_bn(PartialNet(TINY)).eval()
    fused = deployed(model)
    x = torch.randn(1, 3, 96, 64)
    assert check_fused(model, fused, x) <= 1e-4
    assert check_fused(model, fused.to(memory_format=torch.channels_last),
                       x.to(memory_format=torch.channels_last)) <= 1e-4


def test_fused_backbone_runs_channels_last_and_hands_back_the_input_layout():
    torch.manual_seed(0)
    model = randomize_bn(PartialNet(TINY)).eval()
    fused = deployed(model)
    state = fused.state_dict()
    fused.switch_to_deploy()  # deploying a deployed model again changes nothing
    assert {k: v.data_ptr() for k, v in fused.state_dict().items()} == \
        {k: v.data_ptr() for k, v in state.items()}
    seen = []
    for stage in fused.stages:  # the deployed backbone runs channels_last throughout
        stage.blocks[0].register_forward_pre_hook(
            lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        ref, outs = model(x), fused(x)
        outs_cl = fused(x.to(memory_format=torch.channels_last))
    assert seen == [True] * 8
    assert all(o.is_contiguous() for o in outs)  # NCHW in, NCHW out
    assert outs_cl[3].is_contiguous(memory_format=torch.channels_last)
    for r, o, c in zip(ref, outs, outs_cl, strict=True):
        assert (r - o).abs().max() <= 1e-4 and (r - c).abs().max() <= 1e-4


def test_one_pass_mean_std_matches_two_pass():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 13, 11) * 3 + 10  # |mean| > std: the one-pass weak spot
    mean, std = one_pass_mean_std(x)
    ref = mean_std_pool(x)
    assert torch.allclose(mean, ref[..., 0, 0], atol=1e-5)
    assert torch.allclose(std, ref[..., 0, 1], rtol=1e-4)
    mean, std = one_pass_mean_std(torch.full((1, 3, 1, 1), 2.0))
    assert torch.equal(std, torch.zeros(1, 3)) and torch.equal(mean, torch.full((1, 3), 2.0))


def test_check_fused_refuses_a_wrong_fusion():
    torch.manual_seed(0)
    model = randomize_bn(PartialNet(TINY, out_indices=(3,))).eval()
    fused = deployed(model)
    with torch.no_grad():
        fused.stages[3].blocks[0].mlp.fc2.bias.add_(1e-2)
    with pytest.raises(FusionMismatch, match='refusing to report'):
        check_fused(model, fused, torch.randn(1, 3, 64, 64))


def test_time_interleaved_runs_every_model():
    calls = {'a': [], 'b': []}
    times = time_interleaved({k: (lambda k=k: calls[k].append(1)) for k in calls}, warmup=2,
                             runs=6, rounds=3)
    assert set(times) == {'a', 'b'} and all(t >= 0 for t in times.values())
    assert len(calls['a']) == len(calls['b']) == 2 + 6


def test_fused_model_compiles():
    torch.manual_seed(0)
    model = randomize_bn(PartialNetClassifier(TINY, num_classes=10)).eval()
    fused = deployed(model)
    compiled = torch.compile(fused)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (compiled(x) - model(x)).abs().max() <= 1e-4


def test_onnx_round_trip_t0_dynamic_batch_and_size(tmp_path):
    from partialnet_mm.onnx_export import export, verify
    torch.manual_seed(0)
    model = randomize_bn(PartialNetClassifier('t0')).eval()
    fused = deployed(model)
    path = export(fused, str(tmp_path / 't0.onnx'), input_size=96)
    # other batch sizes and input sizes than the exported (2, 3, 96, 96)
    assert verify(fused, path, [(1, 3, 96, 96), (3, 3, 64, 128)]) <= 1e-4


def test_export_tool_backbone_multiscale(tmp_path):
    out = tmp_path / 'tiny.onnx'
    code, log = _run([sys.executable, 'tools/export_onnx.py', 't0', str(out), '--backbone',
                      '--input-size', '64'])
    assert code == 0, log
    import onnx
    names = [o.name for o in onnx.load(str(out)).graph.output]
    assert names == ['stage0', 'stage1', 'stage2', 'stage3']


def test_benchmark_tool_smoke(tmp_path):
    out = tmp_path / 'bench.json'
    code, log = _run([sys.executable, 'tools/benchmark.py', 't0', '--smoke', '--no-cuda',
                      '--json', str(out)])
    assert code == 0, log
    result = json.loads(out.read_text())
    names = [r['model'] for r in result['rows']]
    assert names[:2] == ['PartialNet-T0 unfused', 'PartialNet-T0 fused']
    assert 'FasterNet-T0 (timm)' in names and any(n.startswith('ResNet-50') for n in names)
    assert result['fused_max_abs_diff'] <= 1e-4
    assert all(r['cpu_latency_ms'] > 0 and r['cpu_images_per_s'] > 0 for r in result['rows'])
    assert {'fused_speedup_over_unfused', 'fused_latency_over_fasternet'} <= set(result['ratios'])
    assert '| PartialNet-T0 fused |' in log


def test_benchmark_tool_refuses_to_time_nothing():
    code, log = _run([sys.executable, 'tools/benchmark.py', 't0', '--smoke', '--no-cuda',
                      '--no-cpu'])
    assert code == 2 and 'nothing to time' in log, log
    code, log = _run([sys.executable, 'tools/benchmark.py', '--no-cpu', '--det',
                      osp.join(REPO, 'configs', 'mask_rcnn_partialnet_t0_1x.py')])
    assert code == 2 and '--no-cpu is for classifiers' in log, log
    code, log = _run([sys.executable, 'tools/benchmark.py', 't0', '--smoke', '--no-cuda',
                      '--cuda-graph'])
    assert code == 2 and 'CUDA graphs need a CUDA device' in log, log


def test_benchmark_tool_config_and_detection_smoke(tmp_path):
    cfg = osp.join(REPO, 'configs', 'partialnet-t0_8xb512_in1k.py')
    code, log = _run([sys.executable, 'tools/benchmark.py', cfg, '--smoke', '--no-cuda',
                      '--no-peers'])
    assert code == 0 and '| PartialNet-T0 fused |' in log, log
    out = tmp_path / 'det.json'
    code, log = _run([sys.executable, 'tools/benchmark.py', '--smoke', '--no-cuda', '--det',
                      osp.join(REPO, 'configs', 'mask_rcnn_partialnet_t0_1x.py'),
                      '--json', str(out)])
    assert code == 0, log
    result = json.loads(out.read_text())
    assert [r['model'].split()[-1] for r in result['rows']] == ['unfused', 'fused', 'config)']
    assert all(r['cpu_images_per_s'] > 0 for r in result['rows'])



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
    from partialnet_mm.analysis import count_flops

    expected = 64 * 3 * 8 + 2 * (2 * 64 * 64 * 4)
    assert count_flops(_Attention(fused=False), 8) == expected
    assert count_flops(_Attention(fused=True), 8) == expected


@pytest.mark.parametrize('shape', [(2, 8, 6, 10), (1, 8, 7, 9)])
def test_patch_conv_equals_strided_conv_both_memory_formats(shape):
    from partialnet_mm.models.fast_ops import PatchConv

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
    from partialnet_mm.models.fast_ops import PointwiseConv

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
        model = randomize_bn(PartialNetClassifier(arch)).eval().cuda()
        fused = deployed(model)
        x = torch.randn(4, 3, 96, 96, device='cuda')
        assert check_fused(model, fused, x) <= 1e-4
        fused_cl = fused.to(memory_format=torch.channels_last)
        assert check_fused(model, fused_cl, x.to(memory_format=torch.channels_last)) <= 1e-4
        with torch.no_grad(), torch.autocast('cuda', dtype=torch.float16):
            ref, out = model(x), fused_cl(x.to(memory_format=torch.channels_last))
        assert out.dtype == torch.float16 and torch.isfinite(out).all()
        assert (ref.float() - out.float()).abs().max() <= 1e-2 * ref.float().abs().max()
        stats = torch.randn(2, 5, 13, 11, device='cuda') * 3 + 10
        for got, want in zip(one_pass_mean_std(stats), mean_std_pool(stats).unbind(-1)):
            torch.testing.assert_close(got, want[:, :, 0], atol=1e-4, rtol=1e-4)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('cuda_graph', [False, True])
def test_benchmark_gpu_table_smoke(cuda_graph):
    from partialnet_mm.benchmark import benchmark_classifier

    result = benchmark_classifier('t0', input_size=64, gpu_batch=4, gpu_runs=2, warmup=1,
                                  rounds=1, channels_last=True, cpu=False,
                                  cuda_graph=cuda_graph, peers=False)
    assert all(r['gpu_images_per_s'] > 0 and 'cpu_latency_ms' not in r for r in result['rows'])
    assert result['settings']['cuda_graph'] is cuda_graph and 'gpu' in result['env']
