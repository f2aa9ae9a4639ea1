"""The whole detector in the runtimes it is deployed to: PyTorch eager, ONNX Runtime, OpenVINO.

For the detector with a PartialNet backbone and its baseline (the mmdet config it is built on),
each exported the same way (:mod:`partialnet_mm.toolkit.detector_export`): the end-to-end graph
(network, box decoding, NMS, masks) for a fixed input size and for any size, and the network
alone (the head's raw outputs, no post-processing), so that the post-processing's share shows.
Every export is checked against mmdet's ``predict`` before it is timed. Then every (runtime,
model, graph) call is timed interleaved (:mod:`.timing`) at each thread count, batch 1, and
:func:`op_profile` tells where ONNX Runtime spends the end-to-end graph's time.

Both detectors have every remaining conv + BN folded (mmcv's ``fuse_conv_bn``: neck, head, the
baseline's backbone; checked against the unfolded network), as ONNX Runtime and OpenVINO fold
them, so that the PyTorch eager rows compare like with like. Random weights with the BN
statistics randomised; the heads keep mmdet's initial class prior
(probability 0.01), so every candidate passes a test_cfg score threshold below it (RTMDet's
0.001): the NMS then sees the most candidates ``nms_pre`` allows, the same count for both
models.
"""
import copy
import json
import os
import os.path as osp
import tempfile
import warnings
from collections import defaultdict
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from partialnet_runtime.backends import Runtime, onnx_session

from ..deploy import check_fused, randomize_norms
from ..models import PartialNet
from ..toolkit.detector_export import (OPSET, check_export, deploy_meta, fuse_backbone,
                                       load_detector, write_onnx)
from ..toolkit.end2end import end2end_model, part_of
from .detection import BASELINE, _baseline
from .peers import FUSED
from .runner import REFUSAL
from ..timing import environment, num_threads, time_interleaved

GRAPHS = ('network', 'end-to-end, fixed size', 'end-to-end, dynamic size')


class NetworkOnly(nn.Module):
    """The detector's network up to the head's raw outputs, flattened to a tuple of tensors
    (what a deployment without in-graph post-processing would export)."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector
        self.eval()

    def forward(self, input: torch.Tensor):
        feats = self.detector.extract_feat(input)
        if hasattr(self.detector, 'rpn_head'):
            return tuple(torch.cat([o.flatten(1) for o in outs], 1)
                         for outs in self.detector.rpn_head(feats))
        out = []
        for o in self.detector.bbox_head(feats):
            out += list(o) if isinstance(o, (list, tuple)) else [o]
        return tuple(out)


def _export_network(net: NetworkOnly, path: str, size: Tuple[int, int]) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter('ignore')
        torch.onnx.export(net, (torch.randn(1, 3, *size),), path, dynamo=False,
                          opset_version=OPSET, input_names=['input'])


def _prepare(config: str, size: Tuple[int, int], folder: str, tag: str, seed: int,
             cfg_options=None) -> dict:
    """One model: built, fused, its three graphs exported into ``folder`` and checked."""
    torch.manual_seed(seed)
    cfg, det = load_detector(config, cfg_options=cfg_options)
    if isinstance(det.backbone, PartialNet):
        randomize_norms(det.backbone, seed)
    params = sum(p.numel() for p in det.parameters()) / 1e6
    fuse_backbone(det, size)
    # every remaining conv + BN folded (neck, head, a baseline's backbone), as the runtimes
    # fold them, so that PyTorch eager compares like with like; checked like the backbone
    from mmcv.cnn import fuse_conv_bn
    unfolded = copy.deepcopy(det)
    for part in ('backbone', 'neck', 'bbox_head', 'rpn_head', 'roi_head'):
        module = getattr(det, part, None)
        # mmcv's fold reads "a BN registered after a conv runs after it": true of mmdet's
        # modules; our deployed backbone is already folded by switch_to_deploy()
        if module is not None and not isinstance(module, PartialNet):
            fuse_conv_bn(module)
    check = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed + 1))
    check_fused(NetworkOnly(unfolded), NetworkOnly(det), check,
                what=f'{osp.basename(config)} with conv + BN folded', action=REFUSAL)
    del unfolded
    e2e = end2end_model(det)
    paths = {}
    for graph, dynamic in ((GRAPHS[1], False), (GRAPHS[2], True)):
        paths[graph] = osp.join(folder, f'{tag}_{"dynamic" if dynamic else "fixed"}.onnx')
        write_onnx(e2e, paths[graph], size, dynamic, deploy_meta(cfg, e2e, None if dynamic
                                                                 else size))
        report = check_export(det, e2e, paths[graph], [(1, 3, *size)], seed)
    net = NetworkOnly(det)
    paths[GRAPHS[0]] = osp.join(folder, f'{tag}_network.onnx')
    _export_network(net, paths[GRAPHS[0]], size)
    return dict(config=config, e2e=e2e, net=net, paths=paths, params_m=params,
                family=e2e.family, checked=report.matched)


def op_profile(path: str, x: np.ndarray, runs: int = 5, threads: int = 1) -> Dict[str, dict]:
    """Milliseconds per run of ``path`` in ONNX Runtime (its profiler), by op type and by
    detector part (:func:`end2end.part_of`), largest first."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory() as folder:
        options.enable_profiling = True
        options.profile_file_prefix = osp.join(folder, 'profile')
        session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        session.run(None, {'input': x})  # warm-up, not counted below
        for _ in range(runs):
            session.run(None, {'input': x})
        events = json.load(open(session.end_profiling()))
    kernels = [e for e in events if e.get('cat') == 'Node' and
               e.get('name', '').endswith('_kernel_time')]
    out = {'by_op': defaultdict(float), 'by_part': defaultdict(float)}
    for e in kernels[len(kernels) // (runs + 1):]:
        ms = e['dur'] / 1e3 / runs
        out['by_op'][e['args'].get('op_name', '?')] += ms
        out['by_part'][part_of(e['name'][:-len('_kernel_time')])] += ms
    return {k: dict(sorted(v.items(), key=lambda kv: -kv[1])) for k, v in out.items()}


def benchmark_detector_runtimes(config: str, runtimes: Sequence[Runtime],
                                baseline: Optional[str] = None, height: int = 640,
                                width: int = 640, runs: int = 20, warmup: int = 2,
                                rounds: int = 5, threads: Sequence[Optional[int]] = (1, None),
                                seed: int = 0, cfg_options=None) -> dict:
    """Milliseconds per image of the detector of ``config`` and of ``baseline`` (default: the
    mmdet config it is built on) in each runtime, for each graph of :data:`GRAPHS`, at each
    thread count (None: all CPUs), batch 1; ratios ours / baseline; the ONNX Runtime op
    profile of both end-to-end graphs (1 thread)."""
    baseline = _baseline(config, baseline)
    size = (height, width)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed))
    all_threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as folder:
        models = {FUSED: _prepare(config, size, folder, 'ours', seed, cfg_options),
                  BASELINE: _prepare(baseline, size, folder, 'baseline', seed, cfg_options)}
        ms: Dict[str, dict] = {}
        for n in threads:
            n = n or all_threads
            calls = {}
            for runtime in runtimes:
                for role, m in models.items():
                    for graph in GRAPHS:
                        if runtime.package is None:  # PyTorch eager: one form of each graph
                            if graph == GRAPHS[2]:
                                continue
                            module = m['net'] if graph == GRAPHS[0] else m['e2e']
                            calls[(runtime.name, role, graph)] = (lambda f=module: f(x))
                        else:
                            run = onnx_session(runtime, m['paths'][graph], n)
                            calls[(runtime.name, role, graph)] = (lambda r=run: r(x.numpy()))
            with num_threads(n):
                seconds = time_interleaved(calls, warmup, runs, rounds)
            table: Dict[str, dict] = {}
            for (rt, role, graph), s in seconds.items():
                table.setdefault(rt, {}).setdefault(graph, {})[role] = 1e3 * s
            ms[str(n)] = table
        profile = {role: op_profile(m['paths'][GRAPHS[1]], x.numpy(), runs=3)
                   for role, m in models.items()} if any(
            r.name == 'onnxruntime' for r in runtimes) else {}
    ratios = {}
    for n, table in ms.items():
        for rt, graphs in table.items():
            for graph, by_role in graphs.items():
                ratios[f'{rt}, {graph}, {n} thread{"s" if int(n) > 1 else ""}'] = \
                    by_role[FUSED] / by_role[BASELINE]
            if GRAPHS[2] in graphs:
                for role in (FUSED, BASELINE):
                    ratios[f'{rt}, {role} dynamic / fixed, {n} thread'
                           f'{"s" if int(n) > 1 else ""}'] = \
                        graphs[GRAPHS[2]][role] / graphs[GRAPHS[1]][role]
    return dict(kind='detector_runtimes', config=config, baseline=baseline,
                models={role: f"{osp.basename(m['config'])[:-3]} ({m['family']})"
                        for role, m in models.items()},
                params_m={role: m['params_m'] for role, m in models.items()},
                checked={role: m['checked'] for role, m in models.items()},
                ms=ms, ratios=ratios, profile_ms=profile,
                settings=dict(height=height, width=width, runs=runs, warmup=warmup,
                              rounds=rounds, batch=1, threads=[n or all_threads for n in threads],
                              weights='random (BN statistics randomised; heads at their '
                                      'initial class prior)'),
                env=environment())
