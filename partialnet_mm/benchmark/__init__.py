"""Speed: interleaved timing (``timing``), the models of a table by role (``peers``), the
runner that times them (``runner``) and the tables (``report``). Every figure comes after
the fused == unfused check of :mod:`partialnet_mm.deploy`."""
from .detection import benchmark_detector, benchmark_detector_parts
from .report import format_detector_parts, format_result, markdown_table
from .runner import BenchmarkRunner, TimingSettings, benchmark_classifier
from ..mmconfig import classifier_from_config  # its home before 0.x: kept importable here
from ..timing import time_interleaved

__all__ = ['BenchmarkRunner', 'TimingSettings', 'benchmark_classifier', 'benchmark_detector',
           'benchmark_detector_parts', 'classifier_from_config', 'format_detector_parts',
           'format_result', 'markdown_table', 'time_interleaved']
