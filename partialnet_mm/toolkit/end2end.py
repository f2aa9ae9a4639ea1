"""The whole detector as one exportable graph: network, box decoding, NMS and masks.

:func:`end2end_model` wraps an mmdet detector (eval mode, backbone fused or not) in a module whose
forward takes the data preprocessor's output, ``input`` (N, 3, H, W), and returns mmdeploy's
``end2end.onnx`` outputs:

- ``dets`` (N, K, 5) float32: x1, y1, x2, y2 in input pixels (clipped to the input), score;
- ``labels`` (N, K) int64;
- ``masks`` for instance segmentation: (N, K, 28, 28) RoI mask probabilities for Mask R-CNN
  (to be pasted into each box), (N, K, H, W) mask probabilities at input size for RTMDet-Ins.

K is the largest number of detections of the batch (at least 1); an image with fewer has its
rows padded with score 0, label -1. The post-processing is mmdet's ``predict`` with ``rescale=False``, re-
written with operations ONNX has: each level's top ``nms_pre`` (score, class) pairs, the score
threshold, ``min_bbox_size``, class-aware NMS (mmdet's coordinate-offset form, which is one
ONNX ``NonMaxSuppression``) keeping ``max_per_img``. Boxes are clipped to the input (mmdet
clips to ``img_shape``; the two agree when the input is the image, padding aside).

Supported families (:data:`FAMILIES`): one-stage RTMDet and RTMDet-Ins heads (point priors,
distance boxes, sigmoid classes), and two-stage RPN + standard RoI head detectors (Faster and
Mask R-CNN: anchors, delta boxes, RoIAlign, FCN mask head). Pure torch + torchvision; the
detector object is mmdet's.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import batched_nms
from torchvision.ops import roi_align

# family name -> what it is, for the error that lists them
FAMILIES = {
    'rtmdet': 'RTMDet (RTMDetHead, RTMDetSepBNHead)',
    'rtmdet-ins': 'RTMDet-Ins (RTMDetInsHead, RTMDetInsSepBNHead)',
    'two-stage': 'Faster / Mask R-CNN (RPNHead + StandardRoIHead, FCNMaskHead)',
}
# the mask output of each family: 'roi' = (N, K, h, w) per-box masks to paste, 'image' =
# (N, K, H, W) at input size; None: boxes only
MASK_KIND_ROI, MASK_KIND_IMAGE = 'roi', 'image'
# the network's parts by the first module of an exported node's name (the exporter names nodes
# by module path); the wrapper's own nodes (decoding, NMS, RoIAlign, mask pasting) are the
# post-processing
PARTS = {'backbone': 'backbone', 'neck': 'neck', 'bbox_head': 'head', 'head': 'head',
         'rpn_head': 'head', 'roi_head': 'head', 'mask_head': 'head'}
POST_PROCESSING = 'post-processing'


def part_of(node: str) -> str:
    """The detector part an exported node belongs to: backbone, neck, head, or
    post-processing."""
    return PARTS.get(node.lstrip('/').split('/')[0], POST_PROCESSING)


class UnsupportedDetector(ValueError):
    """A detector whose family has no end-to-end graph here."""


class NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (one class) of ``boxes`` (N, M, 4) already offset per group,
    ``scores`` (N, 1, M) -> selected (S, 3) int64 rows (image, 0, box index), each image's
    boxes in decreasing score order, at most ``max_out`` an image, only scores strictly above
    ``score_thr``. In PyTorch: torchvision's ``batched_nms`` with the ``groups`` (N, M) (per
    group for large inputs, not quadratic in all of them; the offsets make the groups
    disjoint, so the result is the same); like ONNX's and mmcv's, IoU without the +1. The
    exported graph needs only the offset boxes."""

    @staticmethod
    def forward(ctx, boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor,
                max_out: int, iou_thr: float, score_thr: float) -> torch.Tensor:
        rows = []
        for b in range(boxes.shape[0]):
            s = scores[b, 0]
            idx = torch.nonzero(s > score_thr).squeeze(1)
            keep = idx[batched_nms(boxes[b, idx], s[idx], groups[b, idx], iou_thr)[:max_out]]
            rows.append(torch.stack([torch.full_like(keep, b), torch.zeros_like(keep), keep], 1))
        return torch.cat(rows) if rows else boxes.new_zeros((0, 3), dtype=torch.long)

    @staticmethod
    def symbolic(g, boxes, scores, groups, max_out, iou_thr, score_thr):
        def const(value, dtype):
            return g.op('Constant', value_t=torch.tensor([value], dtype=dtype))
        return g.op('NonMaxSuppression', boxes, scores, const(max_out, torch.int64),
                    const(iou_thr, torch.float32), const(score_thr, torch.float32))


def _topk(x: torch.Tensor, k, dim: int = 1) -> Tuple[torch.Tensor, torch.Tensor]:
    """``x.topk(min(k, x.shape[dim]))``, sorted; ``k`` an int or a 0-d tensor. Exported, the
    bound is computed in the graph (the sizes are dynamic there)."""
    n = x.shape[dim]
    if torch.jit.is_tracing():
        k = torch.minimum(torch.as_tensor(k), torch.as_tensor(n))
    else:
        k = min(int(k), n)
    return x.topk(k, dim=dim)


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x`` (N, M, ...) at ``idx`` (N, K) along dim 1 -> (N, K, ...)."""
    shape = idx.shape + x.shape[2:]
    flat = idx.reshape(idx.shape[0], idx.shape[1], *([1] * (x.dim() - 2)))
    return torch.gather(x, 1, flat.expand(shape))


def _clip(boxes: torch.Tensor, height, width) -> torch.Tensor:
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1.clamp(0, width), y1.clamp(0, height),
                        x2.clamp(0, width), y2.clamp(0, height)], -1)


def _delta2bbox(anchors: torch.Tensor, deltas: torch.Tensor, means: Sequence[float],
                stds: Sequence[float], wh_ratio_clip: float, height, width) -> torch.Tensor:
    """mmdet's ``delta2bbox`` (DeltaXYWHBBoxCoder, no centre clamp), clipped to the input."""
    deltas = deltas * deltas.new_tensor(stds) + deltas.new_tensor(means)
    pxy = (anchors[..., :2] + anchors[..., 2:]) * 0.5
    pwh = anchors[..., 2:] - anchors[..., :2]
    max_ratio = abs(math.log(wh_ratio_clip))
    gxy = pxy + pwh * deltas[..., :2]
    gwh = pwh * deltas[..., 2:].clamp(min=-max_ratio, max=max_ratio).exp()
    return _clip(torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], -1), height, width)


def _min_size_filter(boxes: torch.Tensor, scores: torch.Tensor, min_size) -> torch.Tensor:
    """Scores with the boxes mmdet's ``min_bbox_size`` drops (w or h <= it) set to -1."""
    if min_size is None or min_size < 0:
        return scores
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return torch.where((w > min_size) & (h > min_size), scores, torch.full_like(scores, -1.0))


def _class_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_thr: float,
               score_thr: float, max_out: int) -> torch.Tensor:
    """mmdet's ``batched_nms``: NMS within each group (class, or RPN level), by offsetting each
    group's boxes past every other; ``boxes`` (N, M, 4), ``scores`` / ``groups`` (N, M)."""
    offsets = groups.to(boxes.dtype) * (boxes.max() + 1)
    shifted = boxes + offsets.unsqueeze(-1)
    return NonMaxSuppression.apply(shifted, scores.unsqueeze(1), groups, int(max_out),
                                   float(iou_thr), float(score_thr))


def _select(keep: torch.Tensor, scores: torch.Tensor, max_out: int
            ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kept candidates of each image, best first, as (N, K) candidate indices, scores and a
    valid mask; K = the most any image keeps (at most ``max_out``), shorter rows padded."""
    b, i = keep[:, 0], keep[:, 2]
    dense = torch.full_like(scores, -1.0).index_put((b, i), scores[b, i])
    # at least one row, padded when no image keeps anything: no zero-size tensors downstream
    count = (dense >= 0).sum(1).max().clamp(min=1)
    top, idx = _topk(dense, torch.minimum(torch.as_tensor(max_out), count))
    return idx, top.clamp(min=0), top >= 0


def _pack(boxes: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor, scores: torch.Tensor,
          valid: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``dets`` (N, K, 5) and ``labels`` (N, K): padded rows zero, label -1."""
    dets = torch.cat([_gather(boxes, idx), scores.unsqueeze(-1)], -1)
    dets = dets * valid.unsqueeze(-1).to(dets.dtype)
    labels = torch.where(valid, _gather(labels, idx), torch.full_like(idx, -1))
    return dets, labels


class _End2End(nn.Module):
    """Common part: the detector, its test_cfg, what it outputs."""
    family = ''
    mask_kind: Optional[str] = None

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector
        # eval as a whole: torch's exporter sets the root's mode back on every submodule after
        # the export, so a training-mode wrapper would leave the detector's BNs training
        self.eval()

    @property
    def output_names(self) -> List[str]:
        return ['dets', 'labels'] + (['masks'] if self.mask_kind else [])


class DenseEnd2End(_End2End):
    """RTMDet and RTMDet-Ins: point priors (offset 0) on each level, boxes as distances already
    multiplied by the stride, sigmoid class scores; RTMDet-Ins adds dynamic-conv masks."""

    def __init__(self, detector: nn.Module):
        super().__init__(detector)
        head = detector.bbox_head
        self.head = head
        self.with_masks = hasattr(head, 'num_gen_params')
        self.family = 'rtmdet-ins' if self.with_masks else 'rtmdet'
        self.mask_kind = MASK_KIND_IMAGE if self.with_masks else None
        gen = head.prior_generator
        if type(gen).__name__ != 'MlvlPointGenerator' or \
                type(head.bbox_coder).__name__ != 'DistancePointBBoxCoder' or \
                not head.use_sigmoid_cls:
            raise UnsupportedDetector(f'{type(head).__name__} with {type(gen).__name__} and '
                                      f'{type(head.bbox_coder).__name__}: the dense graph is '
                                      f'for RTMDet heads (point priors, distance boxes)')
        self.strides = [tuple(s) for s in gen.strides]
        self.offset = gen.offset
        cfg = head.test_cfg
        self.nms_pre = cfg.get('nms_pre', -1)
        self.score_thr = cfg.get('score_thr', 0.0)
        self.min_size = cfg.get('min_bbox_size', -1)
        self.iou_thr = cfg.nms.iou_threshold
        self.max_per_img = cfg.max_per_img
        if cfg.nms.get('type', 'nms') != 'nms':
            raise UnsupportedDetector(f"test_cfg.nms type {cfg.nms.type!r}: only 'nms'")

    def forward(self, input: torch.Tensor):
        height, width = input.shape[2], input.shape[3]
        outs = self.head(self.detector.extract_feat(input))
        cls_scores, bbox_preds = outs[0], outs[1]
        boxes, scores, labels, extra = [], [], [], []
        for level, (cls, reg) in enumerate(zip(cls_scores, bbox_preds)):
            n, c, w = cls.shape[0], cls.shape[1], cls.shape[3]
            s = cls.sigmoid().permute(0, 2, 3, 1).reshape(n, -1)
            k = self.nms_pre if self.nms_pre > 0 else s.shape[1]
            top, idx = _topk(s, k)
            prior = torch.div(idx, c, rounding_mode='floor')
            labels.append(idx - prior * c)
            sx, sy = self.strides[level]
            px = (prior % w).to(s.dtype) * sx + self.offset * sx
            py = torch.div(prior, w, rounding_mode='floor').to(s.dtype) * sy + self.offset * sy
            d = _gather(reg.permute(0, 2, 3, 1).reshape(n, -1, 4), prior)
            boxes.append(_clip(torch.stack([px - d[..., 0], py - d[..., 1], px + d[..., 2],
                                            py + d[..., 3]], -1), height, width))
            scores.append(top)
            if self.with_masks:
                kernels = _gather(outs[2][level].permute(0, 2, 3, 1).reshape(
                    n, -1, self.head.num_gen_params), prior)
                extra.append(torch.cat([kernels, torch.stack(
                    [px, py, torch.full_like(px, sx)], -1)], -1))
        boxes, scores, labels = torch.cat(boxes, 1), torch.cat(scores, 1), torch.cat(labels, 1)
        scores = _min_size_filter(boxes, scores, self.min_size)
        keep = _class_nms(boxes, scores, labels, self.iou_thr, self.score_thr,
                          self.max_per_img)
        idx, top, valid = _select(keep, scores, self.max_per_img)
        dets, det_labels = _pack(boxes, labels, idx, top, valid)
        if not self.with_masks:
            return dets, det_labels
        chosen = _gather(torch.cat(extra, 1), idx)
        return dets, det_labels, self._masks(outs[3], chosen)

    def _masks(self, mask_feat: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """RTMDet-Ins' dynamic convolutions for each chosen candidate, as batched matrix
        products: (N, K, H, W) mask probabilities at input size."""
        head = self.head
        n, _, h, w = mask_feat.shape
        stride = self.strides[0][0]
        kernels, px, py, pstride = chosen[..., :-3], chosen[..., -3], chosen[..., -2], \
            chosen[..., -1]
        ys = torch.arange(h, dtype=mask_feat.dtype) * stride + self.offset * stride
        xs = torch.arange(w, dtype=mask_feat.dtype) * stride + self.offset * stride
        scale = (pstride * 8).unsqueeze(-1)
        rel_x = (px.unsqueeze(-1) - xs.repeat(h).unsqueeze(0).unsqueeze(0)) / scale
        rel_y = (py.unsqueeze(-1) - ys.repeat_interleave(w).unsqueeze(0).unsqueeze(0)) / scale
        k = kernels.shape[1]
        feat = mask_feat.reshape(n, 1, -1, h * w).expand(n, k, mask_feat.shape[1], h * w)
        x = torch.cat([rel_x.unsqueeze(2), rel_y.unsqueeze(2), feat], 2)
        splits = torch.split(kernels, list(head.weight_nums) + list(head.bias_nums), dim=-1)
        layers = len(head.weight_nums)
        for i in range(layers):
            weight, bias = splits[i], splits[layers + i]
            out_ch = head.dyconv_channels if i < layers - 1 else 1
            x = weight.reshape(n, k, out_ch, -1) @ x + bias.reshape(n, k, out_ch, 1)
            if i < layers - 1:
                x = F.relu(x)
        logits = F.interpolate(x.reshape(n, k, h, w), scale_factor=float(stride),
                               mode='bilinear', align_corners=False)
        return logits.sigmoid()


class TwoStageEnd2End(_End2End):
    """RPN + standard RoI head (Faster / Mask R-CNN): anchors and delta boxes in the RPN, level-
    aware proposal NMS, RoIAlign by FPN level, the bbox head's class-specific boxes and
    class-aware NMS, then the FCN mask head on the detections (28x28 probabilities)."""
    family = 'two-stage'

    def __init__(self, detector: nn.Module):
        super().__init__(detector)
        rpn, roi = detector.rpn_head, detector.roi_head
        if type(roi).__name__ != 'StandardRoIHead' or \
                type(rpn.bbox_coder).__name__ != 'DeltaXYWHBBoxCoder' or \
                type(roi.bbox_head.bbox_coder).__name__ != 'DeltaXYWHBBoxCoder' or \
                not rpn.use_sigmoid_cls:
            raise UnsupportedDetector(f'{type(roi).__name__} with {type(rpn).__name__}: the '
                                      f'two-stage graph is for RPN + StandardRoIHead detectors')
        if roi.bbox_head.custom_cls_channels or getattr(roi.bbox_head, 'reg_class_agnostic',
                                                         False):
            raise UnsupportedDetector('class-agnostic or custom-activation bbox heads')
        self.rpn, self.roi = rpn, roi
        self.mask_kind = MASK_KIND_ROI if roi.with_mask else None
        gen = rpn.prior_generator
        # base anchors: constants of the graph; the grid shifts are computed from the sizes
        for i, base in enumerate(gen.base_anchors):
            self.register_buffer(f'base_anchors_{i}', base.clone(), persistent=False)
        self.strides = [tuple(s) for s in gen.strides]
        self.rpn_cfg, self.rcnn_cfg = rpn.test_cfg, roi.test_cfg
        for cfg in (self.rpn_cfg, self.rcnn_cfg):
            if cfg.nms.get('type', 'nms') != 'nms':
                raise UnsupportedDetector(f"test_cfg nms type {cfg.nms.type!r}: only 'nms'")

    @staticmethod
    def _coder(coder):
        """The delta coder's settings; mmdet's callers leave ``wh_ratio_clip`` at decode()'s
        default, 16 / 1000."""
        if coder.add_ctr_clamp or not coder.clip_border:
            raise UnsupportedDetector('DeltaXYWHBBoxCoder with add_ctr_clamp or without '
                                      'clip_border')
        return dict(means=coder.means, stds=coder.stds, wh_ratio_clip=16 / 1000)

    def _proposals(self, feats, height, width):
        """RPN: (N, M, 4) boxes and scores of the proposals kept, and the NMS selection."""
        cls_scores, bbox_preds = self.rpn(feats)
        cfg = self.rpn_cfg
        boxes, scores, levels = [], [], []
        for level, (cls, reg) in enumerate(zip(cls_scores, bbox_preds)):
            n, a, w = cls.shape[0], cls.shape[1], cls.shape[3]
            s = cls.sigmoid().permute(0, 2, 3, 1).reshape(n, -1)
            nms_pre = cfg.get('nms_pre', -1)
            top, idx = _topk(s, nms_pre if nms_pre > 0 else s.shape[1])
            pos = torch.div(idx, a, rounding_mode='floor')
            base = getattr(self, f'base_anchors_{level}')[idx - pos * a]
            sx, sy = self.strides[level]
            shift_x = (pos % w).to(s.dtype) * sx
            shift_y = torch.div(pos, w, rounding_mode='floor').to(s.dtype) * sy
            anchors = base + torch.stack([shift_x, shift_y, shift_x, shift_y], -1)
            deltas = _gather(reg.permute(0, 2, 3, 1).reshape(n, -1, 4), idx)
            boxes.append(_delta2bbox(anchors, deltas, height=height, width=width,
                                     **self._coder(self.rpn.bbox_coder)))
            scores.append(top)
            levels.append(torch.full_like(idx, level))
        boxes, scores, levels = torch.cat(boxes, 1), torch.cat(scores, 1), torch.cat(levels, 1)
        scores = _min_size_filter(boxes, scores, cfg.get('min_bbox_size', -1))
        # no score threshold in the RPN: every proposal (score >= 0) takes part
        keep = _class_nms(boxes, scores, levels, cfg.nms.iou_threshold, -0.5, cfg.max_per_img)
        return boxes, keep

    def _roi_feats(self, extractor, feats, rois: torch.Tensor,
                   batch: torch.Tensor) -> torch.Tensor:
        """mmdet's SingleRoIExtractor: each RoI pooled (RoIAlign) from the FPN level its scale
        maps to."""
        layer = extractor.roi_layers[0]
        if getattr(layer, 'pool_mode', 'avg') != 'avg' or not getattr(layer, 'aligned', True):
            raise UnsupportedDetector('RoIAlign with pool_mode avg and aligned=True only')
        num_levels = len(extractor.featmap_strides)
        scale = torch.sqrt((rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1]))
        target = torch.floor(torch.log2(scale / extractor.finest_scale + 1e-6))
        target = target.clamp(min=0, max=num_levels - 1).long()
        boxes = torch.cat([batch.unsqueeze(1).to(rois.dtype), rois], 1)
        out_h, out_w = layer.output_size
        out = rois.new_zeros((rois.shape[0], extractor.out_channels, out_h, out_w))
        for level in range(num_levels):
            inds = torch.nonzero(target == level).squeeze(1)
            pooled = roi_align(feats[level], boxes[inds], (out_h, out_w),
                               spatial_scale=1.0 / extractor.featmap_strides[level],
                               sampling_ratio=extractor.roi_layers[level].sampling_ratio,
                               aligned=True)
            out = out.index_put((inds,), pooled)
        return out

    def forward(self, input: torch.Tensor):
        height, width = input.shape[2], input.shape[3]
        n = input.shape[0]
        feats = self.detector.extract_feat(input)
        proposals, keep = self._proposals(feats, height, width)
        batch, rois = keep[:, 0], proposals[keep[:, 0], keep[:, 2]]
        bbox_head = self.roi.bbox_head
        cls_score, bbox_pred = bbox_head(self._roi_feats(
            self.roi.bbox_roi_extractor, feats[:len(self.roi.bbox_roi_extractor.featmap_strides)],
            rois, batch))
        num_classes = bbox_head.num_classes
        probs = F.softmax(cls_score, dim=-1)[:, :num_classes]          # (S, C)
        deltas = bbox_pred.reshape(-1, num_classes, 4)
        boxes = _delta2bbox(rois.unsqueeze(1).expand(-1, num_classes, 4), deltas,
                            height=height, width=width, **self._coder(bbox_head.bbox_coder))
        # every (RoI, class) pair a candidate of its own image: other images' pairs score -1
        pair_boxes = boxes.reshape(1, -1, 4).expand(n, -1, 4)
        own = batch.unsqueeze(1).expand(-1, num_classes).reshape(1, -1) == \
            torch.arange(n).unsqueeze(1)
        pair_scores = torch.where(own, probs.reshape(1, -1), torch.full_like(own, -1.0,
                                                                              dtype=probs.dtype))
        pair_labels = torch.arange(num_classes).repeat(rois.shape[0]).unsqueeze(0).expand(n, -1)
        cfg = self.rcnn_cfg
        keep = _class_nms(pair_boxes, pair_scores, pair_labels, cfg.nms.iou_threshold,
                          cfg.score_thr, cfg.max_per_img)
        idx, top, valid = _select(keep, pair_scores, cfg.max_per_img)
        dets, labels = _pack(pair_boxes, pair_labels, idx, top, valid)
        if not self.mask_kind:
            return dets, labels
        k = dets.shape[1]
        det_batch = torch.arange(n).unsqueeze(1).expand(n, k).reshape(-1)
        mask_rois = dets[..., :4].reshape(-1, 4)
        extractor = self.roi.mask_roi_extractor
        mask_pred = self.roi.mask_head(self._roi_feats(
            extractor, feats[:len(extractor.featmap_strides)], mask_rois, det_batch))
        if not self.roi.mask_head.class_agnostic:
            channel = labels.reshape(-1).clamp(min=0)
            mask_pred = torch.gather(mask_pred, 1, channel.reshape(-1, 1, 1, 1).expand(
                -1, 1, mask_pred.shape[2], mask_pred.shape[3]))
        masks = mask_pred.sigmoid().reshape(n, k, mask_pred.shape[2], mask_pred.shape[3])
        return dets, labels, masks


def end2end_model(detector: nn.Module) -> _End2End:
    """The end-to-end module of an mmdet detector; :class:`UnsupportedDetector` names the
    supported families otherwise."""
    supported = '; supported: ' + ', '.join(FAMILIES.values())
    if hasattr(detector, 'rpn_head') and hasattr(detector, 'roi_head'):
        try:
            return TwoStageEnd2End(detector)
        except UnsupportedDetector as e:
            raise UnsupportedDetector(f'{type(detector).__name__}: {e}{supported}') from None
    head = getattr(detector, 'bbox_head', None)
    if head is not None and type(head).__name__.startswith('RTMDet'):
        try:
            return DenseEnd2End(detector)
        except UnsupportedDetector as e:
            raise UnsupportedDetector(f'{type(detector).__name__}: {e}{supported}') from None
    what = type(head).__name__ if head is not None else 'no bbox_head'
    raise UnsupportedDetector(f'{type(detector).__name__} ({what}) has no end-to-end export'
                              f'{supported}')
