"""The benchmark: the fused == unfused check before any figure, interleaved timing, the tool."""
import glob
import json
import os.path as osp
import re
import sys

import pytest
import torch

from partialnet_mm.benchmark import time_interleaved
from partialnet_mm.deploy import FusionMismatch, check_fused, fused_copy, randomize_norms
from partialnet_mm.models import PartialNet

from helpers import REPO, TINY, run


def test_check_fused_refuses_a_wrong_fusion():
    torch.manual_seed(0)
    model = randomize_norms(PartialNet(TINY, out_indices=(3,))).eval()
    fused = fused_copy(model)
    with torch.no_grad():
        fused.stages[3].blocks[0].mlp.fc2.bias.add_(1e-2)
    with pytest.raises(FusionMismatch, match='refusing to report its speed'):
        check_fused(model, fused, torch.randn(1, 3, 64, 64), action='report its speed')
    with pytest.raises(FusionMismatch, match='refusing to use it'):  # the default, one type
        check_fused(model, fused, torch.randn(1, 3, 64, 64))


def test_time_interleaved_runs_every_model():
    calls = {'a': [], 'b': []}
    times = time_interleaved({k: (lambda k=k: calls[k].append(1)) for k in calls}, warmup=2,
                             runs=6, rounds=3)
    assert set(times) == {'a', 'b'} and all(t >= 0 for t in times.values())
    assert len(calls['a']) == len(calls['b']) == 2 + 6


@pytest.mark.slow
def test_benchmark_tool_smoke(tmp_path):
    out = tmp_path / 'bench.json'
    code, log = run([sys.executable, 'tools/benchmark.py', 't0', '--smoke', '--no-cuda',
                      '--json', str(out)])
    assert code == 0, log
    result = json.loads(out.read_text())
    names = [r['model'] for r in result['rows']]
    assert names[:2] == ['PartialNet-T0 unfused', 'PartialNet-T0 fused']
    assert 'FasterNet-T0 (timm)' in names and any(n.startswith('ResNet-50') for n in names)
    assert result['fused_max_abs_diff'] <= 1e-4
    assert all(r['cpu_latency_ms'] > 0 and r['cpu_images_per_s'] > 0 for r in result['rows'])
    assert {'fused_speedup_over_unfused', 'fused_latency_over_fasternet'} <= set(result['ratios'])
    assert re.search(r'^\| PartialNet-T0 fused +\|', log, re.M)  # rich pads the cells
    ops = {r['role']: r['ops_per_forward'] for r in result['rows']}
    assert 0 < ops['fused'] < ops['unfused'] and ops['fasternet'] > 0
    assert result['ratios']['fused_ops_over_fasternet'] == ops['fused'] / ops['fasternet']
    assert re.search(r'\| ops / forward \|', log)


def benchmark_main():
    """tools/benchmark.py's main(argv), run in this process (refusals need no new process)."""
    import runpy
    return runpy.run_path(osp.join(REPO, 'tools', 'benchmark.py'), run_name='tool')['main']


def test_benchmark_tool_refuses_to_time_nothing(capsys):
    main = benchmark_main()
    for argv, message in (
            (['t0', '--smoke', '--no-cuda', '--no-cpu'], 'nothing to time'),
            (['--no-cpu', '--det', osp.join(REPO, 'configs', 'mask_rcnn_partialnet_t0_1x.py')],
             '--no-cpu is for classifiers'),
            (['t0', '--smoke', '--no-cuda', '--cuda-graph'], 'CUDA graphs need a CUDA device'),
            (['t0', '--runtime', 'tvm'], "unknown runtime 'tvm'"),
            ([osp.join(REPO, 'configs', 'partialnet-t0_8xb512_in1k.py'), '--runtime', 'torch'],
             '--runtime takes a variant')):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.startswith('error: '), (argv, err)


@pytest.mark.slow
def test_benchmark_tool_config_and_detection_smoke(tmp_path):
    cfg = osp.join(REPO, 'configs', 'partialnet-t0_8xb512_in1k.py')
    code, log = run([sys.executable, 'tools/benchmark.py', cfg, '--smoke', '--no-cuda',
                      '--no-peers'])
    assert code == 0 and re.search(r'^\| PartialNet-T0 fused +\|', log, re.M), log
    out = tmp_path / 'det.json'
    code, log = run([sys.executable, 'tools/benchmark.py', '--smoke', '--no-cuda', '--det',
                      osp.join(REPO, 'configs', 'mask_rcnn_partialnet_t0_1x.py'),
                      '--json', str(out)])
    assert code == 0, log
    result = json.loads(out.read_text())
    assert [r['model'].split()[-1] for r in result['rows']] == ['unfused', 'fused', 'config)']
    assert all(r['cpu_images_per_s'] > 0 for r in result['rows'])


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('cuda_graph', [False, True])
def test_benchmark_gpu_table_smoke(cuda_graph):
    from partialnet_mm.benchmark import TimingSettings, benchmark_classifier

    settings = TimingSettings(input_size=64, gpu_batch=4, gpu_runs=2, warmup=1, rounds=1,
                              channels_last=True, cpu=False, cuda_graph=cuda_graph)
    result = benchmark_classifier(dict(arch='t0'), settings, peers=False)
    assert all(r['gpu_images_per_s'] > 0 and 'cpu_latency_ms' not in r for r in result['rows'])
    assert result['settings']['cuda_graph'] is cuda_graph and 'gpu' in result['env']


# --- tools/benchmark.py --plot: speed against parameters from the JSON files -------------------

def test_plot_reads_the_committed_tables_and_draws_every_family(tmp_path):
    import cv2

    from partialnet_mm.benchmark.plot import load_results, pick_metric, row_role
    cpu = sorted(glob.glob(osp.join(REPO, 'docs', 'bench', 'cpu_*.json')))
    results = load_results(cpu)
    # files written before rows carried a role are read by the model's name
    assert [sorted(r['rows']) for r in results] == [['fasternet', 'fused', 'resnet50',
                                                     'unfused']] * len(cpu)
    assert row_role({'model': 'PartialNet-T2 fused'}) == 'fused'
    assert row_role({'model': 'x', 'role': 'baseline'}) == 'baseline'
    assert pick_metric(results) == 'cpu_latency_ms'
    gpu = sorted(glob.glob(osp.join(REPO, 'docs', 'bench', 'gpu', 'graph_*.json')))
    assert pick_metric(load_results(gpu)) == 'gpu_images_per_s'
    with pytest.raises(ValueError, match='do not all have cpu_latency_ms'):
        pick_metric(load_results(gpu), 'cpu_latency_ms')

    out = tmp_path / 'cpu.png'
    code, log = run([sys.executable, 'tools/benchmark.py', '--plot', str(out), *cpu])
    assert code == 0 and log.strip().endswith(str(out)), log[-2000:]
    assert cv2.imread(str(out)).shape == (400, 600, 3)


def test_plot_names_a_row_of_an_unknown_role(tmp_path):
    from partialnet_mm.benchmark.plot import load_results
    path = tmp_path / 'cpu.json'
    path.write_text(json.dumps(dict(kind='classifier', rows=[
        dict(role='fused', model='PartialNet-T0 fused', params_m=3.5, cpu_latency_ms=1.0),
        dict(role='mobilenet', model='MobileNet', params_m=3.4, cpu_latency_ms=1.0)])))
    with pytest.raises(ValueError, match=r"unknown roles \['mobilenet'\]"):
        load_results([str(path)])


def test_peers_come_from_the_one_table():
    from partialnet_mm.benchmark.peers import ROLES, classifier_peers
    peers = classifier_peers('t0')
    assert list(peers) == [name for name, role in ROLES.items() if role.build is not None]
    assert peers['fasternet'][0] == 'FasterNet-T0 (timm)'
    assert 'fasternet' not in classifier_peers('custom')  # no FasterNet of that size


def test_plot_refuses_bad_files_by_name(tmp_path, capsys):
    main = benchmark_main()
    bad = tmp_path / 'det.json'
    bad.write_text('{"kind": "detector", "rows": []}')
    broken = tmp_path / 'broken.json'
    broken.write_text('{"kind": ')
    for files, message in (([str(bad)], f'{bad}: not a classifier table'),
                           ([str(broken)], f'{broken}: not a benchmark JSON file'),
                           ([], '--plot FILE.png JSON')):
        code = main(['--plot', str(tmp_path / 'x.png'), *files])
        assert code == 2 and message in capsys.readouterr().err
        assert not (tmp_path / 'x.png').exists()


# --- tools/benchmark.py --runtime: PyTorch, ONNX Runtime, OpenVINO ------------------------------

def test_count_ops_counts_top_level_operators():
    from partialnet_mm.timing import count_ops
    x = torch.randn(2, 3)
    assert count_ops(lambda: torch.relu(x + 1).sum()) == 3  # add, relu, sum
    assert count_ops(lambda: torch.nn.functional.linear(x, torch.ones(4, 3))) == 2  # ones, linear


def test_runtime_names_are_checked(monkeypatch):
    import importlib.util

    from partialnet_mm.benchmark.runtimes import RUNTIMES, parse_runtimes
    assert [r.name for r in parse_runtimes('torch, onnxruntime')] == ['torch', 'onnxruntime']
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'; choose from torch, "
                                         "onnxruntime, openvino"):
        parse_runtimes('torch,tensorrt')
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'openvino' else real(name, *a))
    with pytest.raises(ValueError, match=re.escape(
            "runtime 'openvino' needs the package openvino, which is not installed: "
            + RUNTIMES['openvino'].install)):
        parse_runtimes('openvino')


@pytest.mark.slow
@pytest.mark.parametrize('dynamic', [False, True], ids=['fixed', 'dynamic'])
def test_runtime_table_smoke(tmp_path, dynamic):
    out = tmp_path / 'runtimes.json'
    code, log = run([sys.executable, 'tools/benchmark.py', 't0', '--smoke', '--runtime',
                      'torch,onnxruntime,openvino', '--exporter', 'torchscript',
                      '--json', str(out)] + (['--dynamic'] if dynamic else []))
    assert code == 0, log[-3000:]
    result = json.loads(out.read_text())
    assert {(r['runtime'], r['role']) for r in result['rows']} == {
        (rt, role) for rt in ('torch', 'onnxruntime', 'openvino')
        for role in ('fused', 'fasternet', 'resnet50')}
    assert all(r['cpu_latency_ms'] > 0 and r['cpu_images_per_s'] > 0 for r in result['rows'])
    assert max(result['export_max_abs_diff'].values()) <= 1e-4 * 30  # checked, scaled
    assert 'openvino: fused_latency_over_fasternet' in result['ratios']
    assert result['settings']['input'] == ('dynamic size' if dynamic else 'fixed size')


@pytest.mark.slow
def test_int8_table_smoke(tmp_path):
    """--int8: fp32 and INT8 of the three models in both runtimes, one interleaved run, with
    the ratios and the INT8 graphs' node counts (PartialNet's full maps all INT8 but GELU's)."""
    out = tmp_path / 'int8.json'
    code, log = run([sys.executable, 'tools/benchmark.py', 't0', '--smoke', '--runtime',
                     'torch,onnxruntime,openvino', '--int8', '--json', str(out)])
    assert code == 0, log[-3000:]
    result = json.loads(out.read_text())
    assert {(r['runtime'], r['role'], r['precision']) for r in result['rows']} == {
        (rt, role, p) for rt in ('onnxruntime', 'openvino')
        for role in ('fused', 'fasternet', 'resnet50') for p in ('fp32', 'int8')}
    assert all(r['cpu_latency_ms'] > 0 for r in result['rows'])
    assert 'onnxruntime: PartialNet int8 / FasterNet-T0 (timm) int8' in result['ratios']
    counts = result['int8_graph_counts']['PartialNet-T0 fused']
    assert counts['int8 nodes'] > 200 and counts['QuantizeLinear'] > 100
    # what stays fp32 on full maps: GELU (one Gelu node per block) and the head's mean pool
    ops = counts['fp32 full-map ops']
    assert ops['Gelu'] == 13 and set(ops) <= {'Gelu', 'ReduceMean'}
    assert ops.get('ReduceMean', 0) <= 1
    assert 'QLinearConv' in result['partialnet_int8_profile']
    code, log = run([sys.executable, 'tools/benchmark.py', 't0', '--runtime', 'torch',
                     '--int8'])
    assert code == 2 and 'name onnxruntime and/or openvino' in log, log[-2000:]


@pytest.mark.slow
@pytest.mark.slow
def test_detector_runtime_table_smoke(tmp_path):
    """--det --runtime: the whole detector and its baseline in every runtime, each graph
    (network, end to end fixed and dynamic) checked against mmdet and timed, with the
    ratios and ONNX Runtime's profile by part."""
    out = tmp_path / 'det.json'
    demo = osp.join(REPO, 'configs', 'demo')
    code, log = run([sys.executable, 'tools/benchmark.py', '--smoke', '--det',
                     osp.join(demo, 'rtmdet_partialnet-t0_synthetic.py'), '--det-baseline',
                     osp.join(demo, 'rtmdet_cspnext-tiny_synthetic.py'), '--runtime',
                     'torch,onnxruntime,openvino', '--json', str(out)])
    assert code == 0, log[-3000:]
    result = json.loads(out.read_text())
    assert result['kind'] == 'detector_runtimes' and len(result['ms']) == 2  # 1 and all threads
    for table in result['ms'].values():
        assert set(table) == {'torch', 'onnxruntime', 'openvino'}
        assert set(table['onnxruntime']) == {'network', 'end-to-end, fixed size',
                                             'end-to-end, dynamic size'}
        assert set(table['torch']) == {'network', 'end-to-end, fixed size'}
        assert all(ms > 0 for graphs in table.values() for by_role in graphs.values()
                   for ms in by_role.values())
    assert all(n > 0 for n in result['checked'].values())  # each export compared detections
    assert 'onnxruntime, fused dynamic / fixed, 1 thread' in result['ratios']
    parts = result['profile_ms']['fused']['by_part']
    assert {'backbone', 'neck', 'head', 'post-processing'} <= set(parts)
    assert 'by part: ' in log and 'ratio' in log
