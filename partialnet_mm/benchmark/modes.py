"""What one call of tools/benchmark.py measures: its options as a :class:`BenchmarkRequest`,
whose :meth:`~BenchmarkRequest.run` picks the mode and returns the numbers and their table.

The modes: a classifier (fused against unfused and the peers, CPU and GPU); a detector
(``det``; a two-stage one timed whole, a one-stage one split into its parts); the deployment
runtimes (``runtime``) of a classifier or backbone, of a classifier in INT8 (``int8``), or of
a whole detector (``det`` and ``runtime``). Failures: :func:`exit_code`.
"""
import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from ..deploy import FusionMismatch
from ..mmconfig import classifier_kwargs, is_one_stage, load_config
from ..toolkit.onnx_export import ExportMismatch

# --det --runtime, the post-processing load, the same for both models: random one-stage heads
# pass every candidate, so at most NMS_LOAD a level go into NMS; two-stage detectors keep
# max_per_img detections (rcnn.score_thr=0), so both run the mask head on as many
NMS_LOAD = 1000
# --smoke: tiny sizes and few iterations (checks that it runs, not speed). The runtimes at 96:
# OpenVINO 2026.4's CPU attention on a fixed-size 2x2 map (64 px) is wrong (the export check
# refuses it); dynamic-size exports and 3x3 maps are right
SMOKE = dict(runs=2, warmup=1, rounds=1, cpu_batch=2, cpu_runs=1, gpu_batch=4, gpu_runs=2,
             det_shape=(256, 320))
SMOKE_INPUT_SIZE, SMOKE_RUNTIME_INPUT_SIZE = 64, 96
ONE_STAGE_SHAPE, TWO_STAGE_SHAPE = (640, 640), (800, 1216)


CHECK_FAILED = (FusionMismatch, ExportMismatch)  # the fused or exported model computes another
BAD_INPUT = (ValueError, KeyError, FileNotFoundError)  # a config, option or file that won't do
REFUSALS = CHECK_FAILED + BAD_INPUT


def exit_code(error: BaseException) -> int:
    """The exit code of one of :data:`REFUSALS`: 3 for a check that failed, 2 for input that
    cannot be used."""
    return 3 if isinstance(error, CHECK_FAILED) else 2


def error_message(error: BaseException) -> str:
    return error.args[0] if isinstance(error, KeyError) and error.args else str(error)


@dataclass
class BenchmarkRequest:
    """tools/benchmark.py's options (the same names; see its help)."""
    model: str = 't0'
    checkpoint: Optional[str] = None
    det: Optional[str] = None
    det_baseline: Optional[str] = None
    det_shape: Optional[Tuple[int, int]] = None
    input_size: int = 224
    runs: int = 100
    warmup: int = 10
    rounds: int = 5
    cpu_batch: int = 32
    cpu_runs: int = 10
    gpu_batch: int = 256
    gpu_runs: int = 30
    no_amp: bool = False
    no_cuda: bool = False
    no_cpu: bool = False
    no_peers: bool = False
    channels_last: bool = False
    compile: bool = False
    cuda_graph: bool = False
    runtime: Optional[str] = None
    int8: bool = False
    backbone: bool = False
    dynamic: bool = False
    exporter: str = 'dynamo'
    cfg_options: Optional[dict] = None
    smoke: bool = False

    @classmethod
    def from_options(cls, options: dict) -> 'BenchmarkRequest':
        """From a command line's options (``vars(args)``); the ones that are no request
        (``json``, ``plot``...) are left out."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in names})

    def __post_init__(self):
        if self.det and self.no_cpu:
            raise ValueError('--no-cpu is for classifiers; detection mode always times the CPU')
        if self.runtime and not self.det and self.model.endswith('.py'):
            raise ValueError('--runtime takes a variant (t0 t1 t2 s m l), or a detector with '
                             '--det')
        if self.int8 and (self.backbone or self.dynamic):
            raise ValueError('--int8 times the classifiers at one input size: drop --backbone '
                             'and --dynamic')
        if self.smoke:
            for key, value in SMOKE.items():
                setattr(self, key, value)
            self.input_size = SMOKE_RUNTIME_INPUT_SIZE if self.runtime else SMOKE_INPUT_SIZE
        self.one_stage = bool(self.det) and is_one_stage(load_config(self.det).model)
        if self.det_shape is None:
            self.det_shape = ONE_STAGE_SHAPE if self.one_stage else TWO_STAGE_SHAPE

    @property
    def mode(self) -> str:
        """``classifier``, ``detector``, ``detector_parts``, ``runtimes``, ``int8`` or
        ``detector_runtimes``."""
        if self.runtime:
            return 'detector_runtimes' if self.det else 'int8' if self.int8 else 'runtimes'
        if self.det:
            return 'detector_parts' if self.one_stage else 'detector'
        return 'classifier'

    def run(self) -> Tuple[dict, Callable[[dict], str]]:
        """Measure; the result (JSON-able) and the function that makes its table."""
        result, formatter = getattr(self, f'_{self.mode}')()
        if self.smoke:
            result['settings']['smoke'] = True
        return result, formatter

    def _classifier(self):
        from .report import format_result
        from .runner import TimingSettings, benchmark_classifier
        settings = TimingSettings(
            input_size=self.input_size, latency_runs=self.runs, throughput_batch=self.cpu_batch,
            throughput_runs=self.cpu_runs, gpu_batch=self.gpu_batch, gpu_runs=self.gpu_runs,
            warmup=self.warmup, rounds=self.rounds, channels_last=self.channels_last,
            amp=not self.no_amp, compile=self.compile, cpu=not self.no_cpu,
            cuda=False if self.no_cuda else None, cuda_graph=self.cuda_graph)
        return benchmark_classifier(classifier_kwargs(self.model), settings,
                                    checkpoint=self.checkpoint,
                                    peers=not self.no_peers), format_result

    def _detector(self):
        from .detection import benchmark_detector
        from .report import format_result
        return benchmark_detector(
            self.det, self.det_baseline, *self.det_shape,
            runs=1 if self.smoke else self.cpu_runs, warmup=1, rounds=self.rounds,
            cuda=False if self.no_cuda else None), format_result

    def _detector_parts(self):
        from .detection import benchmark_detector_parts
        from .report import format_detector_parts
        return benchmark_detector_parts(
            self.det, self.det_baseline, *self.det_shape, runs=self.runs,
            warmup=min(self.warmup, 2), rounds=self.rounds), format_detector_parts

    def runtime_settings(self):
        from .runtimes import RuntimeSettings
        height, width = self.det_shape if self.backbone else (self.input_size, self.input_size)
        return RuntimeSettings(
            height=height, width=width, latency_runs=self.runs, throughput_batch=self.cpu_batch,
            throughput_runs=self.cpu_runs, warmup=self.warmup, rounds=self.rounds,
            dynamic=self.dynamic, dynamo=self.exporter == 'dynamo')

    def _runtimes(self):
        from .report import format_runtimes
        from .runtimes import benchmark_runtimes, parse_runtimes
        return benchmark_runtimes(self.model, parse_runtimes(self.runtime),
                                  self.runtime_settings(), backbone=self.backbone), \
            format_runtimes

    def _int8(self):
        from .int8 import benchmark_int8
        from .report import format_int8
        from .runtimes import parse_runtimes
        return benchmark_int8(self.model, parse_runtimes(self.runtime),
                              self.runtime_settings()), format_int8

    def detector_cfg_options(self) -> dict:
        """``cfg_options``, else the post-processing load both detectors carry (NMS_LOAD
        candidates a level into a one-stage NMS; every kept box masked by a two-stage one)."""
        if self.cfg_options is not None:
            return self.cfg_options
        return {'model.test_cfg.nms_pre': NMS_LOAD} if self.one_stage else \
            {'model.test_cfg.rcnn.score_thr': 0.0}

    def _detector_runtimes(self):
        from .detector_runtimes import benchmark_detector_runtimes
        from .report import format_detector_runtimes
        from .runtimes import parse_runtimes
        return benchmark_detector_runtimes(
            self.det, parse_runtimes(self.runtime), self.det_baseline, *self.det_shape,
            runs=self.runs, warmup=min(self.warmup, 2), rounds=self.rounds,
            cfg_options=self.detector_cfg_options()), format_detector_runtimes
