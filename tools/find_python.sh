# Sourced by the tools' shell scripts; sets PYTHON, the interpreter they run:
#   $PYTHON when it is set, else the repository's .venv (made by tools/setup_env.sh) when
#   there is one, else the first `python` on PATH (an installed package's .mim/tools, say).
# `pwd -P` resolves the package's .mim/tools link back to the repository's tools/.
if [[ -z "${PYTHON:-}" ]]; then
    _repo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/..
    if [[ -x "$_repo/.venv/bin/python" ]]; then
        PYTHON=$(cd "$_repo" && pwd)/.venv/bin/python
    else
        PYTHON=python
    fi
    unset _repo
fi
