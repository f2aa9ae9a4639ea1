"""tools/reparameterize_model.py, then tools/test.py with deploy=True: the same metrics."""
import os.path as osp
import re
import sys

import pytest

from partialnet_mm.checkpoint import read_checkpoint
from partialnet_mm.datasets.synthetic_coco import make_synthetic_coco

from helpers import REPO, run


# ------------------------------------------------------------------ the tools
def _test_metrics(log: str, pattern: str) -> dict:
    lines = [line for line in log.splitlines() if 'Epoch(test)' in line]
    assert lines, log[-3000:]
    return dict(re.findall(pattern, lines[-1]))


@pytest.mark.slow
def test_reparameterize_then_test_tool_same_top1_digits(tmp_path):
    config = osp.join(REPO, 'configs', 'demo', 'partialnet-t0_digits.py')
    work = str(tmp_path)
    code, log = run([sys.executable, 'tools/train.py', config, '--work-dir', work,
                      '--cfg-options', 'train_cfg.max_epochs=2', 'train_cfg.val_interval=3',
                      'param_scheduler.1.T_max=1', 'param_scheduler.1.end=2',
                      'default_hooks.checkpoint.interval=2'])
    assert code == 0, log[-3000:]
    trained, fused = osp.join(work, 'epoch_2.pth'), osp.join(work, 'fused', 'epoch_2.pth')
    code, log = run([sys.executable, 'tools/reparameterize_model.py', config, trained, fused])
    assert code == 0 and 'model.backbone.deploy=True' in log, log[-3000:]
    assert read_checkpoint(fused)[0]['meta']['epoch'] == 2  # meta kept
    results = []
    for ckpt, options in ((trained, []), (fused, ['--cfg-options', 'model.backbone.deploy=True'])):
        code, log = run([sys.executable, 'tools/test.py', config, ckpt, '--work-dir', work,
                          *options])
        assert code == 0, log[-3000:]
        results.append(_test_metrics(log, r'(accuracy/top1): ([0-9.]+)'))
    assert results[0] == results[1]
    assert float(results[0]['accuracy/top1']) > 50  # a trained model, so equality means much
    code, log = run([sys.executable, 'tools/reparameterize_model.py', config, fused,
                      str(tmp_path / 'twice.pth')])
    assert code == 2 and 'holds a fused PartialNet already' in log, log[-2000:]


@pytest.mark.slow
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
    code, log = run([sys.executable, 'tools/train.py', config, '--work-dir', work,
                      '--cfg-options', 'train_cfg.max_epochs=6', 'train_cfg.val_interval=7',
                      'default_hooks.checkpoint.interval=6', *opts])
    assert code == 0, log[-3000:]
    trained, fused = osp.join(work, 'epoch_6.pth'), osp.join(work, 'epoch_6_fused.pth')
    code, log = run([sys.executable, 'tools/reparameterize_model.py', config, trained, fused])
    assert code == 0, log[-3000:]
    results = []
    for ckpt, extra in ((trained, []), (fused, ['model.backbone.deploy=True'])):
        code, log = run([sys.executable, 'tools/test.py', config, ckpt, '--work-dir', work,
                          '--cfg-options', *opts, *extra])
        assert code == 0, log[-3000:]
        results.append(_test_metrics(log, r'(coco/\w+): (-?[0-9.]+)'))
    assert len(results[0]) == 12 and results[0] == results[1]
    assert float(results[0]['coco/bbox_mAP']) > 0.05 and float(results[0]['coco/segm_mAP']) > 0.05
