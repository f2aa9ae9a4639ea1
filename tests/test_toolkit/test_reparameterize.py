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
    lines = [line for line in log.splitlines() if '(test)' in line]  # Epoch(test) / Iter(test)
    assert lines, log[-3000:]
    return dict(re.findall(pattern, lines[-1]))


def _local_data(root: str) -> list:
    """--cfg-options that point every loader of a demo config at ``root``, in this process."""
    opts = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.dataset.data_root={root}', f'{loader}.num_workers=0',
                 f'{loader}.persistent_workers=False']
    return opts


def _train(config: str, work: str, *options: str) -> None:
    code, log = run([sys.executable, 'tools/train.py', config, '--work-dir', work,
                      '--cfg-options', *options])
    assert code == 0, log[-3000:]


def _fuse_and_test_both(config, trained, fused, work, options, pattern):
    """reparameterize ``trained`` into ``fused``, then the metrics of ``tools/test.py`` on
    both (``options``: --cfg-options of both runs; the fused one adds deploy=True)."""
    code, log = run([sys.executable, 'tools/reparameterize_model.py', config, trained, fused])
    assert code == 0 and 'model.backbone.deploy=True' in log, log[-3000:]
    results = []
    for ckpt, extra in ((trained, []), (fused, ['model.backbone.deploy=True'])):
        options_ = ['--cfg-options', *options, *extra] if options or extra else []
        code, log = run([sys.executable, 'tools/test.py', config, ckpt, '--work-dir', work,
                          *options_])
        assert code == 0, log[-3000:]
        results.append(_test_metrics(log, pattern))
    return results


@pytest.mark.slow
def test_reparameterize_then_test_tool_same_top1_digits(tmp_path, digits_checkpoint):
    config = osp.join(REPO, 'configs', 'demo', 'partialnet-t0_digits.py')
    work = str(tmp_path)
    trained, fused = digits_checkpoint, osp.join(work, 'fused', 'epoch_4.pth')
    results = _fuse_and_test_both(config, trained, fused, work, [], r'(accuracy/top1): ([0-9.]+)')
    assert read_checkpoint(fused)[0]['meta']['epoch'] == 4  # meta kept
    assert results[0] == results[1]
    assert float(results[0]['accuracy/top1']) > 50  # a trained model, so equality means much
    code, log = run([sys.executable, 'tools/reparameterize_model.py', config, fused,
                      str(tmp_path / 'twice.pth')])
    assert code == 2 and 'holds a fused PartialNet already' in log, log[-2000:]
    # a checkpoint in the other form: the reader says what, tools/test.py says what to run
    code, log = run([sys.executable, 'tools/test.py', config, fused])
    assert code != 0 and 'holds a fused PartialNet' in log, log[-2000:]
    assert re.search(r'tools/test\.py \S+partialnet-t0_digits\.py \S+epoch_4\.pth '
                     r'--cfg-options model\.backbone\.deploy=True', log), log[-2000:]
    code, log = run([sys.executable, 'tools/test.py', config, trained,
                     '--cfg-options', 'model.backbone.deploy=True'])
    assert code != 0 and 'holds a training (unfused) PartialNet' in log, log[-2000:]
    assert re.search(r'tools/reparameterize_model\.py \S+partialnet-t0_digits\.py CHECKPOINT '
                     r'OUT', log), log[-2000:]


@pytest.mark.slow
def test_reparameterize_then_test_tool_same_coco_ap(tmp_path):
    root = str(tmp_path / 'coco') + '/'
    make_synthetic_coco(root, num_train=96, num_val=16, size=128)
    opts = _local_data(root) + [f'{e}.ann_file={root}annotations/instances_val.json'
                                for e in ('val_evaluator', 'test_evaluator')]
    config = osp.join(REPO, 'configs', 'demo', 'mask_rcnn_partialnet_t0_synthetic.py')
    work = str(tmp_path / 'work')
    _train(config, work, 'train_cfg.max_epochs=6', 'train_cfg.val_interval=7',
           'default_hooks.checkpoint.interval=6', *opts)
    trained, fused = osp.join(work, 'epoch_6.pth'), osp.join(work, 'epoch_6_fused.pth')
    results = _fuse_and_test_both(config, trained, fused, work, opts, r'(coco/\w+): (-?[0-9.]+)')
    assert len(results[0]) == 12 and results[0] == results[1]
    assert float(results[0]['coco/bbox_mAP']) > 0.05 and float(results[0]['coco/segm_mAP']) > 0.05


@pytest.mark.slow
def test_reparameterize_then_test_tool_same_miou_segmentor(tmp_path):
    """Semantic FPN (mmseg): fuse a trained checkpoint, test it with deploy=True, same mIoU."""
    from partialnet_mm.datasets.synthetic_seg import make_synthetic_seg

    root = str(tmp_path / 'seg') + '/'
    make_synthetic_seg(root, num_train=16, num_val=4, size=64)
    opts = _local_data(root)
    config = osp.join(REPO, 'configs', 'demo', 'fpn_partialnet-t0_synthetic-seg.py')
    work = str(tmp_path / 'work')
    _train(config, work, 'train_cfg.max_iters=160', 'train_cfg.val_interval=161',
           'default_hooks.checkpoint.interval=160', *opts)
    trained, fused = osp.join(work, 'iter_160.pth'), osp.join(work, 'iter_160_fused.pth')
    results = _fuse_and_test_both(config, trained, fused, work, opts,
                                  r'(aAcc|mIoU|mAcc): ([0-9.]+)')
    assert set(results[0]) == {'aAcc', 'mIoU', 'mAcc'} and results[0] == results[1]
    # shapes are found, not only the background (alone it gives mIoU = aAcc / 4)
    assert float(results[0]['mIoU']) > float(results[0]['aAcc']) / 4 + 0.5
