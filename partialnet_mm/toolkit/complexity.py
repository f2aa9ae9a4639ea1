"""Parameter and FLOP counts of the PartialNet classifiers against the paper.

FLOPs are multiply-adds counted by mmengine's ``FlopAnalyzer`` (the counter behind its
``get_model_complexity_info``; the fvcore convention the paper and the authors' code
use) on the training graph and on the deployed graph (after ``switch_to_deploy``).
"""
import logging
from typing import Dict, List

import torch

from ..models import CHANNEL_ATTENTIONS, PartialNetClassifier

# The paper's variant table (appendix) and the authors' code (github haiduo/PartialNet)
# measured with PAT_sp on.
PAPER = {
    't0': dict(params=4.3, flops=0.25),
    't1': dict(params=7.8, flops=0.55),
    't2': dict(params=12.6, flops=1.03),
    's': dict(params=29.0, flops=2.71),
    'm': dict(params=61.3, flops=6.69),
    'l': dict(params=104.4, flops=11.91),
}
AUTHORS_CODE = {
    't0': dict(params=3.56, flops_train=0.247, flops_deploy=None),
    't1': dict(params=6.14, flops_train=0.546, flops_deploy=None),
    't2': dict(params=12.65, flops_train=1.087, flops_deploy=1.039),
    's': dict(params=28.98, flops_train=2.843, flops_deploy=2.716),
    'm': dict(params=61.37, flops_train=7.022, flops_deploy=6.693),
    'l': dict(params=104.47, flops_train=12.502, flops_deploy=11.909),
}


def sdpa_flop_jit(inputs, outputs) -> int:
    """Multiply-adds of ``aten::scaled_dot_product_attention``: ``q @ k^T`` and
    ``attn @ v``, the two matmuls the explicit form has (mmengine's counter has no
    handle for the fused op and would count it as zero)."""
    from mmengine.analysis.jit_handles import get_shape

    q, k, v = (get_shape(t) for t in inputs[:3])
    batch = 1
    for size in q[:-2]:
        batch *= size
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def _complexity(model: torch.nn.Module, inputs: tuple) -> dict:
    """FLOPs and params by mmengine's counter (the ``FlopAnalyzer`` behind its
    ``get_model_complexity_info``), with fused attention counted as its matmuls and
    without the per-operator warnings ("unsupported operator" for element-wise ops)."""
    from mmengine.analysis import FlopAnalyzer, parameter_count
    from mmengine.logging import MMLogger

    logger = MMLogger.get_instance('mmengine')
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with torch.no_grad():
            analyzer = FlopAnalyzer(model, inputs)
            analyzer.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            return dict(flops=analyzer.total(), params=parameter_count(model)[''],
                        by_operator=dict(analyzer.by_operator()),
                        by_module=dict(analyzer.by_module()))
    finally:
        logger.setLevel(level)


def count_flops(model: torch.nn.Module, input_size: int = 224) -> int:
    """Multiply-adds of one (1, 3, size, size) forward, by mmengine's counter."""
    inputs = (torch.zeros(1, 3, input_size, input_size, device=next(model.parameters()).device),)
    return int(_complexity(model, inputs)['flops'])


def measure(arch: str, input_size: int = 224, **model_kwargs) -> Dict[str, float]:
    """Params (M) of the training graph, FLOPs (G) of the training and deployed graphs
    of ``PartialNetClassifier(arch, **model_kwargs)``."""
    model = PartialNetClassifier(arch, **model_kwargs).eval()
    params = sum(p.numel() for p in model.parameters())
    flops_train = count_flops(model, input_size)
    model.switch_to_deploy()
    flops_deploy = count_flops(model, input_size)
    return dict(params=params / 1e6, flops_train=flops_train / 1e9,
                flops_deploy=flops_deploy / 1e9)


# Paper table 12: PartialNet-T2 top-1 with the partial attention branches it tried.
PAPER_T2_ATTENTION_TOP1 = {'srm': 79.6, 'se': 79.8, 'gaussian': 80.2}


def attention_table(arch: str = 't2', input_size: int = 224) -> List[Dict[str, float]]:
    """Params (M) and FLOPs (G, training and deployed graph) of a PartialNet classifier
    with each PAT_ch attention branch of :data:`CHANNEL_ATTENTIONS` (the paper's table 12
    layout; ``paper_top1`` is None for a branch the paper did not try)."""
    return [dict(attention=name, label=attention.label,
                 **measure(arch, input_size, channel_attention=name),
                 paper_top1=PAPER_T2_ATTENTION_TOP1.get(name))
            for name, attention in CHANNEL_ATTENTIONS.items()]


def fidelity_table(archs=tuple(PAPER), input_size: int = 224) -> List[Dict[str, float]]:
    rows = []
    for arch in archs:
        ours = measure(arch, input_size)
        paper, authors = PAPER[arch], AUTHORS_CODE[arch]
        rows.append(dict(
            arch=arch, **ours,
            paper_params=paper['params'], paper_flops=paper['flops'],
            authors_params=authors['params'], authors_flops_train=authors['flops_train'],
            authors_flops_deploy=authors['flops_deploy'],
            params_vs_paper=100 * (ours['params'] / paper['params'] - 1),
            flops_deploy_vs_paper=100 * (ours['flops_deploy'] / paper['flops'] - 1),
            flops_train_vs_paper=100 * (ours['flops_train'] / paper['flops'] - 1),
        ))
    return rows


# Paper table 2 (Mask R-CNN 1x, 1280x800): params (M), FLOPs (G).
PAPER_MASK_RCNN = {
    'r50': dict(params=44.2, flops=253),
    's': dict(params=46.9, flops=216),
    'm': dict(params=78.2, flops=295),
    'l': dict(params=122.0, flops=397),
}


def detector_complexity(cfg, height: int = 800, width: int = 1280, deploy: bool = False,
                        num_proposals: int = 1000) -> Dict[str, float]:
    """Params (M) and FLOPs (G) of an mmdet detector config on one ``height x width`` image,
    counted with mmengine's counter (what mmdet 3.x's ``get_flops.py`` uses); ``backbone_flops``
    is the backbone's share.

    A one-stage detector (RTMDet, RetinaNet: no ``roi_head``) is counted on its ``tensor``
    forward (backbone, neck, head; no NMS), as mmdet's ``get_flops.py`` counts it. A two-stage
    detector is counted on the forward mmdet 2.x's ``forward_dummy`` counted: backbone, neck,
    RPN head, then the RoI head on a fixed set of ``num_proposals`` boxes (the mask head on
    the first 100, as mmdet does). The ``tensor`` forward of mmdet 3.x would instead run the
    RPN of a randomly initialised model, whose number of boxes surviving NMS, and so the head
    FLOPs, changes from model to model. Params are those of the training graph; with
    ``deploy`` the FLOPs are counted after the backbone's ``switch_to_deploy()`` (the paper's
    convention for classification).
    """
    from mmengine.structures import InstanceData

    from ..mmconfig import build_model, is_one_stage

    model = build_model(cfg, backbone_weights=False).eval()
    params = sum(p.numel() for p in model.parameters())
    backbone_params = sum(p.numel() for p in model.backbone.parameters())
    if deploy and hasattr(model.backbone, 'switch_to_deploy'):
        model.backbone.switch_to_deploy()
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(num_proposals, 2, generator=g) * torch.tensor([width, height]) * 0.8
    wh = torch.rand(num_proposals, 2, generator=g) * torch.tensor([width, height]) * 0.2 + 8
    proposals = InstanceData(bboxes=torch.cat([xy, xy + wh], dim=1))
    one_stage = is_one_stage(cfg.model)

    class _Dummy(torch.nn.Module):
        def __init__(self, detector):
            super().__init__()
            self.detector = detector

        def forward(self, x):
            feats = self.detector.extract_feat(x)
            if one_stage:
                return self.detector.bbox_head(feats)
            rpn = self.detector.rpn_head(feats)
            return rpn, self.detector.roi_head(feats, [proposals])

    result = _complexity(_Dummy(model), (torch.zeros(1, 3, height, width),))
    return dict(params=params / 1e6, flops=result['flops'] / 1e9,
                backbone_params=backbone_params / 1e6,
                backbone_flops=result['by_module']['detector.backbone'] / 1e9,
                attention_flops=result['by_operator'].get('scaled_dot_product_attention', 0) / 1e9)


def format_table(rows: List[Dict[str, float]]) -> str:
    def f(v, spec):
        return '-' if v is None else format(v, spec)

    head = ('| variant | params (M) | paper | authors | diff vs paper | FLOPs train (G) | authors '
            '| FLOPs deploy (G) | authors | paper | deploy vs paper | train vs paper |')
    lines = [head, '|' + '---|' * 12]
    for r in rows:
        lines.append(
            f"| {r['arch'].upper()} | {r['params']:.2f} | {r['paper_params']:.1f} | "
            f"{r['authors_params']:.2f} | {r['params_vs_paper']:+.1f}% | {r['flops_train']:.3f} | "
            f"{f(r['authors_flops_train'], '.3f')} | {r['flops_deploy']:.3f} | "
            f"{f(r['authors_flops_deploy'], '.3f')} | {r['paper_flops']:.2f} | "
            f"{r['flops_deploy_vs_paper']:+.1f}% | {r['flops_train_vs_paper']:+.1f}% |")
    return '\n'.join(lines)
