"""RTMDet and RTMDet-Ins with a PartialNet backbone: the configs train and test, the downstream
route through mmdet's own tools, the neck check, the complexity counts, the demo and the
benchmark."""
import json
import os.path as osp
import re
import sys
import textwrap

import pytest
from mmengine.config import Config

from partialnet_mm.models import PartialNet
from partialnet_mm.mmconfig import NeckMismatch, build_model, check_neck_channels

from helpers import REPO, coco_data_options, run

# config -> (arch, the mmdet config it is built on, neck in_channels)
RTMDET = {
    'rtmdet_partialnet-t0_8xb32-300e_coco.py': ('t0', 'rtmdet_tiny_8xb32-300e_coco.py',
                                                [64, 128, 256]),
    'rtmdet_partialnet-t1_8xb32-300e_coco.py': ('t1', 'rtmdet_s_8xb32-300e_coco.py',
                                                [96, 192, 384]),
    'rtmdet_partialnet-t2_8xb32-300e_coco.py': ('t2', 'rtmdet_s_8xb32-300e_coco.py',
                                                [128, 256, 512]),
    'rtmdet-ins_partialnet-t0_8xb32-300e_coco.py': ('t0', 'rtmdet-ins_tiny_8xb32-300e_coco.py',
                                                    [64, 128, 256]),
}


def _config(name):
    return Config.fromfile(osp.join(REPO, 'configs', name))


def _plain(value):
    """A config value without the ``_scope_`` marks inheriting from ``mmdet::`` adds."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


@pytest.mark.parametrize('name', sorted(RTMDET))
def test_config_keeps_mmdets_recipe_and_changes_only_the_backbone(name):
    from partialnet_mm.benchmark.detection import mmdet_base_config
    from partialnet_mm.mmconfig import load_config

    arch, base_name, channels = RTMDET[name]
    path = osp.join(REPO, 'configs', name)
    assert mmdet_base_config(path) == f'mmdet::rtmdet/{base_name}'
    ours, base = Config.fromfile(path), load_config(f'mmdet::rtmdet/{base_name}')
    bb = ours.model.backbone
    assert (bb.type, bb.arch, bb.out_indices) == ('PartialNet', arch, (1, 2, 3))
    assert bb.init_cfg == dict(type='Pretrained',
                               checkpoint=f'checkpoints/partialnet_{arch}_in1k_backbone.pth')
    assert ours.custom_imports['imports'] == ['partialnet_mm']
    assert ours.model.neck.in_channels == channels == PartialNet.output_channels(arch, (1, 2, 3))
    # everything but the backbone and the neck's input channels is mmdet's
    for key in ('train_pipeline', 'train_pipeline_stage2', 'test_pipeline', 'optim_wrapper',
                'param_scheduler', 'custom_hooks', 'train_cfg', 'train_dataloader',
                'val_evaluator', 'auto_scale_lr'):
        mine, theirs = _plain(ours.get(key)), _plain(base.get(key))
        if key == 'train_cfg':  # the same loop, resumable within an epoch (docs/training.md)
            assert (mine.pop('type'), theirs.pop('type')) == ('ResumableEpochBasedTrainLoop',
                                                              'EpochBasedTrainLoop')
        assert mine == theirs, key
    for part in ('bbox_head', 'train_cfg', 'test_cfg', 'data_preprocessor'):
        assert _plain(ours.model[part]) == _plain(base.model[part]), part
    ours_neck, base_neck = _plain(ours.model.neck), _plain(base.model.neck)
    ours_neck.pop('in_channels'), base_neck.pop('in_channels')
    assert ours_neck == base_neck
    assert ours.max_epochs == 300 and ours.custom_hooks[0].type == 'EMAHook'
    assert ours.custom_hooks[1].switch_epoch == 280


def _tiny_run_options(cfg, root, work_dir):
    """A config made to train 2 iterations and test on the generated set at 128x128 (the
    config's own pipelines, scaled down)."""
    cfg.model.backbone.init_cfg = None  # no ImageNet checkpoint in the tests
    cfg.work_dir = str(work_dir)
    root = root.rstrip('/') + '/'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = cfg[loader].dataset
        split = 'train' if 'train' in loader else 'val'
        ds.data_root, ds.ann_file = root, f'annotations/instances_{split}.json'
        ds.data_prefix = dict(img=f'{split}/')
        ds.metainfo = dict(classes=('circle', 'square', 'triangle'))
        cfg[loader].update(num_workers=0, persistent_workers=False, batch_size=4)
        for step in ds.pipeline:
            for key in ('img_scale', 'scale', 'crop_size', 'size'):
                if key in step and isinstance(step[key], tuple):
                    step[key] = (128, 128)
    for ev in ('val_evaluator', 'test_evaluator'):
        cfg[ev].ann_file = root + 'annotations/instances_val.json'
    cfg.model.bbox_head.num_classes = 3
    cfg.train_cfg.update(max_epochs=1, val_interval=1)
    cfg.default_hooks.checkpoint.interval = 1
    cfg.default_hooks.logger.interval = 1
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(RTMDET))
def test_config_trains_and_tests_on_tiny_images(name, coco_root, tmp_path):
    from mmengine.runner import Runner

    cfg = _tiny_run_options(_config(name), coco_root, tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()  # 8 images, batch 4: two steps, with CachedMosaic/MixUp of the recipe
    assert runner.iter == 2 and osp.isfile(osp.join(tmp_path, 'epoch_1.pth'))
    # the test loop over the 4 val images, with the EMA weights the recipe evaluates; after two
    # steps from scratch the boxes may all be degenerate (CocoMetric then reports nothing)
    metrics = runner.test()
    assert isinstance(metrics, dict)
    assert all(-1 <= v <= 1 for k, v in metrics.items() if '_mAP' in k), metrics


@pytest.mark.slow
def test_downstream_config_on_mmdets_base_trains_under_mmdets_own_tools(coco_root, tmp_path):
    """The five-line config a user writes (mmdet's RTMDet-tiny, custom_imports, the backbone
    and the neck's channels), trained and tested by the train/test tools inside mmdet."""
    import mmdet
    (tmp_path / 'my_rtmdet.py').write_text(textwrap.dedent("""
        _base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'
        custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)
        model = dict(
            backbone=dict(_delete_=True, type='PartialNet', arch='t0', out_indices=(1, 2, 3)),
            neck=dict(in_channels=[64, 128, 256]))
    """))
    tools = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools')
    # mmdet's COCO base names train2017/ and val2017/: the generated set's names and classes
    options = ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
               'model.bbox_head.num_classes=3', *coco_data_options(coco_root)]
    for loader, split in (('train_dataloader', 'train'), ('val_dataloader', 'val'),
                          ('test_dataloader', 'val')):
        options += [f'{loader}.batch_size=4',
                    f'{loader}.dataset.ann_file=annotations/instances_{split}.json',
                    f'{loader}.dataset.data_prefix.img={split}/',
                    f'{loader}.dataset.metainfo.classes=[circle,square,triangle]']
    work = tmp_path / 'work'
    code, out = run([sys.executable, osp.join(tools, 'train.py'), 'my_rtmdet.py', '--work-dir',
                     str(work), '--cfg-options', *options], cwd=str(tmp_path))
    assert code == 0, out[-3000:]
    assert re.search(r'Epoch\(train\) +\[1\]\[2/2\]', out), out[-2000:]
    code, out = run([sys.executable, osp.join(tools, 'test.py'), 'my_rtmdet.py',
                     str(work / 'epoch_1.pth'), '--work-dir', str(work), '--cfg-options',
                     *options], cwd=str(tmp_path))
    assert code == 0, out[-3000:]
    # the COCO metric over the val images; after two steps from scratch the (EMA) model may keep
    # no valid box, which CocoMetric reports as an empty result
    assert re.search(r'Epoch\(test\) \[1/1\]', out), out[-2000:]
    assert re.search(r'coco/bbox_mAP: [0-9.]+', out) or \
        'results of the whole dataset is empty' in out


def test_neck_that_does_not_fit_is_refused_at_build_time_naming_both_lists():
    cfg = _config('rtmdet_partialnet-t0_8xb32-300e_coco.py')
    cfg.model.neck.in_channels = [96, 192, 384]  # CSPNeXt-tiny's, the commonest slip
    with pytest.raises(NeckMismatch) as err:
        build_model(cfg, backbone_weights=False)
    message = str(err.value)
    assert '[96, 192, 384]' in message and '[64, 128, 256]' in message
    assert 'PartialNet-T0' in message and 'model.neck.in_channels=[64, 128, 256]' in message
    # out_indices decide the channels; other backbones and necks without a list pass
    cfg.model.backbone.out_indices = (0, 1, 2)
    cfg.model.neck.in_channels = [32, 64, 128]
    check_neck_channels(cfg.model)
    check_neck_channels(dict(backbone=dict(type='CSPNeXt'), neck=dict(in_channels=[1, 2, 3])))
    check_neck_channels(dict(backbone=dict(type='PartialNet', arch='s'),
                             neck=dict(type='ChannelMapper', in_channels=96)))
    with pytest.raises(NeckMismatch, match=r'returns 4 feature maps of \[96, 192, 384, 768\]'):
        check_neck_channels(dict(backbone=dict(type='PartialNet', arch='s'),
                                 neck=dict(in_channels=[96, 192, 384])))


@pytest.mark.slow
def test_train_tool_refuses_the_mismatch_before_touching_data(tmp_path):
    config = osp.join(REPO, 'configs', 'rtmdet_partialnet-t0_8xb32-300e_coco.py')
    code, out = run([sys.executable, 'tools/train.py', config, '--work-dir', str(tmp_path),
                     '--cfg-options', 'model.neck.in_channels=[96,192,384]'])
    assert code != 0
    assert 'model.neck.in_channels is [96, 192, 384]' in out
    assert 'set model.neck.in_channels=[64, 128, 256]' in out
    assert 'Traceback' not in out  # one line that says it, not a stack


def test_complexity_of_a_one_stage_detector_at_640():
    from partialnet_mm.toolkit.complexity import detector_complexity
    ours = detector_complexity(_config('rtmdet_partialnet-t0_8xb32-300e_coco.py'), 640, 640,
                               deploy=True)
    # RTMDet-tiny with PartialNet-T0: 3.42 M parameters (the figure), the backbone's
    # deployed FLOPs under CSPNeXt-tiny's 2.76 G, the whole below RTMDet-tiny's 8.09 G
    assert abs(ours['params'] - 3.415) < 0.01
    assert 1.9 < ours['backbone_flops'] < 2.1 and 5.5 < ours['flops'] < 6.5


@pytest.mark.slow
def test_benchmark_splits_the_detector_and_compares_with_mmdets_rtmdet(tmp_path):
    out = tmp_path / 'rtmdet.json'
    code, log = run([sys.executable, 'tools/benchmark.py', '--smoke', '--det',
                     'configs/rtmdet_partialnet-t0_8xb32-300e_coco.py', '--json', str(out)])
    assert code == 0, log[-3000:]
    result = json.loads(out.read_text())
    assert result['kind'] == 'detector_parts' and result['fused_max_abs_diff'] < 1e-3
    assert result['baseline'] == 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'
    for by_role in result['ms'].values():
        for parts in by_role.values():
            assert set(parts) == {'backbone + neck', 'head', 'network (no NMS)',
                                  'post-processing', 'total'}
            assert parts['total'] == pytest.approx(parts['network (no NMS)']
                                                   + parts['post-processing'])
    assert '| 1 thread  | backbone + neck' in log and 'rtmdet_tiny_8xb32-300e_coco (mmdet)' in log


@pytest.mark.slow
def test_rtmdet_demo_trains_both_backbones_and_reports_both(tmp_path):
    code, out = run([sys.executable, 'tools/demo.py', '--detector', 'rtmdet', '--epochs', '1',
                     '--num-train', '8', '--num-val', '4', '--pictures', '1', '--data-root',
                     str(tmp_path / 'data'), '--work-dir', str(tmp_path / 'work')])
    assert code == 0, out[-3000:]
    for name in ('RTMDet-tiny, PartialNet-T0', 'RTMDet-tiny, CSPNeXt-tiny'):
        assert re.search(rf'\| {re.escape(name)}, untrained \(initialisation\) \| [0-9.]+ \|', out)
        assert re.search(rf'\| {re.escape(name)}, trained \(1 epochs, [0-9.]+ min\)'
                         rf'(, no box kept)? \| [0-9.]+ \|', out)
    pictures = tmp_path / 'work' / 'pictures'
    assert {p.name for p in pictures.iterdir()} == {
        'predictions.png', 'curves_partialnet-t0.png', 'curves_cspnext-tiny.png'}
    assert 'FutureWarning' not in out  # mmdet's deprecated autocast calls are silenced
