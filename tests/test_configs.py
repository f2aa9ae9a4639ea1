"""The configs: every one loads and builds; the detection and ImageNet recipes are the paper's."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from partialnet_mm.registration import FRAMEWORKS

from helpers import REPO, mm_build

CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True))


DET = {'t0': (32, 2e-4, 0.0), 't1': (48, 2e-4, 0.02), 't2': (64, 2e-4, 0.05),
       's': (96, 2e-4, 0.15), 'm': (128, 1e-4, 0.2), 'l': (160, 1e-4, 0.3)}


# the paper's appendix Tab. 8: per-GPU batch, lr, weight decay, drop path, RandAugment m, mixup, grad clip
CLS = {'t0': (512, 0.004, 0.005, 0.0, None, 0.05, None),
       't1': (512, 0.004, 0.01, 0.02, 3, 0.1, None),
       't2': (512, 0.004, 0.02, 0.05, 5, 0.1, None),
       's': (512, 0.004, 0.03, 0.1, 7, 0.3, None),
       'm': (256, 0.002, 0.05, 0.2, 7, 0.5, 1.0),
       'l': (256, 0.002, 0.05, 0.3, 7, 0.7, 0.01)}


@pytest.mark.parametrize('path', [c for c in CONFIGS if '/_base_/' not in c],
                         ids=lambda p: osp.basename(p))
def test_every_config_survives_preemption_and_stops_on_nan(path):
    """docs/training.md: the checkpoint hook that saves on SIGTERM/SIGUSR1 and writes atomic
    files, the NaN stop, and for epoch-based runs the loop that resumes within an epoch."""
    cfg = Config.fromfile(path)
    hooks = cfg.default_hooks
    assert hooks.checkpoint.type == 'ResumableCheckpointHook'
    assert hooks.invalid_loss.type == 'InvalidLossHook'
    loop = cfg.train_cfg.get('type')
    assert loop in ('ResumableEpochBasedTrainLoop', 'IterBasedTrainLoop'), loop
    assert (loop == 'IterBasedTrainLoop') == (hooks.checkpoint.get('by_epoch') is False)
    name = osp.basename(path)
    if loop != 'IterBasedTrainLoop' and '/demo/' not in path:  # long epochs save within
        assert hooks.checkpoint.iter_interval == (1000 if name.startswith('mask_rcnn') else
                                                  200 if name.startswith('rtmdet') else
                                                  500 if name.startswith('eca') else 100)


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
    assert cfg.default_scope in FRAMEWORKS
    model = mm_build(cfg.default_scope, model_cfg)
    name = osp.basename(path)
    expected = 'ResNet' if name.startswith(('mask_rcnn_eca', 'eca-', 'resnet50')) else \
        'TIMMBackbone' if name.startswith('fasternet') else \
        'CSPNeXt' if name.startswith('rtmdet_cspnext') else 'PartialNet'
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


SEG = {'s': (96, 0.15), 'm': (128, 0.2), 'l': (160, 0.3)}


@pytest.mark.parametrize('variant', list(SEG))
def test_segmentation_recipes(variant):
    embed, dp = SEG[variant]
    channels = [embed * 2 ** i for i in range(4)]
    det = Config.fromfile(osp.join(REPO, 'configs', f'mask_rcnn_partialnet_{variant}_1x.py'))
    fpn = Config.fromfile(osp.join(REPO, 'configs',
                                   f'fpn_partialnet-{variant}_8xb4-40k_ade20k-512x512.py'))
    upernet = Config.fromfile(osp.join(REPO, 'configs',
                                       f'upernet_partialnet-{variant}_8xb2-amp-160k_ade20k-512x512.py'))
    for cfg in (fpn, upernet):
        assert cfg.default_scope == 'mmseg' and cfg.custom_imports['imports'] == ['partialnet_mm']
        assert cfg.model.type == 'EncoderDecoder' and cfg.model.pretrained is None
        bb = cfg.model.backbone
        assert (bb.type, bb.arch, bb.drop_path_rate, bb.out_indices) == ('PartialNet', variant, dp,
                                                                         (0, 1, 2, 3))
        # the same ImageNet checkpoint as the detection config
        assert bb.init_cfg == dict(type='Pretrained', checkpoint=det.pretrained)
        assert cfg.model.decode_head.num_classes == 150
        assert cfg.train_dataloader.dataset.type == 'ADE20KDataset'
        loads = [t for t in cfg.train_dataloader.dataset.pipeline if 'Annotations' in t['type']]
        assert loads == [dict(type='LoadCheckedSegAnnotations', num_classes=150, ignore_index=255,
                              reduce_zero_label=True)]
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
        assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    # Semantic FPN: PoolFormer's mmseg recipe
    assert fpn.model.neck.in_channels == channels
    assert (fpn.optim_wrapper.optimizer.lr, fpn.optim_wrapper.optimizer.weight_decay) == (2e-4, 1e-4)
    poly, = fpn.param_scheduler
    assert (poly.type, poly.power, poly.end) == ('PolyLR', 0.9, 40000)
    assert fpn.train_cfg.max_iters == 40000 and fpn.train_dataloader.batch_size == 4
    assert fpn.auto_scale_lr.base_batch_size == 32
    # UperNet: mmseg's ConvNeXt recipe, without its ConvNeXt-only layer-wise decay
    assert upernet.model.decode_head.type == 'UPerHead'
    assert upernet.model.decode_head.in_channels == channels
    assert upernet.model.auxiliary_head.in_channels == channels[2]
    opt = upernet.optim_wrapper
    assert (opt.optimizer.lr, opt.optimizer.weight_decay, opt.optimizer.betas) == \
        (1e-4, 0.05, (0.9, 0.999))
    assert 'constructor' not in opt and opt.paramwise_cfg == dict(norm_decay_mult=0.0,
                                                                  bias_decay_mult=0.0)
    warmup, poly = upernet.param_scheduler
    assert (warmup.type, warmup.end, poly.type, poly.power, poly.begin, poly.end) == \
        ('LinearLR', 1500, 'PolyLR', 1.0, 1500, 160000)
    assert upernet.train_cfg.max_iters == 160000 and upernet.train_dataloader.batch_size == 2
    assert upernet.model.test_cfg == dict(mode='slide', crop_size=(512, 512), stride=(341, 341))


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


def test_the_readmes_own_dataset_config_builds(tmp_path):
    """docs/training.md "Your own dataset": the config as written (its base made absolute)
    loads, builds a detector for its classes and points every loader and evaluator at the
    user's files."""
    import re
    with open(osp.join(REPO, 'docs', 'training.md')) as f:
        section = f.read().split('## Your own dataset', 1)[1]
    code = re.search(r'```python\n(.*?)```', section, re.S).group(1)
    code = code.replace("'./mask_rcnn_partialnet_s_1x.py'",
                        repr(osp.join(REPO, 'configs', 'mask_rcnn_partialnet_s_1x.py')))
    path = tmp_path / 'my_mask_rcnn.py'
    path.write_text(code)
    cfg = Config.fromfile(str(path))
    assert cfg.train_dataloader.dataset.metainfo.classes == ('cat', 'dog')
    assert cfg.test_dataloader.dataset.ann_file == 'annotations/val.json'
    assert cfg.test_evaluator.ann_file == 'data/pets/annotations/val.json'
    model_cfg = cfg.model.copy()
    model_cfg.backbone.pop('init_cfg', None)
    model = mm_build(cfg.default_scope, model_cfg)
    assert model.roi_head.bbox_head.num_classes == model.roi_head.mask_head.num_classes == 2
