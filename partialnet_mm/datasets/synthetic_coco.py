"""A small COCO-format instance-segmentation set, generated deterministically.

Images of coloured circles, squares and triangles (rotated, non-overlapping) on
noisy gradient backgrounds, written as PNG; ``annotations/instances_{train,val}.json``
hold polygon masks, boxes and areas in COCO format. The same seed gives the same
files, byte for byte.
"""
import json
import math
import os
import os.path as osp
from typing import Dict, List, Tuple

import numpy as np

from .shapes import SHAPES

CLASSES = SHAPES
PALETTE = [(220, 20, 60), (0, 128, 255), (255, 190, 0)]


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    n = {'circle': 24, 'square': 4, 'triangle': 3}[kind]
    t = angle + np.arange(n) * 2 * math.pi / n
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _render(rng: np.random.Generator, size: int, max_objects: int
            ) -> Tuple[np.ndarray, List[Tuple[int, np.ndarray, np.ndarray]]]:
    import cv2

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
    img = c0 * (1 - xx[..., None]) + c1 * yy[..., None] * 0.5 + rng.normal(0, 8, (size, size, 3))
    objects, boxes = [], []
    for _ in range(rng.integers(1, max_objects + 1)):
        for _attempt in range(20):
            kind = int(rng.integers(len(CLASSES)))
            r = rng.uniform(0.09, 0.2) * size
            cx, cy = rng.uniform(r + 2, size - r - 2, 2)
            box = (cx - r, cy - r, cx + r, cy + r)
            if all(box[2] < b[0] or b[2] < box[0] or box[3] < b[1] or b[3] < box[1] for b in boxes):
                break
        else:
            continue
        poly = _polygon(CLASSES[kind], cx, cy, r, rng.uniform(0, 2 * math.pi))
        mask = np.zeros((size, size), np.uint8)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
        if mask.sum() < 16:
            continue
        color = rng.uniform(0, 255, 3)
        img[mask.astype(bool)] = color + rng.normal(0, 6, (int(mask.sum()), 3))
        boxes.append(box)
        objects.append((kind, poly, mask))
    return np.clip(img, 0, 255).astype(np.uint8), objects


def make_synthetic_coco(root: str, num_train: int = 240, num_val: int = 60, size: int = 160,
                        max_objects: int = 4, seed: int = 0) -> Dict[str, str]:
    """Write the set under ``root`` (``train/``, ``val/``, ``annotations/``); returns paths."""
    import cv2

    rng = np.random.default_rng(seed)
    paths = {}
    ann_id = 1
    for split, count in (('train', num_train), ('val', num_val)):
        os.makedirs(osp.join(root, split), exist_ok=True)
        os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            img, objects = _render(rng, size, max_objects)
            name = f'{split}_{i:05d}.png'
            cv2.imwrite(osp.join(root, split, name), img[..., ::-1])  # stored as BGR by cv2
            image_id = i + 1
            images.append(dict(id=image_id, file_name=name, height=size, width=size))
            for kind, poly, mask in objects:
                ys, xs = np.nonzero(mask)
                x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
                annotations.append(dict(
                    id=ann_id, image_id=image_id, category_id=kind + 1, iscrowd=0,
                    segmentation=[[round(float(v), 2) for v in poly.reshape(-1)]],
                    area=float(mask.sum()),
                    bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)]))
                ann_id += 1
        coco = dict(
            info=dict(description='partialnet_mm synthetic shapes', version='1.0'),
            images=images, annotations=annotations,
            categories=[dict(id=k + 1, name=n, supercategory='shape') for k, n in enumerate(CLASSES)])
        path = osp.join(root, 'annotations', f'instances_{split}.json')
        with open(path, 'w') as f:
            json.dump(coco, f)
        paths[split] = path
    return paths


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description='Generate the synthetic COCO instance set.')
    parser.add_argument('root', nargs='?', default='data/synthetic_coco')
    parser.add_argument('--num-train', type=int, default=240)
    parser.add_argument('--num-val', type=int, default=60)
    parser.add_argument('--size', type=int, default=160)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    paths = make_synthetic_coco(args.root, args.num_train, args.num_val, args.size, seed=args.seed)
    print('\n'.join(f'{k}: {v}' for k, v in paths.items()))


if __name__ == '__main__':
    main()
