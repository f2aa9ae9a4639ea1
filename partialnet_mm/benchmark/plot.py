"""Speed against size from the JSON files ``tools/benchmark.py --json`` writes: PartialNet
beside FasterNet and ResNet-50, the shape of the paper's figure 2.

One file per variant (``docs/bench/cpu_{t0,t2,s}.json``, ``docs/bench/gpu/graph_*.json``);
each point is one row of one file. PartialNet is plotted at the parameters of its training
graph (the paper's and the model index's count; the fused graph has a little fewer).
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

from .peers import FUSED, ROLES, UNFUSED

# y: (axis label, lower is better?)
METRICS = {
    'cpu_latency_ms': ('CPU latency (ms, 1 thread, batch 1)', True),
    'gpu_images_per_s': ('GPU throughput (images/s)', False),
}


def row_role(row: dict) -> str:
    """A row's role; files written before rows carried one are read by the model's name."""
    if 'role' in row:
        return row['role']
    # 'unfused' before 'fused': both names end in ' fused'
    for role in sorted(ROLES.values(), key=lambda r: r.name != UNFUSED):
        if role.named(row['model']):
            return role.name
    return 'other'


def load_results(paths: Sequence[str]) -> List[dict]:
    """The classifier results of ``paths``, rows keyed by role; a clear error per bad file."""
    results = []
    for path in paths:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f'{path}: not a benchmark JSON file ({err})') from None
        if not isinstance(data, dict) or data.get('kind') != 'classifier' or 'rows' not in data:
            raise ValueError(f'{path}: not a classifier table of tools/benchmark.py --json '
                             f"(kind {data.get('kind') if isinstance(data, dict) else None!r})")
        rows = {row_role(r): r for r in data['rows']}
        unknown = sorted(set(rows) - set(ROLES))
        if unknown:
            raise ValueError(f'{path}: rows of unknown roles {unknown} (known: {list(ROLES)}): '
                             f'add them to partialnet_mm.benchmark.peers.ROLES to plot them')
        if 'fused' not in rows:
            raise ValueError(f'{path}: no fused PartialNet row')
        results.append(dict(path=path, variant=data.get('variant', '?'), rows=rows,
                            env=data.get('env', {}), settings=data.get('settings', {})))
    return results


def model_size(result: dict) -> float:
    """PartialNet's parameters (M) in one result: its training graph's, as the paper counts."""
    rows = result['rows']
    return rows.get('unfused', rows['fused'])['params_m']


def pick_metric(results: List[dict], metric: Optional[str] = None) -> str:
    candidates = [metric] if metric else list(METRICS)
    for key in candidates:
        if key not in METRICS:
            raise ValueError(f'unknown metric {key!r}; choose from {sorted(METRICS)}')
        if all(key in r['rows']['fused'] for r in results):
            return key
    raise ValueError(f"the files do not all have {' or '.join(candidates)} for the fused model: "
                     + ', '.join(r['path'] for r in results))


def plot_speed_vs_params(paths: Sequence[str], out_file: str, metric: Optional[str] = None,
                         title: Optional[str] = None) -> str:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    results = sorted(load_results(paths), key=model_size)
    metric = pick_metric(results, metric)
    ylabel, lower_is_better = METRICS[metric]
    series: Dict[str, list] = {role: [] for role in ROLES}
    for r in results:
        size = model_size(r)
        for role, row in r['rows'].items():
            if metric in row:
                x = size if role in (FUSED, UNFUSED) else row['params_m']
                series[role].append((x, row[metric], r['variant']))
    # a model that is the same in every file (ResNet-50): one point, the median of its timings
    for role, points in series.items():
        if ROLES[role].one_size and points:
            values = sorted(v for _, v, _ in points)
            series[role] = [(points[0][0], values[len(values) // 2], '')]

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for role, points in series.items():
        if not points:
            continue
        style = ROLES[role]
        xs, ys, names = zip(*points)
        ax.plot(xs, ys, linestyle=style.line or 'none', marker=style.marker, color=style.colour,
                label=style.legend, markersize=10 if style.marker == '*' else 6,
                alpha=0.55 if role == UNFUSED else 1)
        if role in (FUSED, 'fasternet'):
            for x, y, name in points:
                ax.annotate(name, (x, y), textcoords='offset points', xytext=(5, -10 if
                            role == FUSED else 4), fontsize=8, color=style.colour)
    ax.set_xlabel('parameters (M)')
    ax.set_ylabel(ylabel + (' - lower is better' if lower_is_better else ' - higher is better'))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    env, settings = results[0]['env'], results[0]['settings']
    if metric == 'gpu_images_per_s':
        where = (f"{env.get('gpu', 'GPU')}, batch {settings.get('gpu_batch')}"
                 + (', AMP' if settings.get('amp') else ', fp32')
                 + (', CUDA graphs' if settings.get('cuda_graph') else ''))
    else:
        where = env.get('cpu', 'CPU')
    ax.set_title(title or f"{where}, torch {env.get('torch', '?')}, "
                          f"{settings.get('input_size', 224)}px", fontsize=9)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file)
    plt.close(fig)
    return out_file
