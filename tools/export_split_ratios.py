#!/usr/bin/env python
"""Freeze the split ratios a DPConv PartialNet learned, for a plain PartialNet.

    .venv/bin/python tools/export_split_ratios.py work_dirs/dp/epoch_300.pth \
        --out work_dirs/dp/split_ratios.py --base-config configs/partialnet-t0_8xb512_in1k.py \
        --out-checkpoint work_dirs/dp/frozen.pth

Writes ``partial_ratio`` (one ratio per block) as a config: with ``--base-config`` a full
config that retrains the plain model (the authors' flow: learn, fix, retrain); without, a
fragment to copy. ``--out-checkpoint`` also writes the DPConv weights cut to the learned
split, which the plain model loads strictly and which computes the same function in eval.
"""
import argparse
import json
import os
import sys

from partialnet_mm.checkpoint import read_checkpoint, write_checkpoint
from partialnet_mm.dpconv.export import learned_split, short_layer_name, write_ratio_config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoint')
    parser.add_argument('--out', help='config file to write (default: next to the checkpoint)')
    parser.add_argument('--base-config', help='plain config the written one inherits from')
    parser.add_argument('--out-checkpoint', help='also write the frozen weights here')
    parser.add_argument('--json', help='also write {layer: ratio} as JSON here')
    args = parser.parse_args(argv)
    try:
        ckpt, state = read_checkpoint(args.checkpoint)
        setting, ratios, frozen = learned_split(state)
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise SystemExit(f'{args.checkpoint}: {err}')
    out = args.out or os.path.splitext(args.checkpoint)[0] + '_split_ratios.py'
    write_ratio_config(out, setting, args.checkpoint, args.base_config)
    for name, ratio in ratios.items():
        print(f'{short_layer_name(name):>8}  {name}  1/{1 / ratio:g}')
    print(f'partial_ratio -> {out}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(partial_ratio=setting, layers=ratios), f, indent=1)
    if args.out_checkpoint:
        meta = dict(ckpt.get('meta') or {}) if isinstance(ckpt, dict) else {}
        meta.update(dpconv_partial_ratio=setting, source=args.checkpoint)
        os.makedirs(os.path.dirname(os.path.abspath(args.out_checkpoint)), exist_ok=True)
        write_checkpoint(dict(state_dict=frozen, meta=meta), args.out_checkpoint)
        print(f'frozen weights ({len(frozen)} tensors) -> {args.out_checkpoint}')


if __name__ == '__main__':
    sys.exit(main())
