"""The fused graph (``fuse()`` / ``switch_to_deploy()``) computes the training graph, block by
block and for every variant."""
import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from partialnet_mm.deploy import fused_copy, randomize_norms
from partialnet_mm.models import (PartialMLP, PartialNet, PartialNetBlock, PartialNetBlockV2,
                                  PartialNetClassifier, PATChannel, PATSelfAttention)
from partialnet_mm.models.layers.attention import (CHANNEL_ATTENTIONS, DeployRelPosSelfAttention,
                                                   RelPosSelfAttention)
from partialnet_mm.models.layers.fast_ops import SizeCache
from partialnet_mm.models.layers.patconv import SelfAttentionBranch

from helpers import TINY


@pytest.mark.parametrize('arch', [TINY, 't0', 't2'])
def test_deploy_equals_training_graph(arch):
    torch.manual_seed(0)
    model = randomize_norms(PartialNet(arch)).eval()
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        ref = model(x)
        model.switch_to_deploy()
        out = model(x)
    assert model.deploy
    for a, b in zip(ref, out, strict=True):
        assert (a - b).abs().max() <= 1e-4
    # every foldable BN is gone; only the output norms and the BN after PAT_sp's
    # attention multiply (not adjacent to any conv) remain
    kept = [n for n, m in model.named_modules() if isinstance(m, _BatchNorm)]
    assert all(n.startswith('norm') for n in kept), kept


def test_deploy_classifier_fewer_params_same_output():
    torch.manual_seed(0)
    model = randomize_norms(PartialNetClassifier('t0')).eval()
    x = torch.randn(2, 3, 64, 64)
    n_before = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        ref = model(x)
        model.switch_to_deploy()
        out = model(x)
    assert (ref - out).abs().max() <= 1e-4
    assert sum(p.numel() for p in model.parameters()) < n_before


def _fused_matches(module, *shapes, channels_last=False, tol=1e-5):
    module = randomize_norms(module).eval()
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
    twin = PartialNetBlock(PATChannel(32, attention=CHANNEL_ATTENTIONS[attention], deploy=True,
                                      closing_norm=False),  # in a block: folded into fc1
                           PartialMLP(32, 2.0, dict(type=act), dict(type='BN'), deploy=True),
                           deploy=True)
    assert {k: v.shape for k, v in twin.state_dict().items()} == \
        {k: v.shape for k, v in fused.state_dict().items()}
    twin.load_state_dict(fused.state_dict())
    # the twin with the fused weights computes what the fused block computes
    x = torch.randn(2, 32, 9, 7)
    with torch.no_grad():
        expected = fused(x)
        torch.testing.assert_close(twin(x), expected, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(twin(x), block.eval()(x), atol=1e-4, rtol=0)


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


def test_deploy_attention_keeps_a_bounded_cache_and_follows_loaded_weights():
    """What the deployed attention keeps per input size is its SizeCache of iRPE biases, and
    nothing else: no other dict, tensor or cache attribute, at most bias_cache_size entries
    however many sizes it sees, and a load_state_dict acts at the next call."""
    torch.manual_seed(0)
    branch = SelfAttentionBranch(32, num_heads=4).eval()
    branch.attn.rpe_k.lookup_table_bias.data.normal_()
    fused = branch.fuse()
    before = {id(t) for t in fused.state_dict(keep_vars=True).values()}
    sizes = [(5, 6), (3, 3), (8, 2), (4, 4), (2, 7), (6, 1)]
    with torch.no_grad():
        for size in sizes:
            x = torch.randn(1, 32, *size)
            assert (fused(x) - branch(x)).abs().max() <= 1e-5
    caches = {k: v for k, v in vars(fused).items() if isinstance(v, SizeCache)}
    assert list(caches) == ['bias_cache']  # the one place that keeps per-size state
    assert fused.bias_cache_size == 4 and len(fused.bias_cache.entries) == 4 < len(sizes)
    assert [key[:2] for key in fused.bias_cache.entries] == sizes[-4:]  # the last 4, LRU
    others = [k for k, v in vars(fused).items() if not k.startswith('_') and
              isinstance(v, (dict, list, torch.Tensor, SizeCache)) and k != 'bias_cache']
    assert others == []  # no other cache attribute
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
    model = randomize_norms(PartialNetClassifier(arch)).eval()
    fused = fused_copy(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), atol=1e-4, rtol=0)
    assert sum(p.numel() for p in fused.parameters()) < sum(p.numel() for p in model.parameters())


def test_fused_backbone_multiscale_channels_last_batch_one():
    torch.manual_seed(0)
    model = randomize_norms(PartialNet(TINY)).eval()
    fused = fused_copy(model)
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(fused(x), expected, atol=1e-4, rtol=0)
        torch.testing.assert_close(fused.to(memory_format=torch.channels_last)(
            x.to(memory_format=torch.channels_last)), expected, atol=1e-4, rtol=0)


def test_fused_backbone_runs_channels_last_and_hands_back_the_input_layout():
    torch.manual_seed(0)
    model = randomize_norms(PartialNet(TINY)).eval()
    fused = fused_copy(model)
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


def test_fused_model_compiles():
    torch.manual_seed(0)
    model = randomize_norms(PartialNetClassifier(TINY, num_classes=10)).eval()
    fused = fused_copy(model)
    compiled = torch.compile(fused)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (compiled(x) - model(x)).abs().max() <= 1e-4


# ---------------------------------------------------------------- the one fuse() contract
def _fuse_cases():
    """Every module class of the package with an inference form, built small (the abstract
    bases ChannelReweighting and DynamicPATConv through their subclasses)."""
    from partialnet_mm.models.layers.dynamic_patconv import (DynamicPATChannel,
                                                             DynamicPATSelfAttention)
    from partialnet_mm.models.layers.blocks import PartialNetStage
    from partialnet_mm.models.layers.patconv import PATSpatial
    from partialnet_mm.models.layers.utils import ConvNorm

    def stage():
        blocks = nn.Sequential(*[PartialNetBlock(PATChannel(32), _mlp(32)) for _ in range(2)])
        return PartialNetStage(blocks, ConvNorm(16, 32, 2, 2))

    def dynamic(cls, **kwargs):
        layer = cls(32, 0.25, **kwargs)
        with torch.no_grad():  # a learned-looking gate state: some gates on
            for p in layer.gates.parameters():
                p.copy_(torch.linspace(1, -1, p.numel()).view_as(p))
        return layer

    cases = {name: (lambda cls=cls: cls(32), (2, 32, 6, 5))
             for name, cls in CHANNEL_ATTENTIONS.items()}
    cases.update({
        'ConvNorm': (lambda: ConvNorm(8, 16, 3, padding=1), (2, 8, 9, 7)),
        'SelfAttentionBranch': (lambda: SelfAttentionBranch(32, 4), (1, 32, 5, 6)),
        'PATChannel': (lambda: PATChannel(32), (2, 32, 6, 5)),
        'PATSelfAttention': (lambda: PATSelfAttention(64), (1, 64, 5, 6)),
        'PATSpatial': (lambda: PATSpatial(32), (2, 32, 6, 5)),
        'PartialMLP': (lambda: _mlp(32), (2, 32, 6, 5)),
        'PartialMLP without PAT_sp': (lambda: _mlp(32, with_pat_sp=False), (2, 32, 6, 5)),
        'PartialNetBlock': (lambda: PartialNetBlock(PATChannel(32), _mlp(32)), (2, 32, 6, 5)),
        'PartialNetBlockV2': (lambda: PartialNetBlockV2(PATSelfAttention(64), _mlp(64)),
                              (1, 64, 5, 6)),
        'PartialNetStage': (stage, (2, 16, 12, 10)),
        'DynamicPATChannel': (lambda: dynamic(DynamicPATChannel), (2, 32, 6, 5)),
        'DynamicPATSelfAttention': (lambda: dynamic(DynamicPATSelfAttention, num_heads=2),
                                    (1, 32, 5, 6)),
    })
    return cases


def test_every_module_with_an_inference_form_is_under_the_contract():
    import importlib
    import inspect
    import pkgutil

    import partialnet_mm
    with_fuse = set()
    for info in pkgutil.walk_packages(partialnet_mm.__path__, 'partialnet_mm.'):
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and issubclass(cls, nn.Module) and \
                    hasattr(cls, 'fuse'):
                with_fuse.add(name)
    covered = {name.split()[0] for name in _fuse_cases()}
    covered |= {cls.__name__ for cls in CHANNEL_ATTENTIONS.values()}
    assert with_fuse - {'ChannelReweighting', 'DynamicPATConv'} == covered - set(
        CHANNEL_ATTENTIONS)


@pytest.mark.parametrize('name', sorted(_fuse_cases()))
def test_fuse_returns_a_module_that_replaces_it(name):
    """fuse() -> nn.Module: a new module computing the same in eval mode (what
    timm.utils.reparameterize_model sets in its place), the module itself left as it was;
    fuse() of the result is the result again, or an equal module."""
    build, shape = _fuse_cases()[name]
    torch.manual_seed(0)
    module = randomize_norms(build()).eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        expected = module(x)
        fused = module.fuse()
        assert isinstance(fused, nn.Module) and fused is not module
        assert (fused.eval()(x.clone()) - expected).abs().max() <= 1e-4
        torch.testing.assert_close(module(x), expected, atol=0, rtol=0)  # untouched
        again = fused.fuse() if hasattr(fused, 'fuse') else fused
        torch.testing.assert_close(again.eval()(x.clone()), fused(x.clone()), atol=0, rtol=0)
    if getattr(fused, 'deploy', False):
        assert again is fused  # a module in its inference form is its own fused form


def test_fold_pat_sp_keeps_a_biased_fc2():
    """fold_pat_sp on an fc2 with a bias (the MLP's own has none): the gated half keeps fc2's
    rows and bias, the rest becomes PAT_sp's 1x1 conv after fc2, bias included."""
    from partialnet_mm.models.layers.blocks import fold_pat_sp
    from partialnet_mm.models.layers.patconv import PATSpatial
    torch.manual_seed(0)
    fc2 = nn.Conv2d(12, 8, 1, bias=True)
    pat_sp = randomize_norms(PATSpatial(8)).eval().fuse()
    into = nn.Conv2d(12, 8, 1, bias=True)
    with torch.no_grad():
        fold_pat_sp(fc2, pat_sp, into)
        x = torch.randn(2, 12, 5, 5)
        y = fc2(x)
        start = pat_sp.attn_channels
        torch.testing.assert_close(into(x)[:, :start], y[:, :start])
        torch.testing.assert_close(into(x)[:, start:], pat_sp.mix(y[:, start:]))
    with pytest.raises(ValueError, match='fuse\\(\\) it first'):
        fold_pat_sp(fc2, PATSpatial(8), into)
