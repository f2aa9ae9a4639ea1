#!/usr/bin/env python
"""Old against new fused graph, side by side in one process (a speed change's A/B).

    git worktree add /tmp/old <old-commit>
    .venv/bin/python tools/benchmark_ab.py --old /tmp/old t0 t2 s  # classifiers, 224x224
    .venv/bin/python tools/benchmark_ab.py --old /tmp/old --det configs/mask_rcnn_partialnet_s_1x.py

The unfused model is built (random weights, randomised BN statistics) with this checkout's
code; the old checkout's unfused model gets the same weights; each is fused by its own
code and checked against the unfused one (<= 1e-4). Then old fused, new fused and a second
new fused copy (the A/A control that shows the noise of this machine) run in interleaved
turns, one call each at a time: CPU, 1 thread, batch 1 (classifiers) or all threads
(detectors). Reported: the median time of each, and new / old and new copy / new over the
calls made side by side (median and interquartile range): the A/A row is the noise.
"""
import argparse
import copy
import importlib
import json
import os.path as osp
import statistics
import sys
import types

import torch

from partialnet_mm.timing import record_interleaved
from partialnet_mm.deploy import check_fused, fused_copy, randomize_norms

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_package(root: str, alias: str):
    """The ``partialnet_mm.models`` package of another checkout, imported as
    ``alias + '.models'``: the checkout's ``partialnet_mm`` folder becomes the package
    ``alias`` without running its ``__init__`` (which would register the old classes into
    the frameworks' registries), so the models' relative imports resolve inside that
    checkout."""
    path = osp.join(root, 'partialnet_mm')
    if not osp.isfile(osp.join(path, 'models', '__init__.py')):
        raise SystemExit(f'--old: no partialnet_mm/models package under {root}')
    package = types.ModuleType(alias)
    package.__path__ = [path]
    package.__package__ = alias
    sys.modules[alias] = package
    return importlib.import_module(f'{alias}.models')


def quartiles(values):
    q = statistics.quantiles(values, n=4)
    return q[0], statistics.median(values), q[2]


def report(label: str, times: dict) -> dict:
    """new / old and the A/A control (new copy / new) from the calls made side by side."""
    old, new, copy_ = times['old'], times['new'], times['new (copy)']
    ratio = quartiles([n / o for n, o in zip(new, old, strict=True)])
    control = quartiles([c / n for c, n in zip(copy_, new, strict=True)])
    med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    print(f'| {label} | {med["old"]:.2f} | {med["new"]:.2f} | {ratio[1]:.3f} '
          f'({ratio[0]:.3f}-{ratio[2]:.3f}) | {control[1]:.3f} ({control[0]:.3f}-{control[2]:.3f})'
          f' |', flush=True)
    return dict(label=label, median_ms=med, new_over_old=ratio, control=control)


def interleaved(fns: dict, warmup: int, runs: int) -> dict:
    """Per model: the seconds of each of ``runs`` calls, the models called in turn."""
    return record_interleaved(fns, warmup, runs, rounds=runs)


def classifier_ab(old_pkg, arch: str, args) -> None:
    from partialnet_mm.models import PartialNetClassifier

    torch.manual_seed(0)
    unfused = randomize_norms(PartialNetClassifier(arch)).eval()
    old_unfused = old_pkg.PartialNetClassifier(arch).eval()
    old_unfused.load_state_dict(unfused.state_dict())
    x = torch.randn(1, 3, args.input_size, args.input_size)
    models = {'old': fused_copy(old_unfused), 'new': fused_copy(unfused)}
    models['new (copy)'] = fused_copy(unfused)
    for name, m in models.items():
        check_fused(unfused, m, x, what=f'{name} fused {arch}')
    torch.set_num_threads(1)
    times = interleaved({n: (lambda m=m: m(x)) for n, m in models.items()}, args.warmup,
                        args.runs)
    return report(f'PartialNet-{arch.upper()} 1x3x{args.input_size}x{args.input_size}, '
                  f'1 thread', times)


def detector_ab(old_pkg, config: str, args) -> None:
    from mmdet.structures import DetDataSample
    from mmengine.config import Config

    from partialnet_mm.mmconfig import build_model

    torch.manual_seed(0)
    cfg = Config.fromfile(config)
    unfused = build_model(cfg, backbone_weights=False).eval()
    randomize_norms(unfused.backbone)
    bb = cfg.model.backbone
    kwargs = {k: v for k, v in bb.items() if k not in ('type', 'init_cfg', 'drop_path_rate')}
    old_unfused = copy.deepcopy(unfused)
    old_unfused.backbone = old_pkg.PartialNet(**kwargs).eval()
    old_unfused.backbone.load_state_dict(unfused.backbone.state_dict())
    h, w = args.det_shape
    x = torch.randn(1, 3, h, w)
    models = {'old': fused_copy(old_unfused), 'new': fused_copy(unfused)}
    models['new (copy)'] = fused_copy(unfused)
    for name, m in models.items():
        check_fused(unfused.backbone, m.backbone, x, what=f'{name} fused backbone')
    sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                         batch_input_shape=(h, w), scale_factor=(1.0, 1.0)))
    times = interleaved({n: (lambda m=m: m(x, [sample], mode='predict'))
                         for n, m in models.items()}, 1, args.det_runs)
    return report(f'Mask R-CNN {osp.basename(config)} 1x3x{h}x{w}, '
                  f'{torch.get_num_threads()} threads', times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('variants', nargs='*', default=[], help='t0 t1 t2 s m l')
    p.add_argument('--old', required=True, help='root of the old checkout (git worktree)')
    p.add_argument('--det', metavar='CONFIG', help='a Mask R-CNN config of ours')
    p.add_argument('--det-shape', type=int, nargs=2, default=(800, 1216), metavar=('H', 'W'),
                   help='--det input size (default 800 1216)')
    p.add_argument('--det-runs', type=int, default=6, help='--det: timed calls per model')
    p.add_argument('--input-size', type=int, default=224, help='classifier input (default 224)')
    p.add_argument('--runs', type=int, default=150,
                   help='timed calls per model, interleaved (default 150)')
    p.add_argument('--warmup', type=int, default=10, help='untimed calls first (default 10)')
    p.add_argument('--json', metavar='FILE', help='write the rows as JSON')
    args = p.parse_args(argv)
    if not args.variants and not args.det:
        p.error('name variants and/or --det CONFIG')
    old_pkg = load_package(osp.abspath(args.old), 'partialnet_old')
    print('| model | old fused (ms) | new fused (ms) | new / old (IQR) | '
          'A/A: new copy / new (IQR) |')
    print('|---|---|---|---|---|')
    threads = torch.get_num_threads()
    rows = [classifier_ab(old_pkg, arch, args) for arch in args.variants]
    if args.det:
        import partialnet_mm  # noqa: F401  (registration)
        torch.set_num_threads(threads)
        rows.append(detector_ab(old_pkg, args.det, args))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
