#!/usr/bin/env bash
# Distributed training with torchrun, on one machine or several:
#   bash tools/dist_train.sh CONFIG NPROC [args of tools/train.py]
# NPROC processes on this machine (one per GPU). For several machines, run the same command on
# each with NNODES (machines), NODE_RANK (0 .. NNODES-1), MASTER_ADDR (node 0's address) and
# PORT (a free port on node 0). Without CUDA the processes use the gloo backend on CPU.
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
exec "$PYTHON" -m torch.distributed.run --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" "$DIR/train.py" "$CONFIG" --launcher pytorch "$@"
