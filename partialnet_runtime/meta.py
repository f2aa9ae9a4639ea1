"""What an exported detector needs to be used, kept inside its ONNX file as one JSON entry of
``metadata_props``: no sidecar file."""
import json
from typing import Any, Dict

META_KEY = 'partialnet_mm.deploy'
META_VERSION = 1
# every key of the metadata, each needed by the runtime side
REQUIRED = ('version', 'family', 'outputs', 'mask_kind', 'mask_thr_binary', 'classes',
            'input', 'preprocess', 'score_thr')


class MetadataError(ValueError):
    """An ONNX file without our metadata, or with metadata we cannot read."""


def read_meta(path: str) -> Dict[str, Any]:
    """The deployment metadata of the ONNX file at ``path`` (read with ONNX Runtime when
    installed, else OpenVINO); :class:`MetadataError` names what is missing."""
    props = _metadata_props(path)
    if META_KEY not in props:
        raise MetadataError(f'{path} has no {META_KEY!r} metadata: it was not exported by '
                            f'partialnet_mm (tools/export_onnx.py CONFIG OUT.onnx writes it)')
    try:
        meta = json.loads(props[META_KEY])
    except json.JSONDecodeError as e:
        raise MetadataError(f'{path}: the {META_KEY!r} metadata is not JSON ({e})') from None
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise MetadataError(f'{path}: the {META_KEY!r} metadata lacks {", ".join(missing)}')
    if meta['version'] != META_VERSION:
        raise MetadataError(f'{path}: metadata version {meta["version"]}, this reader knows '
                            f'{META_VERSION}')
    return meta


def _metadata_props(path: str) -> Dict[str, str]:
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    if ort is not None:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        except Exception as e:  # not an ONNX file, a truncated one...
            raise MetadataError(f'{path} is not a readable ONNX model: {e}') from None
        return dict(session.get_modelmeta().custom_metadata_map)
    try:
        import openvino as ov
    except ImportError:
        raise MetadataError(f'cannot read {path}: neither onnxruntime nor openvino is '
                            f'installed (pip install onnxruntime==1.30.0)') from None
    try:
        model = ov.Core().read_model(path)
    except Exception as e:
        raise MetadataError(f'{path} is not a readable ONNX model: {e}') from None
    rt = model.get_rt_info()
    if 'framework' in rt and META_KEY in rt['framework']:
        return {META_KEY: rt['framework'][META_KEY].astype(str)}
    return {}
