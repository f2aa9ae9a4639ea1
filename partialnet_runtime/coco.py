"""Detections in COCO's results format (``bbox`` as x, y, w, h; ``segmentation`` as compressed
RLE), written without pycocotools."""
from typing import Dict, List, Optional, Sequence

import numpy as np

from .detector import Detection


def rle_encode(mask: np.ndarray) -> Dict[str, object]:
    """A binary (H, W) mask as COCO's compressed RLE: run lengths in column-major order, the
    first run counting zeros, each written in pycocotools' 5-bit LEB128-like string code."""
    height, width = mask.shape
    flat = np.asarray(mask, dtype=bool).reshape(-1, order='F')
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0] + runs
    chars = []
    for i, run in enumerate(runs):
        x = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            c = x & 0x1f
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return {'size': [height, width], 'counts': ''.join(chars)}


def coco_results(det: Detection, image_id, classes: Sequence[str],
                 category_ids: Optional[Sequence[int]] = None) -> List[dict]:
    """One image's detections as COCO result records; ``category_id`` is the dataset's id of
    each class when ``category_ids`` is given, else the class index (and ``category_name``
    is always there)."""
    out = []
    for i, (box, score, label) in enumerate(zip(det.boxes, det.scores, det.labels)):
        x1, y1, x2, y2 = (float(v) for v in box)
        record = dict(image_id=image_id,
                      category_id=int(category_ids[label]) if category_ids else int(label),
                      category_name=classes[label], bbox=[x1, y1, x2 - x1, y2 - y1],
                      score=float(score))
        if det.masks is not None:
            record['segmentation'] = rle_encode(det.masks[i])
        out.append(record)
    return out
