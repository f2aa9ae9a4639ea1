"""tools/benchmark.py's options as a BenchmarkRequest: the checks of option combinations, the
smoke sizes, the mode each combination picks, what it passes on, the exit codes."""
import pytest

from partialnet_mm.benchmark import modes
from partialnet_mm.benchmark.modes import (NMS_LOAD, REFUSALS, SMOKE, BenchmarkRequest,
                                           error_message, exit_code)

RTMDET = 'configs/rtmdet_partialnet-t0_8xb32-300e_coco.py'
MASK_RCNN = 'configs/mask_rcnn_partialnet_t0_1x.py'
T0 = 'configs/partialnet-t0_8xb512_in1k.py'


def test_the_tools_options_are_the_requests_fields():
    import os.path as osp
    import runpy
    tool = runpy.run_path(osp.join(osp.dirname(__file__), '..', '..', 'tools', 'benchmark.py'),
                          run_name='tool')
    options = vars(tool['parse_args'](['s', '--runtime', 'torch', '--int8']))
    request = BenchmarkRequest.from_options(options)  # json, plot and plot_metric left out
    assert (request.model, request.runtime, request.int8) == ('s', 'torch', True)
    assert set(options) - {'json', 'plot', 'plot_metric'} == \
        {f for f in BenchmarkRequest.__dataclass_fields__}


@pytest.mark.parametrize('options, message', [
    (dict(det=RTMDET, no_cpu=True), '--no-cpu is for classifiers'),
    (dict(model=T0, runtime='torch'), '--runtime takes a variant'),
    (dict(runtime='torch', int8=True, backbone=True), 'drop --backbone and --dynamic'),
    (dict(runtime='torch', int8=True, dynamic=True), 'drop --backbone and --dynamic'),
])
def test_combinations_that_measure_nothing_are_refused(options, message):
    with pytest.raises(ValueError, match=message) as err:
        BenchmarkRequest(**options)
    assert exit_code(err.value) == 2


@pytest.mark.parametrize('options, mode, shape', [
    (dict(), 'classifier', (800, 1216)),
    (dict(det=MASK_RCNN), 'detector', (800, 1216)),
    (dict(det=RTMDET), 'detector_parts', (640, 640)),
    (dict(runtime='torch'), 'runtimes', (800, 1216)),
    (dict(runtime='torch', int8=True), 'int8', (800, 1216)),
    (dict(det=RTMDET, runtime='onnxruntime'), 'detector_runtimes', (640, 640)),
    (dict(det=RTMDET, det_shape=(320, 480)), 'detector_parts', (320, 480)),
])
def test_each_combination_picks_its_mode(options, mode, shape):
    request = BenchmarkRequest(**options)
    assert request.mode == mode and tuple(request.det_shape) == shape


def test_smoke_is_tiny_and_says_so(monkeypatch):
    request = BenchmarkRequest(model='t0', smoke=True, runs=500)
    assert all(getattr(request, k) == v for k, v in SMOKE.items())
    assert request.input_size == 64
    assert BenchmarkRequest(runtime='openvino', smoke=True).input_size == 96  # OpenVINO at 2x2
    seen = {}

    def classifier(kwargs, settings, checkpoint=None, peers=True):
        seen.update(kwargs=kwargs, settings=settings, peers=peers)
        return dict(settings={}, rows=[])

    monkeypatch.setattr('partialnet_mm.benchmark.runner.benchmark_classifier', classifier)
    result, table = BenchmarkRequest(model=T0, smoke=True, no_peers=True, no_cuda=True).run()
    assert table.__name__ == 'format_result'
    assert result['settings'] == {'smoke': True}
    assert seen['kwargs']['arch'] == 't0' and seen['kwargs']['num_classes'] == 1000
    s = seen['settings']
    assert (s.input_size, s.latency_runs, s.rounds, s.cuda) == (64, 2, 1, False)
    assert seen['peers'] is False


def test_detector_runtimes_carry_the_same_post_processing_load(monkeypatch):
    seen = []
    monkeypatch.setattr('partialnet_mm.benchmark.detector_runtimes.benchmark_detector_runtimes',
                        lambda config, runtimes, baseline, h, w, **kw: seen.append(kw) or
                        dict(settings={}))
    BenchmarkRequest(det=RTMDET, runtime='torch').run()
    BenchmarkRequest(det=MASK_RCNN, runtime='torch').run()
    BenchmarkRequest(det=RTMDET, runtime='torch', cfg_options={'a': 1}).run()
    assert [kw['cfg_options'] for kw in seen] == [
        {'model.test_cfg.nms_pre': NMS_LOAD}, {'model.test_cfg.rcnn.score_thr': 0.0}, {'a': 1}]


def test_exit_codes_tell_a_failed_check_from_bad_input():
    from partialnet_mm.deploy import FusionMismatch
    from partialnet_mm.toolkit.detector_export import ConfigUnsupported, DetectorMismatch
    from partialnet_mm.toolkit.onnx_export import ExportMismatch
    for error, code in ((FusionMismatch('x'), 3), (ExportMismatch('x'), 3),
                        (DetectorMismatch('x'), 3), (ConfigUnsupported('x'), 2),
                        (KeyError('x'), 2), (FileNotFoundError('x'), 2)):
        assert isinstance(error, REFUSALS) and exit_code(error) == code
    assert not isinstance(RuntimeError('a fault'), REFUSALS)  # raised, with its traceback
    assert error_message(KeyError("unknown runtime 'x'")) == "unknown runtime 'x'"
    assert modes.error_message(ValueError('v')) == 'v'
