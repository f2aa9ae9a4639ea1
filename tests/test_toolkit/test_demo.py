"""The demo's parts (tools/demo.py): the schedule scaled to the epochs asked, the config
pointed at the generated set, the weights evaluated (EMA swapped in), the table."""
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config

from partialnet_mm.toolkit.demo import (DEMO_CONFIGS, DETECTORS, DemoRun, DemoSettings,
                                        demo_config, demo_models, evaluated_weights,
                                        results_table, scale_schedule)

MASK_RCNN, RTMDET = demo_models('mask_rcnn')[0][1], demo_models('rtmdet')[0][1]


def test_schedule_keeps_its_fractions():
    cfg = Config.fromfile(MASK_RCNN)  # 12 epochs, steps at 9 and 11, warm-up 50 iterations
    scale_schedule(cfg, 24)
    warmup, steps = cfg.param_scheduler
    assert cfg.train_cfg.max_epochs == 24 and steps.milestones == [18, 22]
    assert (steps.begin, steps.end) == (0, 24) and (warmup.begin, warmup.end) == (0, 50)
    scale_schedule(cfg, 1)  # never a step at epoch 0
    assert steps.milestones == [1, 1] and steps.end == 1

    cfg = Config.fromfile(RTMDET)  # 24 epochs, cosine over the second half
    scale_schedule(cfg, 6)
    cosine = cfg.param_scheduler[1]
    assert (cosine.begin, cosine.end, cosine.T_max) == (3, 6, 3)
    scale_schedule(cfg, 1)
    assert (cosine.begin, cosine.end, cosine.T_max) == (0, 1, 1)


def test_config_points_at_the_generated_set(tmp_path):
    settings = DemoSettings(data_root=str(tmp_path / 'set'), epochs=3, seed=7, val_interval=2)
    cfg = demo_config(settings, MASK_RCNN, str(tmp_path / 'work'))
    root = str(tmp_path / 'set') + '/'
    assert {cfg[k].dataset.data_root for k in ('train_dataloader', 'val_dataloader',
                                               'test_dataloader')} == {root}
    assert cfg.val_evaluator.ann_file == cfg.test_evaluator.ann_file == \
        root + 'annotations/instances_val.json'
    assert cfg.train_cfg.max_epochs == 3 and cfg.train_cfg.val_interval == 2
    assert cfg.default_hooks.checkpoint.interval == 3 and cfg.randomness.seed == 7
    assert cfg.work_dir == str(tmp_path / 'work')
    assert cfg.visualizer.name == 'visualizer_mask_rcnn_partialnet_t0_synthetic'


def test_demo_models_are_the_detectors_configs():
    assert [name for name, _ in demo_models('rtmdet')] == [
        name for name, _ in DETECTORS['rtmdet'].models]
    assert all(Config.fromfile(path).model.type == 'RTMDet' for _, path in demo_models('rtmdet'))
    assert demo_models('rtmdet', config='x/my_model.py') == [('my_model', 'x/my_model.py')]


def test_evaluated_weights_are_the_ema_ones():
    from mmengine.hooks import EMAHook
    model = torch.nn.Linear(2, 2)
    runner = SimpleNamespace(model=model, hooks=[EMAHook(momentum=0.5)])
    runner.hooks[0].before_run(runner)
    own = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)  # the trained weights move; the average has not been updated
    with evaluated_weights(runner) as evaluated:
        torch.testing.assert_close(evaluated.weight.detach(), own)
    torch.testing.assert_close(model.weight.detach(), own + 1)  # swapped back
    plain = SimpleNamespace(model=model, hooks=[])
    with evaluated_weights(plain) as evaluated:
        assert evaluated is model
        torch.testing.assert_close(evaluated.weight.detach(), own + 1)


def test_table_reports_both_evaluations_and_empty_ones():
    metrics = DETECTORS['rtmdet'].metrics
    runs = [DemoRun(name, None, untrained={}, trained={f'coco/{k}': 0.5 for k in metrics},
                    before=[], after=[], train_min=1.25)
            for name in ('RTMDet-tiny, PartialNet-T0', 'RTMDet-tiny, CSPNeXt-tiny')]
    lines = results_table(runs, metrics, epochs=2).splitlines()
    assert lines[0] == '| model | bbox AP | AP50 | AP75 | AP small | AP medium |'
    assert len(lines) == 2 + 4 and all(line.count('|') == 7 for line in lines)
    assert lines[2] == ('| RTMDet-tiny, PartialNet-T0, untrained (initialisation), no box kept '
                        '| 0.000 | 0.000 | 0.000 | 0.000 | 0.000 |')
    assert lines[3].startswith('| RTMDet-tiny, PartialNet-T0, trained (2 epochs, 1.2 min) | 0.500')
    one = results_table(runs[:1], metrics, epochs=2).splitlines()
    assert one[3].startswith('| trained (2 epochs')  # one model: no name prefix


def test_unknown_detector_is_refused():
    with pytest.raises(KeyError):
        demo_models('yolo')


SEG_LOG = '''12/03 07:00:01 - mmengine - INFO - Iter(test) [40/40]
+-------+
12/03 07:00:02 - mmengine - INFO - Iter(test) [40/40]    aAcc: 61.2000  mIoU: 20.5000  mAcc: 31.0000
'''


def test_segmentation_demo_parts(tmp_path):
    """tools/demo_seg.py's parts: the figures of mmseg's test log, the schedule of a shorter
    run, the table, and the untrained model written as a checkpoint mmseg's test tool reads."""
    from partialnet_mm.checkpoint import read_checkpoint
    from partialnet_mm.toolkit.demo import (IOU_METRICS, iou_metrics, seg_schedule_options,
                                            seg_table, untrained_checkpoint)
    before = iou_metrics('Iter(test) aAcc: 1.0  mIoU: 2.0  mAcc: 3.0\n' + SEG_LOG)  # the last
    assert before == {'aAcc': 61.2, 'mIoU': 20.5, 'mAcc': 31.0}
    with pytest.raises(ValueError, match='no IoUMetric figures'):
        iou_metrics('Iter(test) [40/40]\n')
    assert seg_schedule_options(800)[3:] == [
        'param_scheduler.0.end=50', 'param_scheduler.1.begin=50', 'param_scheduler.1.end=800']
    assert seg_schedule_options(2)[3] == 'param_scheduler.0.end=1'
    lines = seg_table(before, dict(before, mIoU=80.0), 800, 4.56).splitlines()
    assert lines[0] == '| model | ' + ' | '.join(IOU_METRICS) + ' |'
    assert lines[3] == '| trained (800 iterations, 4.6 min) | 61.20 | 80.00 | 31.00 |'

    config = str(DEMO_CONFIGS / 'fpn_partialnet-t0_synthetic-seg.py')
    path = untrained_checkpoint(config, str(tmp_path / 'u' / 'untrained.pth'), seed=3)
    meta, state = read_checkpoint(path)
    again = read_checkpoint(untrained_checkpoint(config, str(tmp_path / 'again.pth'), seed=3))[1]
    assert any(k.startswith('backbone.stages.') for k in state)
    assert any(k.startswith('decode_head.') for k in state)
    assert all(torch.equal(state[k], again[k]) for k in state)  # seeded: the same model
