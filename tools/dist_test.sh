#!/usr/bin/env bash
# Distributed test with torchrun, on one machine or several:
#   bash tools/dist_test.sh CONFIG CHECKPOINT NPROC [args of tools/test.py]
# NNODES, NODE_RANK, MASTER_ADDR and PORT as in tools/dist_train.sh. Without CUDA the
# processes use the gloo backend on CPU. The interpreter is $PYTHON, else the repository's
# .venv, else `python`.
set -euo pipefail
if [[ $# -lt 3 ]]; then
    echo "usage: [NNODES=N NODE_RANK=R MASTER_ADDR=A PORT=P] bash $0 CONFIG CHECKPOINT NPROC [args]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$DIR/find_python.sh"
exec "$PYTHON" -m torch.distributed.run --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" "$DIR/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
