"""Run an exported PartialNet detector (``tools/export_onnx.py CONFIG``) with nothing but a
runtime: ONNX Runtime or OpenVINO, numpy and OpenCV. No torch, mmcv, mmengine or mmdet.

    pip install onnxruntime==1.30.0 numpy opencv-python-headless   # or openvino==2026.4.1

The ONNX file carries, in its metadata (:data:`META_KEY`), what is needed to use it: class
names, the test preprocessing (resize, pad, mean / std, channel order) and thresholds.
:class:`Detector` reads it, preprocesses images as the config's test pipeline does, runs the
model and maps boxes and masks back to each image.
"""
from .backends import RUNTIMES, Runtime, RuntimeMissing, onnx_session, require_runtime
from .detector import Detection, Detector
from .meta import META_KEY, MetadataError, read_meta

__all__ = ['Detection', 'Detector', 'META_KEY', 'MetadataError', 'RUNTIMES', 'Runtime',
           'RuntimeMissing', 'onnx_session', 'read_meta', 'require_runtime']
