"""ONNX export of the deployed PartialNet classifier or backbone, checked by onnxruntime.

Both of torch's exporters: the dynamo exporter (``dynamo=True``, torch.export underneath)
and the TorchScript one (``dynamo=False``, what mmdeploy and older deployment scripts
call). Either with dynamic batch size and input height / width (the iRPE bias of PAT_sf
is computed in the graph from the input size) or for one fixed input size (the bias is then
a constant the runtimes fold). One self-contained ``.onnx`` file. Needs ``onnx``,
``onnxscript`` (the dynamo exporter) and ``onnxruntime`` (the check).
"""
import os
import time
import warnings
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from ..deploy import fuse_and_check, randomize_norms
from ..mmconfig import classifier_kwargs
from ..models import PartialNet, PartialNetClassifier, load_backbone_checkpoint
from ..models.classifiers import load_classifier_checkpoint

ONNX_TOLERANCE = 1e-4


class ExportMismatch(RuntimeError):
    """A runtime does not compute what PyTorch computes on the exported model."""


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
    (other batch sizes and input sizes than the exported one); :class:`ExportMismatch` for
    other outputs or above ``tolerance``."""
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
            raise ExportMismatch(f'{path}: {len(got)} outputs, PyTorch gives {len(ref)}')
        for r, o in zip(ref, got, strict=True):
            if tuple(o.shape) != tuple(r.shape):
                raise ExportMismatch(f'{path}: output shape {o.shape} for input {shape}, PyTorch '
                                 f'gives {tuple(r.shape)}')
            worst = max(worst, float(np.abs(o - r.numpy()).max()))
    if not worst <= tolerance:
        raise ExportMismatch(f'{path}: onnxruntime differs from PyTorch by {worst:.3g} > '
                         f'{tolerance:g}')
    return worst


def default_shapes(input_size: int) -> Sequence[Tuple[int, int, int, int]]:
    return ((1, 3, input_size, input_size), (3, 3, input_size - 32, input_size + 32))


def build_exportable(model: str, checkpoint: Optional[str] = None,
                     backbone: bool = False) -> nn.Module:
    """The eval-mode classifier (or, ``backbone``, its four-stage backbone) of a variant name or
    an mmpretrain config of ours, with ``checkpoint``'s weights; without one, random weights
    whose BN statistics are randomised (so that the fused == unfused check tests the folds)."""
    kwargs = classifier_kwargs(model)
    torch.manual_seed(0)
    if backbone:
        net = PartialNet(**{k: v for k, v in kwargs.items()
                            if k not in ('num_classes', 'mid_channels')}).eval()
        load = load_backbone_checkpoint
    else:
        net = PartialNetClassifier(**kwargs).eval()
        load = load_classifier_checkpoint
    if checkpoint:
        load(net, checkpoint)
    else:
        randomize_norms(net)
    return net


@dataclass
class ClassifierExport:
    """What :func:`export_classifier` wrote and measured."""
    path: str
    exporter: str
    dynamic: bool
    seconds: float
    fuse_diff: float
    onnx_diff: float
    shapes: List[Tuple[int, int, int, int]]
    random_weights: bool

    def summary(self) -> str:
        weights = ('no checkpoint: random weights (BN statistics randomised)\n'
                   if self.random_weights else '')
        size = os.path.getsize(self.path) / 2 ** 20
        return (f'{weights}wrote {self.path} ({size:.1f} MiB, one file; '
                f'{self.exporter} exporter, {"dynamic" if self.dynamic else "fixed"} size, '
                f'{self.seconds:.1f} s): fused vs unfused {self.fuse_diff:.2e}, onnxruntime vs '
                f'PyTorch {self.onnx_diff:.2e} (max abs) on inputs {self.shapes}')


def export_classifier(model: str, out: str, checkpoint: Optional[str] = None,
                      backbone: bool = False, input_size: int = 224, opset: int = 20,
                      dynamo: bool = True, fixed_size: bool = False) -> ClassifierExport:
    """Fuse the classifier or backbone of ``model`` (:func:`build_exportable`), check it
    against the unfused one (:class:`~partialnet_mm.deploy.FusionMismatch` above 1e-4),
    export it (:func:`export`) and check onnxruntime against PyTorch (:func:`verify`:
    :class:`ExportMismatch` above 1e-4, on other batch and input sizes than the exported one
    when dynamic). A file that fails its check is removed."""
    net = build_exportable(model, checkpoint, backbone)
    size = input_size
    fused, fuse_diff = fuse_and_check(net, torch.randn(2, 3, size, size), action='export it')
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    try:
        start = time.perf_counter()
        export(fused, out, size, opset, dynamo=dynamo, dynamic=not fixed_size, batch=1)
        seconds = time.perf_counter() - start
        shapes = [(1, 3, size, size)] if fixed_size else list(default_shapes(size))
        onnx_diff = verify(fused, out, shapes)
    except BaseException:
        if os.path.exists(out):  # a file that failed its check is no deliverable
            os.remove(out)
        raise
    return ClassifierExport(out, 'dynamo' if dynamo else 'torchscript', not fixed_size, seconds,
                            fuse_diff, onnx_diff, shapes, checkpoint is None)
