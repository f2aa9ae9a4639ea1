"""A learned split judged (tools/dpconv_digits.py): the DPConv classifier and the plain
classifier frozen from it evaluated on the config's test set, and the conv cost of the learned
split against the budget it was trained for (the formula of :mod:`.losses`)."""
from typing import Dict, List, Sequence

import torch

from ..checkpoint import read_checkpoint
from .export import learned_split, short_layer_name
from .losses import budget_cost, conv_cost


@torch.no_grad()
def top1(model, dataset, batch_size: int = 120) -> float:
    """Top-1 accuracy of an mmpretrain classifier (its ``test_step``) on ``dataset``."""
    from mmengine.dataset import default_collate

    model.eval()
    correct = 0
    for start in range(0, len(dataset), batch_size):
        batch = default_collate([dataset[i] for i in range(start, min(start + batch_size,
                                                                      len(dataset)))])
        for sample in model.test_step(batch):
            correct += int(sample.pred_label.item() == sample.gt_label.item())
    return correct / len(dataset)


def split_cost(state: Dict[str, torch.Tensor], channels: Sequence[int], budget: float) -> dict:
    """The learned split of a DPConv state dict (``partial_ratio`` per block, ratio per layer)
    and its conv cost against the budget ``b`` (``channels``: the backbone's per stage)."""
    setting, ratios, _ = learned_split(state)
    layers = [(c, r) for row, c in zip(setting, channels, strict=True) for r in row]
    cost = conv_cost(c * r for c, r in layers)
    limit = budget_cost((c for c, _ in layers), budget)
    return dict(partial_ratio=setting, ratios=ratios, cost=cost, budget_cost=limit,
                budget_met=cost <= limit)


def evaluate_learned_split(config: str, budget: float, checkpoint: str, ratio_config: str,
                           frozen_checkpoint: str) -> dict:
    """The DPConv classifier of ``config`` with ``checkpoint``, and the plain classifier of
    ``ratio_config`` (tools/export_split_ratios.py's output) with ``frozen_checkpoint``
    (loaded strictly), on the config's test set; with :func:`split_cost`."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS, MODELS

    cfg = Config.fromfile(config)
    cfg.model.dpconv_loss.budget = budget
    init_default_scope('mmpretrain')
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    state = read_checkpoint(checkpoint)[1]
    learned = MODELS.build(cfg.model)
    learned.load_state_dict(state)
    frozen_cfg = Config.fromfile(ratio_config)
    frozen_cfg.model.type = 'ImageClassifier'
    frozen_cfg.model.pop('dpconv_loss', None)
    plain = MODELS.build(frozen_cfg.model)
    plain.load_state_dict(read_checkpoint(frozen_checkpoint)[1])  # strict
    return dict(budget=budget, accuracy=top1(learned, dataset),
                frozen_accuracy=top1(plain, dataset),
                **split_cost(state, learned.backbone.channels, budget))


def results_tables(results: List[dict]) -> str:
    """Accuracy and cost per budget, then the ratio of every layer per budget (markdown)."""
    lines = ['| budget b | top-1 (DPConv) | top-1 (frozen plain) | conv cost / budget | '
             'budget met | train time (s) |', '|---|---|---|---|---|---|']
    for r in results:
        lines.append(f'| {r["budget"]:g} | {100 * r["accuracy"]:.2f}% | '
                     f'{100 * r["frozen_accuracy"]:.2f}% | {r["cost"] / r["budget_cost"]:.3f} | '
                     f'{"yes" if r["budget_met"] else "NO"} | {r.get("seconds", 0):.0f} |')
    lines += ['', '| layer | ' + ' | '.join(f'b={r["budget"]:g}' for r in results) + ' |',
              '|---|' + '---|' * len(results)]
    for layer in results[0]['ratios']:
        lines.append(f'| {short_layer_name(layer)} | '
                     + ' | '.join(f'1/{1 / r["ratios"][layer]:g}' for r in results) + ' |')
    return '\n'.join(lines)
