"""ONNX export of the fused classifier and backbone, checked by onnxruntime."""
import sys

import pytest
import torch

from partialnet_mm.deploy import fused_copy, randomize_norms
from partialnet_mm.models import PartialNetClassifier

from helpers import run


def test_onnx_round_trip_t0_dynamic_batch_and_size(tmp_path):
    from partialnet_mm.toolkit.onnx_export import export, verify
    torch.manual_seed(0)
    model = randomize_norms(PartialNetClassifier('t0')).eval()
    fused = fused_copy(model)
    path = export(fused, str(tmp_path / 't0.onnx'), input_size=96)
    # other batch sizes and input sizes than the exported (2, 3, 96, 96)
    assert verify(fused, path, [(1, 3, 96, 96), (3, 3, 64, 128)]) <= 1e-4


@pytest.mark.slow
def test_export_tool_backbone_multiscale(tmp_path):
    out = tmp_path / 'tiny.onnx'
    code, log = run([sys.executable, 'tools/export_onnx.py', 't0', str(out), '--backbone',
                      '--input-size', '64'])
    assert code == 0, log
    import onnx
    names = [o.name for o in onnx.load(str(out)).graph.output]
    assert names == ['stage0', 'stage1', 'stage2', 'stage3']
