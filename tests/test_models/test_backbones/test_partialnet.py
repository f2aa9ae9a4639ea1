"""The PartialNet backbone: outputs, arguments and their errors, freezing, init, the parameter
table."""
import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from partialnet_mm.deploy import randomize_norms
from partialnet_mm.models import PartialNet, PartialNetClassifier

from helpers import TINY


def test_t0_default_outputs():
    model = PartialNet('t0').eval()
    outs = model(torch.randn(1, 3, 224, 224))
    assert [tuple(o.shape) for o in outs] == [(1, 32, 56, 56), (1, 64, 28, 28), (1, 128, 14, 14),
                                              (1, 256, 7, 7)]
    assert all(isinstance(getattr(model, f'norm{i}'), nn.BatchNorm2d) for i in range(4))


@pytest.mark.parametrize('out_indices,expected', [
    ((0, 1, 2, 3), [0, 1, 2, 3]),
    ((3,), [3]),
    ((-1,), [3]),
    ((1, -2), [1, 2]),
    ((0, 2), [0, 2]),
    (2, [2]),
])
def test_out_indices(out_indices, expected):
    model = PartialNet(TINY, out_indices=out_indices).eval()
    assert model.out_indices == tuple(expected)
    outs = model(torch.randn(2, 3, 64, 64))
    assert isinstance(outs, tuple) and len(outs) == len(expected)
    for o, i in zip(outs, expected, strict=True):
        assert o.shape == (2, 16 * 2 ** i, 64 // 2 ** (i + 2), 64 // 2 ** (i + 2))
    assert not hasattr(model, 'norm1') or 1 in expected


def test_out_indices_out_of_range():
    with pytest.raises(IndexError, match='out of range'):
        PartialNet(TINY, out_indices=(4,))
    with pytest.raises(IndexError, match='out of range'):
        PartialNet(TINY, out_indices=(-5,))


@pytest.mark.parametrize('hw,expected', [
    ((511, 511), [(127, 127), (63, 63), (31, 31), (15, 15)]),
    ((112, 137), [(28, 34), (14, 17), (7, 8), (3, 4)]),
    ((32, 32), [(8, 8), (4, 4), (2, 2), (1, 1)]),
])
def test_odd_input_sizes(hw, expected):
    model = PartialNet('t0').eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *hw))
    assert [tuple(o.shape[-2:]) for o in outs] == expected
    assert all(torch.isfinite(o).all() for o in outs)


def test_input_errors():
    model = PartialNet(TINY)
    with pytest.raises(ValueError, match=r'expects input of shape \(B, 3, H, W\), got \(1, 4, 64, 64\)'):
        model(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match='H and W >= 32'):
        model(torch.randn(1, 3, 16, 64))
    gray = PartialNet(TINY, in_channels=1).eval()
    assert gray(torch.randn(1, 1, 64, 64))[0].shape[1] == 16


def test_batch_of_one_in_training_is_a_clear_error():
    model = PartialNet(TINY).train()
    with pytest.raises(ValueError, match='needs at least 2 samples per GPU'):
        model(torch.randn(1, 3, 64, 64))
    # fine in eval, with norm_eval, and with two samples
    model.eval()(torch.randn(1, 3, 64, 64))
    PartialNet(TINY, norm_eval=True).train()(torch.randn(1, 3, 64, 64))
    PartialNet(TINY).train()(torch.randn(2, 3, 64, 64))


def test_unknown_arch():
    with pytest.raises(KeyError, match="unknown PartialNet arch 'xl'"):
        PartialNet('xl')


def test_incomplete_arch_dict():
    with pytest.raises(KeyError, match=r"misses \['act_cfg', 'depths'\]"):
        PartialNet(dict(embed_dims=32))
    with pytest.raises(ValueError, match='4 positive ints'):
        PartialNet(dict(embed_dims=32, depths=(1, 2, 3), act_cfg=dict(type='ReLU')))
    with pytest.raises(TypeError):
        PartialNet(['t0'])


def test_arch_names_case_insensitive_and_table():
    assert PartialNet('T2').arch == dict(embed_dims=64, depths=(2, 2, 6, 4), act_cfg=dict(type='ReLU'))
    assert isinstance(PartialNet('t1').stages[0].blocks[0].mlp.act, nn.GELU)
    assert isinstance(PartialNet('t2').stages[0].blocks[0].mlp.act, nn.ReLU)
    assert isinstance(PartialNet(TINY, act_cfg=dict(type='ReLU')).stages[0].blocks[0].mlp.act, nn.ReLU)


@pytest.mark.parametrize('ratio', [0, 1.0, -0.5, 2])
def test_backbone_invalid_split_ratio(ratio):
    with pytest.raises(ValueError, match='split ratio'):
        PartialNet(TINY, partial_ratio=ratio)


def test_backbone_split_ratio_empty_part():
    with pytest.raises(ValueError, match='leaves an empty part'):
        PartialNet(dict(TINY, embed_dims=4), partial_ratio=0.1)


def test_other_bad_settings():
    with pytest.raises(ValueError, match='frozen_stages'):
        PartialNet(TINY, frozen_stages=5)
    with pytest.raises(KeyError, match='unknown channel_attention'):
        PartialNet(TINY, channel_attention='cbam')
    with pytest.raises(ValueError, match='drop_path_rate'):
        PartialNet(TINY, drop_path_rate=1.0)


def _frozen_modules(model, n):
    mods = [model.patch_embed] if n >= 0 else []
    return mods + [model.stages[i] for i in range(max(n, 0))]


@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 2, 4])
def test_frozen_stages(frozen_stages):
    model = PartialNet(TINY, frozen_stages=frozen_stages)
    model.train()
    frozen = _frozen_modules(model, frozen_stages)
    if frozen_stages >= 1:
        frozen += [getattr(model, f'norm{i}') for i in range(frozen_stages)]
    frozen_params = {id(p) for m in frozen for p in m.parameters()}
    for p in model.parameters():
        assert p.requires_grad == (id(p) not in frozen_params)
    for m in frozen:
        for sub in m.modules():
            if isinstance(sub, _BatchNorm):
                assert not sub.training
    trainable = [m for m in model.modules() if isinstance(m, _BatchNorm) and
                 not any(m is s for f in frozen for s in f.modules())]
    assert all(m.training for m in trainable)
    if frozen_stages == 4:
        assert not any(p.requires_grad for p in model.parameters())
        return
    # frozen parts get no gradient
    out = model(torch.randn(2, 3, 64, 64))
    sum(o.sum() for o in out).backward()
    for m in frozen:
        assert all(p.grad is None for p in m.parameters())


def test_frozen_bn_stats_unchanged():
    model = PartialNet(TINY, frozen_stages=1).train()
    before = model.patch_embed.norm.running_mean.clone()
    stage_before = model.stages[1].downsample.norm.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(model.patch_embed.norm.running_mean, before)
    assert not torch.equal(model.stages[1].downsample.norm.running_mean, stage_before)


def test_norm_eval():
    model = PartialNet(TINY, norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    stats = [m.running_mean.clone() for m in bns]
    model(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(s, m.running_mean) for s, m in zip(stats, bns, strict=True))
    # other modules stay in training mode (dropout in PAT_sf)
    assert model.stages[3].blocks[0].token_mixer.attn.attn.attn_drop.training
    model.eval()
    assert not any(m.training for m in model.modules())


def test_with_cp_same_output_and_grads():
    torch.manual_seed(0)
    ref = PartialNet(TINY, drop_path_rate=0.2)
    cp = PartialNet(TINY, drop_path_rate=0.2, with_cp=True)
    cp.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 64, 64)
    outs = []
    for model in (ref, cp):
        model.train()
        torch.manual_seed(1)  # same drop-path / dropout draws
        xi = x.clone().requires_grad_()
        out = model(xi)
        sum((o * o).sum() for o in out).backward()
        outs.append((out, xi.grad, {n: p.grad for n, p in model.named_parameters()}))
    for a, b in zip(outs[0][0], outs[1][0], strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(outs[0][1], outs[1][1], atol=1e-5)
    for name, g in outs[0][2].items():
        assert torch.allclose(g, outs[1][2][name], atol=1e-5), name


def test_drop_path_rate_schedule():
    model = PartialNet('t0', drop_path_rate=0.1)
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, 'drop_prob') else 0.0
             for s in model.stages for b in s.blocks]
    assert len(rates) == 13
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1)
    assert rates == sorted(rates)


# Training-graph parameter counts of the authors' code with PAT_sp on (github haiduo/PartialNet), in M.
AUTHORS_PARAMS = {'t0': 3.56, 't1': 6.14, 't2': 12.65, 's': 28.98, 'm': 61.37, 'l': 104.47}


PAPER_PARAMS = {'t2': 12.6, 's': 29.0, 'm': 61.3, 'l': 104.4}


@pytest.mark.parametrize('arch', list(AUTHORS_PARAMS))
def test_parameter_table(arch):
    n = sum(p.numel() for p in PartialNetClassifier(arch).parameters())
    assert n / 1e6 == pytest.approx(AUTHORS_PARAMS[arch], abs=0.005)
    if arch in PAPER_PARAMS:
        assert abs(n / 1e6 / PAPER_PARAMS[arch] - 1) < 0.01
    # the classifier is the backbone plus exactly the paper's head
    backbone = PartialNet(arch, out_indices=(3,), with_out_norm=False)
    c = backbone.channels[-1]
    head = c * 1280 + 1280 * 1000 + 1000
    assert sum(p.numel() for p in backbone.parameters()) + head == n


def test_with_pat_sp_off_removes_it():
    model = PartialNetClassifier('t0')
    on = sum(p.numel() for p in model.parameters())
    off = sum(p.numel() for p in PartialNetClassifier('t0', with_pat_sp=False).parameters())
    # per block: conv C/2 x C/2 + 1x1 gate C/2 + two BNs of C/2 (2 params each)
    embed, depths = PartialNet.arch_zoo['t0']['embed_dims'], PartialNet.arch_zoo['t0']['depths']
    dims = [embed * 2 ** i for i, d in enumerate(depths) for _ in range(d)]
    assert model.backbone.channels == [embed * 2 ** i for i in range(4)]
    assert on - off == sum((c // 2) ** 2 + c // 2 + 4 * (c // 2) for c in dims)


def test_channel_attention_choice():
    from partialnet_mm.models import CHANNEL_ATTENTIONS
    for name, attention in CHANNEL_ATTENTIONS.items():
        model = PartialNet(TINY, channel_attention=name).eval()
        assert model(torch.randn(1, 3, 64, 64))[0].shape == (1, 16, 16, 16)
        assert all(isinstance(block.token_mixer.attn.attention, attention)
                   for stage in model.stages[:3] for block in stage.blocks)
    with pytest.raises(KeyError, match="unknown channel_attention 'cbam'"):
        PartialNet(TINY, channel_attention='cbam')


def test_dpconv_takes_exactly_the_attentions_that_say_so():
    from partialnet_mm.models import CHANNEL_ATTENTIONS
    for name, attention in CHANNEL_ATTENTIONS.items():
        if attention.dpconv_exact:
            PartialNet(TINY, channel_attention=name, dpconv=dict())
        else:
            with pytest.raises(ValueError, match=f'DPConv cannot learn .* {attention.__name__}'):
                PartialNet(TINY, channel_attention=name, dpconv=dict())
    assert [n for n, a in CHANNEL_ATTENTIONS.items() if a.dpconv_exact] == ['srm', 'gaussian']


# ---------------------------------------------------------------- checkpoints
def test_pretrained_init_with_prefix(tmp_path):
    src = randomize_norms(PartialNet(TINY, out_indices=(3,), with_out_norm=False))
    path = tmp_path / 'cls.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in src.state_dict().items()},
                'meta': {}}, path)
    det = PartialNet(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                         prefix='backbone.'))
    det.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(det.state_dict()[k], v), k
    # output norms (absent from a classifier) keep their fresh init
    assert torch.equal(det.norm0.weight, torch.ones(16))


def test_pretrained_missing_file(tmp_path):
    model = PartialNet(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'nope.pth')))
    with pytest.raises(FileNotFoundError, match='init_cfg.checkpoint: no file at'):
        model.init_weights()


def test_pretrained_mismatched_keys(tmp_path):
    path = tmp_path / 't0.pth'
    torch.save(PartialNet('t0').state_dict(), path)
    model = PartialNet('t2', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(KeyError, match=r'does not fit PartialNet.*(missing keys|shape mismatch)'):
        model.init_weights()
    model = PartialNet('t0', init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                           prefix='backbone.'))
    with pytest.raises(KeyError, match="no key starts with prefix 'backbone.'"):
        model.init_weights()
    no_sp = PartialNet('t0', with_pat_sp=False, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(KeyError, match='unexpected keys: .*pat_sp'):
        no_sp.init_weights()


def test_default_init_is_truncated_normal():
    torch.manual_seed(0)
    model = PartialNet('t0')
    model.init_weights()
    w = model.stages[2].blocks[0].mlp.fc1.conv.weight
    # torch's default (kaiming-uniform, fan_in 128) would give std ~0.05
    assert w.std().item() == pytest.approx(0.02, rel=0.15)
    assert abs(w.mean().item()) < 0.002
