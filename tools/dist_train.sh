#!/usr/bin/env bash
# Distributed training with torchrun, on one machine or several:
#   bash tools/dist_train.sh CONFIG NPROC [args of tools/train.py]
# NPROC processes on this machine (one per GPU). For several machines, run the same command on
# each with NNODES (machines), NODE_RANK (0 .. NNODES-1), MASTER_ADDR (node 0's address) and
# PORT (a free port on node 0). Without CUDA the processes use the gloo backend on CPU.
# A SIGTERM or SIGUSR1 sent to this script reaches the training processes (not torchrun, which
# would kill them): they finish the iteration, save a checkpoint and stop, and the script exits
# with 75; the same command with --resume continues (docs/training.md).
# The interpreter is $PYTHON, else the repository's .venv, else `python`.
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "usage: [NNODES=N NODE_RANK=R MASTER_ADDR=A PORT=P] bash $0 CONFIG NPROC [args]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$DIR/find_python.sh"
PREEMPTED=75  # partialnet_mm.training.PREEMPTED_EXIT_CODE
"$PYTHON" -m torch.distributed.run --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" "$DIR/train.py" "$CONFIG" --launcher pytorch "$@" &
RUN=$!
STOPPING=0
stop() { STOPPING=1; pkill "-$1" -P "$RUN" || true; }
trap 'stop TERM' TERM
trap 'stop USR1' USR1
while true; do
    wait "$RUN" && rc=0 || rc=$?
    kill -0 "$RUN" 2>/dev/null || break  # else `wait` returned for a signal: wait again
done
if (( rc != 0 && STOPPING )); then
    echo "dist_train.sh: stopped by a signal; exit $PREEMPTED (resume with --resume)" >&2
    exit "$PREEMPTED"
fi
exit "$rc"
