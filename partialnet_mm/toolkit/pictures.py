"""Pictures of a detection run: predictions drawn by mmdet's ``DetLocalVisualizer`` (ground
truth, then one column per model state) and the training curves read from the scalar log that
mmengine's ``LocalVisBackend`` writes (``<log_dir>/vis_data/scalars.json``).

``predict`` and ``draw_predictions`` need mmdet (the visualiser); ``read_scalars`` and
``plot_training_curves`` need only matplotlib.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

AP_KEYS = ('coco/bbox_mAP', 'coco/segm_mAP')
HEADER = 18  # height of the column titles above the first row, pixels
MIN_SIZE = 384  # smaller images are drawn enlarged, so that the visualiser's labels fit


def predict(model: torch.nn.Module, dataset, indices: Sequence[int]) -> list:
    """``model.test_step`` on items of a test dataset, one at a time: DetDataSamples holding
    the ground truth and the predictions at the original image size."""
    from mmengine.dataset import pseudo_collate
    model.eval()
    with torch.no_grad():
        return [model.test_step(pseudo_collate([dataset[i]]))[0] for i in indices]


def _header(width: int, text: str) -> np.ndarray:
    import cv2
    strip = np.full((HEADER, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (3, HEADER - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                cv2.LINE_AA)
    return strip


def _enlarged(sample, factor: int):
    """A copy of a DetDataSample with its ground truth and predictions (boxes, masks) scaled by
    an integer factor: the visualiser's label size is fixed in pixels, so on a small image the
    labels of nearby boxes cover each other."""
    sample = sample.clone()  # clone() is shallow: fields are replaced below, never changed
    for key in ('gt_instances', 'pred_instances'):
        if key not in sample:
            continue
        instances = getattr(sample, key).clone()
        setattr(sample, key, instances)
        if 'bboxes' in instances:
            boxes = instances.bboxes
            if isinstance(boxes, torch.Tensor):
                instances.bboxes = boxes * factor
            else:  # mmdet's box types
                instances.bboxes = boxes.clone()
                instances.bboxes.rescale_((factor, factor))
        if 'masks' in instances:
            masks = instances.masks
            if isinstance(masks, torch.Tensor):
                instances.masks = masks.repeat_interleave(factor, -2).repeat_interleave(factor, -1)
            else:  # BitmapMasks / PolygonMasks
                instances.masks = masks.resize((masks.height * factor, masks.width * factor))
    return sample


def draw_predictions(visualizer, columns: Dict[str, List], out_file: str,
                     score_thr: float = 0.3, gap: int = 4, min_size: int = MIN_SIZE) -> str:
    """One row per image: the ground truth, then each column's predictions, drawn by mmdet's
    ``DetLocalVisualizer`` (boxes, masks, class names, scores); written as a PNG.

    ``columns`` maps a title to the samples ``predict`` returned for the same images. Images
    whose shorter side is under ``min_size`` are drawn enlarged by a whole factor (nearest
    neighbour), boxes and masks with them, so that the labels stay readable."""
    import cv2
    import mmcv
    lists = list(columns.values())
    if not lists or any(len(s) != len(lists[0]) for s in lists):
        raise ValueError('draw_predictions: every column needs one sample per image')
    rows = []
    for j, sample in enumerate(lists[0]):
        image = mmcv.imread(sample.img_path, channel_order='rgb')
        factor = max(1, -(-min_size // min(image.shape[:2])))
        if factor > 1:
            image = image.repeat(factor, 0).repeat(factor, 1)
        cells = []
        visualizer.add_datasample('ground truth', image, _enlarged(sample, factor), draw_gt=True,
                                  draw_pred=False, show=False)
        cells.append(('ground truth', visualizer.get_image()))
        for title, samples in columns.items():
            visualizer.add_datasample(title, image, _enlarged(samples[j], factor), draw_gt=False,
                                      draw_pred=True, pred_score_thr=score_thr, show=False)
            cells.append((title, visualizer.get_image()))
        spacer = np.full((cells[0][1].shape[0] + HEADER * (j == 0), gap, 3), 255, np.uint8)
        parts = []
        for title, cell in cells:
            parts += [np.concatenate([_header(cell.shape[1], title), cell]) if j == 0 else cell,
                      spacer]
        rows.append(np.concatenate(parts[:-1], axis=1))
        rows.append(np.full((gap, rows[-1].shape[1], 3), 255, np.uint8))
    picture = np.concatenate(rows[:-1], axis=0)
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    # PNG at full compression: the noisy backgrounds make the default file about 5x larger
    mmcv.imwrite(mmcv.rgb2bgr(picture), out_file, params=[cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out_file


def read_scalars(path: str):
    """(train, val) records of an mmengine ``scalars.json``: training lines carry ``loss`` and
    ``iter``; validation lines carry the metrics, with ``step`` = the epoch."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'scalar log not found: {path} (LocalVisBackend writes it under '
                                '<work_dir>/<timestamp>/vis_data/)')
    train, val = [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f'{path}, line {number}: not JSON ({err})') from None
            if 'loss' in record and 'iter' in record:
                train.append(record)
            elif any(k in record for k in AP_KEYS):
                val.append(record)
    return train, val


def plot_training_curves(scalars: str, out_file: str, initial: Optional[dict] = None,
                         title: str = '') -> str:
    """Training loss per logged iteration (left) and validation bbox / segm AP per epoch
    (right) from a run's scalar log; ``initial`` (metrics of the untrained model) is drawn
    at epoch 0."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    train, val = read_scalars(scalars)
    if not train:
        raise ValueError(f'{scalars}: no training loss recorded')
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3), dpi=100)
    left.plot([r['iter'] for r in train], [r['loss'] for r in train], color='tab:blue')
    left.set_xlabel('iteration')
    left.set_ylabel('training loss')
    left.grid(alpha=0.3)
    points = ([dict(initial, step=0)] if initial else []) + val
    for key, label, color in zip(AP_KEYS, ('bbox AP', 'segm AP'), ('tab:red', 'tab:green')):
        xs = [r['step'] for r in points if key in r]
        if xs:
            right.plot(xs, [r[key] for r in points if key in r], 'o-', color=color, label=label,
                       markersize=3)
    right.set_xlabel('epoch')
    right.set_ylabel('COCO AP (val)')
    right.set_ylim(0, 1)
    right.grid(alpha=0.3)
    right.legend(loc='lower right')
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file)
    plt.close(fig)
    return out_file
