"""PartialNet inside MMDetection, MMPretrain, MMSegmentation and mmengine's Runner."""
import sys
import textwrap

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from torch.utils.data import Dataset

import partialnet_mm
from partialnet_mm.deploy import randomize_norms
from partialnet_mm.models import PartialNet, PartialNetClassifier

from helpers import TINY, mm_build, run


def test_registered_in_every_framework():
    assert partialnet_mm.REGISTERED == {'mmdet': True, 'mmpretrain': True, 'mmseg': True}
    from mmdet.registry import MODELS as DET
    from mmpretrain.registry import MODELS as CLS
    from mmseg.registry import MODELS as SEG
    assert DET.get('PartialNet') is PartialNet
    assert CLS.get('PartialNet') is PartialNet
    assert SEG.get('PartialNet') is PartialNet


def test_build_from_plain_dict_mmdet():
    model = mm_build('mmdet', dict(type='PartialNet', arch='t0', out_indices=(1, 3),
                                   frozen_stages=1))
    assert isinstance(model, PartialNet)
    outs = model.eval()(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [64, 256]
    with pytest.raises(KeyError, match="unknown PartialNet arch 'x9'"):
        mm_build('mmdet', dict(type='PartialNet', arch='x9'))


def _classifier_cfg(arch='t0', act='GELU', channels=256):
    return dict(
        type='ImageClassifier',
        backbone=dict(type='PartialNet', arch=arch, out_indices=(3,), with_out_norm=False),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='PartialNetClsHead', num_classes=1000, in_channels=channels,
                  act_cfg=dict(type=act), loss=dict(type='CrossEntropyLoss')))


def test_mmpretrain_classifier_is_the_paper_network():
    model = mm_build('mmpretrain', _classifier_cfg()).eval()
    ref = randomize_norms(PartialNetClassifier('t0')).eval()
    # same parameter count and the same state-dict layout as the pure-torch classifier
    assert sum(p.numel() for p in model.parameters()) == 3558240
    assert set(model.state_dict()) == set(ref.state_dict())
    model.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x, mode='tensor'), ref(x), atol=1e-5)
    # and it trains through mmpretrain's loss path
    from mmpretrain.structures import DataSample
    model.train()
    losses = model(x, [DataSample().set_gt_label(1), DataSample().set_gt_label(7)], mode='loss')
    assert torch.isfinite(losses['loss'])


def _python(code, cwd):
    """Run a Python snippet in a fresh process from ``cwd``; returns its output."""
    code_, out = run([sys.executable, '-c', textwrap.dedent(code)], cwd=cwd)
    assert code_ == 0, out[-6000:]
    return out


@pytest.mark.slow
def test_custom_imports_config_outside_project_mmdet(tmp_path):
    """A downstream Mask R-CNN config that only adds custom_imports builds and runs."""
    (tmp_path / 'my_mask_rcnn.py').write_text(textwrap.dedent("""
        _base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
        custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)
        model = dict(
            backbone=dict(_delete_=True, type='PartialNet', arch='t0', init_cfg=None),
            neck=dict(in_channels=[32, 64, 128, 256]))
    """))
    out = _python("""
        import sys, torch
        assert 'partialnet_mm' not in sys.modules
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        cfg = Config.fromfile('my_mask_rcnn.py')
        init_default_scope('mmdet')
        from mmdet.registry import MODELS
        from mmdet.structures import DetDataSample
        model = MODELS.build(cfg.model).eval()
        sample = DetDataSample(metainfo=dict(img_shape=(128, 160), ori_shape=(128, 160),
                                             scale_factor=(1.0, 1.0), batch_input_shape=(128, 160)))
        with torch.no_grad():
            res = model(torch.randn(1, 3, 128, 160), [sample], mode='predict')
        print(type(model.backbone).__name__, len(res), sorted(res[0].pred_instances.keys()))
    """, tmp_path)
    assert out.split()[0] == 'PartialNet'
    assert "'masks'" in out and "'bboxes'" in out


@pytest.mark.slow
def test_custom_imports_config_outside_project_mmpretrain(tmp_path):
    (tmp_path / 'my_cls.py').write_text(
        "custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)\n"
        f"model = {_classifier_cfg('t2', 'ReLU', 512)!r}\n")
    out = _python("""
        from mmengine.config import Config
        from mmpretrain.registry import MODELS
        cfg = Config.fromfile('my_cls.py')
        model = MODELS.build(cfg.model)
        print(sum(p.numel() for p in model.parameters()))
    """, tmp_path)
    from partialnet_mm.toolkit.complexity import AUTHORS_CODE
    params = int(out.strip().splitlines()[-1])
    assert params == 12650424  # exact, as counted on the authors' code (12.65M in its table)
    assert round(params / 1e6, 2) == AUTHORS_CODE['t2']['params']


# ------------------------------------------------------------- mmengine Runner
class _ToyClassifier(BaseModel):
    def __init__(self):
        super().__init__()
        self.backbone = PartialNet(TINY, out_indices=(3,))
        self.fc = nn.Linear(128, 3)

    def forward(self, inputs, labels=None, mode='tensor'):
        logits = self.fc(self.backbone(inputs)[-1].mean((2, 3)))
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, labels))
        return logits


class _RandomImages(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(3, 32, 32, generator=g), labels=i % 3)


class _RecordStart(Hook):
    """Hook recording the iteration and weights the train loop starts from."""

    def __init__(self):
        self.start_iter = None
        self.first_weight = None

    def before_train(self, runner):
        self.start_iter = runner.iter
        self.first_weight = runner.model.fc.weight.detach().clone()


def _runner(work_dir, max_iters, resume, hook=None):
    from mmengine.runner import Runner
    return Runner(
        model=_ToyClassifier(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=_RandomImages(), batch_size=2, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[hook] if hook else None,
        resume=resume, randomness=dict(seed=0), experiment_name=f'run{max_iters}')


def test_runner_checkpoint_resume(tmp_path):
    _runner(tmp_path, 2, resume=False).train()
    ckpt = tmp_path / 'iter_2.pth'
    assert ckpt.is_file()
    # the hazard is real: torch's default (weights_only=True) refuses mmengine's checkpoint
    with pytest.raises(Exception, match='[Ww]eights only load failed|weights_only'):
        torch.load(ckpt)
    saved = torch.load(ckpt, weights_only=False)['state_dict']['fc.weight']

    hook = _RecordStart()
    runner = _runner(tmp_path, 4, resume=True, hook=hook)
    runner.train()
    assert hook.start_iter == 2
    assert torch.equal(hook.first_weight, saved)
    assert runner.iter == 4 and (tmp_path / 'iter_4.pth').is_file()
    # load_from goes through the same loader
    from mmengine.runner import load_checkpoint
    model = _ToyClassifier()
    load_checkpoint(model, str(tmp_path / 'iter_4.pth'), map_location='cpu', strict=True)
