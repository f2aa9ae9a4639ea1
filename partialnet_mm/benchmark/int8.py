"""INT8 against fp32, and the deployed PartialNet against its peers, in one interleaved run
(tools/benchmark.py VARIANT --runtime ... --int8).

Each model of the runtime table (the fused PartialNet, timm's FasterNet, ResNet-50; random
weights, randomised BN statistics) is exported at one input size with the TorchScript exporter
(fp32: its normal deployed form), put in its INT8-friendly form (PartialNet; the peers are
already) and quantized the way ``tools/quantize.py`` does it: onnxruntime's QDQ for ONNX
Runtime, NNCF for OpenVINO, calibrated on the same random images. Then every (runtime, model,
precision) is timed in turn, 1 thread, batch 1. Random weights decide no kernel: latency only.
Reported beside the table: each model's INT8 / fp32, PartialNet over each peer in fp32 and in
INT8, the node types of each ONNX Runtime INT8 file (Quantize / Dequantize, and the fp32
nodes that read a full map) and ONNX Runtime's profile of PartialNet's INT8 file by op type.
"""
import os.path as osp
import tempfile
from typing import Dict, Sequence

import torch

from partialnet_runtime.backends import Runtime, onnx_session

from ..models.layers.quantizable import FP32_MARK, quantizable
from ..toolkit.onnx_export import export
from ..toolkit.quantize import (INT8_OPS, QUANTIZE_OPSET, int8_paths, quantize_for,
                                require_quantizers)
from .detector_runtimes import op_profile
from .peers import FUSED
from .runtimes import RuntimeSettings, _version, runtime_models
from ..timing import environment, num_threads, time_interleaved

CALIBRATION_IMAGES = 16
QDQ = ('QuantizeLinear', 'DequantizeLinear')


def int8_graph_counts(path: str) -> Dict[str, object]:
    """Node counts of a QDQ file: Quantize and Dequantize nodes, the nodes onnxruntime runs as
    INT8 kernels (an operator of :data:`INT8_OPS` fed by a Dequantize) and the fp32 nodes that
    read a full map (a rank-4 input larger than 1x1, outside ``KeepFP32``; Shape excepted),
    with their operator types."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(path))
    # a symbolic dimension (dynamic-size export) counts as more than 1
    shapes = {v.name: [d.dim_value if d.HasField('dim_value') else -1
                       for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.input)}
    producer = {o: n for n in model.graph.node for o in n.output}
    counts = dict.fromkeys(QDQ + ('int8 nodes', 'fp32 nodes on full maps'), 0)
    fp32_ops: Dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in QDQ:
            counts[node.op_type] += 1
        elif node.input and node.op_type not in ('Shape', 'Constant'):
            source = producer.get(node.input[0])
            if node.op_type in INT8_OPS and source is not None and \
                    source.op_type == 'DequantizeLinear':
                counts['int8 nodes'] += 1
            elif FP32_MARK not in node.name:
                shape = shapes.get(node.input[0], [])
                if len(shape) == 4 and shape[2:] != [1, 1]:
                    counts['fp32 nodes on full maps'] += 1
                    fp32_ops[node.op_type] = fp32_ops.get(node.op_type, 0) + 1
    counts['fp32 full-map ops'] = fp32_ops
    return counts


def benchmark_int8(arch: str, runtimes: Sequence[Runtime],
                   settings: RuntimeSettings = RuntimeSettings(), seed: int = 0) -> dict:
    """Latency (1 thread, batch 1) of fp32 and INT8 of every model in every runtime, timed
    interleaved; rows by (runtime, role, precision), the ratios, node counts and profile."""
    s = settings
    runtimes = [rt for rt in runtimes if rt.package]  # INT8 is for the runtimes, not PyTorch
    if not runtimes:
        raise ValueError('--int8 times ONNX Runtime and OpenVINO files: name onnxruntime and/or '
                         'openvino in --runtime')
    require_quantizers([rt.name for rt in runtimes])
    models = runtime_models(arch, False, seed)
    g = torch.Generator().manual_seed(seed)
    size = (s.height, s.width)
    calibration = [torch.randn(1, 3, *size, generator=g).numpy()
                   for _ in range(CALIBRATION_IMAGES)]
    x = torch.randn(1, 3, *size, generator=g).numpy()
    rows, calls, counts = {}, {}, {}
    profile = {}
    with tempfile.TemporaryDirectory() as tmp:
        for role, (name, model) in models.items():
            fp32, friendly = (osp.join(tmp, f'{role}_{n}.onnx') for n in ('fp32', 'friendly'))
            export(model, fp32, size, dynamo=False, dynamic=False, batch=1)
            export(quantizable(model) if role == FUSED else model, friendly, size,
                   QUANTIZE_OPSET, dynamo=False, dynamic=False, batch=1)
            for rt in runtimes:
                int8 = int8_paths(osp.join(tmp, f'{role}_int8.onnx'), [rt.name])[rt.name]
                quantize_for(rt.name, friendly, int8, calibration, tmp)
                if rt.name == 'onnxruntime':
                    counts[name] = int8_graph_counts(int8)
                    if role == FUSED:
                        profile = op_profile(int8, x)['by_op']
                for precision, path in (('fp32', fp32), ('int8', int8)):
                    run = onnx_session(rt, path, 1)
                    calls[(rt.name, role, precision)] = (lambda r=run: r(x))
                    rows[(rt.name, role, precision)] = dict(
                        runtime=rt.name, role=role, model=name, precision=precision)
        with num_threads(1):
            seconds = time_interleaved(calls, min(s.warmup, s.latency_runs), s.latency_runs,
                                       s.rounds)
    for key, t in seconds.items():
        rows[key]['cpu_latency_ms'] = 1e3 * t
    ratios = {}
    for rt in runtimes:
        ms = {(role, p): rows[(rt.name, role, p)]['cpu_latency_ms']
              for role in models for p in ('fp32', 'int8')}
        for role, (name, _) in models.items():
            ratios[f'{rt.name}: {name} int8 / fp32'] = ms[(role, 'int8')] / ms[(role, 'fp32')]
        for role, (name, _) in models.items():
            if role != FUSED:
                for p in ('fp32', 'int8'):
                    ratios[f'{rt.name}: PartialNet {p} / {name} {p}'] = \
                        ms[(FUSED, p)] / ms[(role, p)]
    total = sum(profile.values()) or 1.0
    return dict(kind='int8', variant=arch.upper(), rows=list(rows.values()), ratios=ratios,
                int8_graph_counts=counts,
                partialnet_int8_profile={k: round(100 * v / total, 1)
                                         for k, v in list(profile.items())[:12]},
                settings=dict(height=s.height, width=s.width, latency_runs=s.latency_runs,
                              rounds=s.rounds, calibration_images=CALIBRATION_IMAGES,
                              exporter='torchscript', input='fixed size',
                              weights='random (BN statistics randomised)'),
                env=dict(environment(False), **{rt.name: _version(rt) for rt in runtimes}))
