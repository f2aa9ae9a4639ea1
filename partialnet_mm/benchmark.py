"""Inference speed of the deployed (fused) PartialNet against its unfused graph and peers.

Every figure of one table comes from one process, with the models timed in
interleaved rounds so that a slow moment of a shared machine hits all of them. Speed is
reported only after the fused model is shown to compute the unfused one (fp32 max abs
difference <= ``FUSE_TOLERANCE``). Needs torch only; timm adds FasterNet, torchvision
ResNet-50, mmdet the detection mode.
"""
import copy
import os
import platform
import statistics
import time
from contextlib import contextmanager, nullcontext
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from .models import PartialNet, PartialNetClassifier

FUSE_TOLERANCE = 1e-4
FASTERNET = {'t0': 'fasternet_t0', 't1': 'fasternet_t1', 't2': 'fasternet_t2',
             's': 'fasternet_s', 'm': 'fasternet_m', 'l': 'fasternet_l'}


class FusionMismatch(RuntimeError):
    """The fused model does not compute the unfused one: no speed is reported."""


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters, so that the
    fused == unfused check tests the folding (fresh BNs are identities)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                if m.affine:  # scales of both signs, so sign handling in folds is tested
                    m.weight.copy_(torch.randn(c, generator=g) * 0.5 + 1)
                    m.bias.copy_(torch.randn(c, generator=g) * 0.5)
    return model


def max_abs_diff(a, b) -> float:
    if isinstance(a, torch.Tensor):
        return (a.float() - b.float()).abs().max().item()
    return max(max_abs_diff(x, y) for x, y in zip(a, b, strict=True))


def check_fused(unfused: nn.Module, fused: nn.Module, inputs: torch.Tensor,
                tolerance: float = FUSE_TOLERANCE, what: str = 'model') -> float:
    """fp32 max abs difference of the two on ``inputs``; FusionMismatch above tolerance."""
    with torch.no_grad():
        diff = max_abs_diff(unfused(inputs), fused(inputs))
    if not diff <= tolerance:  # also catches NaN
        raise FusionMismatch(f'fused {what} differs from the unfused one by {diff:.3g} '
                             f'(max abs, fp32) > {tolerance:g}: refusing to report its speed')
    return diff


def deployed(model: nn.Module) -> nn.Module:
    """A fused copy of a PartialNet classifier or backbone (the original is kept)."""
    fused = copy.deepcopy(model)
    fused.switch_to_deploy()
    return fused


@contextmanager
def cudnn_benchmark(enabled: bool = True):
    """cuDNN picks its fastest kernels per input shape (as throughput benchmarks do)."""
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


@contextmanager
def num_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def capture_cuda_graph(fn: Callable[[], object], warmup: int = 3) -> Callable[[], None]:
    """One call of ``fn`` (fixed inputs) captured as a CUDA graph; returns its replay,
    which launches the whole forward at once (no per-kernel CPU launch cost). ``fn`` is
    first run ``warmup`` times on a side stream, as capture requires."""
    with torch.inference_mode():
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(warmup):
                fn()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
    return graph.replay


def time_interleaved(fns: Dict[str, Callable[[], object]], warmup: int, runs: int,
                     rounds: int = 5, sync: Callable[[], None] = lambda: None
                     ) -> Dict[str, float]:
    """Median seconds per call of each function, timed in ``rounds`` interleaved rounds
    of about ``runs / rounds`` calls each, after ``warmup`` calls of each."""
    with torch.inference_mode():
        for fn in fns.values():
            for _ in range(warmup):
                fn()
            sync()
        times: Dict[str, List[float]] = {name: [] for name in fns}
        per_round = max(1, -(-runs // max(1, rounds)))
        for _ in range(max(1, rounds)):
            for name, fn in fns.items():
                for _ in range(per_round):
                    start = time.perf_counter()
                    fn()
                    sync()
                    times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def classifier_peers(arch: Optional[str], with_fasternet: bool = True,
                     with_resnet50: bool = True) -> Dict[str, nn.Module]:
    """timm's FasterNet of the same size (if timm is installed) and ResNet-50."""
    peers = {}
    if with_fasternet and arch in FASTERNET:
        try:
            import timm
        except ImportError:
            timm = None
        if timm is not None:
            peers[f'FasterNet-{arch.upper()} (timm)'] = timm.create_model(FASTERNET[arch])
    if with_resnet50:
        try:
            from torchvision.models import resnet50
            peers['ResNet-50 (torchvision)'] = resnet50()
        except ImportError:
            try:
                import timm
                peers['ResNet-50 (timm)'] = timm.create_model('resnet50')
            except ImportError:
                pass
    return {k: v.eval() for k, v in peers.items()}


def _peer_key(name: str) -> str:
    """The ratio-key name of a peer row ('FasterNet-S (timm)' -> 'fasternet')."""
    return 'fasternet' if name.startswith('FasterNet') else 'resnet50'


def classifier_from_config(path: str) -> dict:
    """PartialNetClassifier arguments from an mmpretrain config of ours."""
    from mmengine.config import Config

    cfg = Config.fromfile(path)
    backbone = dict(cfg.model.get('backbone') or {})
    if str(backbone.get('type', '')).split('.')[-1] != 'PartialNet':
        raise ValueError(f'{path}: model.backbone is not a PartialNet ({backbone.get("type")!r})')
    if cfg.model.get('type') not in (None, 'ImageClassifier', 'DPConvImageClassifier'):
        raise ValueError(f'{path} is a {cfg.model.type} config; for detectors use --det')
    for key in ('type', 'init_cfg', 'drop_path_rate', 'frozen_stages', 'norm_eval', 'with_cp',
                'out_indices', 'with_out_norm'):
        backbone.pop(key, None)
    if backbone.get('dpconv'):
        raise ValueError(f'{path} learns split ratios (dpconv); benchmark the exported plain '
                         f'config (tools/export_split_ratios.py)')
    head = cfg.model.get('head') or {}
    return dict(backbone, num_classes=head.get('num_classes', 1000),
                mid_channels=head.get('mid_channels', 1280))


def load_classifier_checkpoint(model: PartialNetClassifier, path: str) -> None:
    """Load an mmpretrain ImageClassifier checkpoint of ours (strict on backbone/head)."""
    from mmengine.runner.checkpoint import CheckpointLoader

    state = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    state = state.get('state_dict', state)
    state = {k: v for k, v in state.items() if k.startswith(('backbone.', 'head.'))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise KeyError(f'{path} does not fit {type(model).__name__}: missing {missing[:5]}, '
                       f'unexpected {unexpected[:5]}')


def benchmark_classifier(arch: str = 't0', model_kwargs: Optional[dict] = None,
                         checkpoint: Optional[str] = None, input_size: int = 224,
                         latency_runs: int = 100, throughput_batch: int = 32,
                         throughput_runs: int = 10, gpu_batch: int = 256, gpu_runs: int = 30,
                         warmup: int = 10, rounds: int = 5, channels_last: bool = False,
                         amp: bool = True, compile_models: bool = False,
                         cuda: Optional[bool] = None, cpu: bool = True, cuda_graph: bool = False,
                         peers: bool = True, seed: int = 0) -> dict:
    """Unfused, fused and peer classifiers: CPU latency (1 thread, batch 1), CPU
    throughput (all threads), CUDA throughput (AMP) when a GPU is there. ``cpu=False``
    skips the CPU timings (a GPU table); the fused == unfused check always runs."""
    use_cuda = torch.cuda.is_available() if cuda is None else cuda
    if use_cuda and not torch.cuda.is_available():
        raise ValueError('cuda=True but torch sees no CUDA device')
    if not (cpu or use_cuda):
        raise ValueError('nothing to time: CPU timings are off and no CUDA device is used')
    if cuda_graph and not use_cuda:
        raise ValueError('CUDA graphs need a CUDA device')
    if cuda_graph and compile_models:
        raise ValueError('choose torch.compile or CUDA graphs, not both')
    torch.manual_seed(seed)
    kwargs = dict(model_kwargs or {})
    kwargs.setdefault('arch', arch)
    label = kwargs['arch'].upper() if isinstance(kwargs['arch'], str) else 'custom'
    unfused = PartialNetClassifier(**kwargs).eval()
    if checkpoint:
        load_classifier_checkpoint(unfused, checkpoint)
    else:
        randomize_norms(unfused, seed)
    fused = deployed(unfused)
    g = torch.Generator().manual_seed(seed)
    check_input = torch.randn(2, 3, input_size, input_size, generator=g)
    diff = check_fused(unfused, fused, check_input, what=f'PartialNet-{label}')
    if channels_last:
        check_fused(unfused, fused.to(memory_format=torch.channels_last),
                    check_input.to(memory_format=torch.channels_last),
                    what=f'PartialNet-{label} (channels_last)')
    models = {f'PartialNet-{label} unfused': unfused, f'PartialNet-{label} fused': fused}
    if peers:
        models.update(classifier_peers(label.lower()))
    rows = {name: dict(model=name, params_m=sum(p.numel() for p in m.parameters()) / 1e6)
            for name, m in models.items()}
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    models = {n: m.to(memory_format=memory_format) for n, m in models.items()}
    runners = {n: torch.compile(m) for n, m in models.items()} if compile_models else models

    def calls(batch, device):
        x = torch.randn(batch, 3, input_size, input_size, device=device).to(
            memory_format=memory_format)
        # a graph captures the casts, so autocast must not cache them outside it
        autocast = torch.autocast('cuda', dtype=torch.float16, cache_enabled=not cuda_graph) \
            if device == 'cuda' and amp else nullcontext()

        def call(m):
            def run():
                with autocast:
                    return m(x)
            return capture_cuda_graph(run) if device == 'cuda' and cuda_graph else run
        return {n: call(m) for n, m in runners.items()}

    names = list(rows)
    ratios = {}
    if cpu:
        with num_threads(1):
            lat = time_interleaved(calls(1, 'cpu'), warmup, latency_runs, rounds)
        for n, t in lat.items():
            rows[n]['cpu_latency_ms'] = 1e3 * t
        tput = time_interleaved(calls(throughput_batch, 'cpu'), min(warmup, 2),
                                throughput_runs, min(rounds, throughput_runs))
        for n, t in tput.items():
            rows[n]['cpu_images_per_s'] = throughput_batch / t
        ratios['fused_speedup_over_unfused'] = lat[names[0]] / lat[names[1]]
        for n in names[2:]:
            ratios[f'fused_latency_over_{_peer_key(n)}'] = lat[names[1]] / lat[n]
    if use_cuda:
        for m in models.values():
            m.cuda()
        with cudnn_benchmark():
            gpu = time_interleaved(calls(gpu_batch, 'cuda'), warmup, gpu_runs, rounds,
                                   sync=torch.cuda.synchronize)
        for n, t in gpu.items():
            rows[n]['gpu_images_per_s'] = gpu_batch / t
        ratios['fused_gpu_speedup_over_unfused'] = gpu[names[0]] / gpu[names[1]]
        for n in names[2:]:
            ratios[f'fused_gpu_throughput_over_{_peer_key(n)}'] = gpu[n] / gpu[names[1]]
    return dict(kind='classifier', variant=label, fused_max_abs_diff=diff, rows=list(rows.values()),
                ratios=ratios, settings=dict(
                    input_size=input_size, cpu=cpu, latency_runs=latency_runs, warmup=warmup,
                    rounds=rounds, throughput_batch=throughput_batch,
                    throughput_threads=torch.get_num_threads(), gpu_batch=gpu_batch if use_cuda
                    else None, amp=amp, channels_last=channels_last, compile=compile_models,
                    cuda_graph=cuda_graph,
                    checkpoint=checkpoint, weights='checkpoint' if checkpoint else
                    'random (BN statistics randomised)'),
                env=environment(use_cuda))


def environment(cuda: bool = False) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name')), cpu)
    except OSError:
        pass
    env = dict(torch=torch.__version__, python=platform.python_version(), cpu=cpu,
               cpu_count=os.cpu_count(), threads=torch.get_num_threads())
    if cuda and torch.cuda.is_available():
        env['gpu'] = torch.cuda.get_device_name()
    return env


# ---------------------------------------------------------------------- detection
def _build_detector(cfg):
    from .reparameterize import build_model

    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.pop('init_cfg', None)  # speed does not need the weights
    return build_model(cfg).eval()


def benchmark_detector(config, baseline='mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
                       height: int = 800, width: int = 1216, runs: int = 5, warmup: int = 1,
                       rounds: int = 5, cuda: Optional[bool] = None, seed: int = 0) -> dict:
    """Images/s of Mask R-CNN with a PartialNet backbone (unfused and fused) against the
    baseline config, on the same preprocessed image (batch 1, all CPU threads, and the
    GPU when there is one). Random weights: heads keep few boxes."""
    from mmdet.structures import DetDataSample
    from mmengine.config import Config
    from mmengine.hub import get_config

    def load(path):
        return get_config(path) if '::' in str(path) else Config.fromfile(path)

    torch.manual_seed(seed)
    cfg = load(config)
    unfused = _build_detector(cfg)
    if not isinstance(unfused.backbone, PartialNet):
        raise ValueError(f'{config}: the backbone is {type(unfused.backbone).__name__}, '
                         f'not PartialNet')
    randomize_norms(unfused.backbone, seed)
    fused = copy.deepcopy(unfused)
    fused.backbone.switch_to_deploy()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, height, width, generator=g)
    diff = check_fused(unfused.backbone, fused.backbone, x, what='PartialNet backbone')
    arch = cfg.model.backbone.get('arch')
    label = arch.upper() if isinstance(arch, str) else 'custom'
    models = {f'Mask R-CNN PartialNet-{label} unfused': unfused,
              f'Mask R-CNN PartialNet-{label} fused': fused,
              'Mask R-CNN R50 (baseline config)': _build_detector(load(baseline))}
    rows = {n: dict(model=n, params_m=sum(p.numel() for p in m.parameters()) / 1e6)
            for n, m in models.items()}

    def calls(device):
        inputs = x.to(device)
        sample = DetDataSample(metainfo=dict(
            img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
            batch_input_shape=(height, width), scale_factor=(1.0, 1.0)))
        return {n: (lambda m=m: m(inputs, [sample], mode='predict')) for n, m in models.items()}

    cpu = time_interleaved(calls('cpu'), warmup, runs, rounds)
    for n, t in cpu.items():
        rows[n]['cpu_images_per_s'] = 1 / t
    use_cuda = torch.cuda.is_available() if cuda is None else cuda
    if use_cuda:
        for m in models.values():
            m.cuda()
        gpu = time_interleaved(calls('cuda'), warmup, runs, rounds, sync=torch.cuda.synchronize)
        for n, t in gpu.items():
            rows[n]['gpu_images_per_s'] = 1 / t
    names = list(rows)
    ratios = {'fused_over_baseline_cpu': cpu[names[2]] / cpu[names[1]],
              'fused_over_unfused_cpu': cpu[names[0]] / cpu[names[1]]}
    return dict(kind='detector', config=str(config), baseline=str(baseline),
                fused_max_abs_diff=diff, rows=list(rows.values()), ratios=ratios,
                settings=dict(height=height, width=width, runs=runs, warmup=warmup,
                              rounds=rounds, batch=1, threads=torch.get_num_threads(),
                              weights='random (BN statistics randomised)'),
                env=environment(use_cuda))


# ---------------------------------------------------------------------- output
COLUMNS = (('params_m', 'params (M)', '.2f'),
           ('cpu_latency_ms', 'CPU latency (ms, 1 thread, batch 1)', '.2f'),
           ('cpu_images_per_s', 'CPU images/s', '.3g'),
           ('gpu_images_per_s', 'GPU images/s', '.0f'))


def format_result(result: dict) -> str:
    rows: Sequence[dict] = result['rows']
    cols = [c for c in COLUMNS if any(c[0] in r for r in rows)]
    s = result['settings']
    if result['kind'] == 'classifier':
        cols = [(k, t.replace('CPU images/s', f'CPU images/s ({s["throughput_threads"]} '
                              f'threads, batch {s["throughput_batch"]})').replace(
                    'GPU images/s', f'GPU images/s (batch {s["gpu_batch"]}'
                    f'{", AMP" if s["amp"] else ""})'), f) for k, t, f in cols]
    else:
        cols = [(k, t.replace('CPU images/s', f'CPU images/s ({s["threads"]} threads, '
                              f'{s["height"]}x{s["width"]})'), f) for k, t, f in cols]
    lines = ['| model | ' + ' | '.join(c[1] for c in cols) + ' |',
             '|---|' + '---|' * len(cols)]
    for r in rows:
        lines.append(f'| {r["model"]} | ' + ' | '.join(
            format(r[k], f) if k in r else '-' for k, _, f in cols) + ' |')
    lines.append('')
    lines.append(f'fused vs unfused max abs diff (fp32): {result["fused_max_abs_diff"]:.2e}')
    for k, v in result['ratios'].items():
        lines.append(f'{k}: {v:.3f}')
    env = result['env']
    lines.append(f'torch {env["torch"]}, {env["cpu"]} ({env["cpu_count"]} CPUs)'
                 + (f', {env["gpu"]}' if 'gpu' in env else ', no GPU'))
    return '\n'.join(lines)
