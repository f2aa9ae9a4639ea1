"""Fixtures shared by the test modules (plain helpers are in helpers.py)."""
import os.path as osp
import sys

import pytest

from partialnet_mm.datasets.synthetic_coco import make_synthetic_coco

from helpers import REPO, run

DIGITS = osp.join(REPO, 'configs', 'demo', 'partialnet-t0_digits.py')


@pytest.fixture(scope='session')
def coco_root(tmp_path_factory):
    """A small generated COCO set (8 train, 4 val images of 128x128)."""
    root = str(tmp_path_factory.mktemp('coco'))
    make_synthetic_coco(root, num_train=8, num_val=4, size=128)
    return root


@pytest.fixture(scope='session')
def digits_checkpoint(tmp_path_factory):
    """PartialNet-T0 trained 4 epochs on the digits by tools/train.py (about 97% top-1): the
    checkpoint the deployment tools (reparameterize, quantize) are tested on."""
    work = str(tmp_path_factory.mktemp('digits'))
    code, log = run([sys.executable, 'tools/train.py', DIGITS, '--work-dir', work,
                      '--cfg-options', 'train_cfg.max_epochs=4', 'train_cfg.val_interval=5',
                      'param_scheduler.1.T_max=3', 'param_scheduler.1.end=4',
                      'default_hooks.checkpoint.interval=4'])
    assert code == 0, log[-3000:]
    return osp.join(work, 'epoch_4.pth')
