"""A small semantic-segmentation set, generated deterministically: the shapes of
``synthetic_coco`` (circles, squares, triangles on noisy gradients) with a label PNG per image
(0 background, 1 circle, 2 square, 3 triangle), in mmseg's folder layout::

    images/{train,val}/NAME.png   annotations/{train,val}/NAME.png

The same seed gives the same files, byte for byte.
"""
import os
import os.path as osp
from typing import Dict

import numpy as np

from .shapes import SEG_CLASSES as CLASSES
from .shapes import SEG_PALETTE as PALETTE
from .synthetic_coco import _render


def make_synthetic_seg(root: str, num_train: int = 160, num_val: int = 40, size: int = 128,
                       max_objects: int = 4, seed: int = 0) -> Dict[str, str]:
    """Write the set under ``root``; returns {split: image folder}."""
    import cv2

    rng = np.random.default_rng(seed)
    folders = {}
    for split, count in (('train', num_train), ('val', num_val)):
        images, labels = osp.join(root, 'images', split), osp.join(root, 'annotations', split)
        os.makedirs(images, exist_ok=True)
        os.makedirs(labels, exist_ok=True)
        for i in range(count):
            img, objects = _render(rng, size, max_objects)
            label = np.zeros((size, size), np.uint8)
            for kind, _poly, mask in objects:
                label[mask.astype(bool)] = kind + 1
            name = f'{split}_{i:05d}.png'
            cv2.imwrite(osp.join(images, name), img[..., ::-1])  # cv2 writes BGR
            cv2.imwrite(osp.join(labels, name), label)
        folders[split] = images
    return folders


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description='Generate the synthetic segmentation set.')
    parser.add_argument('root', nargs='?', default='data/synthetic_seg')
    parser.add_argument('--num-train', type=int, default=160)
    parser.add_argument('--num-val', type=int, default=40)
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    folders = make_synthetic_seg(args.root, args.num_train, args.num_val, args.size,
                                 seed=args.seed)
    print('\n'.join(f'{k}: {v}' for k, v in folders.items()))


if __name__ == '__main__':
    main()
