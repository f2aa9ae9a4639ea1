"""COCO evaluation of an exported detector (a backend model, as mmdeploy's ``tools/test.py``):
each image of the config's test set read from disk, preprocessed and post-processed by the
runtime side (:mod:`partialnet_runtime`, exactly what ``tools/deploy_infer.py`` runs), run in
ONNX Runtime or OpenVINO, and scored by the config's own evaluator (mmdet's ``CocoMetric``).
Needs mmdet for the data set and the metric only."""
import copy
import time
from typing import Dict, Optional

import cv2
import torch

from partialnet_runtime import Detector

from ..mmconfig import load_config


def _test_set(cfg):
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
    dataset_cfg.pipeline = []  # the runtime side reads and preprocesses the images itself
    dataset_cfg.test_mode = True
    return DATASETS.build(dataset_cfg)


def evaluate_deployed(config: str, model: str, runtime: str = 'onnxruntime', threads: int = 0,
                      limit: Optional[int] = None, cfg_options=None) -> Dict[str, float]:
    """The config's test metrics (``coco/bbox_mAP``... as mmdet names them) of the exported
    detector ``model`` run in ``runtime``, and ``seconds_per_image`` (preprocessing, model and
    post-processing). A ValueError when the file's classes are not the data set's."""
    from mmdet.registry import METRICS

    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    detector = Detector(model, runtime, threads)
    dataset = _test_set(cfg)
    classes = list(dataset.metainfo['classes'])
    if classes != list(detector.classes):
        raise ValueError(f'{model} detects {len(detector.classes)} classes '
                         f'({", ".join(detector.classes[:3])}...), the test set of {config} has '
                         f'{len(classes)} ({", ".join(classes[:3])}...)')
    evaluator_cfg = cfg.test_evaluator
    metric = METRICS.build(evaluator_cfg[0] if isinstance(evaluator_cfg, list) else
                           evaluator_cfg)
    metric.dataset_meta = dataset.metainfo
    count = len(dataset) if limit is None else min(limit, len(dataset))
    start = time.perf_counter()
    for i in range(count):
        info = dataset.get_data_info(i)
        image = cv2.imread(info['img_path'], cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f'{info["img_path"]} does not decode as an image')
        det = detector(image)
        pred = dict(bboxes=torch.from_numpy(det.boxes), scores=torch.from_numpy(det.scores),
                    labels=torch.from_numpy(det.labels))
        if det.masks is not None:
            pred['masks'] = torch.from_numpy(det.masks)
        metric.process({}, [dict(img_id=info['img_id'], ori_shape=image.shape[:2],
                                 pred_instances=pred)])
    seconds = (time.perf_counter() - start) / max(count, 1)
    results = metric.evaluate(count)
    results['seconds_per_image'] = seconds
    return results


def evaluate_pytorch(config: str, checkpoint: str, work_dir: str,
                     cfg_options=None) -> Dict[str, float]:
    """The same metrics of the PyTorch model (mmengine's Runner.test, as ``tools/test.py``)."""
    from mmengine.runner import Runner

    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.load_from = checkpoint
    cfg.work_dir = work_dir
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    return Runner.from_cfg(cfg).test()
