"""ONNX export of the fused classifier and backbone with both of torch's exporters, fixed and
dynamic input size, checked by onnxruntime (and OpenVINO); torch.export with dynamic H, W."""
import numpy as np
import pytest
import torch

from partialnet_mm.deploy import fused_copy, randomize_norms
from partialnet_mm.models import PartialNet, PartialNetClassifier


@pytest.fixture(scope='module')
def fused_t0():
    torch.manual_seed(0)
    return {'classifier': fused_copy(randomize_norms(PartialNetClassifier('t0')).eval()),
            'backbone': fused_copy(randomize_norms(PartialNet('t0')).eval())}


@pytest.mark.parametrize('kind', ['classifier', 'backbone'])
@pytest.mark.parametrize('dynamic', [True, False], ids=['dynamic', 'fixed'])
def test_torchscript_exporter(tmp_path, fused_t0, kind, dynamic):
    """The exporter mmdeploy calls (dynamo=False): with dynamic axes it used to fail on PAT_sf
    (a traced channel count in layer_norm), and in-place PAT_sp writes were lost."""
    from partialnet_mm.toolkit.onnx_export import export, verify
    model = fused_t0[kind]
    path = export(model, str(tmp_path / 'm.onnx'), input_size=96, dynamo=False,
                  dynamic=dynamic, batch=1)
    shapes = [(1, 3, 96, 96), (2, 3, 64, 160), (1, 3, 224, 224)] if dynamic else [(1, 3, 96, 96)]
    assert verify(model, path, shapes) <= 1e-4
    if not dynamic:  # a fixed-size model refuses other sizes
        with pytest.raises(Exception):
            verify(model, path, [(1, 3, 128, 128)])


def test_dynamo_exporter_fixed_size_is_one_file(tmp_path, fused_t0):
    from partialnet_mm.toolkit.onnx_export import export, verify
    model = fused_t0['backbone']
    path = export(model, str(tmp_path / 'b.onnx'), input_size=(96, 128), dynamic=False, batch=1)
    assert verify(model, path, [(1, 3, 96, 128)]) <= 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ['b.onnx']  # no .onnx.data sidecar


def test_torch_export_with_dynamic_height_and_width(fused_t0):
    model = fused_t0['backbone']
    h, w = torch.export.Dim('h', min=1, max=64), torch.export.Dim('w', min=1, max=64)
    program = torch.export.export(model, (torch.randn(1, 3, 96, 128),),
                                  dynamic_shapes={'x': {2: 32 * h, 3: 32 * w}})
    for shape in ((1, 3, 64, 96), (1, 3, 160, 128)):
        x = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(program.module()(x), model(x), atol=1e-4, rtol=0)


def test_openvino_runs_the_same_file(tmp_path, fused_t0):
    from partialnet_mm.benchmark.runtimes import RUNTIMES, onnx_session
    from partialnet_mm.toolkit.onnx_export import export
    pytest.importorskip('openvino')
    model = fused_t0['classifier']
    path = export(model, str(tmp_path / 'm.onnx'), input_size=64, dynamo=False, dynamic=True)
    run_ov = onnx_session(RUNTIMES['openvino'], path, threads=1)
    for shape in ((1, 3, 64, 64), (2, 3, 96, 128)):  # stage 4 at 2x2 and 3x4
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = model(x).numpy()
        assert np.abs(run_ov(x.numpy())[0] - ref).max() <= 1e-4 * max(1, np.abs(ref).max())


def test_dynamo_export_backbone_dynamic_batch_and_size(tmp_path):
    """The dynamo exporter, dynamic batch and size, through what tools/export_onnx.py calls:
    the four stage outputs, checked in onnxruntime on other batch and input sizes than the
    exported one. (The classifier the same way: README's `tools/export_onnx.py t0 ...`.)"""
    import onnx

    from partialnet_mm.toolkit.onnx_export import export_classifier
    r = export_classifier('t0', str(tmp_path / 'tiny.onnx'), backbone=True, input_size=64)
    assert r.exporter == 'dynamo' and r.dynamic and r.onnx_diff <= 1e-4
    assert r.shapes == [(1, 3, 64, 64), (3, 3, 32, 96)]
    names = [o.name for o in onnx.load(r.path).graph.output]
    assert names == ['stage0', 'stage1', 'stage2', 'stage3']


def test_export_classifier_checks_and_reports(tmp_path):
    """What tools/export_onnx.py calls: the config's classifier, fused, checked, exported,
    checked in onnxruntime; the summary says what was written and how close it is."""
    from partialnet_mm.toolkit.onnx_export import export_classifier
    out = tmp_path / 'sub' / 't0.onnx'
    r = export_classifier('configs/partialnet-t0_8xb512_in1k.py', str(out), input_size=64,
                          dynamo=False, fixed_size=True)
    assert out.exists() and r.path == str(out) and r.exporter == 'torchscript'
    assert r.shapes == [(1, 3, 64, 64)] and not r.dynamic and r.random_weights
    assert 0 <= r.fuse_diff <= 1e-4 and 0 <= r.onnx_diff <= 1e-4
    summary = r.summary()
    assert summary.startswith('no checkpoint: random weights') and f'wrote {out}' in summary
    assert 'torchscript exporter, fixed size' in summary


def test_export_classifier_removes_a_file_that_fails_its_check(tmp_path, monkeypatch):
    from partialnet_mm.toolkit import onnx_export

    def refuse(model, path, shapes):
        raise onnx_export.ExportMismatch(f'{path}: onnxruntime differs from PyTorch by 1')

    monkeypatch.setattr(onnx_export, 'verify', refuse)
    out = tmp_path / 'b.onnx'
    with pytest.raises(onnx_export.ExportMismatch, match='differs'):
        onnx_export.export_classifier('t0', str(out), backbone=True, input_size=64,
                                      dynamo=False, fixed_size=True)
    assert list(tmp_path.iterdir()) == []


def test_exportable_backbone_drops_the_head_settings():
    from partialnet_mm.toolkit.onnx_export import build_exportable
    net = build_exportable('configs/partialnet-t0_8xb512_in1k.py', backbone=True)
    assert isinstance(net, PartialNet) and not net.training
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.running_var.min() >= 0.5 and bn.running_mean.abs().sum() > 0  # randomised


def test_detector_configs_are_told_from_classifiers():
    from partialnet_mm.mmconfig import is_detector_config
    assert is_detector_config('mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py')
    assert is_detector_config('configs/rtmdet_partialnet-t0_8xb32-300e_coco.py')
    assert not is_detector_config('configs/partialnet-t0_8xb512_in1k.py')
    assert not is_detector_config('mmpretrain::resnet/resnet50_8xb32_in1k.py')
    assert not is_detector_config('t0')
