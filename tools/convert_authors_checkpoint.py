#!/usr/bin/env python
"""Convert an authors' PartialNet classifier checkpoint into ours.

    .venv/bin/python tools/convert_authors_checkpoint.py SRC.ckpt DST.pth

SRC: a PyTorch Lightning file (``state_dict`` keys prefixed ``model.``) or a plain
state dict, PAT_sp on or off. DST loads strictly into the mmpretrain configs
(``configs/partialnet-*_in1k.py``; add ``model.backbone.with_pat_sp=False`` for a
checkpoint without PAT_sp) and into ``PartialNetClassifier``. The converted network
is built and loaded strictly before anything is written.
"""
import argparse
import sys

from partialnet_mm.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from partialnet_mm.models import PartialNet, PartialNetClassifier
from partialnet_mm.toolkit.convert import convert_authors_state_dict


def arch_of(info):
    for name, spec in PartialNet.arch_zoo.items():
        if spec['embed_dims'] == info['embed_dims'] and tuple(spec['depths']) == info['depths']:
            return name
    raise SystemExit(f"no PartialNet variant has embed_dims={info['embed_dims']} and "
                     f"depths={info['depths']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='the authors\' checkpoint: their Lightning file (keys under '
                        '"model.") or a plain state dict, PAT_sp on or off')
    parser.add_argument('dst', help='our classifier checkpoint, verified by a strict load into '
                        'the PartialNet it describes')
    args = parser.parse_args(argv)
    try:
        _, state = read_checkpoint(args.src)
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        raise SystemExit(str(err))
    try:
        converted, info = convert_authors_state_dict(state)
    except (KeyError, ValueError) as err:
        raise SystemExit(f'{args.src}: {err}')
    arch = arch_of(info)
    model = PartialNetClassifier(arch, with_pat_sp=info['with_pat_sp'],
                                 num_classes=converted['head.fc.weight'].shape[0])
    try:
        model.load_state_dict(converted, strict=True)
    except RuntimeError as err:
        raise SystemExit(f'{args.src}: converted keys do not fit PartialNet-{arch}: {err}')
    write_checkpoint(dict(state_dict=converted,
                    meta=dict(arch=arch, with_pat_sp=info['with_pat_sp'], source=args.src)),
               args.dst)
    hint = '' if info['with_pat_sp'] else ' (use --cfg-options model.backbone.with_pat_sp=False)'
    print(f'PartialNet-{arch.upper()}, PAT_sp {"on" if info["with_pat_sp"] else "off"}: '
          f'{len(converted)} tensors -> {args.dst}{hint}')


if __name__ == '__main__':
    sys.exit(main())
