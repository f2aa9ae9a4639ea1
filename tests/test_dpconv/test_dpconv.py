"""DPConv: gates, masks, losses, freezing, mmpretrain training, the export and plot tools."""
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config

from partialnet_mm.deploy import randomize_norms
from partialnet_mm.models.layers.gates import first_illegal_step
from partialnet_mm import collect_gates, dpconv_losses, freeze_state_dict
from partialnet_mm.models import (ChannelGates, DynamicPATChannel, DynamicPATSelfAttention,
                                  PartialNet, SEAttention)

from helpers import REPO, TINY, mm_build, run

DP_CONFIG = osp.join(REPO, 'configs', 'partialnet-t0-dpconv_8xb512_in1k.py')


DIGITS_CONFIG = osp.join(REPO, 'configs', 'demo', 'partialnet-t0-dpconv_digits.py')


def set_gates(gates: ChannelGates, free_bits):
    with torch.no_grad():
        gates.gate.copy_(torch.tensor([0.5 if b else -0.5 for b in free_bits]))


def kronecker_mask(gates: ChannelGates) -> torch.Tensor:
    """The paper's (2**K, 2**K) mask U = kron_k(b_k * ones(2, 2) + (1 - b_k) * I_2): the
    reference form that ChannelGates.index_mask computes the first row of."""
    eye = torch.eye(2, dtype=gates.gate.dtype)
    u = gates.gate.new_ones(1, 1)
    for b in gates.bits():
        u = torch.kron(b * torch.ones_like(eye) + (1 - b) * eye, u)
    return u


def is_prefix(gates: ChannelGates) -> bool:
    """The raw gates are in legal order (no gate on above one that is off)."""
    return first_illegal_step(gates.raw_bits().tolist()) is None


def legal_states(n):
    """All prefix states of n free gates: 1..1 0..0."""
    return [[1] * k + [0] * (n - k) for k in range(n + 1)]


# ---------------------------------------------------------------------- gates
@pytest.mark.parametrize('channels,bits,group', [(32, 5, 1), (48, 4, 3), (96, 5, 3),
                                                 (160, 5, 5), (2, 1, 1)])
def test_gates_act_on_power_of_two_part(channels, bits, group):
    init = group / channels  # smallest reachable split: one index of the 2**K
    gates = ChannelGates(channels, init)
    assert (gates.num_bits, gates.group) == (bits, group)
    assert gates.conv_channels() == group and gates.ratio() == init
    set_gates(gates, [1] * bits)
    assert gates.conv_channels() == channels
    for state in legal_states(bits):
        set_gates(gates, state)
        mask = gates.channel_mask()
        k = group * 2 ** sum(state)
        assert mask.tolist() == [1.0] * k + [0.0] * (channels - k)  # a channel prefix
        assert gates.ratio() == k / channels and is_prefix(gates)


def test_kronecker_mask_matches_the_paper():
    gates = ChannelGates(16, 0.25)
    for state in ([1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]):
        set_gates(gates, state)
        u = kronecker_mask(gates)
        assert int(u.count_nonzero()) == 2 ** (4 + sum(state))  # section 3.2: R = 2^(K + sum b)
        assert torch.equal(u[0], gates.index_mask())  # conv part = U's first block
        assert gates.conv_channels() == 16 // 2 ** (4 - sum(state))
        assert is_prefix(gates)
    # illegal raw order: gates above the first off one are inert, the split stays a prefix
    set_gates(gates, [1, 0, 1, 1])
    assert not is_prefix(gates) and gates.bits().tolist() == [1, 0, 0, 0]
    assert gates.channel_mask().nonzero().flatten().tolist() == [0, 1]
    assert int(kronecker_mask(gates).count_nonzero()) == 2 ** (4 + 1)


@pytest.mark.parametrize('channels', [3, 45, 1, 0])
def test_channel_count_without_factor_two_is_an_error(channels):
    with pytest.raises(ValueError, match='factor of 2|>= 2'):
        DynamicPATChannel(channels)


def test_unreachable_init_ratio_and_empty_gate_range():
    with pytest.raises(ValueError, match='not reachable'):
        ChannelGates(48, 0.3)
    with pytest.raises(ValueError, match='no learnable gate'):
        DynamicPATChannel(2, 0.5)  # at most half to the conv: nothing left to learn
    with pytest.raises(ValueError, match='SEAttention'):
        DynamicPATChannel(32, 0.25, attention=SEAttention)


# ---------------------------------------------------------------------- same function
@pytest.mark.parametrize('channels', [48, 64])
@pytest.mark.parametrize('attention', ['gaussian', 'srm'])
def test_dynamic_pat_ch_equals_plain_pat_ch(channels, attention):
    """The attention branch works for whatever split the gates choose."""
    from partialnet_mm.models import CHANNEL_ATTENTIONS
    torch.manual_seed(0)
    layer = DynamicPATChannel(channels, 0.25, CHANNEL_ATTENTIONS[attention])
    randomize_norms(layer)
    x = torch.randn(3, channels, 8, 6)
    states = legal_states(len(layer.gates.gate))
    for state in states:
        set_gates(layer.gates, state)
        plain = layer.freeze().eval()
        assert plain.conv_channels == layer.gates.conv_channels()
        assert plain.attn_channels == channels - plain.conv_channels > 0
        assert torch.allclose(layer.eval()(x), plain(x), atol=1e-5)
    assert len(states) == layer.gates.num_bits  # ratio 1/2**K .. 1/2


@pytest.mark.parametrize('channels,heads', [(96, 4), (64, 4), (48, 2)])
def test_dynamic_pat_sf_equals_plain_pat_sf(channels, heads):
    torch.manual_seed(0)
    layer = DynamicPATSelfAttention(channels, 0.25, num_heads=heads)
    with torch.no_grad():
        for p in layer.attn.parameters():  # non-trivial LN, biases and iRPE table
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(2, channels, 5, 7)
    for state in legal_states(len(layer.gates.gate)):
        set_gates(layer.gates, state)
        plain = layer.freeze().eval()
        assert plain.attn_channels % heads == 0
        assert torch.allclose(layer.eval()(x), plain(x), atol=1e-5)


# ---------------------------------------------------------------------- gradients
def _train_gates(layer, sign, steps=60):
    opt = torch.optim.SGD([layer.gates.gate], lr=0.02)
    x = torch.randn(2, layer.channels, 6, 6)
    for _ in range(steps):
        opt.zero_grad()
        layer.train()
        loss = sign * layer.gates.cost() + 0 * layer(x).sum()
        loss.backward()
        opt.step()
    return layer.gates.ratio()


@pytest.mark.parametrize('make', [lambda: DynamicPATChannel(64, 0.25),
                                  lambda: DynamicPATSelfAttention(64, 0.25)])
def test_gates_get_gradients_both_ways(make):
    torch.manual_seed(0)
    layer = make()
    start = layer.gates.ratio()
    y = layer.train()(torch.randn(2, 64, 6, 6))
    y.square().mean().backward()
    assert layer.gates.gate.grad is not None and layer.gates.gate.grad.abs().sum() > 0
    assert _train_gates(make(), +1.0) < start  # a loss that prefers fewer channels
    assert _train_gates(make(), -1.0) > start  # ... and one that prefers more


def test_straight_through_window():
    gates = ChannelGates(8, 0.25)
    with torch.no_grad():
        gates.gate.copy_(torch.tensor([0.5, -2.0, 3.0]))
    gates.cost().backward()
    grad = gates.gate.grad
    assert grad[0] != 0 and grad[1] == 0 and grad[2] == 0  # passes only where |g| < 1


# ---------------------------------------------------------------------- losses
def test_complexity_and_order_losses():
    torch.manual_seed(0)
    model = PartialNet(TINY, dpconv=dict())
    gates = [g for _, g in collect_gates(model)]
    task = torch.tensor(2.0, requires_grad=True)
    # start: ratio 1/4 everywhere = exactly the budget of b = 4
    out = dpconv_losses(model, task, budget=4, alpha=-0.01)
    assert set(out) == {'loss_dpconv_complexity', 'loss_dpconv_order', 'dpconv_cost_ratio'}
    assert out['loss_dpconv_complexity'].item() == 0 and out['loss_dpconv_order'].item() == 0
    assert out['dpconv_cost_ratio'].item() == pytest.approx(1.0)
    # b = 8 (ratio 1/8 budget): over budget by 4x in cost -> task * (1/4)**alpha - task
    out = dpconv_losses(model, task, budget=8, alpha=-0.01)
    assert out['dpconv_cost_ratio'].item() == pytest.approx(4.0)
    expected = 2.0 * (0.25 ** -0.01 - 1)
    assert out['loss_dpconv_complexity'].item() == pytest.approx(expected, rel=1e-4)
    (task + out['loss_dpconv_complexity']).backward()
    assert all(g.gate.grad is not None and g.gate.grad.abs().sum() > 0 for g in gates)
    assert all((g.gate.grad >= 0).all() for g in gates)  # descent lowers the gates
    # order: an illegal 0-then-1 step costs sum |g| from that gate on
    g0 = gates[0]
    with torch.no_grad():
        g0.gate.copy_(torch.tensor([0.3, -0.2, 0.4]))  # bits 1 0 1 (+ fixed 0)
    out = dpconv_losses(model, task, budget=4, order_weight=2.0)
    assert out['loss_dpconv_order'].item() == pytest.approx(2.0 * 0.4)
    with torch.no_grad():
        g0.gate.copy_(torch.tensor([-0.3, 0.2, -0.4]))  # bits 0 1 0
    out = dpconv_losses(model, task, budget=4, order_weight=1.0)
    assert out['loss_dpconv_order'].item() == pytest.approx(0.2 + 0.4)


@pytest.mark.parametrize('budget', [0, -1, 17, float('inf')])
def test_bad_budget(budget):
    model = PartialNet(TINY, dpconv=dict())  # smallest gated layer: 16 channels
    with pytest.raises(ValueError, match='budget'):
        dpconv_losses(model, torch.tensor(1.0), budget=budget)


def test_losses_need_gates():
    with pytest.raises(ValueError, match='no DPConv gates'):
        dpconv_losses(PartialNet(TINY), torch.tensor(1.0))


# ---------------------------------------------------------------------- backbone
def _random_legal_gates(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _, gates in collect_gates(model):
        n = len(gates.gate)
        on = int(torch.randint(0, n + 1, (1,), generator=g))
        set_gates(gates, [1] * on + [0] * (n - on))


def test_frozen_backbone_computes_the_same_function():
    torch.manual_seed(0)
    arch = dict(embed_dims=24, depths=(1, 2, 2, 1), act_cfg=dict(type='GELU'))
    dp = randomize_norms(PartialNet(arch, dpconv=dict()))
    _random_legal_gates(dp)
    ratios = dp.split_ratios()
    assert len({r for row in ratios for r in row}) > 2
    state, by_layer = freeze_state_dict(dp.state_dict())
    assert not any('gate' in k for k in state)
    assert list(by_layer.values()) == [r for row in ratios for r in row]
    plain = PartialNet(arch, partial_ratio=ratios)
    plain.load_state_dict(state)  # strict
    assert plain.split_ratios() == ratios
    x = torch.randn(2, 3, 96, 64)
    for a, b in zip(dp.eval()(x), plain.eval()(x), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    plain.switch_to_deploy()  # the frozen model deploys like any PartialNet
    for a, b in zip(dp(x), plain(x), strict=True):
        assert torch.allclose(a, b, atol=1e-4)
    with pytest.raises(ValueError, match='export_split_ratios'):
        dp.switch_to_deploy()  # a configuration without a fused form, as at deploy=True
    with pytest.raises(ValueError, match='export_split_ratios'):
        PartialNet(arch, dpconv=dict(), deploy=True)


def test_partial_ratio_forms_and_errors():
    assert PartialNet(TINY, partial_ratio=[0.5, 0.25, 0.25, 0.125]).split_ratios() == \
        [[0.5], [0.25], [0.25, 0.25], [0.125]]
    assert PartialNet(TINY, partial_ratio=[[0.5], [0.25], [0.25, 0.5], [0.25]]).split_ratios() \
        == [[0.5], [0.25], [0.25, 0.5], [0.25]]
    with pytest.raises(ValueError, match='one entry per stage'):
        PartialNet(TINY, partial_ratio=[0.25, 0.25])
    with pytest.raises(ValueError, match='stage 2 has 2 blocks'):
        PartialNet(TINY, partial_ratio=[[0.25], [0.25], [0.25], [0.25]])
    with pytest.raises(TypeError, match='partial_ratio'):
        PartialNet(TINY, partial_ratio='1/4')
    with pytest.raises(KeyError, match='unknown dpconv'):
        PartialNet(TINY, dpconv=dict(budget=4))


@pytest.mark.parametrize('arch', ['t0', 't1', 's', 'l'])
def test_every_variant_builds_with_dpconv(arch):
    """48, 96 and 160 channel families included (the authors' code crashes on them)."""
    model = PartialNet(arch, dpconv=dict())
    assert model.split_ratios() == [[0.25] * d for d in model.arch['depths']]
    assert len(collect_gates(model)) == sum(model.arch['depths'])


# ---------------------------------------------------------------------- mmpretrain
def test_imagenet_dpconv_config_and_loss_dict():
    cfg = Config.fromfile(DP_CONFIG)
    assert cfg.model.type == 'DPConvImageClassifier' and cfg.model.backbone.arch == 't0'
    assert cfg.model.dpconv_loss == dict(budget=4, alpha=-0.01, order_weight=1.0)
    assert dict(type='DPConvRatioHook') in cfg.custom_hooks
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys['.gates.gate'] == dict(decay_mult=0.0)
    model = mm_build('mmpretrain', cfg.model)
    from mmpretrain.structures import DataSample
    samples = [DataSample().set_gt_label(i) for i in (3, 7)]
    losses = model.loss(torch.randn(2, 3, 64, 64), samples)
    assert {'loss', 'loss_dpconv_complexity', 'loss_dpconv_order'} <= set(losses)
    with pytest.raises(ValueError, match='DPConv gates'):
        bad = cfg.model.copy()
        bad.backbone = dict(cfg.model.backbone, dpconv=None)
        mm_build('mmpretrain', bad)


def _tool(*args):
    return run([sys.executable, *args])


TINY_CLS = """
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=16, depths=[1, 1, 2, 1],
                            act_cfg=dict(type='GELU'))),
    head=dict(in_channels=128))
"""


@pytest.mark.slow
def test_train_log_export_and_plot(tmp_path):
    """mmpretrain training on real digits logs the ratios each epoch; the export tool
    freezes them into a config and weights that reproduce the DPConv model."""
    dp_cfg = tmp_path / 'tiny_dpconv.py'
    dp_cfg.write_text(f'_base_ = {DIGITS_CONFIG!r}\n' + TINY_CLS)
    work = tmp_path / 'run'
    rc, out = _tool('tools/train.py', str(dp_cfg), '--work-dir', str(work), '--cfg-options',
                    'model.dpconv_loss.budget=8', 'train_cfg.max_epochs=2',
                    'train_cfg.val_interval=2', 'param_scheduler.1.T_max=1',
                    'param_scheduler.1.end=2', 'default_hooks.checkpoint.interval=2',
                    'train_dataloader.dataset.indices=128', 'val_dataloader.dataset.indices=60',
                    'default_hooks.logger.interval=1')
    assert rc == 0, out[-3000:]
    log = open(next(work.glob('*/*.log'))).read()
    assert log.count('DPConv split ratios after epoch') == 2
    assert 'loss_dpconv_complexity' in log and 'loss_dpconv_order' in log
    assert 'backbone.stages.2.blocks.1.token_mixer  1/' in log
    ckpt = work / 'epoch_2.pth'

    # the plain classifier to retrain: same network without DPConv
    plain_base = tmp_path / 'plain.py'
    plain_base.write_text(f'_base_ = {str(dp_cfg)!r}\n'
                          "model = dict(_delete_=True, type='ImageClassifier', "
                          "data_preprocessor={{_base_.model.data_preprocessor}}, "
                          "backbone={{_base_.model.backbone}}, neck={{_base_.model.neck}}, "
                          "head={{_base_.model.head}})\n")
    ratio_cfg, frozen = tmp_path / 'ratios.py', tmp_path / 'frozen.pth'
    rc, out = _tool('tools/export_split_ratios.py', str(ckpt), '--out', str(ratio_cfg),
                    '--base-config', str(plain_base), '--out-checkpoint', str(frozen))
    assert rc == 0, out[-3000:]

    from partialnet_mm.checkpoint import read_checkpoint
    dp_model = mm_build('mmpretrain', Config.fromfile(str(dp_cfg)).model)
    dp_model.load_state_dict(read_checkpoint(str(ckpt))[1])
    cfg = Config.fromfile(str(ratio_cfg))
    plain = mm_build('mmpretrain', cfg.model)
    assert type(plain).__name__ == 'ImageClassifier' and not plain.backbone.dpconv
    assert plain.backbone.split_ratios() == dp_model.backbone.split_ratios() == cfg.partial_ratio
    plain.load_state_dict(read_checkpoint(str(frozen))[1])  # strict
    x = torch.randn(4, 3, 64, 64)
    dp_model.eval(), plain.eval()
    with torch.no_grad():
        assert torch.allclose(dp_model(x), plain(x), atol=1e-5)

    # what tools/dpconv_digits.py reports: both classifiers on the test split (the same
    # function, so the same top-1) and the learned split's cost against its budget
    from partialnet_mm.dpconv.evaluate import evaluate_learned_split
    r = evaluate_learned_split(str(dp_cfg), 8, str(ckpt), str(ratio_cfg), str(frozen))
    assert 0 < r['accuracy'] <= 1 and r['frozen_accuracy'] == r['accuracy']
    assert r['partial_ratio'] == cfg.partial_ratio and r['budget'] == 8
    assert r['budget_met'] == (r['cost'] <= r['budget_cost'])

    png = tmp_path / 'fig.png'
    rc, out = _tool('tools/plot_split_ratios.py', str(ckpt), str(ckpt), '--labels', 'a', 'b',
                    '--out', str(png))
    assert rc == 0, out[-2000:]
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and png.stat().st_size > 5000

    # a checkpoint without gates: a clear error
    rc, out = _tool('tools/export_split_ratios.py', str(frozen))
    assert rc != 0 and 'no DPConv gates' in out


def test_the_budget_formula_is_the_losses_own():
    """B = sum (C_l / b)**2 and R = sum (conv channels)**2, written once (dpconv.losses) and
    what dpconv_losses logs as R / B."""
    from partialnet_mm.dpconv.losses import budget_cost, conv_cost
    model = PartialNet('t0', dpconv=dict(init_scale=1e-8), partial_ratio=0.5)
    gates = [g for _, g in collect_gates(model)]
    out = dpconv_losses(model, torch.tensor(1.0), budget=4)
    ratio = conv_cost(float(g.channel_mask().sum()) for g in gates) / budget_cost(
        [g.channels for g in gates], 4)
    assert out['dpconv_cost_ratio'].item() == pytest.approx(ratio, rel=1e-6)
    assert budget_cost([64, 128], 4) == 16 ** 2 + 32 ** 2 and conv_cost([3, 4]) == 25


def test_split_cost_and_the_digits_tables():
    """The learned split's cost is the losses' formula over the gates' channels; the tables
    of tools/dpconv_digits.py have a row per budget and per layer."""
    from partialnet_mm.dpconv.evaluate import results_tables, split_cost
    from partialnet_mm.dpconv.losses import budget_cost, conv_cost
    model = PartialNet('t0', dpconv=dict(init_scale=1e-8), partial_ratio=0.25)
    r = split_cost(model.state_dict(), model.channels, budget=4)
    gates = [g for _, g in collect_gates(model)]
    assert r['partial_ratio'] == model.split_ratios()
    assert r['cost'] == pytest.approx(conv_cost(float(g.channel_mask().sum()) for g in gates))
    assert r['budget_cost'] == budget_cost([g.channels for g in gates], 4)
    assert r['budget_met'] == (r['cost'] <= r['budget_cost'])
    results = [dict(r, budget=b, accuracy=0.5, frozen_accuracy=0.25, seconds=12.4)
               for b in (2, 8)]
    lines = results_tables(results).splitlines()
    assert lines[2].startswith('| 2 | 50.00% | 25.00% | ')
    assert lines[2].endswith(f' | {"yes" if r["budget_met"] else "NO"} | 12 |')
    assert len(lines) == 2 + 2 + 1 + 2 + len(r['ratios'])
    assert lines[-1].count('1/4') == 2  # every layer starts at 1/4
