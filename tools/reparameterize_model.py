#!/usr/bin/env python
"""Fuse the PartialNet backbone of a trained checkpoint (classifier, detector or segmentor).

    .venv/bin/python tools/reparameterize_model.py CONFIG CHECKPOINT OUT [--cfg-options k=v ...]
    .venv/bin/python tools/test.py CONFIG OUT --cfg-options model.backbone.deploy=True

mmpretrain's tool name and arguments. The checkpoint is loaded strictly into CONFIG's
model, the backbone fused (``switch_to_deploy``) and checked against the unfused one on a
random input, and OUT written with the checkpoint's ``meta`` kept.
"""
import argparse
import sys

from mmengine.config import DictAction

from partialnet_mm import commands
from partialnet_mm.toolkit.reparameterize import reparameterize


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='the (training) config the checkpoint belongs to')
    p.add_argument('checkpoint', help='the trained checkpoint')
    p.add_argument('out', help='where to write the fused checkpoint')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, as in tools/train.py')
    args = p.parse_args(argv)
    try:
        done = reparameterize(args.config, args.checkpoint, args.out, args.cfg_options)
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        print(f'error: {err.args[0] if isinstance(err, KeyError) else err}', file=sys.stderr)
        return 2
    print(f'fused backbone: {done["params_before"] / 1e6:.2f}M -> '
          f'{done["params_after"] / 1e6:.2f}M parameters, max abs diff to the unfused one '
          f'{done["max_abs_diff"]:.2e}')
    print(f'wrote {done["out"]}; evaluate it with\n  {commands.tool("test", args.config)} '
          f'{done["out"]} --cfg-options model.backbone.deploy=True')
    return 0


if __name__ == '__main__':
    sys.exit(main())
