"""INT8: post-training static quantization of a trained mmpretrain classifier, through ONNX.

The classifier of a config and checkpoint (its PartialNet backbone fused and checked first)
is put in its INT8-friendly form (:func:`partialnet_mm.models.layers.quantizable`: the same
function, with every full-map operation one that has an INT8 kernel), exported to ONNX at
one input size (INT8 deployments run at a fixed size; ``dynamic=True`` keeps batch and size
free, slower in ONNX Runtime), and quantized for each runtime asked for, calibrated on the
same images of the config's training set (through its test pipeline and data preprocessor)
or of a folder:

- ``onnxruntime``: onnxruntime's ``quantize_static`` in QDQ format (unsigned 8-bit
  activations, signed 8-bit weights per output channel, min-max calibration) over the
  operators of :data:`INT8_OPS`; the nodes under a ``KeepFP32`` module (the channel
  attentions' (B, C, 1, 1) gates, PAT_sf's LayerNorm and attention scores) stay fp32.
- ``openvino``: NNCF, OpenVINO's own quantizer, on the OpenVINO model of the same ONNX file
  (its default preset, the same calibration images, the same nodes kept fp32).

The normal deployed form is exported beside them in fp32 (``*_fp32.onnx``): the baseline.
"""
import copy
import importlib.util
import os
import os.path as osp
import shutil
import tempfile
import warnings
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from partialnet_runtime.backends import RuntimeMissing, require_runtime

from ..checkpoint import checkpoint_form, key_problems, read_checkpoint
from ..deploy import fuse_and_check
from ..models.layers.quantizable import FP32_MARK, quantizable
from ..mmconfig import build_model

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')
# ONNX operators quantized by onnxruntime (QDQ): those ONNX Runtime's CPU provider runs as
# INT8 kernels, the data movement between them (which then moves 8-bit values), and the
# activations a quantized output range absorbs. Anything else (Gelu, Sqrt, Div, Softmax,
# LayerNormalization) stays fp32.
INT8_OPS = ('Conv', 'Gemm', 'MatMul', 'Add', 'Mul', 'Concat', 'GlobalAveragePool',
            'AveragePool', 'MaxPool', 'Sigmoid', 'Where', 'Relu', 'Clip', 'Split', 'Slice',
            'Reshape', 'Transpose', 'Flatten', 'Squeeze', 'Unsqueeze', 'Resize', 'Pad')
# TorchScript's exporter writes GELU as the Gelu operator from this opset on (one fp32 node
# between INT8 ones instead of five)
QUANTIZE_OPSET = 20
NNCF_INSTALL = 'pip install nncf==3.4.0'
# the INT8 file of each runtime, named from the OUT.onnx of the ONNX Runtime one
INT8_FILES = {'onnxruntime': '{stem}.onnx', 'openvino': '{stem}_openvino.xml'}


def int8_paths(out: str, runtimes: Sequence[str]) -> Dict[str, str]:
    """{runtime: the INT8 file written for it} for ``OUT.onnx``."""
    if not out.endswith('.onnx'):
        raise ValueError(f'{out}: the output must be a .onnx path (the OpenVINO model is '
                         f'written beside it as *_openvino.xml)')
    unknown = [r for r in runtimes if r not in INT8_FILES]
    if unknown or not runtimes:
        raise RuntimeMissing(f'no INT8 quantizer for runtime {(unknown or [""])[0]!r}; choose '
                             f'from {", ".join(INT8_FILES)}')
    return {r: INT8_FILES[r].format(stem=out[:-len('.onnx')]) for r in runtimes}


def fp32_path(out: str) -> str:
    """The fp32 baseline written beside the INT8 ``OUT.onnx``: ``OUT_fp32.onnx``."""
    return out[:-len('.onnx')] + '_fp32.onnx'


def require_quantizers(runtimes: Sequence[str]) -> None:
    """Each runtime and its quantizer installed (onnxruntime's is in onnxruntime; OpenVINO's
    is NNCF), else :class:`RuntimeMissing` with the pip line."""
    for name in runtimes:
        require_runtime(name)
    if 'openvino' not in runtimes:
        return
    try:
        found = importlib.util.find_spec('nncf') is not None
    except (ImportError, ValueError):  # a broken or half-removed install
        found = False
    if not found:
        raise RuntimeMissing(f'OpenVINO INT8 is quantized by NNCF, which is not installed: '
                             f'{NNCF_INSTALL}')


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


def folder_images(model, cfg, folder: str, limit: int) -> Tuple[List[np.ndarray], List[str]]:
    """``(arrays, skipped)``: the images of ``folder`` (sorted; the first ``limit`` that
    decode) through the config's test pipeline and the model's data preprocessor, one array
    each, and the files that do not decode (skipped). An error when none is left."""
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
    arrays, skipped = [], []
    for name in files:
        if len(arrays) >= limit:
            break
        img = cv2.imread(osp.join(folder, name))
        if img is None:
            skipped.append(osp.join(folder, name))
            continue
        if not any('size' in k or 'scale' in k for s in steps for k in s):
            img = cv2.resize(img, (width, height))
        packed = pipeline(dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2]))
        data = model.data_preprocessor(dict(inputs=[packed['inputs']],
                                            data_samples=[packed['data_samples']]), False)
        arrays.append(data['inputs'].float().numpy())
    if not arrays:
        raise ValueError(f'calibration folder {folder}: none of its {len(files)} images '
                         f'decodes (e.g. {skipped[0]})')
    return arrays, skipped


def fp32_nodes(path: str) -> List[str]:
    """The nodes the quantizers leave in fp32: those under a ``KeepFP32`` module of the
    INT8-friendly form (their names hold ``/fp32/``)."""
    import onnx

    return [n.name for n in onnx.load(path, load_external_data=False).graph.node
            if FP32_MARK in n.name]


def _rewrite(path: str, edit) -> int:
    import onnx

    model = onnx.load(path)
    count = edit(model.graph)
    onnx.save(model, path)
    return count


def own_initializers(path: str) -> int:
    """Give every ``Identity(initializer)`` node's output its own copy of the initializer
    (exporters share equal constants, e.g. the gates' 0.5 biases, through Identity nodes, and
    a conv whose bias is not an initializer is left fp32 by the quantizer). Returns how many."""
    import onnx

    def edit(graph) -> int:
        initializers = {i.name: i for i in graph.initializer}
        nodes = []
        for node in graph.node:
            if node.op_type == 'Identity' and node.input[0] in initializers:
                copied = onnx.TensorProto()
                copied.CopyFrom(initializers[node.input[0]])
                copied.name = node.output[0]
                graph.initializer.append(copied)
            else:
                nodes.append(node)
        count = len(graph.node) - len(nodes)
        del graph.node[:]
        graph.node.extend(nodes)
        return count

    return _rewrite(path, edit)


def shapes_from_int8(path: str) -> int:
    """``Shape(DequantizeLinear(q))`` -> ``Shape(q)`` (the same shape) in a QDQ file, so that no
    full map is dequantized only to read its size (dynamic-size exports). Returns how many."""
    def edit(graph) -> int:
        producer = {o: n for n in graph.node for o in n.output}
        count = 0
        for node in graph.node:
            source = producer.get(node.input[0]) if node.op_type == 'Shape' else None
            if source is not None and source.op_type == 'DequantizeLinear':
                node.input[0] = source.input[0]
                count += 1
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        nodes = [n for n in graph.node
                 if n.op_type != 'DequantizeLinear' or n.output[0] in used]
        del graph.node[:]
        graph.node.extend(nodes)
        return count

    return _rewrite(path, edit)


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


def quantize_onnxruntime(fp32: str, out: str, arrays: List[np.ndarray], tmp: str,
                         keep=fp32_nodes) -> List[str]:
    """``fp32`` (an INT8-friendly export) -> ``out`` in QDQ format by onnxruntime, the nodes
    ``keep(path)`` names left fp32; returns them."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = osp.join(tmp, 'pre.onnx')
    quant_pre_process(fp32, pre, skip_symbolic_shape=True)
    own_initializers(pre)
    kept = keep(pre)

    class Reader(_Reader, CalibrationDataReader):
        pass

    # unsigned activations and signed weights (U8S8): x86's fast INT8 path in onnxruntime
    quantize_static(pre, out, Reader(arrays), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True, op_types_to_quantize=list(INT8_OPS),
                    nodes_to_exclude=kept, calibrate_method=CalibrationMethod.MinMax)
    shapes_from_int8(out)
    keep_metadata(fp32, out)
    return kept


def keep_metadata(source: str, target: str) -> None:
    """``target`` gets ``source``'s metadata (onnxruntime's quantizer drops it; the runtime side
    of a detector reads its preprocessing and classes from there)."""
    import onnx

    props = onnx.load(source, load_external_data=False).metadata_props

    model = onnx.load(target)
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    onnx.save(model, target)


def quantize_for(runtime: str, fp32: str, out: str, arrays: List[np.ndarray],
                 tmp: str) -> List[str]:
    """``fp32`` (an INT8-friendly export) -> ``out``, the INT8 file of ``runtime`` (see
    :data:`INT8_FILES`) by its quantizer; returns the nodes kept fp32."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        if runtime == 'onnxruntime':
            return quantize_onnxruntime(fp32, out, arrays, tmp)
        return quantize_openvino(fp32, out, arrays)


def quantize_openvino(fp32: str, out: str, arrays: List[np.ndarray]) -> List[str]:
    """``fp32`` (an INT8-friendly export) -> ``out`` (.xml + .bin), quantized by NNCF on the
    OpenVINO model; returns the nodes kept fp32."""
    import logging

    import nncf
    import openvino as ov

    nncf.set_log_level(logging.WARNING)  # not its table of every ignored node
    model = ov.convert_model(fp32)  # constants folded: NNCF wants weights as constants
    ignored = nncf.IgnoredScope(patterns=['.*' + FP32_MARK + '.*'], validate=False)
    quantized = nncf.quantize(model, nncf.Dataset(arrays), subset_size=len(arrays),
                              ignored_scope=ignored)
    ov.save_model(quantized, out)
    return fp32_nodes(fp32)


def quantize(config: str, checkpoint: str, out: str, runtimes: Sequence[str] = ('onnxruntime',),
             calib_num: int = 300, calib_dir: Optional[str] = None,
             cfg_options: Optional[dict] = None, dynamic: bool = False) -> dict:
    """Write the INT8 file of each runtime (:func:`int8_paths` of ``out``) and the normal
    deployed fp32 export beside them (``*_fp32.onnx``, the baseline); returns what it did,
    with the config and the fused model (for :func:`evaluate`). Nothing is written when
    anything fails."""
    from .onnx_export import export

    if calib_num < 1:
        raise ValueError(f'calib_num must be >= 1, got {calib_num}')
    paths = int8_paths(out, runtimes)
    require_quantizers(runtimes)
    cfg, model = load_classifier(config, checkpoint, cfg_options)
    skipped: List[str] = []
    if calib_dir:
        arrays, skipped = folder_images(model, cfg, calib_dir, calib_num)
    else:
        arrays = [image[None] for images, _ in preprocessed(model, cfg, 'train', calib_num,
                                                            shuffle=True) for image in images]
    size = image_size(cfg)
    fp32_out = fp32_path(out)
    kept: List[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        friendly, fp32 = osp.join(tmp, 'int8_friendly.onnx'), osp.join(tmp, 'fp32.onnx')
        export(Logits(quantizable(model)).eval(), friendly, size, QUANTIZE_OPSET, dynamo=False,
               dynamic=dynamic, batch=1)
        export(Logits(model).eval(), fp32, size, dynamo=False, dynamic=dynamic, batch=1)
        written = {}
        for runtime, path in paths.items():
            target = osp.join(tmp, osp.basename(path))
            kept = quantize_for(runtime, friendly, target, arrays, tmp)
            written[target] = path
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        shutil.move(fp32, fp32_out)
        for target, path in written.items():
            shutil.move(target, path)
            if path.endswith('.xml'):
                shutil.move(target[:-len('.xml')] + '.bin', path[:-len('.xml')] + '.bin')
    return dict(out=paths, fp32=fp32_out, calibration_images=len(arrays), skipped=skipped,
                fp32_nodes=kept, config=cfg, model=model, dynamic=dynamic)


def evaluate(cfg, model: nn.Module, fp32: str, int8: Dict[str, str], runs: int = 100,
             limit: Optional[int] = None, dynamic: bool = False) -> List[dict]:
    """Top-1 on the config's test set, and latency (1 thread, batch 1, all timed interleaved,
    on a test image), of PyTorch's fp32, of the ``fp32`` ONNX file in each runtime of ``int8``
    ({runtime: its INT8 file}) and of each INT8 file in its runtime. Rows: runtime,
    precision, top1, latency_ms."""
    from partialnet_runtime.backends import onnx_session
    from ..timing import num_threads, time_interleaved

    # a fixed-size file takes batch 1
    batches = list(preprocessed(model, cfg, 'test', limit, batch_size=32 if dynamic else 1))
    logits = Logits(model).eval()

    def top1(run) -> float:
        correct = sum(int((np.asarray(run(x)).argmax(1) == y).sum()) for x, y in batches)
        return 100.0 * correct / sum(len(y) for _, y in batches)

    with torch.inference_mode():
        rows = [dict(runtime='torch', precision='fp32',
                     top1=top1(lambda x: logits(torch.from_numpy(x)).numpy()))]
    calls = {('torch', 'fp32'): lambda x: logits(torch.from_numpy(x))}
    for name, int8_path in int8.items():
        runtime = require_runtime(name)
        for precision, path in (('fp32', fp32), ('int8', int8_path)):
            run = onnx_session(runtime, path, 1)
            rows.append(dict(runtime=name, precision=precision,
                             top1=top1(lambda x, r=run: r(x)[0])))
            calls[(name, precision)] = run
    x = batches[0][0][:1]
    with num_threads(1):
        seconds = time_interleaved({k: (lambda f=f: f(x)) for k, f in calls.items()},
                                   10, runs, rounds=runs)
    for row in rows:
        row['latency_ms'] = 1e3 * seconds[(row['runtime'], row['precision'])]
    return rows
