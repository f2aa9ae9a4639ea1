"""tools/train.py, tools/test.py and tools/dist_train.sh on the generated COCO set."""
import os.path as osp
import re
import sys

import pytest

from helpers import DEMO, run


def _data_options(root):
    root = root.rstrip('/') + '/'
    opts = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.dataset.data_root={root}', f'{loader}.num_workers=0',
                 f'{loader}.persistent_workers=False']
    for ev in ('val_evaluator', 'test_evaluator'):
        opts.append(f'{ev}.ann_file={root}annotations/instances_val.json')
    return opts


@pytest.mark.slow
def test_train_then_test_tools_give_coco_metrics(coco_root, tmp_path):
    work = str(tmp_path / 'work')
    code, out = run([sys.executable, 'tools/train.py', DEMO, '--work-dir', work,
                      '--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                      'train_dataloader.batch_size=2', *_data_options(coco_root)])
    assert code == 0, out[-3000:]
    assert re.search(r'Epoch\(train\) +\[1\]\[4/4\]', out), out[-2000:]
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    code, out = run([sys.executable, 'tools/test.py', DEMO, ckpt, '--work-dir', work,
                      '--cfg-options', *_data_options(coco_root)])
    assert code == 0, out[-3000:]
    assert re.search(r'coco/bbox_mAP: [0-9.]+', out) and re.search(r'coco/segm_mAP: [0-9.]+', out)


@pytest.mark.slow
def test_distributed_training_two_processes_gloo(coco_root, tmp_path):
    env_py = f'PYTHON={sys.executable}'
    code, out = run(['bash', '-c', f'{env_py} PORT=29533 bash tools/dist_train.sh {DEMO} 2 '
                      f'--work-dir {tmp_path} --cfg-options train_cfg.max_epochs=1 '
                      f'train_cfg.val_interval=1 train_dataloader.batch_size=2 '
                      + ' '.join(_data_options(coco_root))])
    assert code == 0, out[-3000:]
    # 8 images, 2 per process: 2 iterations per epoch with 2 processes (4 with one)
    assert re.search(r'Epoch\(train\) +\[1\]\[2/2\]', out), out[-2000:]
    assert 'Distributed training: True' in out
    assert osp.isfile(osp.join(tmp_path, 'epoch_1.pth'))


@pytest.mark.slow
def test_train_tool_reports_bad_data_root(tmp_path):
    code, out = run([sys.executable, 'tools/train.py', DEMO, '--cfg-options',
                      f'train_dataloader.dataset.data_root={tmp_path}/none/'])
    assert code != 0
    assert f'train_dataloader.dataset.data_root: directory not found: {tmp_path}/none/' in out
