"""Configs, tools, the generated COCO set and the distributed run (issue: configs & tools)."""
import glob
import json
import os
import os.path as osp
import random
import re
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

import partialnet_mm  # noqa: F401
from partialnet_mm.models import PartialNetClassifier
from partialnet_mm.preflight import DataConfigError, check_coco_annotation, check_data
from partialnet_mm.synthetic_coco import make_synthetic_coco

from conftest import mm_build, randomize_bn
from test_backbone import _authors_t0_state_dict

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True))
DET = {'t0': (32, 2e-4, 0.0), 't1': (48, 2e-4, 0.02), 't2': (64, 2e-4, 0.05),
       's': (96, 2e-4, 0.15), 'm': (128, 1e-4, 0.2), 'l': (160, 1e-4, 0.3)}
# FACTS §5: per-GPU batch, lr, weight decay, drop path, RandAugment m, mixup, grad clip
CLS = {'t0': (512, 0.004, 0.005, 0.0, None, 0.05, None),
       't1': (512, 0.004, 0.01, 0.02, 3, 0.1, None),
       't2': (512, 0.004, 0.02, 0.05, 5, 0.1, None),
       's': (512, 0.004, 0.03, 0.1, 7, 0.3, None),
       'm': (256, 0.002, 0.05, 0.2, 7, 0.5, 1.0),
       'l': (256, 0.002, 0.05, 0.3, 7, 0.7, 0.01)}
DEMO = osp.join(REPO, 'configs', 'demo', 'mask_rcnn_partialnet_t0_synthetic.py')


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get('PYTHONPATH', '')]))


def _run(args, timeout=600, cwd=REPO):
    proc = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def test_every_config_is_listed():
    names = {osp.relpath(c, osp.join(REPO, 'configs')) for c in CONFIGS}
    for v in DET:
        assert f'mask_rcnn_partialnet_{v}_1x.py' in names
    for v, spec in CLS.items():
        assert f'partialnet-{v}_8xb{spec[0]}_in1k.py' in names


@pytest.mark.parametrize('path', [c for c in CONFIGS if '/_base_/' not in c],
                         ids=lambda p: osp.basename(p))
def test_config_loads_and_builds(path):
    cfg = Config.fromfile(path)
    model_cfg = cfg.model.copy()
    model_cfg.backbone.pop('init_cfg', None)
    assert cfg.default_scope in ('mmdet', 'mmpretrain')
    model = mm_build(cfg.default_scope, model_cfg)
    expected = 'ResNet' if osp.basename(path).startswith(('mask_rcnn_eca', 'eca-')) else 'PartialNet'
    assert type(model.backbone).__name__ == expected


@pytest.mark.parametrize('variant', list(DET))
def test_detection_recipe(variant):
    embed, lr, dp = DET[variant]
    cfg = Config.fromfile(osp.join(REPO, 'configs', f'mask_rcnn_partialnet_{variant}_1x.py'))
    assert cfg.custom_imports['imports'] == ['partialnet_mm']
    bb = cfg.model.backbone
    assert (bb.type, bb.arch, bb.drop_path_rate) == ('PartialNet', variant, dp)
    assert bb.init_cfg == dict(type='Pretrained', checkpoint=cfg.pretrained)
    assert cfg.model.neck.in_channels == [embed * 2 ** i for i in range(4)]
    opt = cfg.optim_wrapper
    assert opt.optimizer.type == 'AdamW' and opt.optimizer.lr == lr
    assert opt.optimizer.weight_decay == 1e-4 and opt.paramwise_cfg.norm_decay_mult == 0.0
    assert cfg.train_cfg.max_epochs == 12
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.by_epoch, warmup.end) == ('LinearLR', False, 500)
    assert (steps.type, steps.milestones, steps.gamma) == ('MultiStepLR', [8, 11], 0.1)
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.val_evaluator.type == 'CocoMetric' and cfg.val_evaluator.metric == ['bbox', 'segm']
    assert cfg.model.type == 'MaskRCNN'


@pytest.mark.parametrize('variant', list(CLS))
def test_imagenet_recipe(variant):
    bs, lr, wd, dp, ra, mix, clip = CLS[variant]
    cfg = Config.fromfile(osp.join(REPO, 'configs', f'partialnet-{variant}_8xb{bs}_in1k.py'))
    assert cfg.train_dataloader.batch_size == bs and cfg.auto_scale_lr.base_batch_size == 8 * bs
    assert cfg.model.backbone.arch == variant and cfg.model.backbone.drop_path_rate == dp
    assert cfg.model.head.type == 'PartialNetClsHead' and cfg.model.head.mid_channels == 1280
    assert cfg.model.head.loss == dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')
    assert cfg.model.train_cfg.augments == [dict(type='Mixup', alpha=mix),
                                            dict(type='CutMix', alpha=1.0)]
    assert cfg.model.data_preprocessor.scales == (128, 160, 192, 224, 256, 288)
    opt = cfg.optim_wrapper
    assert opt.type == 'AmpOptimWrapper'
    assert opt.optimizer.type == 'AdamW' and opt.optimizer.betas == (0.9, 0.999)
    assert (opt.optimizer.lr, opt.optimizer.weight_decay) == (lr, wd)
    assert opt.get('clip_grad') == (None if clip is None else dict(max_norm=clip))
    assert cfg.train_cfg.max_epochs == 300
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.end, cosine.type, cosine.begin, cosine.end) == \
        ('LinearLR', 20, 'CosineAnnealingLR', 20, 300)
    steps = {t['type']: t for t in cfg.train_pipeline}
    assert 'RandomResizedCrop' in steps and steps['RandomFlip']['prob'] == 0.5
    assert not {'RandomErasing', 'EMAHook'} & set(steps)
    if ra is None:
        assert 'RandAugment' not in steps
    else:
        assert steps['RandAugment']['magnitude_level'] == ra
        assert steps['RandAugment']['magnitude_std'] == 0.5
    assert cfg.train_dataloader.dataset.pipeline == cfg.train_pipeline
    test = {t['type']: t for t in cfg.test_pipeline}
    assert test['ResizeEdge']['scale'] == 248 and test['CenterCrop']['crop_size'] == 224
    assert not cfg.get('custom_hooks')  # no EMA


def test_multiscale_training_varies_resolution_per_batch():
    pre = mm_build('mmpretrain', dict(type='MultiScaleClsDataPreprocessor', num_classes=10,
                                      mean=[0., 0., 0.], std=[1., 1., 1.]))
    batch = dict(inputs=[torch.rand(3, 288, 288) * 255 for _ in range(2)], data_samples=None)
    random.seed(0)
    sizes = [pre(batch, training=True)['inputs'].shape[-1] for _ in range(30)]
    assert set(sizes) <= {128, 160, 192, 224, 256, 288}
    assert len(set(sizes)) >= 4  # really varies from batch to batch
    out = pre(batch, training=True)['inputs']
    assert out.shape[0] == 2 and out.shape[-1] == out.shape[-2]
    assert pre(batch, training=False)['inputs'].shape[-2:] == (288, 288)  # eval untouched


def test_missing_pretrained_names_the_setting(tmp_path):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'mask_rcnn_partialnet_t0_1x.py'))
    backbone = mm_build('mmdet', cfg.model.backbone)
    with pytest.raises(FileNotFoundError, match=r'no file at .*partialnet_t0_in1k_backbone.pth.*'
                                                r'Set `pretrained` in the config'):
        backbone.init_weights()


def test_unknown_variant_in_config(tmp_path):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'mask_rcnn_partialnet_s_1x.py'))
    cfg.model.backbone.arch = 'xxl'
    cfg.model.backbone.init_cfg = None
    with pytest.raises(KeyError, match="unknown PartialNet arch 'xxl'"):
        mm_build('mmdet', cfg.model)


# ------------------------------------------------------------------ generated data
@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('coco'))
    make_synthetic_coco(root, num_train=8, num_val=4, size=128)
    return root


def test_synthetic_coco_is_deterministic_and_valid(coco_root, tmp_path):
    from pycocotools.coco import COCO
    again = str(tmp_path / 'again')
    make_synthetic_coco(again, num_train=8, num_val=4, size=128)
    for split in ('train', 'val'):
        a = open(osp.join(coco_root, 'annotations', f'instances_{split}.json')).read()
        assert a == open(osp.join(again, 'annotations', f'instances_{split}.json')).read()
        coco = COCO(osp.join(coco_root, 'annotations', f'instances_{split}.json'))
        assert len(coco.getCatIds()) == 3 and len(coco.getImgIds()) == (8 if split == 'train' else 4)
        for ann in coco.loadAnns(coco.getAnnIds()):
            mask = coco.annToMask(ann)
            assert abs(mask.sum() - ann['area']) <= 0.15 * ann['area'] + 10
            x, y, w, h = ann['bbox']
            ys, xs = mask.nonzero()
            assert abs(xs.min() - x) <= 2 and abs(ys.min() - y) <= 2
    with open(osp.join(coco_root, 'train', 'train_00000.png'), 'rb') as f, \
            open(osp.join(again, 'train', 'train_00000.png'), 'rb') as g:
        assert f.read() == g.read()


def _data_options(root):
    root = root.rstrip('/') + '/'
    opts = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.dataset.data_root={root}', f'{loader}.num_workers=0',
                 f'{loader}.persistent_workers=False']
    for ev in ('val_evaluator', 'test_evaluator'):
        opts.append(f'{ev}.ann_file={root}annotations/instances_val.json')
    return opts


def test_train_then_test_tools_give_coco_metrics(coco_root, tmp_path):
    work = str(tmp_path / 'work')
    code, out = _run([sys.executable, 'tools/train.py', DEMO, '--work-dir', work,
                      '--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                      'train_dataloader.batch_size=2', *_data_options(coco_root)])
    assert code == 0, out[-3000:]
    assert re.search(r'Epoch\(train\) +\[1\]\[4/4\]', out), out[-2000:]
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    code, out = _run([sys.executable, 'tools/test.py', DEMO, ckpt, '--work-dir', work,
                      '--cfg-options', *_data_options(coco_root)])
    assert code == 0, out[-3000:]
    assert re.search(r'coco/bbox_mAP: [0-9.]+', out) and re.search(r'coco/segm_mAP: [0-9.]+', out)


def test_distributed_training_two_processes_gloo(coco_root, tmp_path):
    env_py = f'PYTHON={sys.executable}'
    code, out = _run(['bash', '-c', f'{env_py} PORT=29533 bash tools/dist_train.sh {DEMO} 2 '
                      f'--work-dir {tmp_path} --cfg-options train_cfg.max_epochs=1 '
                      f'train_cfg.val_interval=1 train_dataloader.batch_size=2 '
                      + ' '.join(_data_options(coco_root))])
    assert code == 0, out[-3000:]
    # 8 images, 2 per process: 2 iterations per epoch with 2 processes (4 with one)
    assert re.search(r'Epoch\(train\) +\[1\]\[2/2\]', out), out[-2000:]
    assert 'Distributed training: True' in out
    assert osp.isfile(osp.join(tmp_path, 'epoch_1.pth'))


# ------------------------------------------------------------------ bad input
def test_bad_data_settings(tmp_path, coco_root):
    cfg = Config.fromfile(DEMO)
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'missing')
    with pytest.raises(DataConfigError, match=r'train_dataloader.dataset.data_root: directory not found'):
        check_data(cfg)
    bad = tmp_path / 'bad.json'
    bad.write_text('{"images": [')
    with pytest.raises(DataConfigError, match=r'x.ann_file: .*bad.json is not valid JSON'):
        check_coco_annotation(str(bad), 'x.ann_file')
    bad.write_text(json.dumps(dict(images=[], annotations=[], categories=[])))
    with pytest.raises(DataConfigError, match='lists no images'):
        check_coco_annotation(str(bad), 'x.ann_file')
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(DataConfigError, match='not a COCO annotation file'):
        check_coco_annotation(str(bad), 'x.ann_file')
    with pytest.raises(DataConfigError, match='annotation file not found'):
        check_coco_annotation(str(tmp_path / 'nope.json'), 'x.ann_file')


def test_train_tool_reports_bad_data_root(tmp_path):
    code, out = _run([sys.executable, 'tools/train.py', DEMO, '--cfg-options',
                      f'train_dataloader.dataset.data_root={tmp_path}/none/'])
    assert code != 0
    assert f'train_dataloader.dataset.data_root: directory not found: {tmp_path}/none/' in out


# ------------------------------------------------------------------ checkpoints
def test_convert_authors_checkpoint_tool(tmp_path):
    src = tmp_path / 'authors.ckpt'
    sd = _authors_t0_state_dict()
    torch.save({'state_dict': sd, 'hyper_parameters': {'lr': 0.004}}, src)
    dst = tmp_path / 'ours.pth'
    code, out = _run([sys.executable, 'tools/convert_authors_checkpoint.py', str(src), str(dst)])
    assert code == 0, out
    assert 'PartialNet-T0, PAT_sp on' in out
    # loads strictly into the mmpretrain config's model and computes the same function
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'partialnet-t0_8xb512_in1k.py'))
    model = mm_build('mmpretrain', cfg.model).eval()
    state = torch.load(dst, weights_only=False)['state_dict']
    model.load_state_dict(state, strict=True)
    ref = PartialNetClassifier('t0').eval()
    ref.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x, mode='tensor')
        assert torch.isfinite(out).all() and out.abs().max() > 0
        assert torch.allclose(out, ref(x), atol=1e-5)
    # a file that is not an authors' checkpoint is refused with its name
    other = tmp_path / 'other.pth'
    torch.save({'foo.weight': torch.zeros(1)}, other)
    code, out = _run([sys.executable, 'tools/convert_authors_checkpoint.py', str(other),
                      str(tmp_path / 'x.pth')])
    assert code != 0 and 'other.pth' in out and "not in the authors' PartialNet layout" in out


def test_extract_backbone_tool_feeds_detection_config(tmp_path):
    cls = randomize_bn(PartialNetClassifier('t0'))
    src = tmp_path / 'cls.pth'
    torch.save({'state_dict': cls.state_dict(), 'meta': {'epoch': 300}}, src)
    dst = tmp_path / 'backbone.pth'
    code, out = _run([sys.executable, 'tools/extract_backbone.py', str(src), str(dst)])
    assert code == 0, out
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'mask_rcnn_partialnet_t0_1x.py'))
    cfg.model.backbone.init_cfg.checkpoint = str(dst)
    backbone = mm_build('mmdet', cfg.model.backbone)
    backbone.init_weights()
    for k, v in cls.backbone.state_dict().items():
        assert torch.equal(backbone.state_dict()[k], v), k
    code, out = _run([sys.executable, 'tools/extract_backbone.py', str(dst), str(tmp_path / 'y.pth')])
    assert code != 0 and "no key starts with 'backbone.'" in out


@pytest.mark.parametrize('variant,paper', [('s', 46.9), ('m', 78.2), ('l', 122.0)])
def test_mask_rcnn_params_within_3pct_of_paper(variant, paper):
    cfg = Config.fromfile(osp.join(REPO, 'configs', f'mask_rcnn_partialnet_{variant}_1x.py'))
    cfg.model.backbone.init_cfg = None
    params = sum(p.numel() for p in mm_build('mmdet', cfg.model).parameters()) / 1e6
    assert abs(params / paper - 1) < 0.03, params
