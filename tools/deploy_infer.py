#!/usr/bin/env python
"""Detect objects with an exported detector and nothing but a runtime (no torch, no OpenMMLab).

    pip install onnxruntime==1.30.0 numpy opencv-python-headless    # or openvino==2026.4.1
    python tools/deploy_infer.py end2end.onnx IMAGE [IMAGE ...] --out-dir DIR \
        [--runtime onnxruntime|openvino] [--score-thr 0.3]

Reads the class names, test preprocessing and thresholds from the ONNX file's metadata
(``tools/export_onnx.py CONFIG OUT.onnx`` writes them), resizes, pads and normalises each image
as the config's test pipeline does (numpy + OpenCV), runs the model, maps boxes and masks back
to the image, and writes DIR/<image name>.png (boxes, masks, class names and scores) and
DIR/results.json: every detection above --score-thr in COCO's results format (``bbox`` x, y,
w, h in image pixels; ``segmentation`` as compressed RLE for instance segmentation models;
``category_id`` the class index, ``category_name`` its name; ``image_id`` the file name without
extension, a number when it is one).

Exit code 2 with a one-line error when the model, runtime or an image cannot be used; an image
that does not decode is named and skipped, the others are still processed.
"""
import argparse
import json
import os
import os.path as osp
import sys

# partialnet_runtime/ beside tools/ (a checkout) or beside this file (copied next to it): no
# install needed but the runtime's
HERE = osp.dirname(osp.realpath(__file__))
sys.path[:0] = [HERE, osp.dirname(HERE)]

from partialnet_runtime import Detector, MetadataError, RuntimeMissing  # noqa: E402
from partialnet_runtime.coco import coco_results  # noqa: E402
from partialnet_runtime.draw import draw  # noqa: E402


def image_id(path: str):
    stem = osp.splitext(osp.basename(path))[0]
    return int(stem) if stem.isdigit() else stem


def main(argv=None) -> int:
    import cv2

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', help='an end-to-end detector exported by tools/export_onnx.py')
    p.add_argument('images', nargs='+', help='image files (anything OpenCV decodes)')
    p.add_argument('--out-dir', required=True, help='where the pictures and results.json go')
    p.add_argument('--runtime', default='onnxruntime', choices=['onnxruntime', 'openvino'])
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='keep detections scoring above this (default 0.3)')
    p.add_argument('--threads', type=int, default=0, help='CPU threads (0: all)')
    args = p.parse_args(argv)

    if not osp.isfile(args.model):
        print(f'error: no model file {args.model}', file=sys.stderr)
        return 2
    try:
        detector = Detector(args.model, args.runtime, args.threads)
    except (MetadataError, RuntimeMissing) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    results, failed = [], []
    for path in args.images:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            print(f'error: {path} does not decode as an image; skipped', file=sys.stderr)
            failed.append(path)
            continue
        det = detector(image, score_thr=args.score_thr)
        os.makedirs(args.out_dir, exist_ok=True)
        picture = osp.join(args.out_dir, osp.splitext(osp.basename(path))[0] + '.png')
        cv2.imwrite(picture, draw(image, det, detector.classes))
        results += coco_results(det, image_id(path), detector.classes)
        names = ', '.join(f'{detector.classes[l]} {s:.2f}' for l, s in
                          zip(det.labels[:5], det.scores[:5]))
        print(f'{path}: {len(det.scores)} detections{": " + names if names else ""}'
              f'{" ..." if len(det.scores) > 5 else ""} -> {picture}')
    if len(failed) < len(args.images):
        out = osp.join(args.out_dir, 'results.json')
        with open(out, 'w') as f:
            json.dump(results, f)
        print(f'{len(results)} detections of {len(args.images) - len(failed)} images in {out}')
    if failed:
        print(f'error: {len(failed)} of {len(args.images)} images did not decode: '
              f'{", ".join(failed)}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
