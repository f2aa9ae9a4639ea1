"""End-to-end ONNX export of an mmdet detector (RTMDet, RTMDet-Ins, Faster / Mask R-CNN), with
a PartialNet backbone or any other, checked against mmdet's own ``predict``.

:func:`export_detector` builds the config's detector, loads the checkpoint (strictly: every key
must fit), fuses a PartialNet backbone (:func:`partialnet_mm.deploy.fuse_and_check`), wraps it
in its end-to-end graph (:mod:`.end2end`), exports it with torch's TorchScript exporter (what
mmdeploy used: NMS as ONNX ``NonMaxSuppression``), writes the test preprocessing, class names
and thresholds into the file's metadata (:mod:`partialnet_runtime.meta`), and checks ONNX
Runtime's detections against ``model.predict`` (:func:`match_detections`). The file is
written only when the check passes. Needs mmdet, onnx and onnxruntime.
"""
import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from partialnet_runtime.meta import META_KEY, META_VERSION

from ..checkpoint import checkpoint_form, key_problems, read_checkpoint
from ..deploy import fuse_and_check
from ..mmconfig import build_model, is_one_stage, load_config
from .end2end import FAMILIES, UnsupportedDetector, end2end_model
from .onnx_export import ExportMismatch

OPSET = 17           # RoiAlign's half_pixel mode (mmcv's aligned=True) needs >= 16
SCORE_TOLERANCE = 1e-3
IOU_MIN = 0.99
# test pipeline steps that only load or pack (the image part is Resize and Pad)
PASSIVE_STEPS = ('LoadImageFromFile', 'LoadAnnotations', 'PackDetInputs', 'LoadImageFromNDArray')


class DetectorMismatch(ExportMismatch):
    """The exported detector's detections differ from mmdet's ``predict``."""


class ConfigUnsupported(ValueError):
    """A config whose detector, or test pipeline, the export cannot represent."""


def test_cfg_of(cfg) -> dict:
    """The final stage's test_cfg: the dense head's, or the RoI head's (``rcnn``)."""
    test_cfg = cfg.model.test_cfg
    return test_cfg if is_one_stage(cfg.model) else test_cfg.rcnn


def class_names(cfg) -> List[str]:
    """The config's classes: the test set's ``metainfo``, else its dataset class's."""
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset and 'metainfo' not in dataset:  # wrappers (ConcatDataset...)
        dataset = dataset.dataset
    meta = dataset.get('metainfo') or {}
    if meta.get('classes'):
        return list(meta['classes'])
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    return list(DATASETS.get(dataset.type).METAINFO['classes'])


def preprocess_meta(cfg) -> dict:
    """The test pipeline's image steps (Resize, Pad) and the data preprocessor (channel order,
    mean / std, padding) as the runtime side reads them (:mod:`partialnet_runtime.detector`)."""
    pipeline = cfg.test_dataloader.dataset.get('pipeline', cfg.get('test_pipeline'))
    out = dict(resize=None, pad=None)
    for step in pipeline:
        kind = step['type']
        if kind == 'Resize':
            scale = step.get('scale')
            if scale is None or step.get('scale_factor') is not None:
                raise ConfigUnsupported('test pipeline Resize without a fixed scale')
            scale = (scale, scale) if isinstance(scale, int) else tuple(scale)
            out['resize'] = dict(scale=list(scale), keep_ratio=bool(step.get('keep_ratio')))
        elif kind == 'Pad':
            value = step.get('pad_val', dict(img=0))
            value = value.get('img', 0) if isinstance(value, dict) else value
            value = [value] * 3 if isinstance(value, (int, float)) else list(value)
            size = step.get('size')
            if size is None and not step.get('size_divisor'):
                raise ConfigUnsupported('test pipeline Pad without size or size_divisor')
            out['pad'] = dict(size=list(size) if size else None,
                              size_divisor=step.get('size_divisor'), value=value)
        elif kind not in PASSIVE_STEPS:
            raise ConfigUnsupported(f'test pipeline step {kind!r}: the exported model takes '
                                    f'Resize and Pad only (no test-time augmentation)')
    dp = cfg.model.data_preprocessor
    out.update(to_rgb=bool(dp.get('bgr_to_rgb', dp.get('rgb_to_bgr', False))),
               mean=list(dp.get('mean') or (0.0, 0.0, 0.0)),
               std=list(dp.get('std') or (1.0, 1.0, 1.0)),
               pad_size_divisor=int(dp.get('pad_size_divisor', 1)),
               pad_value=float(dp.get('pad_value', 0)))
    return out


def export_size(cfg) -> Tuple[int, int]:
    """The (H, W) a detector is exported and checked at: the test pipeline's Pad size, else its
    Resize scale (long side as width), padded to the preprocessor's divisor."""
    pre = preprocess_meta(cfg)
    if pre['pad'] and pre['pad']['size']:
        w, h = pre['pad']['size']
    elif pre['resize']:
        w, h = max(pre['resize']['scale']), min(pre['resize']['scale'])
    else:
        w = h = 640
    d = max(pre['pad_size_divisor'], 32)
    return -(-h // d) * d, -(-w // d) * d


def deploy_meta(cfg, e2e, size: Optional[Tuple[int, int]]) -> dict:
    """Everything the runtime side needs, stored in the ONNX file (:data:`META_KEY`)."""
    test_cfg = test_cfg_of(cfg)
    return dict(version=META_VERSION, family=e2e.family, outputs=e2e.output_names,
                mask_kind=e2e.mask_kind,
                mask_thr_binary=float(test_cfg.get('mask_thr_binary', 0.5)),
                classes=class_names(cfg),
                input=dict(name='input', layout='NCHW', dtype='float32',
                           size=list(size) if size else None),
                preprocess=preprocess_meta(cfg), score_thr=float(test_cfg.get('score_thr', 0)))


def load_detector(config: str, checkpoint: Optional[str] = None, cfg_options=None):
    """``(cfg, detector)``: the config's mmdet detector in eval mode with the checkpoint's
    weights (a fused PartialNet checkpoint builds the backbone with ``deploy=True``); a
    KeyError naming the keys when the checkpoint does not fit, ConfigUnsupported for a
    config that is not an mmdet detector."""
    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('default_scope') != 'mmdet' or 'model' not in cfg or \
            not ('bbox_head' in cfg.model or 'roi_head' in cfg.model):
        raise ConfigUnsupported(f'{config} is not an mmdet detector config (default_scope '
                                f'{cfg.get("default_scope")!r}); the end-to-end export takes '
                                f'{"; ".join(FAMILIES.values())}')
    state = None
    if checkpoint:
        _, state = read_checkpoint(checkpoint)
        state = {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}
        if checkpoint_form(state, 'backbone.') == 'fused':
            cfg.model.backbone.deploy = True
    # SyncBN (RTMDet's) is BatchNorm on one process; the exporter would trace its training branch
    from mmengine.model import revert_sync_batchnorm
    model = revert_sync_batchnorm(build_model(cfg, backbone_weights=False)).eval()
    if state is not None:
        own = model.state_dict()
        problems = key_problems(own, state, {k: v.shape for k, v in own.items()})
        if problems:
            raise KeyError(f'checkpoint {checkpoint} does not fit {config}: {problems}')
        model.load_state_dict(state)
    return cfg, model


def fuse_backbone(model, size: Tuple[int, int]) -> float:
    """Fuse a PartialNet backbone in place, checked against its training graph (the one
    fuse-and-verify check); 0.0 for backbones with nothing to fuse."""
    backbone = model.backbone
    if not hasattr(backbone, 'switch_to_deploy') or getattr(backbone, 'deploy', False):
        return 0.0
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    fused, diff = fuse_and_check(backbone, x, what='PartialNet backbone', action='export it')
    model.backbone = fused
    return diff


def det_sample(height: int, width: int):
    """The DetDataSample ``predict`` needs for a preprocessed (height, width) input taken as
    the image itself (no rescale)."""
    from mmdet.structures import DetDataSample
    return DetDataSample(metainfo=dict(
        img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
        batch_input_shape=(height, width), scale_factor=(1.0, 1.0)))


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of x1 y1 x2 y2 boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-12)


@dataclass
class MatchReport:
    """How the exported detector's detections meet mmdet's on the check inputs."""
    reference: int = 0          # PyTorch detections above the score threshold
    matched: int = 0
    ties: int = 0               # unmatched, explained by a tie at a cut (see match_detections)
    worst_iou: float = 1.0
    worst_score: float = 0.0
    mask_disagreement: float = 0.0  # largest share of confident mask pixels that differ
    failures: List[str] = field(default_factory=list)


def match_detections(ref: dict, got: dict, score_thr: float, max_per_img: int,
                     report: MatchReport, what: str) -> None:
    """Every reference detection (``bboxes``, ``scores``, ``labels`` numpy) scoring above
    ``score_thr`` needs a partner in ``got``: same label, IoU >= :data:`IOU_MIN`, score within
    :data:`SCORE_TOLERANCE` (greedy, best IoU first). A reference detection without one is a
    tie, not a failure, when its score is within the tolerance of the last score kept and
    the output is full (``max_per_img`` reached: which of equal scores makes the cut is the
    sort's choice), or when an output detection of its label overlaps it and scores within
    the tolerance (NMS kept the other of two near-equal boxes)."""
    keep = ref['scores'] > score_thr
    rb, rs, rl = ref['bboxes'][keep], ref['scores'][keep], ref['labels'][keep]
    gb, gs, gl = got['bboxes'], got['scores'], got['labels']
    report.reference += len(rs)
    iou = _box_iou(rb, gb) if len(rb) and len(gb) else np.zeros((len(rb), len(gb)))
    ok = (rl[:, None] == gl[None]) & (np.abs(rs[:, None] - gs[None]) <= SCORE_TOLERANCE)
    free = np.ones(len(gs), bool)
    pairs = []
    for i in np.argsort(-rs, kind='stable'):
        cand = np.where(ok[i] & free & (iou[i] >= IOU_MIN))[0]
        if len(cand):
            j = cand[np.argmax(iou[i, cand])]
            free[j] = False
            pairs.append((i, j))
            report.matched += 1
            report.worst_iou = min(report.worst_iou, float(iou[i, j]))
            report.worst_score = max(report.worst_score, float(abs(rs[i] - gs[j])))
            continue
        at_cut = len(gs) >= max_per_img and rs[i] <= gs.min() + SCORE_TOLERANCE
        nms_tie = bool((ok[i] & (iou[i] > 0.3)).any())
        if at_cut or nms_tie:
            report.ties += 1
        else:
            report.failures.append(
                f'{what}: PyTorch detection label {rl[i]} score {rs[i]:.4f} box '
                f'{np.round(rb[i], 1).tolist()} has no partner (best IoU of its label '
                f'{float((iou[i] * (rl[i] == gl)).max(initial=0)):.3f})')
    if 'masks' in ref and pairs:
        ref_masks = ref['masks'][keep]
        for i, j in pairs:
            prob = got['masks'][j]
            confident = np.abs(prob - 0.5) > 0.02
            if confident.any():
                differ = (ref_masks[i] != (prob >= 0.5)) & confident
                report.mask_disagreement = max(report.mask_disagreement,
                                               float(differ.sum() / confident.sum()))


def _got_masks(e2e, masks: np.ndarray, dets: np.ndarray, height: int, width: int):
    """The exported masks of one image as (K, H, W) probabilities at input size (RoI masks
    pasted with mmdet's own paste)."""
    if e2e.mask_kind != 'roi':
        return masks
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
    if not len(dets):
        return np.zeros((0, height, width), np.float32)
    pasted, _ = _do_paste_mask(torch.from_numpy(masks[:, None]), torch.from_numpy(dets[:, :4]),
                               height, width, skip_empty=False)
    return pasted.numpy()


def _check_shape(model, e2e, session, shape, g, test_cfg, report: MatchReport) -> None:
    """One random input of ``shape``: mmdet's predict against the session, into ``report``."""
    x = torch.randn(*shape, generator=g)
    with torch.no_grad():
        preds = model.predict(x, [det_sample(*shape[2:]) for _ in range(shape[0])],
                              rescale=False)
    outputs = session.run(None, {'input': x.numpy()})
    for b, pred in enumerate(preds):
        p = pred.pred_instances
        ref = dict(bboxes=p.bboxes.numpy(), scores=p.scores.numpy(), labels=p.labels.numpy())
        if 'masks' in p:
            ref['masks'] = p.masks.numpy()
        valid = outputs[1][b] >= 0
        dets = outputs[0][b][valid]
        got = dict(bboxes=dets[:, :4], scores=dets[:, 4], labels=outputs[1][b][valid])
        if e2e.mask_kind:
            got['masks'] = _got_masks(e2e, outputs[2][b][valid], dets, *shape[2:])
        match_detections(ref, got, test_cfg.get('score_thr', 0), test_cfg.max_per_img,
                         report, f'input {tuple(shape)} image {b}')


def check_export(model, e2e, path: str, shapes: Sequence[Tuple[int, int, int, int]],
                 seed: int = 0) -> MatchReport:
    """ONNX Runtime's detections of ``path`` against ``model.predict`` (no rescale) on random
    inputs of each shape; a :class:`DetectorMismatch` lists the detections without a partner
    or the masks that differ."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    g = torch.Generator().manual_seed(seed)
    test_cfg = model.bbox_head.test_cfg if e2e.family != 'two-stage' else model.roi_head.test_cfg
    report = MatchReport()
    with warnings.catch_warnings():
        # mmdet's anchor generator calls torch.meshgrid without indexing=: torch's to warn
        warnings.filterwarnings('ignore', message='torch.meshgrid')
        for shape in shapes:
            _check_shape(model, e2e, session, shape, g, test_cfg, report)
    if report.mask_disagreement > 0.001:
        report.failures.append(f'masks differ on {100 * report.mask_disagreement:.2f}% of '
                               f'their confident pixels (> 0.1%)')
    if report.failures:
        raise DetectorMismatch(f'{path}: ONNX Runtime differs from mmdet predict: '
                               + '; '.join(report.failures[:3])
                               + (f' ... ({len(report.failures)} in all)'
                                  if len(report.failures) > 3 else ''))
    return report


def check_shapes(size: Tuple[int, int], fixed: bool) -> List[Tuple[int, int, int, int]]:
    """The inputs an export is checked on: its size; when dynamic, also a batch of 2 at
    another size."""
    h, w = size
    return [(1, 3, h, w)] if fixed else [(1, 3, h, w), (2, 3, max(h - 64, 64), w)]


def write_onnx(e2e, path: str, size: Tuple[int, int], dynamic: bool, meta: dict,
               opset: int = OPSET) -> None:
    """Export ``e2e`` (TorchScript exporter) to one self-contained file with ``meta``."""
    import onnx

    x = torch.randn(1, 3, *size)
    axes = None
    if dynamic:
        axes = {'input': {0: 'batch', 2: 'height', 3: 'width'},
                'dets': {0: 'batch', 1: 'num_dets'}, 'labels': {0: 'batch', 1: 'num_dets'}}
        if e2e.mask_kind:
            axes['masks'] = {0: 'batch', 1: 'num_dets'}
            if e2e.mask_kind == 'image':
                axes['masks'].update({2: 'height', 3: 'width'})
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter('ignore')  # the tracer's "converting a tensor to an int" etc.
        torch.onnx.export(e2e, (x,), path, dynamo=False, opset_version=opset,
                          input_names=['input'], output_names=e2e.output_names,
                          dynamic_axes=axes)
    proto = onnx.load(path)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    onnx.save(proto, path)


@dataclass
class ExportResult:
    path: str
    family: str
    size: Tuple[int, int]
    dynamic: bool
    fuse_diff: float
    report: MatchReport
    megabytes: float
    seconds: float = 0.0

    def summary(self) -> str:
        """What was written and how it compared, in a line (and a note when the check had no
        detection to compare)."""
        m = self.report
        line = (f'wrote {self.path} ({self.megabytes:.1f} MiB, one file; {self.family}, '
                f'{"dynamic batch and size" if self.dynamic else "fixed size"}, checked at '
                f'{self.size[0]}x{self.size[1]}, {self.seconds:.1f} s): fused backbone vs '
                f'unfused {self.fuse_diff:.2e}; onnxruntime vs mmdet predict: {m.matched} of '
                f'{m.reference} detections matched (worst IoU {m.worst_iou:.4f}, score '
                f'{m.worst_score:.1e}), {m.ties} ties at a cut')
        if self.family != 'rtmdet' and m.matched:
            line += f', masks differ on {100 * m.mask_disagreement:.3f}% of confident pixels'
        if not m.reference:
            line += ('\nnote: no detection scored above the threshold on the check inputs '
                     '(random weights?), so the check compared nothing; export a trained '
                     '--checkpoint')
        return line


def export_detector(config: str, out: str, checkpoint: Optional[str] = None,
                    fixed_size: bool = False, size: Optional[Tuple[int, int]] = None,
                    cfg_options=None) -> ExportResult:
    """Export the detector of ``config`` to ``out`` (see the module doc); nothing is written
    when the check fails (:class:`DetectorMismatch`)."""
    start = time.perf_counter()
    cfg, model = load_detector(config, checkpoint, cfg_options)
    size = tuple(size) if size else export_size(cfg)
    fuse_diff = fuse_backbone(model, size)
    e2e = end2end_model(model)
    meta = deploy_meta(cfg, e2e, size if fixed_size else None)
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fd, partial = tempfile.mkstemp(suffix='.onnx', dir=folder)
    os.close(fd)
    try:
        write_onnx(e2e, partial, size, not fixed_size, meta)
        report = check_export(model, e2e, partial, check_shapes(size, fixed_size))
        os.replace(partial, out)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return ExportResult(out, e2e.family, size, not fixed_size, fuse_diff, report,
                        os.path.getsize(out) / 2 ** 20, time.perf_counter() - start)


__all__ = ['ConfigUnsupported', 'DetectorMismatch', 'ExportResult', 'UnsupportedDetector',
           'check_export', 'deploy_meta', 'det_sample', 'export_detector', 'load_detector',
           'match_detections']
