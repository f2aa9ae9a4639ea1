#!/usr/bin/env python
"""Plot the split ratio DPConv learned for every layer (the paper's figure 7) to a PNG.

    .venv/bin/python tools/plot_split_ratios.py b2/epoch_8.pth b8/epoch_8.pth --labels b=2 b=8 \
        --out dpconv_ratios.png
"""
import argparse
import sys

from partialnet_mm.checkpoint import read_checkpoint
from partialnet_mm.dpconv.export import learned_split, plot_ratios


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoints', nargs='+', help='DPConv checkpoints (one line each)')
    parser.add_argument('--labels', nargs='+', help='one per checkpoint (default: file names)')
    parser.add_argument('--out', default='dpconv_split_ratios.png',
                        help='the PNG to write (default: dpconv_split_ratios.png)')
    parser.add_argument('--title', default='', help='figure title')
    args = parser.parse_args(argv)
    labels = args.labels or args.checkpoints
    if len(labels) != len(args.checkpoints):
        raise SystemExit(f'{len(labels)} labels for {len(args.checkpoints)} checkpoints')
    series = {}
    for label, path in zip(labels, args.checkpoints, strict=True):
        try:
            _, ratios, _ = learned_split(read_checkpoint(path)[1])
        except (FileNotFoundError, KeyError, ValueError) as err:
            raise SystemExit(f'{path}: {err}')
        series[label] = ratios
    print(plot_ratios(series, args.out, args.title))


if __name__ == '__main__':
    sys.exit(main())
