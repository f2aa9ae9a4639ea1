"""Check a config's data settings before a run, with errors that name the setting."""
import json
import os.path as osp
from typing import List


class DataConfigError(ValueError):
    """A dataset setting of the config points at missing or malformed data."""


def _datasets(cfg):
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        # unwrap RepeatDataset / ClassBalancedDataset style wrappers
        while isinstance(dataset, dict) and 'dataset' in dataset and 'ann_file' not in dataset:
            loader, dataset = f'{loader}.dataset', dataset['dataset']
        if isinstance(dataset, dict):
            yield f'{loader}.dataset', dataset


def check_coco_annotation(path: str, setting: str) -> None:
    if not osp.isfile(path):
        raise DataConfigError(f'{setting}: annotation file not found: {path}')
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataConfigError(f'{setting}: {path} is not valid JSON ({err})') from None
    if not isinstance(data, dict):
        raise DataConfigError(f'{setting}: {path} is not a COCO annotation file (top level is '
                              f'{type(data).__name__}, expected an object)')
    missing = [k for k in ('images', 'annotations', 'categories') if k not in data]
    if missing:
        raise DataConfigError(f'{setting}: {path} is not a COCO annotation file: missing {missing}')
    if not data['images']:
        raise DataConfigError(f'{setting}: {path} lists no images')
    if not data['categories']:
        raise DataConfigError(f'{setting}: {path} lists no categories')


def check_data(cfg, loaders: List[str] = None) -> None:
    """Validate data_root, COCO-style ann_file and mmseg's image / label folders of the
    config's datasets."""
    for setting, ds in _datasets(cfg):
        if loaders and not any(setting.startswith(name) for name in loaders):
            continue
        root = ds.get('data_root') or ''
        if root and not osp.isdir(root):
            raise DataConfigError(f'{setting}.data_root: directory not found: {root}')
        prefix = ds.get('data_prefix') or {}
        for key in ('img_path', 'seg_map_path'):  # mmseg's folder datasets
            folder = prefix.get(key) if isinstance(prefix, dict) else None
            if folder and not ds.get('ann_file'):
                path = osp.join(root, folder) if root else folder
                if not osp.isdir(path):
                    raise DataConfigError(f'{setting}.data_prefix.{key}: directory not found: '
                                          f'{path}')
        ann = ds.get('ann_file')
        if ann and 'Coco' in str(ds.get('type', '')):
            check_coco_annotation(osp.join(root, ann) if root else ann, f'{setting}.ann_file')
