"""Timing: models called in interleaved rounds in one process, so that a slow moment of a
shared machine hits all of them; thread counts, cuDNN autotuning, CUDA-graph capture."""
import os
import platform
import statistics
import time
from contextlib import contextmanager
from typing import Callable, Dict, List

import torch


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


def record_interleaved(fns: Dict[str, Callable[[], object]], warmup: int, runs: int,
                       rounds: int = 5, sync: Callable[[], None] = lambda: None
                       ) -> Dict[str, List[float]]:
    """The seconds of every timed call of each function, timed in ``rounds`` interleaved
    rounds of about ``runs / rounds`` calls each, after ``warmup`` calls of each
    (``rounds = runs``: the functions called in turn, one call each at a time)."""
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
    return times


def time_interleaved(fns: Dict[str, Callable[[], object]], warmup: int, runs: int,
                     rounds: int = 5, sync: Callable[[], None] = lambda: None
                     ) -> Dict[str, float]:
    """Median seconds per call of each function (:func:`record_interleaved`)."""
    return {name: statistics.median(t)
            for name, t in record_interleaved(fns, warmup, runs, rounds, sync).items()}


def count_ops(fn: Callable[[], object]) -> int:
    """Operations one call of ``fn`` runs: the top-level ATen operators torch's profiler
    records (an operator called by another is part of it), after one call to warm up. The
    count of eager dispatches, each with its fixed cost (a kernel launch on a GPU)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        fn()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()

    def aten(event):
        return event is not None and event.name.startswith('aten::')
    return sum(1 for e in prof.events() if aten(e) and not aten(e.cpu_parent))


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
