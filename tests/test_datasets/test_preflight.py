"""The config data checks that run before a tool."""
import json

import pytest
from mmengine.config import Config

from partialnet_mm.datasets.preflight import DataConfigError, check_coco_annotation, check_data

from helpers import DEMO


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
