"""A picture of one image's detections (boxes, masks, class names and scores), OpenCV only."""
from typing import Sequence

import cv2
import numpy as np

from .detector import Detection


def palette(n: int) -> np.ndarray:
    """``n`` distinct BGR colours, the same for a class in every picture."""
    hues = (np.arange(n) * 180 / max(n, 1) + 10).astype(np.uint8) % 180
    hsv = np.stack([hues, np.full(n, 200, np.uint8), np.full(n, 255, np.uint8)], 1)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2BGR)[0]


def draw(image: np.ndarray, det: Detection, classes: Sequence[str],
         min_side: int = 384) -> np.ndarray:
    """The image (enlarged by a whole factor when its short side is under ``min_side``, so
    that labels stay readable) with each detection's mask tinted, box and ``class score``."""
    colors = palette(len(classes))
    factor = max(1, -(-min_side // min(image.shape[:2])))
    out = image.copy()
    if det.masks is not None:
        for mask, label in zip(det.masks, det.labels):
            out[mask] = (0.5 * out[mask] + 0.5 * colors[label]).astype(np.uint8)
    if factor > 1:
        out = cv2.resize(out, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
    for box, score, label in zip(det.boxes, det.scores, det.labels):
        color = tuple(int(c) for c in colors[label])
        x1, y1, x2, y2 = (int(round(float(v) * factor)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        text = f'{classes[label]} {score:.2f}'
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        top = max(y1 - th - base - 2, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw + 4, top + th + base + 2), color, -1)
        cv2.putText(out, text, (x1 + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return out
