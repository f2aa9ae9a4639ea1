"""Parameter and FLOP counts of the PartialNet classifiers against the paper.

FLOPs are multiply-adds counted by mmengine's ``get_model_complexity_info`` (the
fvcore convention the paper and the authors' code use) on the training graph and
on the deployed graph (after ``switch_to_deploy``).
"""
import logging
from typing import Dict, List

import torch

from .models import PartialNetClassifier

# FACTS §2: the paper's table and the authors' code measured with PAT_sp on.
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


def count_flops(model: torch.nn.Module, input_size: int = 224) -> int:
    """Multiply-adds of one (1, 3, size, size) forward, by mmengine's counter."""
    from mmengine.analysis import get_model_complexity_info
    from mmengine.logging import MMLogger

    logger = MMLogger.get_instance('mmengine')
    level = logger.level
    logger.setLevel(logging.ERROR)  # "unsupported operator" warnings for element-wise ops
    try:
        result = get_model_complexity_info(model, input_shape=(3, input_size, input_size),
                                           show_table=False, show_arch=False)
    finally:
        logger.setLevel(level)
    return int(result['flops'])


def measure(arch: str, input_size: int = 224) -> Dict[str, float]:
    """Params (M) of the training graph, FLOPs (G) of the training and deployed graphs."""
    model = PartialNetClassifier(arch).eval()
    params = sum(p.numel() for p in model.parameters())
    flops_train = count_flops(model, input_size)
    model.switch_to_deploy()
    flops_deploy = count_flops(model, input_size)
    return dict(params=params / 1e6, flops_train=flops_train / 1e9,
                flops_deploy=flops_deploy / 1e9)


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
