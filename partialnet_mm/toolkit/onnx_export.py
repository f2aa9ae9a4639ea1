"""ONNX export of the deployed PartialNet classifier or backbone, checked by onnxruntime.

Both of torch's exporters: the dynamo exporter (``dynamo=True``, torch.export underneath)
and the TorchScript one (``dynamo=False``, what mmdeploy and older deployment scripts
call). Either with dynamic batch size and input height / width (the iRPE bias of PAT_sf
is computed in the graph from the input size) or for one fixed input size (the bias is then
a constant the runtimes fold). One self-contained ``.onnx`` file. Needs ``onnx``,
``onnxscript`` (the dynamo exporter) and ``onnxruntime`` (the check).
"""
import warnings
from typing import Iterable, List, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from ..models import PartialNet

ONNX_TOLERANCE = 1e-4


def output_names(model: nn.Module) -> List[str]:
    if isinstance(model, PartialNet):
        return [f'stage{i}' for i in model.out_indices]
    return ['logits']


def export(model: nn.Module, path: str, input_size: Union[int, Tuple[int, int]] = 224,
           opset: int = 20, dynamo: bool = True, dynamic: bool = True, batch: int = 2) -> str:
    """Export an eval-mode (deployed) model to one ``.onnx`` file: with ``dynamic``, any batch
    size, height and width; else ``(batch, 3, H, W)`` only (``input_size``: H = W, or
    ``(H, W)``). ``dynamo`` picks torch's exporter (False: the TorchScript one)."""
    model = model.eval()
    height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
    x = torch.randn(batch if dynamic is False else 2, 3, height, width)
    names = dict(input_names=['input'], output_names=output_names(model))
    with torch.no_grad():
        if dynamo:
            dims = {0: torch.export.Dim('batch', min=1, max=4096),
                    2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}
            torch.onnx.export(model, (x,), path, **names, dynamo=True, opset_version=opset,
                              dynamic_shapes={'x': dims} if dynamic else None,
                              external_data=False, verbose=False)
        else:
            axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}} if dynamic else None
            with warnings.catch_warnings():  # "converting a tensor to a Python int" etc.
                warnings.simplefilter('ignore')
                torch.onnx.export(model, (x,), path, **names, dynamo=False,
                                  opset_version=opset, dynamic_axes=axes)
    return path


def verify(model: nn.Module, path: str,
           shapes: Iterable[Tuple[int, int, int, int]] = ((1, 3, 224, 224), (3, 3, 160, 256)),
           tolerance: float = ONNX_TOLERANCE, seed: int = 0) -> float:
    """Max abs difference of onnxruntime's outputs against PyTorch's over ``shapes``
    (other batch sizes and input sizes than the exported one); ValueError above
    ``tolerance``."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    for shape in shapes:
        x = torch.randn(*shape, generator=g)
        with torch.no_grad():
            ref = model(x)
        ref = [ref] if isinstance(ref, torch.Tensor) else list(ref)
        got = session.run(None, {'input': x.numpy()})
        if len(got) != len(ref):
            raise ValueError(f'{path}: {len(got)} outputs, PyTorch gives {len(ref)}')
        for r, o in zip(ref, got, strict=True):
            if tuple(o.shape) != tuple(r.shape):
                raise ValueError(f'{path}: output shape {o.shape} for input {shape}, PyTorch '
                                 f'gives {tuple(r.shape)}')
            worst = max(worst, float(np.abs(o - r.numpy()).max()))
    if not worst <= tolerance:
        raise ValueError(f'{path}: onnxruntime differs from PyTorch by {worst:.3g} > '
                         f'{tolerance:g}')
    return worst


def default_shapes(input_size: int) -> Sequence[Tuple[int, int, int, int]]:
    return ((1, 3, input_size, input_size), (3, 3, input_size - 32, input_size + 32))
