"""Fixtures shared by the test modules (plain helpers are in helpers.py)."""
import pytest

from partialnet_mm.datasets.synthetic_coco import make_synthetic_coco


@pytest.fixture(scope='session')
def coco_root(tmp_path_factory):
    """A small generated COCO set (8 train, 4 val images of 128x128)."""
    root = str(tmp_path_factory.mktemp('coco'))
    make_synthetic_coco(root, num_train=8, num_val=4, size=128)
    return root
