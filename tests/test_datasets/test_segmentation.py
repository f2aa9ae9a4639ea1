"""Semantic segmentation with mmseg: the generated set, the checked label loader, the
registration (``pretrained=`` from EncoderDecoder), the demo round trip through our tools, and a
downstream config that adds only ``custom_imports`` run by mmseg's own train tool."""
import filecmp
import glob
import os.path as osp
import re
import sys
import textwrap

import cv2
import numpy as np
import pytest
from mmengine.config import Config

from partialnet_mm.datasets.synthetic_seg import CLASSES, make_synthetic_seg

from helpers import REPO, mm_build, run

SEG_DEMO = osp.join(REPO, 'configs', 'demo', 'fpn_partialnet-t0_synthetic-seg.py')


@pytest.fixture(scope='module')
def seg_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('seg'))
    make_synthetic_seg(root, num_train=8, num_val=4, size=64)
    return root


def test_generated_set_is_deterministic_with_every_class(seg_root, tmp_path):
    make_synthetic_seg(str(tmp_path), num_train=8, num_val=4, size=64)
    names = sorted(osp.relpath(p, seg_root) for p in glob.glob(f'{seg_root}/**/*.png',
                                                                 recursive=True))
    assert len(names) == 2 * (8 + 4)
    match, mismatch, errors = filecmp.cmpfiles(seg_root, str(tmp_path), names, shallow=False)
    assert mismatch == [] and errors == []
    values = set()
    for name in names:
        if name.startswith('annotations'):
            label = cv2.imread(osp.join(seg_root, name), cv2.IMREAD_UNCHANGED)
            assert label.shape == (64, 64) and label.dtype == np.uint8
            values |= set(np.unique(label).tolist())
            image = cv2.imread(osp.join(seg_root, name.replace('annotations', 'images')))
            assert image.shape == (64, 64, 3)
    assert values == set(range(len(CLASSES)))


def _loader(num_classes=4, **kwargs):
    from mmengine.registry import DefaultScope
    from mmseg.registry import TRANSFORMS

    import partialnet_mm  # noqa: F401
    with DefaultScope.overwrite_default_scope('mmseg'):
        return TRANSFORMS.build(dict(type='LoadCheckedSegAnnotations', num_classes=num_classes,
                                     **kwargs))


def _results(path):
    return dict(img_path='image.png', seg_map_path=str(path), reduce_zero_label=False,
                seg_fields=[])


def test_label_loader_names_the_file_with_bad_values_or_missing(tmp_path):
    label = np.zeros((8, 8), np.uint8)
    label[0, 0], label[1, 1] = 3, 255
    good = tmp_path / 'good.png'
    cv2.imwrite(str(good), label)
    out = _loader()(_results(good))
    assert out['gt_seg_map'][0, 0] == 3 and out['gt_seg_map'][1, 1] == 255
    label[2, 2], label[3, 3] = 7, 4
    bad = tmp_path / 'bad.png'
    cv2.imwrite(str(bad), label)
    with pytest.raises(ValueError, match=re.escape(f'{bad}: label values [4, 7] are not among '
                                                   'the 4 classes (0..3) nor the ignore index 255')):
        _loader()(_results(bad))
    with pytest.raises(FileNotFoundError, match=f'label file not found: {tmp_path}/none.png'):
        _loader()(_results(tmp_path / 'none.png'))
    with pytest.raises(ValueError, match='num_classes must be >= 1'):
        _loader(num_classes=0)


def test_partialnet_is_in_mmsegs_registry_and_takes_encoderdecoders_pretrained(tmp_path):
    import partialnet_mm
    assert partialnet_mm.REGISTERED['mmseg'] is True
    from mmseg.registry import MODELS
    assert MODELS.get('PartialNet') is partialnet_mm.PartialNet
    cfg = Config.fromfile(SEG_DEMO)
    # a base config's model.pretrained reaches the backbone as pretrained=, as for mmseg's own
    import copy
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pretrained = str(tmp_path / 'in1k.pth')
    model_cfg.backbone.pop('init_cfg')
    with pytest.warns(UserWarning, match='pretrained= is deprecated'):
        model = mm_build('mmseg', copy.deepcopy(model_cfg))
    assert model.backbone.init_cfg == dict(type='Pretrained', checkpoint=str(tmp_path / 'in1k.pth'))
    model_cfg.backbone.init_cfg = dict(type='Pretrained', checkpoint='other.pth')
    with pytest.raises(ValueError, match=r'both pretrained=.* set pretrained=None'):
        mm_build('mmseg', model_cfg)


def _data_options(root):
    root = root.rstrip('/') + '/'
    return [f'{loader}.dataset.data_root={root}' for loader in
            ('train_dataloader', 'val_dataloader', 'test_dataloader')] + \
           [f'{loader}.{key}' for loader in ('train_dataloader', 'val_dataloader')
            for key in ('num_workers=0', 'persistent_workers=False')]


@pytest.mark.slow
def test_train_tool_reports_a_missing_label_file(seg_root, tmp_path):
    import shutil
    root = tmp_path / 'seg'
    shutil.copytree(seg_root, root)
    missing = sorted((root / 'annotations' / 'train').iterdir())[0]
    missing.unlink()
    code, out = run([sys.executable, 'tools/train.py', SEG_DEMO, '--work-dir', str(tmp_path / 'w'),
                     '--cfg-options', *_data_options(str(root)), 'train_cfg.max_iters=2'])
    assert code != 0 and f'label file not found: {missing}' in out, out[-3000:]


@pytest.mark.slow
def test_downstream_config_with_only_custom_imports_runs_under_mmsegs_own_tool(seg_root,
                                                                                 tmp_path):
    config = tmp_path / 'my_fpn_partialnet.py'
    config.write_text(textwrap.dedent(f'''
        _base_ = ['mmseg::_base_/models/fpn_r50.py', 'mmseg::_base_/default_runtime.py']
        custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)
        norm_cfg = dict(type='BN', requires_grad=True)
        model = dict(
            data_preprocessor=dict(size=(64, 64)),
            pretrained=None,
            backbone=dict(_delete_=True, type='PartialNet', arch='t0', norm_cfg=norm_cfg),
            neck=dict(in_channels=[32, 64, 128, 256], out_channels=32),
            decode_head=dict(in_channels=[32] * 4, channels=32, num_classes=4, norm_cfg=norm_cfg))
        pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                    dict(type='PackSegInputs')]
        data = dict(type='BaseSegDataset', data_root='{seg_root}/', img_suffix='.png',
                    seg_map_suffix='.png', pipeline=pipeline,
                    metainfo=dict(classes=('bg', 'circle', 'square', 'triangle')))
        train_dataloader = dict(batch_size=4, num_workers=0,
                                sampler=dict(type='InfiniteSampler', shuffle=True),
                                dataset=dict(**data, data_prefix=dict(
                                    img_path='images/train', seg_map_path='annotations/train')))
        val_dataloader = dict(batch_size=2, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              dataset=dict(**data, data_prefix=dict(
                                  img_path='images/val', seg_map_path='annotations/val')))
        test_dataloader = val_dataloader
        val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
        test_evaluator = val_evaluator
        optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))
        train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
        val_cfg = dict(type='ValLoop')
        test_cfg = dict(type='TestLoop')
        default_hooks = dict(logger=dict(type='LoggerHook', interval=1),
                             checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2))
        '''))
    import mmseg
    tool = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'train.py')
    code, out = run([sys.executable, tool, str(config), '--work-dir', str(tmp_path / 'w')],
                    cwd=str(tmp_path))
    assert code == 0, out[-3000:]
    assert re.search(r'Iter\(val\) +\[2/2\] +aAcc: [0-9.]+ +mIoU: [0-9.]+', out), out[-2000:]
    assert osp.isfile(tmp_path / 'w' / 'iter_2.pth')
