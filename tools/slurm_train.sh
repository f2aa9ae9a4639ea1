#!/usr/bin/env bash
# Training on a Slurm cluster, one task per GPU, with the arguments of mmdet's own script:
#   [GPUS=16 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS="..." SIGNAL_LEAD=180] \
#       bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [args of tools/train.py]
# The knobs are described in tools/srun_tool.sh; mmengine reads the ranks and the master
# address from Slurm (--launcher slurm).
# Preemption and time limits: srun sends SIGUSR1 SIGNAL_LEAD seconds (default 180) before the
# time limit; on it, or on a preemption's SIGTERM, the tasks finish the iteration, save a
# checkpoint and exit 75. In a batch job (sbatch) the script then requeues the job
# (`scontrol requeue`); the requeued job runs this same command, which resumes (--resume is
# passed unless the arguments already have one). Outside a batch job, run it again.
set -euo pipefail
if [[ $# -lt 4 ]]; then
    echo "usage: [GPUS=N GPUS_PER_NODE=G CPUS_PER_TASK=C SRUN_ARGS=... SIGNAL_LEAD=S] bash $0 PARTITION JOB_NAME CONFIG WORK_DIR [args]" >&2
    exit 2
fi
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PREEMPTED=75  # partialnet_mm.training.PREEMPTED_EXIT_CODE
RESUME=(--resume)
for arg in "${@:5}"; do
    [[ $arg == --resume || $arg == --resume=* ]] && RESUME=()
done
SRUN_ARGS="--signal=USR1@${SIGNAL_LEAD:-180} ${SRUN_ARGS:-}"
export SRUN_ARGS
# srun passes SIGTERM on to the tasks; this shell only waits for srun, then requeues
trap ':' TERM USR1
bash "$DIR/srun_tool.sh" "$1" "$2" train.py "$3" --work-dir="$4" --launcher=slurm \
    "${RESUME[@]}" "${@:5}" && rc=0 || rc=$?
if (( rc == PREEMPTED )); then
    if [[ -n ${SLURM_JOB_ID:-} ]]; then
        echo "slurm_train.sh: stopped with a checkpoint; requeueing job $SLURM_JOB_ID" >&2
        scontrol requeue "$SLURM_JOB_ID"
    else
        echo "slurm_train.sh: stopped with a checkpoint; run the same command to continue" >&2
    fi
fi
exit "$rc"
