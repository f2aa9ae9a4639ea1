"""Speed of whole detectors with a PartialNet backbone against the mmdet config they are built
on (the same detector with its own backbone), in one process, interleaved (:mod:`.timing`).

- :func:`benchmark_detector`: two-stage detectors (Mask R-CNN), images/s of the unfused and
  fused PartialNet detector against the baseline, batch 1, all threads (and the GPU).
- :func:`benchmark_detector_parts`: one-stage, real-time detectors (RTMDet, RTMDet-Ins): the
  fused PartialNet detector against the baseline at 1 thread and at all threads, batch 1,
  split into backbone + neck, head and post-processing (score filter, NMS, masks).

Speed is reported only after the fused backbone is shown to compute the unfused one
(:mod:`partialnet_mm.deploy`). Needs mmdet.
"""
import os.path as osp
from typing import Callable, Dict, Optional, Sequence

import torch

from ..deploy import check_fused, fused_copy, randomize_norms
from ..models import PartialNet
from ..mmconfig import build_model, is_one_stage, load_config
from .peers import FUSED, UNFUSED
from .runner import REFUSAL, BenchmarkRunner, fused_ratios
from ..timing import environment, num_threads, time_interleaved

BASELINE = 'baseline'
# the parts of a one-stage detector's inference, in order; 'total' is network + post-processing
PARTS = ('backbone + neck', 'head', 'network (no NMS)', 'post-processing', 'total')


def mmdet_base_config(path: str) -> Optional[str]:
    """The mmdet config (``mmdet::...``) a config of ours is built on, following its local
    ``_base_`` files: the same detector with its own backbone, the fair yardstick."""
    from mmengine.config import Config
    for base in Config._get_base_files(path):
        if base.startswith('mmdet::'):
            return base
        if '::' not in base:
            found = mmdet_base_config(osp.join(osp.dirname(path), base))
            if found:
                return found
    return None


def _checked_detectors(cfg, config, height: int, width: int, seed: int):
    """The detector of ``cfg`` (random weights, BN statistics randomised), its copy with the
    backbone fused, the input both are timed on, and the fused-against-unfused difference of
    the backbone on it (a speed of a fused graph that computes something else is refused)."""
    unfused = build_model(cfg, backbone_weights=False).eval()  # speed needs no weights
    if not isinstance(unfused.backbone, PartialNet):
        raise ValueError(f'{config}: the backbone is {type(unfused.backbone).__name__}, '
                         f'not PartialNet')
    randomize_norms(unfused.backbone, seed)
    fused = fused_copy(unfused)
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(seed))
    diff = check_fused(unfused.backbone, fused.backbone, x, what='PartialNet backbone',
                       action=REFUSAL)
    arch = cfg.model.backbone.get('arch')
    return unfused, fused, x, diff, arch.upper() if isinstance(arch, str) else 'custom'


def _baseline(config, baseline: Optional[str]) -> str:
    baseline = baseline or mmdet_base_config(str(config))
    if baseline is None:
        raise ValueError(f'{config} is not built on an mmdet config; give the yardstick with '
                         f'--det-baseline')
    return baseline


def _sample(height: int, width: int):
    from mmdet.structures import DetDataSample
    return DetDataSample(metainfo=dict(
        img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
        batch_input_shape=(height, width), scale_factor=(1.0, 1.0)))


def benchmark_detector(config, baseline: Optional[str] = None, height: int = 800,
                       width: int = 1216, runs: int = 5, warmup: int = 1, rounds: int = 5,
                       cuda: Optional[bool] = None, seed: int = 0) -> dict:
    """Images/s of a two-stage detector with a PartialNet backbone (unfused and fused) against
    ``baseline`` (default: the mmdet config it is built on), on the same preprocessed image
    (batch 1, all CPU threads, and the GPU when there is one). Random weights: heads keep
    few boxes."""
    torch.manual_seed(seed)
    baseline = _baseline(config, baseline)
    cfg = load_config(config)
    unfused, fused, x, diff, label = _checked_detectors(cfg, config, height, width, seed)
    name = cfg.model.type
    runner = BenchmarkRunner({
        UNFUSED: (f'{name} PartialNet-{label} unfused', unfused),
        FUSED: (f'{name} PartialNet-{label} fused', fused),
        BASELINE: (f'{name}, {osp.basename(baseline)[:-3]} (baseline config)',
                   build_model(load_config(baseline), backbone_weights=False).eval())})
    sample = _sample(height, width)

    def predict(model, inputs):
        return model(inputs, [sample], mode='predict')

    def image(device):
        return x.to(device)

    cpu = runner.time('cpu_images_per_s', runner.calls(image, 'cpu', predict), warmup, runs,
                      rounds, lambda t: 1 / t)
    use_cuda = torch.cuda.is_available() if cuda is None else cuda
    if use_cuda:
        runner.time('gpu_images_per_s', runner.calls(image, 'cuda', predict), warmup, runs,
                    rounds, lambda t: 1 / t, cuda=True)
    ratios = fused_ratios(cpu, 'fused_over_unfused_cpu', 'fused_over_{role}_cpu', throughput=True)
    return dict(kind='detector', config=str(config), baseline=str(baseline),
                fused_max_abs_diff=diff, rows=list(runner.rows.values()), ratios=ratios,
                settings=dict(height=height, width=width, runs=runs, warmup=warmup,
                              rounds=rounds, batch=1, threads=torch.get_num_threads(),
                              weights='random (BN statistics randomised)'),
                env=environment(use_cuda))


def _part_calls(model, x: torch.Tensor, sample,
                head_outputs: tuple) -> Dict[str, Callable[[], object]]:
    """One no-argument call per timed part of a one-stage detector's inference on ``x``. The
    head runs on the features computed once; the post-processing on ``head_outputs``."""
    head = model.bbox_head
    metas = [sample.metainfo]
    with torch.inference_mode():
        feats = model.extract_feat(x)
    return {
        'backbone + neck': lambda: model.extract_feat(x),
        'head': lambda: head(feats),
        'network (no NMS)': lambda: head(model.extract_feat(x)),
        'post-processing': lambda: head.predict_by_feat(*head_outputs, batch_img_metas=metas,
                                                        rescale=False),
    }


def benchmark_detector_parts(config, baseline: Optional[str] = None, height: int = 640,
                             width: int = 640, runs: int = 20, warmup: int = 2,
                             rounds: int = 10, threads: Sequence[Optional[int]] = (1, None),
                             seed: int = 0) -> dict:
    """Milliseconds per image (batch 1) of a one-stage detector with the fused PartialNet
    backbone against ``baseline`` (default: the mmdet config it is built on, e.g. RTMDet-tiny
    with CSPNeXt), part by part (:data:`PARTS`), every call of both models interleaved, at
    each thread count of ``threads`` (None: all of torch's threads).

    Random weights with the BN statistics randomised. The post-processing (score filter, top-k,
    NMS, masks) costs what the number of boxes passing the score threshold makes it cost, which
    depends on trained scores, not on the backbone: both models post-process the same head
    outputs (the baseline's, for the same head), so that random weights do not decide it.
    ``total`` is the network plus the post-processing."""
    torch.manual_seed(seed)
    baseline = _baseline(config, baseline)
    cfg = load_config(config)
    if not is_one_stage(cfg.model):
        raise ValueError(f'{config}: not a one-stage detector (it has an RoI head); the part '
                         f'split is for RTMDet-like detectors')
    unfused, fused, x, diff, label = _checked_detectors(cfg, config, height, width, seed)
    base = build_model(load_config(baseline), backbone_weights=False).eval()
    params = {FUSED: sum(p.numel() for p in unfused.parameters()) / 1e6,  # training graph
              BASELINE: sum(p.numel() for p in base.parameters()) / 1e6}
    del unfused
    models = {FUSED: (f'{cfg.model.type} PartialNet-{label} (fused)', fused),
              BASELINE: (f'{osp.basename(baseline)[:-3]} (mmdet)', base)}
    sample = _sample(height, width)
    with torch.inference_mode():
        head_outputs = base.bbox_head(base.extract_feat(x))
    calls = {(role, part): fn for role, (_, model) in models.items()
             for part, fn in _part_calls(model, x, sample, head_outputs).items()}
    all_threads = torch.get_num_threads()
    timings = {}
    for n in threads:
        n = n or all_threads
        with num_threads(n):
            seconds = time_interleaved(calls, warmup, runs, rounds)
        timings[n] = {role: {part: 1e3 * seconds[(role, part)] for part in PARTS[:-1]}
                      for role in models}
        for t in timings[n].values():
            t['total'] = t['network (no NMS)'] + t['post-processing']
    ratios = {f'{part} ({n} thread{"s" if n > 1 else ""})':
              t[FUSED][part] / t[BASELINE][part] for n, t in timings.items() for part in PARTS}
    return dict(kind='detector_parts', config=str(config), baseline=str(baseline),
                fused_max_abs_diff=diff, models={role: name for role, (name, _) in models.items()},
                params_m=params, ms={str(n): t for n, t in timings.items()}, ratios=ratios,
                settings=dict(height=height, width=width, runs=runs, warmup=warmup,
                              rounds=rounds, batch=1, threads=[n or all_threads for n in threads],
                              weights='random (BN statistics randomised)'),
                env=environment())
