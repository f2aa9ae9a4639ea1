"""Freeze DPConv: read learned split ratios from a checkpoint, write them as a plain
PartialNet setting (and the matching weights), and plot them (the paper's figure 7)."""
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Tuple

import torch

from .freeze import freeze_state_dict

_MIXER = re.compile(
    r'^(?P<backbone>.*?)stages\.(?P<stage>\d+)\.blocks\.(?P<block>\d+)\.token_mixer$')


def learned_split(state: Dict[str, torch.Tensor]
                  ) -> Tuple[List[List[float]], Dict[str, float], Dict[str, torch.Tensor]]:
    """From a DPConv PartialNet state dict (a classifier's or a backbone's):
    ``(partial_ratio per block, {layer: ratio}, frozen state dict)``."""
    frozen, ratios = freeze_state_dict(state)
    found = {}
    for name, ratio in ratios.items():
        match = _MIXER.match(name)
        if match is None:
            continue
        found.setdefault(match['backbone'], {})[(int(match['stage']), int(match['block']))] = ratio
    if not found:
        raise KeyError(f'the DPConv layers {sorted(ratios)[:3]} are not PartialNet blocks '
                       f'(stages.<i>.blocks.<j>.token_mixer)')
    if len(found) > 1:
        raise ValueError(f'more than one PartialNet backbone with DPConv gates: {sorted(found)}')
    (prefix, by_block), = found.items()
    stages = 1 + max(i for i, _ in by_block)
    setting = []
    for i in range(stages):
        blocks = sorted(j for s, j in by_block if s == i)
        if blocks != list(range(len(blocks))) or not blocks:
            raise ValueError(f'stage {i} of {prefix!r}: DPConv gates on blocks {blocks}; every '
                             f'block of every stage needs its own gates')
        setting.append([by_block[(i, j)] for j in blocks])
    return setting, ratios, frozen


def write_ratio_config(path: str, partial_ratio: List[List[float]], source: str,
                       base_config: Optional[str] = None) -> str:
    """A config that a plain PartialNet accepts; with ``base_config`` a complete one."""
    lines = [f'# Split ratios learned by DPConv ({source}), frozen for a plain PartialNet.',
             '# Written by tools/export_split_ratios.py.']
    if base_config:
        lines.append(f'_base_ = {osp.abspath(base_config)!r}')
    rows = ',\n    '.join(repr(row) for row in partial_ratio)
    lines += [f'partial_ratio = [\n    {rows},\n]',
              'model = dict(backbone=dict(partial_ratio=partial_ratio, dpconv=None))', '']
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write('\n'.join(lines))
    return path


def short_layer_name(name: str) -> str:
    match = _MIXER.match(name)
    return f's{int(match["stage"]) + 1}.b{int(match["block"]) + 1}' if match else name


def plot_ratios(series: Dict[str, Dict[str, float]], out: str, title: str = '') -> str:
    """Grouped bars of split ratio per layer (log2 axis), one colour per run."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    layers = list(next(iter(series.values())))
    for label, ratios in series.items():
        if list(ratios) != layers:
            raise ValueError(f'run {label!r} has different layers from the first run')
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(layers) + 2), 3.6))
    for n, (label, ratios) in enumerate(series.items()):
        xs = [i + (n - (len(series) - 1) / 2) * width for i in range(len(layers))]
        ax.bar(xs, [ratios[layer] for layer in layers], width, label=label)
    ax.set_yscale('log', base=2)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([short_layer_name(layer) for layer in layers], rotation=60, fontsize=8)
    ax.set_ylabel('learned split ratio (conv share)')
    ax.set_xlabel('layer (stage.block)')
    ax.set_title(title or 'DPConv: learned split ratio per layer')
    ax.grid(axis='y', alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
