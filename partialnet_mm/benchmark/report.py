"""Tables: Markdown pipe tables drawn by rich (mmengine's dependency), for the terminal and
for pasting into the docs as they are."""
import io
from typing import Iterable, Sequence

from rich import box
from rich.console import Console
from rich.table import Table


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table of ``rows`` (cells turned to text as they are) under ``headers``."""
    table = Table(box=box.MARKDOWN)
    for header in headers:
        table.add_column(header, overflow='fold')
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    out = io.StringIO()
    Console(file=out, width=10000, color_system=None, legacy_windows=False).print(table)
    return '\n'.join(line.rstrip() for line in out.getvalue().splitlines()).strip('\n')


# the columns a benchmark row may have: key, title, format
COLUMNS = (('params_m', 'params (M)', '.2f'),
           ('ops_per_forward', 'ops / forward', 'd'),
           ('cpu_latency_ms', 'CPU latency (ms, 1 thread, batch 1)', '.2f'),
           ('cpu_images_per_s', 'CPU images/s ({cpu_throughput})', '.3g'),
           ('gpu_images_per_s', 'GPU images/s ({gpu_throughput})', '.0f'))


def column_context(result: dict) -> dict:
    """What the column titles say about how throughput was measured."""
    s = result['settings']
    if result['kind'] == 'classifier':
        return dict(cpu_throughput=f'{s["throughput_threads"]} threads, batch '
                                   f'{s["throughput_batch"]}',
                    gpu_throughput=f'batch {s["gpu_batch"]}{", AMP" if s["amp"] else ""}')
    return dict(cpu_throughput=f'{s["threads"]} threads, {s["height"]}x{s["width"]}',
                gpu_throughput=f'batch 1, {s["height"]}x{s["width"]}')


def format_result(result: dict) -> str:
    """A benchmark result (``benchmark_classifier`` / ``benchmark_detector``) as a table, the
    fused == unfused check, the ratios and the machine."""
    rows = result['rows']
    cols = [c for c in COLUMNS if any(c[0] in r for r in rows)]
    context = column_context(result)
    table = markdown_table(
        ['model'] + [title.format(**context) for _, title, _ in cols],
        [[r['model']] + [format(r[k], f) if k in r else '-' for k, _, f in cols] for r in rows])
    lines = [table, '', f'fused vs unfused max abs diff (fp32): {result["fused_max_abs_diff"]:.2e}']
    lines += [f'{k}: {v:.3f}' for k, v in result['ratios'].items()]
    env = result['env']
    lines.append(f'torch {env["torch"]}, {env["cpu"]} ({env["cpu_count"]} CPUs)'
                 + (f', {env["gpu"]}' if 'gpu' in env else ', no GPU'))
    return '\n'.join(lines)


def format_runtimes(result: dict) -> str:
    """A runtime table (``benchmark_runtimes``): one row per runtime and model, the checks,
    the fused model's latency ratios per runtime, and the machine."""
    s = result['settings']
    size = f"{s['height']}x{s['width']}"
    table = markdown_table(
        ['runtime', 'model', f'CPU latency (ms, 1 thread, batch 1, {size})',
         f"CPU images/s ({s['throughput_threads']} threads, batch {s['throughput_batch']})"],
        [[r['runtime'], r['model'], format(r['cpu_latency_ms'], '.2f'),
          format(r['cpu_images_per_s'], '.3g')] for r in result['rows']])
    lines = [table, '', f"exporter: {s['exporter']}, {s['input']}; every export checked "
                        f"against PyTorch (max abs diff "
                        f"{max(result['export_max_abs_diff'].values(), default=0):.1e})"]
    lines += [f'{k}: {v:.3f}' for k, v in result['ratios'].items()]
    env = result['env']
    lines.append(', '.join(f'{k} {env[k]}' for k in ('torch', 'onnxruntime', 'openvino')
                           if k in env) + f", {env['cpu']} ({env['cpu_count']} CPUs)")
    return '\n'.join(lines)


def format_int8(result: dict) -> str:
    """The INT8 table (``benchmark_int8``): fp32 and INT8 latency of each model in each
    runtime, the ratios, the INT8 graphs' node counts, PartialNet's INT8 profile."""
    s = result['settings']
    table = markdown_table(
        ['runtime', 'model', 'precision', f"CPU latency (ms, 1 thread, batch 1, "
                                          f"{s['height']}x{s['width']})"],
        [[r['runtime'], r['model'], r['precision'], format(r['cpu_latency_ms'], '.2f')]
         for r in result['rows']])
    lines = [table, '', f"{s['exporter']} exporter, {s['input']}, {s['weights']}; "
                        f"calibrated on {s['calibration_images']} random images"]
    lines += [f'{k}: {v:.3f}' for k, v in result['ratios'].items()]
    lines += [f'ONNX Runtime INT8 graph, {name}: ' + ', '.join(f'{k} {v}' for k, v in c.items())
              for name, c in result['int8_graph_counts'].items()]
    lines.append('ONNX Runtime profile of PartialNet INT8 (% of node time): ' + ', '.join(
        f'{k} {v}' for k, v in result['partialnet_int8_profile'].items()))
    env = result['env']
    lines.append(', '.join(f'{k} {env[k]}' for k in ('torch', 'onnxruntime', 'openvino')
                           if k in env) + f", {env['cpu']} ({env['cpu_count']} CPUs)")
    return '\n'.join(lines)


def format_detector_parts(result: dict) -> str:
    """A one-stage detector table (``benchmark_detector_parts``): milliseconds per part for
    the fused PartialNet detector and the baseline at each thread count, the ratio, and the
    machine."""
    s = result['settings']
    roles = list(result['models'])
    rows = []
    for n, by_role in result['ms'].items():
        fused, base = (by_role[r] for r in roles)
        for part in fused:
            rows.append([f"{n} thread{'s' if int(n) > 1 else ''}", part,
                         format(fused[part], '.1f'), format(base[part], '.1f'),
                         format(fused[part] / base[part], '.2f')])
    names = [result['models'][r] for r in roles]
    table = markdown_table(['CPU', 'part', f'{names[0]} (ms)', f'{names[1]} (ms)', 'ratio'], rows)
    params = ', '.join(f"{result['models'][r]} {result['params_m'][r]:.2f} M" for r in roles)
    env = result['env']
    return '\n'.join([
        f"{s['height']}x{s['width']}, batch 1, median of {s['runs']} interleaved calls "
        f"({s['weights']})", '', table, '',
        f"params: {params}",
        f"fused vs unfused backbone max abs diff (fp32): {result['fused_max_abs_diff']:.2e}",
        f"torch {env['torch']}, {env['cpu']} ({env['cpu_count']} CPUs)"])


def format_detector_runtimes(result: dict) -> str:
    """The detector-in-runtimes table (``benchmark_detector_runtimes``): milliseconds per image
    of each graph of both models in each runtime at each thread count, the ratio ours /
    baseline, the dynamic / fixed ratios, and where ONNX Runtime spends the end-to-end time."""
    s = result['settings']
    roles = list(result['models'])
    names = [result['models'][r] for r in roles]
    rows = []
    for n, table in result['ms'].items():
        for rt, graphs in table.items():
            for graph, by_role in graphs.items():
                ours, base = (by_role[r] for r in roles)
                rows.append([f"{n} thread{'s' if int(n) > 1 else ''}", rt, graph,
                             format(ours, '.1f'), format(base, '.1f'),
                             format(ours / base, '.2f')])
    table = markdown_table(['CPU', 'runtime', 'graph', f'{names[0]} (ms)', f'{names[1]} (ms)',
                            'ratio'], rows)
    dyn = [f'{k}: {v:.2f}' for k, v in result['ratios'].items() if 'dynamic / fixed' in k]
    lines = [f"{s['height']}x{s['width']}, batch 1, median of {s['runs']} interleaved calls "
             f"({s['weights']})", '', table, '', 'dynamic-size / fixed-size export: '
             + '; '.join(dyn)]
    for role in roles:
        prof = result['profile_ms'].get(role)
        if prof:
            total = sum(prof['by_op'].values())
            parts = ', '.join(f'{part} {ms:.1f}' for part, ms in prof['by_part'].items())
            top = ', '.join(f'{op} {ms:.1f} ({100 * ms / total:.0f}%)'
                            for op, ms in list(prof['by_op'].items())[:6])
            lines.append(f"ONNX Runtime, 1 thread, end-to-end (fixed), {result['models'][role]}"
                         f": {total:.1f} ms of kernels; by part: {parts}; by op: {top}")
    params = ', '.join(f"{result['models'][r]} {result['params_m'][r]:.2f} M" for r in roles)
    env = result['env']
    lines += [f'params: {params}',
              'checked against mmdet predict before timing: '
              + ', '.join(f"{result['models'][r]} {result['checked'][r]} detections matched"
                          for r in roles),
              f"torch {env['torch']}, {env['cpu']} ({env['cpu_count']} CPUs)"]
    return '\n'.join(lines)
