"""The deployed PartialNet and its peers in the runtimes users deploy to: PyTorch eager, ONNX
Runtime and OpenVINO (both reading the same ONNX file), timed interleaved in one process.

Every model of the table (the fused PartialNet, timm's FasterNet, ResNet-50; classifiers or,
with ``backbone``, their four-stage feature extractors) is exported the same way (one
exporter, fixed or dynamic input size), each export is checked against PyTorch on the timed
input (:data:`partialnet_mm.deploy.FUSE_TOLERANCE` of the largest output, else
:class:`ExportMismatch`: nothing is reported), then each (runtime, model) pair is timed in
turn: 1 thread at batch 1 (latency) and all threads at a larger batch (throughput), fp32.
"""
import os.path as osp
import tempfile
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from partialnet_runtime.backends import RUNTIMES, Runtime, onnx_session, parse_runtimes

from ..deploy import compare_outputs, fuse_and_check, randomize_norms
from ..models import PartialNet, PartialNetClassifier
from ..toolkit.onnx_export import ExportMismatch, export
from .peers import FUSED, classifier_peers
from .runner import REFUSAL
from ..timing import environment, num_threads, time_interleaved


# the runtimes are listed once, in the torch-free runtime package; re-exported here
__all__ = ['ExportMismatch', 'RUNTIMES', 'Runtime', 'RuntimeSettings', 'benchmark_runtimes',
           'onnx_session', 'parse_runtimes', 'runtime_models']


def runtime_models(arch: str, backbone: bool = False, seed: int = 0) -> Dict[str, tuple]:
    """By role, ``(display name, eval model)``: the fused PartialNet (random weights,
    randomised BN statistics, checked against its unfused graph) and every peer of
    :data:`ROLES` that can be built here; with ``backbone``, the feature extractors."""
    torch.manual_seed(seed)
    unfused = PartialNet(arch) if backbone else PartialNetClassifier(arch)
    randomize_norms(unfused.eval(), seed)
    check = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    fused, _ = fuse_and_check(unfused, check, what=f'PartialNet-{arch.upper()}',
                              action=REFUSAL)
    models = {FUSED: (f'PartialNet-{arch.upper()} fused' + (' backbone' if backbone else ''),
                      fused)}
    for role, (name, model) in classifier_peers(arch, backbone).items():
        models[role] = (name, model.eval())
    return models


def checked(runtime: Runtime, run: Callable, model: nn.Module, x: torch.Tensor,
            what: str) -> float:
    """The runtime's outputs against PyTorch's on ``x``; ExportMismatch above the tolerance."""
    with torch.no_grad():
        ref = model(x)
    ref = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    got = [torch.from_numpy(np.asarray(o)) for o in run(x.numpy())]
    if len(got) != len(ref) or any(g.shape != r.shape for g, r in zip(got, ref)):
        raise ExportMismatch(f'{what} in {runtime.name}: outputs {[tuple(g.shape) for g in got]}'
                             f', PyTorch gives {[tuple(r.shape) for r in ref]}')
    diff, excess = compare_outputs(ref, got)
    if excess:
        raise ExportMismatch(f'{what} in {runtime.name} differs from PyTorch by {excess}: '
                             f'refusing to {REFUSAL}')
    return diff


@dataclass
class RuntimeSettings:
    """How the runtime table is timed (tools/benchmark.py --runtime)."""
    height: int = 224
    width: int = 224
    latency_runs: int = 100        # 1 thread, batch 1
    throughput_batch: int = 32     # all threads
    throughput_runs: int = 10
    warmup: int = 10
    rounds: int = 5
    dynamic: bool = False          # export for any input size (else for the timed one)
    dynamo: bool = True            # torch's dynamo exporter (else the TorchScript one)


def benchmark_runtimes(arch: str, runtimes: Sequence[Runtime],
                       settings: RuntimeSettings = RuntimeSettings(), backbone: bool = False,
                       seed: int = 0, workdir: Optional[str] = None) -> dict:
    """Latency (1 thread, batch 1) and throughput (all threads) of every model in every
    runtime, each pair timed interleaved with the others; rows by (runtime, role), and the
    fused PartialNet's latency over each peer's in the same runtime."""
    s = settings
    models = runtime_models(arch, backbone, seed)
    rows = {(rt.name, role): dict(runtime=rt.name, role=role, model=name)
            for rt in runtimes for role, (name, _) in models.items()}
    diffs = {}
    all_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for column, batch, threads, runs, rounds in (
                ('cpu_latency_ms', 1, 1, s.latency_runs, s.rounds),
                ('cpu_images_per_s', s.throughput_batch, all_threads, s.throughput_runs,
                 min(s.rounds, s.throughput_runs))):
            x = torch.randn(batch, 3, s.height, s.width,
                            generator=torch.Generator().manual_seed(seed))
            calls = {}
            for role, (name, model) in models.items():
                path = osp.join(tmp, f'{role}.onnx' if s.dynamic else f'{role}_{batch}.onnx')
                if any(rt.package for rt in runtimes) and not osp.exists(path):
                    export(model, path, (s.height, s.width), dynamo=s.dynamo,
                           dynamic=s.dynamic, batch=batch)
                for rt in runtimes:
                    if rt.package is None:
                        calls[(rt.name, role)] = (lambda m=model: m(x))
                        continue
                    run = onnx_session(rt, path, threads)
                    diffs[f'{rt.name}/{role}'] = checked(rt, run, model, x, name)
                    array = x.numpy()
                    calls[(rt.name, role)] = (lambda r=run: r(array))
            with num_threads(threads):
                seconds = time_interleaved(calls, min(s.warmup, runs), runs, rounds)
            for key, t in seconds.items():
                rows[key][column] = 1e3 * t if column == 'cpu_latency_ms' else batch / t
    ratios = {}
    for rt in runtimes:
        fused = rows[(rt.name, FUSED)]['cpu_latency_ms']
        for role in models:
            if role != FUSED:
                ratios[f'{rt.name}: fused_latency_over_{role}'] = \
                    fused / rows[(rt.name, role)]['cpu_latency_ms']
    return dict(kind='runtimes', variant=arch.upper(), backbone=backbone,
                rows=list(rows.values()), ratios=ratios, export_max_abs_diff=diffs,
                settings=dict(vars(s), throughput_threads=all_threads,
                              exporter='dynamo' if s.dynamo else 'torchscript',
                              input='fixed size' if not s.dynamic else 'dynamic size',
                              weights='random (BN statistics randomised)'),
                env=dict(environment(False), **{rt.name: _version(rt) for rt in runtimes
                                                if rt.package}))


def _version(runtime: Runtime) -> str:
    module = __import__(runtime.package)
    return getattr(module, '__version__', '?')
