"""INT8: post-training static quantization of a trained mmpretrain classifier, through ONNX.

The classifier of a config and checkpoint (its PartialNet backbone fused and checked first)
is exported to ONNX with dynamic batch and input size, then quantized by onnxruntime's
``quantize_static`` in QDQ format (which ONNX Runtime and OpenVINO both run as INT8; unsigned
8-bit activations, signed 8-bit weights per output channel, min-max calibration),
calibrated on images of the config's training set (through its test pipeline and data
preprocessor) or of a folder. The convolutions and fully connected layers run in INT8;
the operations that lose accuracy in 8 bits stay fp32: the channel attentions' statistics
and gates (PAT_ch), PAT_sp's gate, and PAT_sf's attention (the projections, the scores, the
softmax): see :data:`INT8_OPS` and :func:`fp32_nodes`.
"""
import copy
import os
import os.path as osp
import shutil
import tempfile
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..checkpoint import checkpoint_form, key_problems, read_checkpoint
from ..deploy import fuse_and_check
from ..registration import build_model

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')
# ONNX operators quantized to INT8 (weights per channel): the convolutions and the fully
# connected layers. Element-wise operators, reductions and MatMul stay fp32 unless listed.
INT8_OPS = ('Conv', 'Gemm')


class Logits(nn.Module):
    """An mmpretrain classifier as ``normalised images -> logits`` (its ``tensor`` mode)."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x, mode='tensor')


def load_classifier(config: str, checkpoint: str, cfg_options: Optional[dict] = None):
    """``(cfg, model)``: the mmpretrain classifier of ``config`` with the weights of
    ``checkpoint`` (a training or a fused checkpoint), its PartialNet backbone fused and
    checked against the unfused one. Errors name the config or checkpoint."""
    from mmengine.config import Config

    import partialnet_mm  # noqa: F401  (registration)
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('default_scope') != 'mmpretrain':
        raise ValueError(f'{config}: quantization takes an mmpretrain classifier config '
                         f"(default_scope 'mmpretrain'), got {cfg.get('default_scope')!r}")
    _, state = read_checkpoint(checkpoint)
    backbone = cfg.model.get('backbone') or {}
    is_partialnet = str(backbone.get('type', '')).split('.')[-1] == 'PartialNet'
    form = checkpoint_form(state, 'backbone.')
    if is_partialnet and form is None:
        raise KeyError(f'{checkpoint} holds no PartialNet classifier (no backbone.patch_embed '
                       f'weights): give the checkpoint {config} was trained to')
    if is_partialnet and form == 'fused':
        cfg.model.backbone.deploy = True
    model = build_model(cfg, backbone_weights=False).eval()
    problems = key_problems(model.state_dict(), state)
    if problems:
        raise KeyError(f'{checkpoint} does not fit the model of {config}: {problems}')
    model.load_state_dict(state)
    if is_partialnet and form == 'training':
        size = image_size(cfg)
        x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
        model.backbone, _ = fuse_and_check(model.backbone, x, what='backbone',
                                           action='quantize it')
    return cfg, model


def image_size(cfg) -> Tuple[int, int]:
    """(H, W) of the config's test images, from its pipeline or dataset (else 224)."""
    dataset = cfg.test_dataloader.dataset
    for step in dataset.get('pipeline', []):
        for key in ('crop_size', 'scale'):
            if key in step:
                value = step[key]
                return (value, value) if isinstance(value, int) else tuple(value)[::-1]
    size = dataset.get('size')
    return (size, size) if isinstance(size, int) else (224, 224)


def _loader(cfg, split: str, pipeline, batch_size: int, shuffle: bool):
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    loader = copy.deepcopy(cfg[f'{split}_dataloader'])
    loader.dataset.pipeline = pipeline
    loader.update(batch_size=batch_size, num_workers=0, persistent_workers=False,
                  sampler=dict(type='DefaultSampler', shuffle=shuffle, seed=0))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return Runner.build_dataloader(loader, seed=0)


def preprocessed(model, cfg, split: str, limit: Optional[int] = None, batch_size: int = 32,
                 shuffle: bool = False) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """``(images, labels)`` batches of the config's ``split`` set through its test pipeline
    and the model's data preprocessor, at most ``limit`` images."""
    pipeline = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
    seen = 0
    for batch in _loader(cfg, split, pipeline, batch_size, shuffle):
        data = model.data_preprocessor(batch, False)
        images = data['inputs'].float().numpy()
        labels = np.array([int(s.gt_label) for s in data['data_samples']])
        if limit is not None:
            images, labels = images[:limit - seen], labels[:limit - seen]
        seen += len(images)
        yield images, labels
        if limit is not None and seen >= limit:
            return


def folder_images(model, cfg, folder: str, limit: int) -> Iterator[np.ndarray]:
    """Images of ``folder`` (sorted, at most ``limit``) through the config's test pipeline
    and the model's data preprocessor, one at a time."""
    import cv2
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope

    if not osp.isdir(folder):
        raise FileNotFoundError(f'calibration folder {folder} does not exist')
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise ValueError(f'calibration folder {folder} holds no images '
                         f'({", ".join(IMAGE_EXTENSIONS)})')
    steps = [s for s in cfg.test_dataloader.dataset.pipeline if s['type'] != 'LoadImageFromFile']
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pipeline = Compose(copy.deepcopy(steps))
    height, width = image_size(cfg)
    for name in files[:limit]:
        img = cv2.imread(osp.join(folder, name))
        if img is None:
            raise ValueError(f'{osp.join(folder, name)}: not a readable image')
        if not any('size' in k or 'scale' in k for s in steps for k in s):
            img = cv2.resize(img, (width, height))
        packed = pipeline(dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2]))
        data = model.data_preprocessor(dict(inputs=[packed['inputs']],
                                            data_samples=[packed['data_samples']]), False)
        yield data['inputs'].float().numpy()


def fp32_nodes(path: str) -> List[str]:
    """The Conv / Gemm nodes kept in fp32: those inside a channel attention's gate (the
    (1, 2) conv folded into a Gemm over the statistics), PAT_sp's 1-channel gate conv and
    PAT_sf's attention. Names are the exporters' module paths."""
    import onnx

    keep = []
    for node in onnx.load(path, load_external_data=False).graph.node:
        if node.op_type not in INT8_OPS:
            continue
        name = node.name
        if '/token_mixer/attn/' in name or '/pat_sp/' in name:
            keep.append(name)
    return keep


class _Reader:
    """onnxruntime's CalibrationDataReader over arrays."""

    def __init__(self, arrays: List[np.ndarray], input_name: str = 'input'):
        self.arrays, self.input_name, self.index = arrays, input_name, 0

    def get_next(self):
        if self.index >= len(self.arrays):
            return None
        self.index += 1
        return {self.input_name: self.arrays[self.index - 1]}

    def rewind(self):
        self.index = 0


def quantize(config: str, checkpoint: str, out: str, calib_num: int = 300,
             calib_dir: Optional[str] = None, cfg_options: Optional[dict] = None) -> dict:
    """Write ``out`` (INT8, QDQ) and its fp32 export beside it (``*_fp32.onnx``); returns
    what it did, with the config and the fused model (for :func:`evaluate`). Nothing is
    written when anything fails."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .onnx_export import export

    if calib_num < 1:
        raise ValueError(f'calib_num must be >= 1, got {calib_num}')
    cfg, model = load_classifier(config, checkpoint, cfg_options)
    if calib_dir:
        arrays = list(folder_images(model, cfg, calib_dir, calib_num))
    else:
        arrays = [image[None] for images, _ in preprocessed(model, cfg, 'train', calib_num,
                                                            shuffle=True) for image in images]
    fp32_out = osp.splitext(out)[0] + '_fp32.onnx'
    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre, int8 = (osp.join(tmp, n) for n in ('fp32.onnx', 'pre.onnx', 'int8.onnx'))
        export(Logits(model).eval(), fp32, image_size(cfg), dynamo=False, dynamic=True)
        quant_pre_process(fp32, pre, skip_symbolic_shape=True)
        kept = fp32_nodes(pre)

        class Reader(_Reader, CalibrationDataReader):
            pass

        # unsigned activations and signed weights (U8S8): x86's fast INT8 path in onnxruntime
        quantize_static(pre, int8, Reader(arrays), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, op_types_to_quantize=list(INT8_OPS),
                        nodes_to_exclude=kept, calibrate_method=CalibrationMethod.MinMax)
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        shutil.move(fp32, fp32_out)
        shutil.move(int8, out)
    return dict(out=out, fp32=fp32_out, calibration_images=len(arrays), fp32_nodes=kept,
                config=cfg, model=model)


def evaluate(cfg, model: nn.Module, models: dict, runtimes, runs: int = 100,
             limit: Optional[int] = None, sizes: Sequence[int] = ()) -> List[dict]:
    """Top-1 on the config's test set, and latency (1 thread, batch 1, every model timed
    interleaved with the others) on a test image and on random images of each of ``sizes``,
    of each ONNX file of ``models`` ({precision: path}) in each runtime, PyTorch's fp32
    first. Rows: runtime, precision, top1, latency_ms ({size label: ms})."""
    from ..benchmark.runtimes import onnx_session
    from ..benchmark.timing import num_threads, time_interleaved

    batches = list(preprocessed(model, cfg, 'test', limit))
    logits = Logits(model).eval()

    def top1(run) -> float:
        correct = sum(int((np.asarray(run(x)).argmax(1) == y).sum()) for x, y in batches)
        return 100.0 * correct / sum(len(y) for _, y in batches)

    with torch.inference_mode():
        rows = [dict(runtime='torch', precision='fp32',
                     top1=top1(lambda x: logits(torch.from_numpy(x)).numpy()))]
    threads = torch.get_num_threads()
    singles = {('torch', 'fp32'): lambda x: logits(torch.from_numpy(x))}
    for runtime in runtimes:
        for precision, path in models.items():
            run = onnx_session(runtime, path, threads)
            rows.append(dict(runtime=runtime.name, precision=precision,
                             top1=top1(lambda x, r=run: r(x)[0])))
            singles[(runtime.name, precision)] = onnx_session(runtime, path, 1)
    native = batches[0][0][:1]
    inputs = {'x'.join(map(str, native.shape[2:])): native}
    for size in sizes:
        inputs[f'{size}x{size}'] = np.random.default_rng(0).standard_normal(
            (1, 3, size, size)).astype(np.float32)
    for row in rows:
        row['latency_ms'] = {}
    for label, x in inputs.items():
        with num_threads(1):
            seconds = time_interleaved({k: (lambda f=f: f(x)) for k, f in singles.items()},
                                       10, runs, rounds=runs)
        for row in rows:
            row['latency_ms'][label] = 1e3 * seconds[(row['runtime'], row['precision'])]
    return rows
