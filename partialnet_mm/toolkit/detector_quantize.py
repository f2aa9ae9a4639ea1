"""INT8 end-to-end detector: the export of :mod:`.detector_export` at its fixed size, with
the backbone in its INT8-friendly form, quantized by onnxruntime (QDQ) so that the backbone,
the neck and the heads' convolutions run in INT8 while everything after them (box decoding,
top-k, NMS, RoIAlign, mask pasting) stays fp32. Calibrated on images of the config's training
set, preprocessed exactly as the runtime side does (:func:`partialnet_runtime.detector.preprocess`).
Evaluated with the config's COCO metric on the ONNX files (:mod:`.deploy_eval`)."""
import copy
import os
import os.path as osp
import shutil
import tempfile
import warnings
from typing import Dict, List, Optional

import cv2
import numpy as np

from partialnet_runtime.detector import preprocess

from ..models.layers.quantizable import FP32_MARK, quantizable
from .detector_export import (OPSET, deploy_meta, export_size, fuse_backbone, load_detector,
                              write_onnx)
from .end2end import POST_PROCESSING, end2end_model, part_of


def fp32_detector_nodes(path: str) -> List[str]:
    """The nodes of an end-to-end file kept fp32: the post-processing (:func:`end2end.part_of`)
    and those under a ``KeepFP32`` module."""
    import onnx

    return [n.name for n in onnx.load(path, load_external_data=False).graph.node
            if FP32_MARK in n.name or part_of(n.name) == POST_PROCESSING]


def calibration_inputs(cfg, meta: dict, limit: int) -> List[np.ndarray]:
    """The first ``limit`` images of the config's training set that decode, preprocessed by
    the runtime side; an error when none does."""
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    dataset_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    while 'dataset' in dataset_cfg:  # wrappers (RepeatDataset, ...)
        dataset_cfg = dataset_cfg.dataset
    dataset_cfg.pipeline = []
    dataset = DATASETS.build(dataset_cfg)
    arrays = []
    for i in range(len(dataset)):
        if len(arrays) >= limit:
            break
        image = cv2.imread(dataset.get_data_info(i)['img_path'], cv2.IMREAD_COLOR)
        if image is not None:
            arrays.append(preprocess(image, meta).input)
    if not arrays:
        raise ValueError(f'no image of the training set of {cfg.filename} decodes')
    return arrays


def quantize_detector(config: str, checkpoint: str, out: str, calib_num: int = 64,
                      cfg_options=None) -> Dict[str, object]:
    """Write ``out`` (INT8, QDQ, for ONNX Runtime) and the normal fp32 export at the same
    fixed size beside it (``*_fp32.onnx``, what ``tools/export_onnx.py --fixed-size``
    writes); nothing is written when anything fails."""
    from .quantize import fp32_path, int8_paths, quantize_onnxruntime

    int8_paths(out, ['onnxruntime'])  # a .onnx path
    if calib_num < 1:
        raise ValueError(f'calib_num must be >= 1, got {calib_num}')
    cfg, model = load_detector(config, checkpoint, cfg_options)
    size = export_size(cfg)
    fuse_backbone(model, size)
    e2e = end2end_model(model)
    meta = deploy_meta(cfg, e2e, size)
    arrays = calibration_inputs(cfg, meta, calib_num)
    fp32_out = fp32_path(out)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, friendly, int8 = (osp.join(tmp, n) for n in ('fp32.onnx', 'friendly.onnx',
                                                            'int8.onnx'))
        write_onnx(e2e, fp32, size, False, meta)
        if getattr(model.backbone, 'deploy', False):  # a (fused) PartialNet
            model.backbone = quantizable(model.backbone)
        # opset 20: GELU as one Gelu node
        write_onnx(end2end_model(model), friendly, size, False, meta, opset=max(OPSET, 20))
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            kept = quantize_onnxruntime(friendly, int8, arrays, tmp, fp32_detector_nodes)
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        shutil.move(fp32, fp32_out)
        shutil.move(int8, out)
    return dict(out=out, fp32=fp32_out, calibration_images=len(arrays), fp32_nodes=kept,
                size=size, family=e2e.family)


def evaluate_detector(config: str, fp32: str, int8: str, runs: int = 20,
                      limit: Optional[int] = None, cfg_options=None) -> List[dict]:
    """The config's test metrics of both files in ONNX Runtime, and their 1-thread latency
    (model only, on a random input of the files' fixed size, timed interleaved). Rows:
    precision, metrics, latency_ms."""
    import onnx

    from partialnet_runtime.backends import RUNTIMES, onnx_session

    from ..timing import time_interleaved
    from .deploy_eval import evaluate_deployed

    dims = onnx.load(fp32, load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    x = np.random.default_rng(0).standard_normal([d.dim_value for d in dims]).astype(np.float32)
    rows = []
    calls = {}
    for precision, path in (('fp32', fp32), ('int8', int8)):
        metrics = evaluate_deployed(config, path, 'onnxruntime', threads=1, limit=limit,
                                    cfg_options=cfg_options)
        rows.append(dict(precision=precision, metrics=metrics))
        calls[precision] = onnx_session(RUNTIMES['onnxruntime'], path, 1)
    seconds = time_interleaved({k: (lambda f=f: f(x)) for k, f in calls.items()}, 3, runs,
                               rounds=runs)
    for row in rows:
        row['latency_ms'] = 1e3 * seconds[row['precision']]
    return rows
