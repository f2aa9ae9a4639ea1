#!/usr/bin/env bash
# Training on a Slurm cluster, one task per GPU, with the arguments of mmdet's own script:
#   [GPUS=16 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS="..."] \
#       bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [args of tools/train.py]
# The knobs are described in tools/srun_tool.sh; mmengine reads the ranks and the master
# address from Slurm (--launcher slurm).
set -euo pipefail
if [[ $# -lt 4 ]]; then
    echo "usage: [GPUS=N GPUS_PER_NODE=G CPUS_PER_TASK=C SRUN_ARGS=...] bash $0 PARTITION JOB_NAME CONFIG WORK_DIR [args]" >&2
    exit 2
fi
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec bash "$DIR/srun_tool.sh" "$1" "$2" train.py "$3" --work-dir="$4" --launcher=slurm "${@:5}"
