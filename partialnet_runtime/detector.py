"""An exported detector run on images: the config's test preprocessing (numpy + OpenCV, as mmcv
does it), the runtime, and the detections mapped back to the image."""
import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import cv2
import numpy as np

from .backends import onnx_session, require_runtime
from .meta import read_meta


@dataclass
class Detection:
    """The detections of one image, in its own pixels: ``boxes`` (K, 4) x1 y1 x2 y2,
    ``scores`` (K,), ``labels`` (K,), ``masks`` (K, H, W) bool or None."""
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: Optional[np.ndarray] = None


@dataclass
class Prepared:
    """One preprocessed image: the network input (1, 3, H, W) float32 and how it was made."""
    input: np.ndarray
    ori_shape: Tuple[int, int]
    img_shape: Tuple[int, int]          # mmdet's img_shape: resized, after the pipeline's Pad
    scale: Tuple[float, float]          # (w, h) resize factors


def rescale_size(width: int, height: int, scale: Tuple[int, int]) -> Tuple[int, int, float]:
    """mmcv's ``rescale_size``: the size of an image resized to fit ``scale`` (w, h) keeping
    its aspect ratio (long edge to the long side, short edge to the short side)."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(width * factor + 0.5), int(height * factor + 0.5), factor


def preprocess(image: np.ndarray, meta: dict) -> Prepared:
    """The config's test pipeline and data preprocessor on a BGR uint8 image: Resize, Pad,
    channel order, (x - mean) / std, padding to the divisor (and to the exported size)."""
    pre = meta['preprocess']
    height, width = image.shape[:2]
    resize = pre.get('resize')
    if resize:
        if resize['keep_ratio']:
            new_w, new_h, _ = rescale_size(width, height, tuple(resize['scale']))
        else:
            new_w, new_h = resize['scale']
        if (new_w, new_h) != (width, height):
            image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    resized = image.shape[:2]
    pad = pre.get('pad')
    if pad:
        img_h, img_w = image.shape[:2]
        if pad.get('size'):
            target_w, target_h = pad['size']
        else:
            d = pad['size_divisor']
            target_w, target_h = math.ceil(img_w / d) * d, math.ceil(img_h / d) * d
        image = cv2.copyMakeBorder(image, 0, max(target_h - img_h, 0), 0,
                                   max(target_w - img_w, 0), cv2.BORDER_CONSTANT,
                                   value=tuple(float(v) for v in pad['value']))
    img_h, img_w = image.shape[:2]  # mmcv's Pad sets img_shape to the padded size
    x = image.astype(np.float32)
    if pre['to_rgb']:
        x = x[..., ::-1]
    x = (x - np.asarray(pre['mean'], np.float32)) / np.asarray(pre['std'], np.float32)
    h, w = x.shape[:2]
    d = pre.get('pad_size_divisor', 1) or 1
    target_h, target_w = math.ceil(h / d) * d, math.ceil(w / d) * d
    fixed = meta['input'].get('size')
    if fixed:
        if fixed[0] < target_h or fixed[1] < target_w:
            raise ValueError(f'the preprocessed image is {target_h}x{target_w}, larger than '
                             f'the {fixed[0]}x{fixed[1]} this model was exported for')
        target_h, target_w = fixed
    x = np.pad(x, ((0, target_h - h), (0, target_w - w), (0, 0)),
               constant_values=pre.get('pad_value', 0.0))
    resized_h, resized_w = resized
    return Prepared(np.ascontiguousarray(x.transpose(2, 0, 1)[None]), (height, width),
                    (img_h, img_w), (resized_w / width, resized_h / height))


def paste_mask(mask: np.ndarray, box: np.ndarray, height: int, width: int) -> np.ndarray:
    """A (h, w) RoI mask probability map pasted into an image of ``height`` x ``width`` within
    ``box`` (x1 y1 x2 y2): mmdet's ``_do_paste_mask`` (bilinear, pixel centres, zero outside),
    as OpenCV's remap."""
    x0, y0, x1, y1 = (float(v) for v in box)
    out = np.zeros((height, width), np.float32)
    lx, ly = max(int(math.floor(x0)) - 1, 0), max(int(math.floor(y0)) - 1, 0)
    hx, hy = min(int(math.ceil(x1)) + 1, width), min(int(math.ceil(y1)) + 1, height)
    if hx <= lx or hy <= ly or x1 <= x0 or y1 <= y0:
        return out
    mh, mw = mask.shape
    u = (np.arange(lx, hx, dtype=np.float32) + 0.5 - x0) / (x1 - x0) * mw - 0.5
    v = (np.arange(ly, hy, dtype=np.float32) + 0.5 - y0) / (y1 - y0) * mh - 0.5
    map_x, map_y = np.meshgrid(u, v)
    out[ly:hy, lx:hx] = cv2.remap(mask.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out


def postprocess(outputs: List[np.ndarray], prepared: Prepared, meta: dict, index: int = 0,
                score_thr: Optional[float] = None) -> Detection:
    """Image ``index`` of the outputs in its own pixels: padded rows and scores at or below
    ``score_thr`` dropped, boxes clipped to the resized image and divided by the resize
    factors (mmdet's ``rescale=True``), masks pasted (RoI masks) or resized (image masks)."""
    dets, labels = outputs[0][index], outputs[1][index]
    thr = meta['score_thr'] if score_thr is None else score_thr
    keep = (labels >= 0) & (dets[:, 4] > thr)
    dets, labels = dets[keep], labels[keep].astype(np.int64)
    img_h, img_w = prepared.img_shape
    boxes = dets[:, :4].copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, img_w) / prepared.scale[0]
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, img_h) / prepared.scale[1]
    height, width = prepared.ori_shape
    masks = None
    if meta['mask_kind']:
        probs = outputs[2][index][keep]
        thr_mask = meta['mask_thr_binary']
        if meta['mask_kind'] == 'roi':
            masks = np.stack([paste_mask(m, b, height, width) >= thr_mask
                              for m, b in zip(probs, boxes)]) if len(boxes) else \
                np.zeros((0, height, width), bool)
        else:
            masks = np.stack([_image_mask(m, prepared, thr_mask) for m in probs]) \
                if len(boxes) else np.zeros((0, height, width), bool)
    return Detection(boxes.astype(np.float32), dets[:, 4].astype(np.float32), labels, masks)


def _image_mask(prob: np.ndarray, prepared: Prepared, thr: float) -> np.ndarray:
    """An input-size mask probability map back to the image: resized by the inverse resize
    factors as logits (mmdet resizes logits, then applies the sigmoid), cropped, thresholded."""
    height, width = prepared.ori_shape
    eps = 1e-7
    p = prob.astype(np.float64).clip(eps, 1 - eps)
    logits = np.log(p / (1 - p)).astype(np.float32)
    size = (math.ceil(prob.shape[1] / prepared.scale[0]),
            math.ceil(prob.shape[0] / prepared.scale[1]))
    logits = cv2.resize(logits, size, interpolation=cv2.INTER_LINEAR)[:height, :width]
    return logits > math.log(thr / (1 - thr)) if 0 < thr < 1 else logits >= 0


class Detector:
    """An exported detector in a runtime: ``Detector('model.onnx')(image) -> Detection``."""

    def __init__(self, path: str, runtime: str = 'onnxruntime', threads: int = 0):
        chosen = require_runtime(runtime)  # not installed: its pip line, before anything else
        self.meta = read_meta(path)  # before the session, so a foreign file is named as such
        self.classes = self.meta['classes']
        self.run = onnx_session(chosen, path, threads)

    def __call__(self, image: np.ndarray, score_thr: Optional[float] = None) -> Detection:
        """Detections of one BGR uint8 image (as ``cv2.imread`` gives it)."""
        prepared = preprocess(image, self.meta)
        return postprocess(self.run(prepared.input), prepared, self.meta, score_thr=score_thr)
