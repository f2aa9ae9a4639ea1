#!/usr/bin/env bash
# Testing on a Slurm cluster, one task per GPU, with the arguments of mmdet's own script:
#   [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS="..."] \
#       bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [args of tools/test.py]
# The knobs are described in tools/srun_tool.sh.
set -euo pipefail
if [[ $# -lt 4 ]]; then
    echo "usage: [GPUS=N GPUS_PER_NODE=G CPUS_PER_TASK=C SRUN_ARGS=...] bash $0 PARTITION JOB_NAME CONFIG CHECKPOINT [args]" >&2
    exit 2
fi
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec bash "$DIR/srun_tool.sh" "$1" "$2" test.py "$3" "$4" --launcher=slurm "${@:5}"
