"""Inference speed of the deployed (fused) PartialNet against its unfused graph and peers.

Every figure of one table comes from one process, with the models timed in interleaved
rounds (:mod:`.timing`). Speed is reported only after the fused model is shown to compute the
unfused one (:mod:`partialnet_mm.deploy`). Needs torch only; timm adds FasterNet, torchvision
ResNet-50, mmdet the detection mode.
"""
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn

from ..deploy import check_fused, fuse_and_check, randomize_norms
from ..models import PartialNetClassifier
from ..models.classifiers import load_classifier_checkpoint
from .peers import FUSED, UNFUSED, classifier_peers
from ..timing import (capture_cuda_graph, count_ops, cudnn_benchmark, environment, num_threads,
                     time_interleaved)

REFUSAL = 'report its speed'


@dataclass
class TimingSettings:
    """How one classifier table is timed (the command-line flags of tools/benchmark.py)."""
    input_size: int = 224
    latency_runs: int = 100       # CPU, 1 thread, batch 1
    throughput_batch: int = 32    # CPU, all threads
    throughput_runs: int = 10
    gpu_batch: int = 256
    gpu_runs: int = 30
    warmup: int = 10
    rounds: int = 5               # interleaved rounds; = runs calls the models in turn
    channels_last: bool = False   # every model, input included
    amp: bool = True              # fp16 autocast on the GPU
    compile: bool = False         # torch.compile every model
    cpu: bool = True
    cuda: Optional[bool] = None   # None: when there is a GPU
    cuda_graph: bool = False      # replay every model as a captured CUDA graph

    def use_cuda(self) -> bool:
        use = torch.cuda.is_available() if self.cuda is None else self.cuda
        if use and not torch.cuda.is_available():
            raise ValueError('cuda=True but torch sees no CUDA device')
        if not (self.cpu or use):
            raise ValueError('nothing to time: CPU timings are off and no CUDA device is used')
        if self.cuda_graph and not use:
            raise ValueError('CUDA graphs need a CUDA device')
        if self.cuda_graph and self.compile:
            raise ValueError('choose torch.compile or CUDA graphs, not both')
        return use


class BenchmarkRunner:
    """The models of one table by role, set up once, and their rows.

    ``models`` maps a role (``'unfused'``, ``'fused'``, ``'fasternet'``, ``'resnet50'``,
    ``'baseline'``) to ``(display name, model)``. The runner owns the setup (memory layout,
    ``torch.compile``, CUDA graphs, autocast) and writes each timing into the row of its role.
    """

    def __init__(self, models: Dict[str, tuple], channels_last: bool = False,
                 compile_models: bool = False, cuda_graph: bool = False, amp: bool = True):
        # channels_last: every model (and input) in that layout; else each model as built
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.models = {role: m.eval().to(memory_format=torch.channels_last) if channels_last
                       else m.eval() for role, (_, m) in models.items()}
        self.runners = {role: torch.compile(m) if compile_models else m
                        for role, m in self.models.items()}
        self.cuda_graph, self.amp = cuda_graph, amp
        self.rows = {role: dict(role=role, model=name,
                                params_m=sum(p.numel() for p in m.parameters()) / 1e6)
                     for role, (name, m) in models.items()}

    def count_ops(self, inputs: torch.Tensor) -> None:
        """Each model's operations per forward on ``inputs`` (CPU, eager) into its row."""
        inputs = inputs.to(memory_format=self.memory_format)
        for role, model in self.models.items():
            self.rows[role]['ops_per_forward'] = count_ops(lambda m=model: m(inputs))

    def calls(self, make_input: Callable[[str], object], device: str,
              call: Callable[[nn.Module, object], object]) -> Dict[str, Callable[[], object]]:
        """One no-argument call per role: ``call(model, input)`` on ``device`` (under fp16
        autocast on CUDA when ``amp``; captured as a CUDA graph when asked)."""
        inputs = make_input(device)
        # a graph captures the casts, so autocast must not cache them outside it
        autocast = torch.autocast('cuda', dtype=torch.float16, cache_enabled=not self.cuda_graph) \
            if device == 'cuda' and self.amp else nullcontext()

        def one(model):
            def run():
                with autocast:
                    return call(model, inputs)
            return capture_cuda_graph(run) if device == 'cuda' and self.cuda_graph else run
        return {role: one(m) for role, m in self.runners.items()}

    def time(self, column: str, calls: Dict[str, Callable[[], object]], warmup: int, runs: int,
             rounds: int, per_call: Callable[[float], float], cuda: bool = False
             ) -> Dict[str, float]:
        """Time ``calls`` interleaved; write ``per_call(seconds)`` into each row's ``column``
        and return the seconds per call by role."""
        if cuda:
            for m in self.models.values():
                m.cuda()
        with cudnn_benchmark(cuda):
            seconds = time_interleaved(calls, warmup, runs, rounds,
                                       sync=torch.cuda.synchronize if cuda else lambda: None)
        for role, t in seconds.items():
            self.rows[role][column] = per_call(t)
        return seconds


def fused_ratios(seconds: Dict[str, float], speedup: str, peer: str,
                 throughput: bool = False) -> Dict[str, float]:
    """The fused row against the others, from seconds per call by role: ``speedup`` (unfused
    time over fused time) and, for every peer role, ``peer.format(role=...)``: fused time over
    the peer's, or with ``throughput`` the fused model's throughput over the peer's."""
    fused = seconds[FUSED]
    out = {speedup: seconds[UNFUSED] / fused}
    for role, t in seconds.items():
        if role not in (UNFUSED, FUSED):
            out[peer.format(role=role)] = t / fused if throughput else fused / t
    return out


def benchmark_classifier(model_kwargs: dict, settings: TimingSettings = TimingSettings(),
                         checkpoint: Optional[str] = None, peers: bool = True,
                         seed: int = 0) -> dict:
    """Unfused, fused and peer classifiers: CPU latency (1 thread, batch 1), CPU throughput
    (all threads), CUDA throughput when a GPU is used. ``settings.cpu=False`` skips the CPU
    timings (a GPU table); the fused == unfused check always runs."""
    s = settings
    use_cuda = s.use_cuda()
    torch.manual_seed(seed)
    label = model_kwargs['arch'].upper() if isinstance(model_kwargs['arch'], str) else 'custom'
    unfused = PartialNetClassifier(**model_kwargs).eval()
    if checkpoint:
        load_classifier_checkpoint(unfused, checkpoint)
    else:
        randomize_norms(unfused, seed)
    check_input = torch.randn(2, 3, s.input_size, s.input_size,
                              generator=torch.Generator().manual_seed(seed))
    fused, diff = fuse_and_check(unfused, check_input, what=f'PartialNet-{label}',
                                 action=REFUSAL)
    if s.channels_last:
        check_fused(unfused, fused, check_input.to(memory_format=torch.channels_last),
                    what=f'PartialNet-{label} (channels_last)', action=REFUSAL)
    models = {UNFUSED: (f'PartialNet-{label} unfused', unfused),
              FUSED: (f'PartialNet-{label} fused', fused)}
    if peers:
        models.update(classifier_peers(label.lower()))
    runner = BenchmarkRunner(models, s.channels_last, s.compile, s.cuda_graph, s.amp)

    def images(batch):
        return lambda device: torch.randn(batch, 3, s.input_size, s.input_size, device=device) \
            .to(memory_format=runner.memory_format)

    def forward(model, x):
        return model(x)

    runner.count_ops(check_input[:1])
    ops = {role: row['ops_per_forward'] for role, row in runner.rows.items()}
    ratios = {f'fused_ops_over_{role}': ops[FUSED] / n for role, n in ops.items() if role != FUSED}
    if s.cpu:
        with num_threads(1):
            latency = runner.time('cpu_latency_ms', runner.calls(images(1), 'cpu', forward),
                                  s.warmup, s.latency_runs, s.rounds, lambda t: 1e3 * t)
        runner.time('cpu_images_per_s', runner.calls(images(s.throughput_batch), 'cpu', forward),
                    min(s.warmup, 2), s.throughput_runs, min(s.rounds, s.throughput_runs),
                    lambda t: s.throughput_batch / t)
        ratios.update(fused_ratios(latency, 'fused_speedup_over_unfused',
                                   'fused_latency_over_{role}'))
    if use_cuda:
        gpu = runner.time('gpu_images_per_s', runner.calls(images(s.gpu_batch), 'cuda', forward),
                          s.warmup, s.gpu_runs, s.rounds, lambda t: s.gpu_batch / t, cuda=True)
        ratios.update(fused_ratios(gpu, 'fused_gpu_speedup_over_unfused',
                                   'fused_gpu_throughput_over_{role}', throughput=True))
    return dict(kind='classifier', variant=label, fused_max_abs_diff=diff,
                rows=list(runner.rows.values()), ratios=ratios,
                settings=dict(asdict(s), throughput_threads=torch.get_num_threads(),
                              gpu_batch=s.gpu_batch if use_cuda else None,
                              checkpoint=checkpoint, weights='checkpoint' if checkpoint else
                              'random (BN statistics randomised)'),
                env=environment(use_cuda))
