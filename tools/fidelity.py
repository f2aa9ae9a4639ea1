#!/usr/bin/env python
"""Print parameters and FLOPs of PartialNet T0..L beside the paper and the authors' code.

    .venv/bin/python tools/fidelity.py                 # all six variants, 224x224
    .venv/bin/python tools/fidelity.py --arch t2 s     # a subset
"""
import argparse

from partialnet_mm.toolkit.complexity import PAPER, fidelity_table, format_table


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', nargs='+', default=list(PAPER), choices=list(PAPER),
                        help='variants (default: all)')
    parser.add_argument('--input-size', type=int, default=224, help='default 224, the paper\'s')
    args = parser.parse_args()
    print(format_table(fidelity_table(args.arch, args.input_size)))
    print('\nParams: training graph (PAT_sp on). FLOPs: multiply-adds by mmengine\'s counter; '
          '"deploy" after switch_to_deploy() (BN folded, PAT_sp\'s BN+1x1 conv folded into the '
          'MLP). The paper counts params on the training graph and FLOPs on the deployed one; '
          'for T0/T1 no setting of the authors\' code reaches the paper\'s params '
          '(docs/fidelity.md).')


if __name__ == '__main__':
    main()
