"""The runtimes an ONNX file is run in, listed once: PyTorch (for the benchmark's table),
ONNX Runtime and OpenVINO, with the package each needs and the line that installs it."""
import importlib.util
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np


@dataclass(frozen=True)
class Runtime:
    """One inference runtime: the package it needs and how it runs an ONNX file."""
    name: str
    package: Optional[str]   # None: PyTorch itself
    install: str             # the command that installs it


RUNTIMES: Dict[str, Runtime] = {r.name: r for r in (
    Runtime('torch', None, ''),
    Runtime('onnxruntime', 'onnxruntime', 'pip install onnxruntime==1.30.0'),
    Runtime('openvino', 'openvino', 'pip install openvino==2026.4.1'),
)}


class RuntimeMissing(ValueError):
    """A runtime that is not installed (the message has its pip line) or not known."""


def require_runtime(name: str) -> Runtime:
    """The runtime called ``name``, installed; else :class:`RuntimeMissing`."""
    if name not in RUNTIMES:
        raise RuntimeMissing(f'unknown runtime {name!r}; choose from {", ".join(RUNTIMES)}')
    runtime = RUNTIMES[name]
    try:
        found = runtime.package is None or importlib.util.find_spec(runtime.package) is not None
    except (ImportError, ValueError):  # a broken or half-removed install
        found = False
    if not found:
        raise RuntimeMissing(f'runtime {name!r} needs the package {runtime.package}, which is '
                             f'not installed: {runtime.install}')
    return runtime


def parse_runtimes(names: str) -> List[Runtime]:
    """``'torch,onnxruntime,openvino'`` -> the runtimes (:func:`require_runtime` each)."""
    out = [require_runtime(n.strip()) for n in names.split(',') if n.strip()]
    if not out:
        raise RuntimeMissing(f'no runtime named; choose from {", ".join(RUNTIMES)}')
    return out


def onnx_session(runtime: Runtime, path: str, threads: int = 0
                 ) -> Callable[[np.ndarray], list]:
    """A function running the ONNX file at ``path`` in ``runtime`` on ``threads`` CPU threads
    (0: the runtime's default, all cores), fp32, from one array to the list of outputs."""
    if runtime.name == 'onnxruntime':
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # no "unknown CPU vendor" chatter on every session
        session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})
    if runtime.name == 'openvino':
        import openvino as ov
        # f32: no silent bf16 on CPUs that have it. No snippets (the CPU plugin's fused JIT
        # subgraphs): in OpenVINO 2026.4 they compute the digits PartialNet-T0's logits with
        # errors up to 0.3 (median 0.14; 4 of 360 top-1 answers changed), against 8e-6 without
        # them, at the same speed (0.52 vs 0.53 ms, 1 thread)
        config = {'PERFORMANCE_HINT': 'LATENCY', 'INFERENCE_PRECISION_HINT': 'f32',
                  'SNIPPETS_MODE': 'DISABLE'}
        if threads:
            config['INFERENCE_NUM_THREADS'] = threads
        compiled = ov.Core().compile_model(path, 'CPU', config)
        request = compiled.create_infer_request()
        return lambda x: [request.infer({0: x})[out] for out in compiled.outputs]
    raise RuntimeMissing(f'{runtime.name} does not run ONNX files')
