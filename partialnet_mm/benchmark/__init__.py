"""Speed: the fused == unfused check (``verify``), interleaved timing (``timing``), the runner
that owns the models of one table by role (``runner``) and the tables (``report``)."""
from .report import format_result, markdown_table
from .runner import (BenchmarkRunner, TimingSettings, benchmark_classifier, benchmark_detector,
                     classifier_from_config)
from .timing import time_interleaved
from .verify import FUSE_TOLERANCE, FusionMismatch, check_fused, deployed, randomize_norms

__all__ = ['BenchmarkRunner', 'FUSE_TOLERANCE', 'FusionMismatch', 'TimingSettings',
           'benchmark_classifier', 'benchmark_detector', 'check_fused', 'classifier_from_config',
           'deployed', 'format_result', 'markdown_table', 'randomize_norms', 'time_interleaved']
