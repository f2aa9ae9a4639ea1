#!/usr/bin/env python
r"""Run one of timm's own scripts (benchmark.py, validate.py, onnx_export.py, train.py, ...,
from a clone of github.com/huggingface/pytorch-image-models; the timm wheel does not ship
them) with the PartialNet models registered: partialnet_t0 ... partialnet_l.

    .venv/bin/python tools/timm_script.py ../pytorch-image-models/benchmark.py \
        --model partialnet_s --reparam
    .venv/bin/python tools/timm_script.py ../pytorch-image-models/validate.py data/val \
        --model partialnet_t0 --checkpoint work_dirs/t0_in1k/epoch_300.pth

The script runs as `python SCRIPT ARGS` would run it, after `import partialnet_mm`, which
registers the models in timm's registry (they are written the way timm's own are).
"""
import argparse
import os
import runpy
import sys

if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('script', help='a timm script, e.g. pytorch-image-models/validate.py')
    parser.add_argument('args', nargs=argparse.REMAINDER, help="the script's own arguments")
    args = parser.parse_args()
    if not os.path.isfile(args.script):
        raise SystemExit(f"timm script not found: {args.script} (timm's scripts are in its "
                         f"repository, not in the wheel)")
    import partialnet_mm  # noqa: F401  registers partialnet_* in timm's registry
    sys.argv = [args.script] + args.args
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
    runpy.run_path(args.script, run_name='__main__')
