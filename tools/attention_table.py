#!/usr/bin/env python
"""PartialNet with each partial attention branch (SRM, SE, the paper's Gaussian, ECA):
parameters and FLOPs at 224x224, beside the paper's table-12 top-1 on ImageNet.

    .venv/bin/python tools/attention_table.py [--arch t2]
"""
import argparse

from partialnet_mm.toolkit.complexity import attention_table


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', default='t2', 
                        help='the variant (default t2, the paper\'s table 12)')
    args = parser.parse_args()
    print(f'PartialNet-{args.arch.upper()}, 224x224, mmengine counter')
    print('| attention | params (M) | FLOPs train (G) | FLOPs deploy (G) | paper top-1 (T2) |')
    print('|---|---|---|---|---|')
    for r in attention_table(args.arch):
        top1 = '-' if r['paper_top1'] is None or args.arch != 't2' else f"{r['paper_top1']:.1f}"
        print(f"| {r['label']} | {r['params']:.3f} | {r['flops_train']:.4f} | "
              f"{r['flops_deploy']:.4f} | {top1} |")


if __name__ == '__main__':
    main()
