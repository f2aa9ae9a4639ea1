#!/usr/bin/env bash
# Shared by tools/slurm_train.sh and tools/slurm_test.sh: run one of our Python tools under
# Slurm's srun, one task per GPU:
#   bash tools/srun_tool.sh PARTITION JOB_NAME TOOL.py [args of the tool]
# GPUS tasks in all (default 8), GPUS_PER_NODE per machine (default 8, at most GPUS),
# CPUS_PER_TASK cores each (default 5); SRUN_ARGS go to srun as they are (word-split).
# The interpreter is $PYTHON, else the repository's .venv, else `python`.
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
TOOL=$3
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
(( GPUS_PER_NODE > GPUS )) && GPUS_PER_NODE=$GPUS
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
read -r -a EXTRA <<< "${SRUN_ARGS:-}"
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$DIR/find_python.sh"
exec srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 "${EXTRA[@]}" "$PYTHON" -u "$DIR/$TOOL" "$@"
