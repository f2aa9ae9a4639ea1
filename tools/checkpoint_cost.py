#!/usr/bin/env python
"""The size and write time of a config's checkpoint, written the way
ResumableCheckpointHook does (serialise, write a temporary file, flush it to disk, rename),
for choosing ``iter_interval`` (docs/training.md).

    .venv/bin/python tools/checkpoint_cost.py configs/mask_rcnn_partialnet_s_1x.py \
        configs/partialnet-s_8xb512_in1k.py

The model is built without its pretrained weights, and the optimizer takes one step on
random gradients, so that its state (AdamW's two moments) is in the checkpoint as in training
(an AMP config's loss scaler, a few numbers, is left out).
"""
import argparse
import io
import os
import os.path as osp
import tempfile
import time

import torch

from partialnet_mm.mmconfig import build_model, load_config
from partialnet_mm.training.storage import AtomicLocalBackend


def checkpoint_of(cfg) -> dict:
    from mmengine.optim import build_optim_wrapper
    model = build_model(cfg, backbone_weights=False)
    optim = dict(cfg.optim_wrapper, type='OptimWrapper')  # AMP's wrapper needs a GPU; same state
    optim.pop('loss_scale', None)
    wrapper = build_optim_wrapper(model, optim)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn_like(p) * 1e-3
    wrapper.step()
    return dict(meta=dict(epoch=1, iter=1000), state_dict=model.state_dict(),
                optimizer=wrapper.state_dict())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('configs', nargs='+', help='training configs (their model and optimizer)')
    parser.add_argument('--dir', default=None, help='where to write (default: a temporary '
                        'folder; put it on the file system the work dir will be on)')
    parser.add_argument('--repeat', type=int, default=3, help='writes timed per config (default 3)')
    args = parser.parse_args()
    backend = AtomicLocalBackend()
    rows = [f'| config | checkpoint | write (median of {args.repeat}) |', '|---|---|---|']
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for config in args.configs:
            ckpt = checkpoint_of(load_config(config))
            seconds = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                with io.BytesIO() as f:  # as mmengine's save_checkpoint does
                    torch.save(ckpt, f)
                    backend.put(f.getvalue(), osp.join(folder, 'iter_1000.pth'))
                seconds.append(time.perf_counter() - start)
            size = os.path.getsize(osp.join(folder, 'iter_1000.pth'))
            rows.append(f'| {osp.basename(config)} | {size / 2 ** 20:.0f} MiB | '
                        f'{sorted(seconds)[len(seconds) // 2]:.2f} s |')
    print('\n'.join(rows))  # after the builders' logs


if __name__ == '__main__':
    main()
