"""Deployment as a first-class mode: ``deploy=True``, fused checkpoints that load and run
through the MM tools, gradients, memory flat in the number of input sizes, bad input."""
import io
import os
import os.path as osp
import re
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config

from partialnet_mm.benchmark import deployed
from partialnet_mm.compat import CheckpointError
from partialnet_mm.convert import read_checkpoint
from partialnet_mm.models import PartialNet, PartialNetClassifier
from partialnet_mm.synthetic_coco import make_synthetic_coco

from conftest import TINY, mm_build, randomize_bn
from test_configs_tools import REPO, _run

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
    model = randomize_bn(PartialNet(**kwargs)).eval()
    fused = deployed(model)
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
    model = randomize_bn(PartialNetClassifier('t0', num_classes=7)).eval()
    fused = deployed(model)
    twin = PartialNetClassifier('t0', num_classes=7, deploy=True)
    twin.load_state_dict(_saved(fused.state_dict()))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (twin(x) - model(x)).abs().max() <= 1e-4


def test_mmpretrain_classifier_round_trip():
    torch.manual_seed(0)
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'partialnet-t0_8xb512_in1k.py'))
    model = mm_build('mmpretrain', cfg.model).eval()
    randomize_bn(model)
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
    randomize_bn(model.backbone)
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
    model = randomize_bn(PartialNet(TINY)).eval()
    fused = deployed(model)
    with pytest.raises(KeyError, match=r'holds a fused PartialNet .*Build it with deploy=True'):
        PartialNet(TINY).load_state_dict(fused.state_dict())
    with pytest.raises(KeyError, match=r'holds a training \(unfused\) PartialNet.*'
                                       r'tools/reparameterize_model.py'):
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


@pytest.fixture
def broken_checkpoints(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save(dict(state_dict=PartialNet(TINY).state_dict(), meta=dict(epoch=1)), good)
    data = good.read_bytes()
    files = dict(truncated=data[:len(data) // 2], empty=b'', garbage=os.urandom(4096))
    for name, content in files.items():
        (tmp_path / f'{name}.pth').write_bytes(content)
    return [str(tmp_path / f'{name}.pth') for name in files]


def test_a_truncated_or_corrupt_checkpoint_names_the_file(broken_checkpoints, tmp_path):
    for bad in broken_checkpoints:
        backbone = PartialNet(TINY, init_cfg=dict(type='Pretrained', checkpoint=bad))
        with pytest.raises(CheckpointError, match=f'cannot read checkpoint {re.escape(bad)}.*'
                                                  'truncated'):
            backbone.init_weights()
        with pytest.raises(CheckpointError, match=re.escape(bad)):
            read_checkpoint(bad)
    truncated = broken_checkpoints[0]
    out = str(tmp_path / 'out.pth')
    demo = osp.join(REPO, 'configs', 'demo', 'partialnet-t0_digits.py')
    for tool in (['tools/convert_authors_checkpoint.py', truncated, out],
                 ['tools/extract_backbone.py', truncated, out],
                 ['tools/reparameterize_model.py', demo, truncated, out]):
        code, log = _run([sys.executable, *tool])
        assert code != 0 and f'cannot read checkpoint {truncated}' in log, log[-2000:]
        assert 'Traceback' not in log, log[-2000:]
        assert not osp.exists(out)


# ------------------------------------------------------------------ gradients
def test_gradients_through_a_deployed_backbone():
    """Heads train on a fused, frozen backbone with the gradients they get on the unfused
    one; gradients into the fused graph are refused with a clear error."""
    torch.manual_seed(0)
    model = randomize_bn(PartialNet(TINY, out_indices=(3,))).eval().requires_grad_(False)
    fused = deployed(model)
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

    for module in model.modules():
        for name, value in vars(module).items():
            if name != '_modules':
                visit(value)
    return sum(storages.values())


def test_memory_is_flat_in_the_number_of_input_sizes():
    torch.manual_seed(0)
    model = randomize_bn(PartialNet('t0')).eval()
    fused = deployed(model)
    sizes = [(32 * (1 + i % 10), 32 * (1 + i // 10)) for i in range(50)]  # 50 distinct sizes
    assert len(set(sizes)) == 50
    for graph in (model, fused):
        before = held_bytes(graph)
        with torch.no_grad():
            for h, w in sizes:
                graph(torch.randn(1, 3, h, w))
        assert held_bytes(graph) == before
    model.train()  # and while training (autograd), at a few sizes
    before = held_bytes(model)
    for h, w in sizes[:4]:
        sum(o.sum() for o in model(torch.randn(2, 3, h, w))).backward()
    model.zero_grad(set_to_none=True)
    assert held_bytes(model) == before


# ------------------------------------------------------------------ the tools
def _test_metrics(log: str, pattern: str) -> dict:
    lines = [line for line in log.splitlines() if 'Epoch(test)' in line]
    assert lines, log[-3000:]
    return dict(re.findall(pattern, lines[-1]))


def test_reparameterize_then_test_tool_same_top1_digits(tmp_path):
    config = osp.join(REPO, 'configs', 'demo', 'partialnet-t0_digits.py')
    work = str(tmp_path)
    code, log = _run([sys.executable, 'tools/train.py', config, '--work-dir', work,
                      '--cfg-options', 'train_cfg.max_epochs=2', 'train_cfg.val_interval=3',
                      'param_scheduler.1.T_max=1', 'param_scheduler.1.end=2',
                      'default_hooks.checkpoint.interval=2'])
    assert code == 0, log[-3000:]
    trained, fused = osp.join(work, 'epoch_2.pth'), osp.join(work, 'fused', 'epoch_2.pth')
    code, log = _run([sys.executable, 'tools/reparameterize_model.py', config, trained, fused])
    assert code == 0 and 'model.backbone.deploy=True' in log, log[-3000:]
    assert read_checkpoint(fused)[0]['meta']['epoch'] == 2  # meta kept
    results = []
    for ckpt, options in ((trained, []), (fused, ['--cfg-options', 'model.backbone.deploy=True'])):
        code, log = _run([sys.executable, 'tools/test.py', config, ckpt, '--work-dir', work,
                          *options])
        assert code == 0, log[-3000:]
        results.append(_test_metrics(log, r'(accuracy/top1): ([0-9.]+)'))
    assert results[0] == results[1]
    assert float(results[0]['accuracy/top1']) > 50  # a trained model, so equality means much
    code, log = _run([sys.executable, 'tools/reparameterize_model.py', config, fused,
                      str(tmp_path / 'twice.pth')])
    assert code == 2 and 'holds a fused PartialNet already' in log, log[-2000:]


def test_reparameterize_then_test_tool_same_coco_ap(tmp_path):
    root = str(tmp_path / 'coco') + '/'
    make_synthetic_coco(root, num_train=96, num_val=16, size=128)
    opts = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.dataset.data_root={root}', f'{loader}.num_workers=0',
                 f'{loader}.persistent_workers=False']
    opts += [f'{e}.ann_file={root}annotations/instances_val.json'
             for e in ('val_evaluator', 'test_evaluator')]
    config = osp.join(REPO, 'configs', 'demo', 'mask_rcnn_partialnet_t0_synthetic.py')
    work = str(tmp_path / 'work')
    code, log = _run([sys.executable, 'tools/train.py', config, '--work-dir', work,
                      '--cfg-options', 'train_cfg.max_epochs=6', 'train_cfg.val_interval=7',
                      'default_hooks.checkpoint.interval=6', *opts])
    assert code == 0, log[-3000:]
    trained, fused = osp.join(work, 'epoch_6.pth'), osp.join(work, 'epoch_6_fused.pth')
    code, log = _run([sys.executable, 'tools/reparameterize_model.py', config, trained, fused])
    assert code == 0, log[-3000:]
    results = []
    for ckpt, extra in ((trained, []), (fused, ['model.backbone.deploy=True'])):
        code, log = _run([sys.executable, 'tools/test.py', config, ckpt, '--work-dir', work,
                          '--cfg-options', *opts, *extra])
        assert code == 0, log[-3000:]
        results.append(_test_metrics(log, r'(coco/\w+): (-?[0-9.]+)'))
    assert len(results[0]) == 12 and results[0] == results[1]
    assert float(results[0]['coco/bbox_mAP']) > 0.05 and float(results[0]['coco/segm_mAP']) > 0.05
