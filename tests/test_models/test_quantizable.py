"""The INT8-friendly form of a deployed PartialNet (models.layers.quantizable): the same
function as the fused and the training graph, every full-map operation one with an INT8
kernel, nothing but the (B, C, 1, 1) gates and PAT_sf under KeepFP32."""
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

from partialnet_mm.deploy import FUSE_TOLERANCE, compare_outputs, fused_copy, randomize_norms
from partialnet_mm.models.backbones.partialnet import PartialNet
from partialnet_mm.models.layers import quantizable
from partialnet_mm.models.layers.attention import DeployStyleAttention, InplaceSpatialGate
from partialnet_mm.models.layers.quantizable import (FP32_MARK, KeepFP32,
                                                     QuantizablePartialMLP,
                                                     QuantizableSelfAttention,
                                                     QuantizableStyleAttention)
from partialnet_mm.toolkit.onnx_export import export


def _models(**kwargs):
    torch.manual_seed(0)
    model = randomize_norms(PartialNet(arch='t0', out_indices=(0, 1, 2, 3), **kwargs)).eval()
    fused = fused_copy(model).eval()
    return model, fused, quantizable(fused)


@pytest.mark.parametrize('kwargs', [{}, dict(channel_attention='srm')])
@pytest.mark.parametrize('size', [64, 33, 32])  # 32: a 1x1 map in stage 4 (std taken as 0)
def test_same_function_as_fused_and_training_graph(kwargs, size):
    model, fused, friendly = _models(**kwargs)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref, got = model(x), friendly(x)
        for a, b in zip(ref, got):
            assert compare_outputs(a, b)[0] <= FUSE_TOLERANCE
        for a, b in zip(fused(x), got):
            assert compare_outputs(a, b)[0] <= FUSE_TOLERANCE


def test_replaces_every_deployed_gate_and_leaves_the_fused_model_alone():
    _, fused, friendly = _models()
    kinds = {type(m) for m in friendly.modules()}
    assert DeployStyleAttention not in kinds and InplaceSpatialGate not in kinds
    assert QuantizableStyleAttention in kinds and QuantizablePartialMLP in kinds
    assert any(isinstance(m, DeployStyleAttention) for m in fused.modules())  # a copy


def test_refuses_a_training_form_model():
    model, _, _ = _models()
    with pytest.raises(ValueError, match='fuse the model first'):
        quantizable(model)


def test_onnx_full_maps_have_int8_kernels_only(tmp_path):
    """Exported (opset 20): outside KeepFP32 the graph holds no reduction, Hardsigmoid, Div or
    Sqrt, and the MLPs no Slice; the file computes the torch outputs in ONNX Runtime."""
    _, _, friendly = _models()

    class Last(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)[-1]

    path = str(tmp_path / 'friendly.onnx')
    export(Last(friendly), path, 64, 20, dynamo=False, dynamic=False, batch=1)
    nodes = [n for n in onnx.load(path).graph.node if FP32_MARK not in n.name]
    outside = {n.op_type for n in nodes}
    assert not outside & {'ReduceSum', 'ReduceMean', 'HardSigmoid', 'Div', 'Sqrt'}
    assert not [n.name for n in nodes if n.op_type == 'Slice' and '/mlp/' in n.name]
    assert {'GlobalAveragePool', 'Mul', 'Concat', 'Conv', 'Gelu'} <= outside
    x = torch.randn(1, 3, 64, 64)
    got = ort.InferenceSession(path, providers=['CPUExecutionProvider']).run(
        None, {'input': x.numpy()})[0]
    with torch.no_grad():
        assert compare_outputs(Last(friendly)(x), torch.from_numpy(got))[0] <= FUSE_TOLERANCE
    attn = friendly.stages[3].blocks[0].token_mixer.attn
    assert isinstance(attn, QuantizableSelfAttention) and isinstance(attn.attend, KeepFP32)
