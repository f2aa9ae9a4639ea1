"""Deployment as a mode: ``deploy=True``, fused checkpoints, the checkpoint's form, gradients,
memory flat in the number of input sizes."""
import io
import os.path as osp
import re

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config

from partialnet_mm.deploy import fused_copy, randomize_norms
from partialnet_mm.models import PartialNet, PartialNetClassifier

from helpers import REPO, TINY, mm_build

RATIOS = [[0.5], [0.25], [0.125, 0.5], [0.25]]  # per block, as tools/export_split_ratios.py writes


VARIANTS = [dict(arch=a) for a in ('t0', 't1', 't2', 's', 'm', 'l')] + [
    dict(arch=TINY, with_pat_sp=False),
    dict(arch=TINY, channel_attention='se'),
    dict(arch=TINY, channel_attention='srm'),
    dict(arch=TINY, channel_attention='eca'),
    dict(arch=TINY, partial_ratio=RATIOS),
    dict(arch=TINY, out_indices=(1, 3), with_out_norm=False),
    dict(arch=TINY, norm_cfg=dict(type='SyncBN')),
]


def _saved(state: dict) -> dict:
    """``state`` through torch.save / torch.load, as a checkpoint file holds it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _variant_id(kwargs):
    arch = kwargs['arch'] if isinstance(kwargs['arch'], str) else 'tiny'
    return '-'.join([arch] + [f'{k}={v}' for k, v in kwargs.items() if k != 'arch'])[:60]


@pytest.mark.parametrize('kwargs', VARIANTS, ids=_variant_id)
def test_deploy_true_builds_the_switched_model_and_loads_its_checkpoint(kwargs):
    torch.manual_seed(0)
    model = randomize_norms(PartialNet(**kwargs)).eval()
    fused = fused_copy(model)
    twin = PartialNet(**kwargs, deploy=True)
    assert [(n, type(m)) for n, m in twin.named_modules()] == \
        [(n, type(m)) for n, m in fused.named_modules()]
    state = _saved(fused.state_dict())
    assert {k: v.shape for k, v in twin.state_dict().items()} == \
        {k: v.shape for k, v in state.items()}
    twin.load_state_dict(state)  # strict
    assert twin.deploy and not twin.training
    assert not any(p.requires_grad for p in twin.parameters())
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        for ref, a, b in zip(model(x), fused(x), twin(x), strict=True):
            assert torch.equal(a, b)  # the same graph and weights
            assert (ref - b).abs().max() <= 1e-4


def test_deploy_true_refuses_what_has_no_fused_form():
    with pytest.raises(ValueError, match="norm_cfg type 'GN' cannot be folded"):
        PartialNet(TINY, norm_cfg=dict(type='GN', num_groups=4), deploy=True)
    with pytest.raises(ValueError, match="norm_cfg type 'GN' cannot be folded"):
        PartialNet(TINY, norm_cfg=dict(type='GN', num_groups=4)).switch_to_deploy()
    with pytest.raises(ValueError, match='export_split_ratios'):
        PartialNet(TINY, dpconv=dict(), deploy=True)


def test_pure_torch_classifier_round_trip():
    torch.manual_seed(0)
    model = randomize_norms(PartialNetClassifier('t0', num_classes=7)).eval()
    fused = fused_copy(model)
    twin = PartialNetClassifier('t0', num_classes=7, deploy=True)
    twin.load_state_dict(_saved(fused.state_dict()))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (twin(x) - model(x)).abs().max() <= 1e-4


def test_mmpretrain_classifier_round_trip():
    torch.manual_seed(0)
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'partialnet-t0_8xb512_in1k.py'))
    model = mm_build('mmpretrain', cfg.model).eval()
    randomize_norms(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x, mode='tensor')
        model.backbone.switch_to_deploy()
        state = _saved(model.state_dict())
        cfg.model.backbone.deploy = True
        twin = mm_build('mmpretrain', cfg.model).eval()
        twin.load_state_dict(state)  # strict, head included
        assert twin.backbone.deploy
        assert (twin(x, mode='tensor') - ref).abs().max() <= 1e-4


def test_mask_rcnn_round_trip():
    torch.manual_seed(0)
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'mask_rcnn_partialnet_t0_1x.py'))
    cfg.model.backbone.init_cfg = None
    model = mm_build('mmdet', cfg.model).eval()
    randomize_norms(model.backbone)
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        ref_feats = model.extract_feat(x)
        ref_rpn = model.rpn_head(ref_feats)
        model.backbone.switch_to_deploy()
        state = _saved(model.state_dict())
        cfg.model.backbone.deploy = True
        twin = mm_build('mmdet', cfg.model).eval()
        twin.load_state_dict(state)  # strict: neck and heads too
        feats = twin.extract_feat(x)
        for a, b in zip(ref_feats, feats, strict=True):
            assert (a - b).abs().max() <= 1e-4
        for a, b in zip(ref_rpn, twin.rpn_head(feats), strict=True):
            for p, q in zip(a, b, strict=True):
                assert (p - q).abs().max() <= 1e-4


# ------------------------------------------------------------------ the checkpoint's form
def test_a_checkpoint_in_the_other_form_is_a_clear_error(tmp_path):
    from mmengine.runner import load_checkpoint

    torch.manual_seed(0)
    model = randomize_norms(PartialNet(TINY)).eval()
    fused = fused_copy(model)
    with pytest.raises(KeyError, match=r'holds a fused PartialNet .*Build it with deploy=True'):
        PartialNet(TINY).load_state_dict(fused.state_dict())
    with pytest.raises(KeyError, match=r'holds a training \(unfused\) PartialNet.*'
                                       r'reparameterize_model tool'):
        PartialNet(TINY, deploy=True).load_state_dict(model.state_dict())

    fused_file, unfused_file = str(tmp_path / 'fused.pth'), str(tmp_path / 'unfused.pth')
    torch.save(dict(state_dict=fused.state_dict()), fused_file)
    torch.save(dict(state_dict=model.state_dict()), unfused_file)
    # mmengine's loader (tools/test.py, load_from) only warns on keys that do not fit
    with pytest.raises(KeyError, match='holds a fused PartialNet'):
        load_checkpoint(PartialNet(TINY), fused_file)
    with pytest.raises(KeyError, match=r'holds a training \(unfused\)'):
        load_checkpoint(PartialNet(TINY, deploy=True), unfused_file)
    # init_cfg=Pretrained names the file
    with pytest.raises(KeyError, match=f'checkpoint {re.escape(fused_file)} holds a fused'):
        PartialNet(TINY, init_cfg=dict(type='Pretrained', checkpoint=fused_file)).init_weights()
    twin = PartialNet(TINY, deploy=True, init_cfg=dict(type='Pretrained', checkpoint=fused_file))
    twin.init_weights()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(fused(x), twin(x), strict=True):
            assert torch.equal(a, b)


# ------------------------------------------------------------------ gradients
def test_gradients_through_a_deployed_backbone():
    """Heads train on a fused, frozen backbone with the gradients they get on the unfused
    one; gradients into the fused graph are refused with a clear error."""
    torch.manual_seed(0)
    model = randomize_norms(PartialNet(TINY, out_indices=(3,))).eval().requires_grad_(False)
    fused = fused_copy(model)
    assert not any(p.requires_grad for p in fused.parameters())
    head = nn.Linear(model.channels[3], 3)
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for backbone in (model, fused):
        head.zero_grad()
        head(backbone(x)[0].mean((2, 3))).square().sum().backward()
        grads.append((head.weight.grad.clone(), head.bias.grad.clone()))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)

    fused.stages[1].blocks[0].mlp.fc1.weight.requires_grad_(True)
    with pytest.raises(RuntimeError, match='inference graph.*gradients cannot flow'):
        fused(x)
    with torch.no_grad():
        fused(x)  # inference is fine whatever requires_grad says
    fused.requires_grad_(False)
    with pytest.raises(RuntimeError, match='inference graph'):
        fused(x.clone().requires_grad_())
    fused.train()
    assert not any(m.training for m in fused.modules())  # a deployed backbone stays in eval


# ------------------------------------------------------------------ memory
def held_bytes(model: nn.Module) -> int:
    """Bytes of every tensor a module tree holds: parameters, buffers, and any tensor kept in
    another attribute (or in a dict, list or tuple there), each storage counted once."""
    storages = {}

    def visit(obj):
        if isinstance(obj, torch.Tensor):
            storages[obj.untyped_storage().data_ptr()] = obj.untyped_storage().nbytes()
        elif isinstance(obj, dict):
            for v in obj.values():
                visit(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                visit(v)
        elif hasattr(obj, '__dict__') and not isinstance(obj, (nn.Module, type)):
            visit(vars(obj))  # e.g. a cache object

    for module in model.modules():
        for name, value in vars(module).items():
            if name != '_modules':
                visit(value)
    return sum(storages.values())


def test_memory_is_flat_in_the_number_of_input_sizes():
    torch.manual_seed(0)
    model = randomize_norms(PartialNet('t0')).eval()
    fused = fused_copy(model)
    sizes = [(32 * (1 + i % 10), 32 * (1 + i // 10)) for i in range(50)]  # 50 distinct sizes
    assert len(set(sizes)) == 50
    with torch.no_grad():
        before = held_bytes(model)
        for h, w in sizes:
            model(torch.randn(1, 3, h, w))
        assert held_bytes(model) == before  # the training graph keeps nothing per size
        # the deployed graph keeps the iRPE bias of its last few sizes, a fixed number: what
        # it holds is bounded by that many biases of the largest size, however many it sees
        before = held_bytes(fused)
        caches = [m.bias_cache for m in fused.modules() if hasattr(m, 'bias_cache')]
        rounds = (sizes, sizes[::-1] + [(s + 32, s) for s in range(64, 448, 32)])
        for seen in rounds:
            for h, w in seen:
                fused(torch.randn(1, 3, h, w))
            tokens = max((h // 32) * (w // 32) for h, w in seen)
            bound = len(caches) * caches[0].size * 4 * tokens ** 2 * 4  # 4 heads, fp32
            assert 0 < held_bytes(fused) - before <= bound
            assert caches and all(len(c.entries) == c.size == 4 for c in caches)

    model.train()  # and while training (autograd), at a few sizes
    before = held_bytes(model)
    for h, w in sizes[:4]:
        sum(o.sum() for o in model(torch.randn(2, 3, h, w))).backward()
    model.zero_grad(set_to_none=True)
    assert held_bytes(model) == before
