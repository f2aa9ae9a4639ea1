"""Commands printed for the user to run: with the interpreter that runs this process (the
repository's ``.venv/bin/python`` after ``bash tools/setup_env.sh``), relative to the current
folder when it is inside it, so that a hint works exactly as printed."""
import os.path as osp
import sys


def python() -> str:
    """This process's Python, as a user would type it here."""
    exe = sys.executable or 'python'
    rel = osp.relpath(exe) if osp.isabs(exe) else exe
    return rel if not rel.startswith('..') else exe


def tool(name: str, *args: str) -> str:
    """``<python> tools/<name>.py ARGS``."""
    return ' '.join([python(), f'tools/{name}.py', *args])
