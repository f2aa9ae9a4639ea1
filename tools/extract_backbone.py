#!/usr/bin/env python
"""Extract the backbone of a classifier checkpoint for the detection configs.

    .venv/bin/python tools/extract_backbone.py work_dirs/s/epoch_300.pth \
        checkpoints/partialnet_s_in1k_backbone.pth

Keeps the ``backbone.`` keys (prefix removed), drops the head and the optimizer.
"""
import argparse
import sys

from partialnet_mm.checkpoint import CheckpointError, read_checkpoint, write_checkpoint


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='a classifier checkpoint (mmpretrain\'s, e.g. epoch_300.pth)')
    parser.add_argument('dst', help='the backbone checkpoint to write, e.g. '
                        'checkpoints/partialnet_s_in1k_backbone.pth (where the detection configs '
                        'look)')
    parser.add_argument('--prefix', default='backbone.',
                        help='the backbone\'s key prefix in SRC (default: backbone.)')
    args = parser.parse_args(argv)
    try:
        ckpt, state = read_checkpoint(args.src)
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        raise SystemExit(str(err))
    backbone = {k[len(args.prefix):]: v for k, v in state.items() if k.startswith(args.prefix)}
    if not backbone:
        raise SystemExit(f'{args.src}: no key starts with {args.prefix!r} (keys look like '
                         f'{sorted(state)[:3]}); convert authors\' checkpoints with '
                         f'tools/convert_authors_checkpoint.py first')
    meta = dict(ckpt.get('meta', {}) if isinstance(ckpt.get('meta'), dict) else {}, source=args.src)
    write_checkpoint(dict(state_dict=backbone, meta=meta), args.dst)
    print(f'{len(backbone)} backbone tensors -> {args.dst}')


if __name__ == '__main__':
    sys.exit(main())
