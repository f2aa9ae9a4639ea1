"""docs/tools.md, written from the tools themselves: each Python tool's ``--help`` and each shell
script's opening comment, so that the docs quote the options instead of repeating them.

    .venv/bin/python -m partialnet_mm.toolkit.tool_reference docs/tools.md

rewrites the page; ``tests/test_docs.py`` fails when the page and the tools disagree.
"""
import argparse
import contextlib
import io
import os
import runpy
import sys
import warnings
from pathlib import Path
from typing import List

HEADER = """\
# Tools

Every tool in `tools/`, with what its `--help` prints (Python tools) or its opening comment
(shell scripts). The other pages link here instead of repeating the options. This page is
generated: after changing a tool's arguments or help, run

```bash
.venv/bin/python -m partialnet_mm.toolkit.tool_reference docs/tools.md
```

(`tests/test_docs.py` fails while the page and the tools disagree).
"""

# argparse wraps its help to the terminal's width; a fixed width makes the page reproducible
HELP_COLUMNS = '100'


def tool_files(tools_dir: Path) -> List[Path]:
    """The tools, Python tools first, each group by name."""
    files = [p for p in tools_dir.iterdir() if p.suffix in ('.py', '.sh')]
    return sorted(files, key=lambda p: (p.suffix != '.py', p.name))


def python_help(path: Path) -> str:
    """What ``python TOOL --help`` prints, run in this process (the imports are shared, so
    the whole page takes seconds, not a process per tool)."""
    out, argv, columns = io.StringIO(), sys.argv, os.environ.get('COLUMNS')
    sys.argv, os.environ['COLUMNS'] = [str(path), '--help'], HELP_COLUMNS
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            runpy.run_path(str(path), run_name='__main__')
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise RuntimeError(f'{path} --help exited with {stop.code}') from stop
    finally:
        sys.argv = argv
        if columns is None:
            os.environ.pop('COLUMNS')
        else:
            os.environ['COLUMNS'] = columns
    return out.getvalue()


def shell_comment(path: Path) -> str:
    """The comment lines at the top of a script (after the #! line), without their '#'."""
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith('#!'):
            continue
        if not line.startswith('#'):
            break
        lines.append(line[2:] if line.startswith('# ') else line[1:])
    if not lines:
        raise ValueError(f'{path} has no opening comment to document it')
    return '\n'.join(lines) + '\n'


def tool_text(path: Path) -> str:
    return python_help(path) if path.suffix == '.py' else shell_comment(path)


def summary(path: Path, text: str) -> str:
    """A tool's first phrase: of its help's description (after the usage) or of its comment,
    up to the first ': ' or '. '."""
    if path.suffix == '.py':
        text = text.split('\n\n', 1)[1]  # argparse's help opens with the usage paragraph
    first = ' '.join(text.split('\n\n')[0].split())
    cuts = [i for i in (first.find(': '), first.find('. ')) if i > 0]
    first = first[:min(cuts)] if cuts else first.rstrip(':.')
    return first.replace('|', '\\|')


def anchor(name: str) -> str:
    """GitHub's anchor of the heading ``tools/<name>``."""
    return 'tools' + name.replace('.', '')


def render(tools_dir: Path) -> str:
    parts = [HEADER]
    files = tool_files(tools_dir)
    texts = [tool_text(path) for path in files]
    parts.append('\n| tool | what |\n|---|---|\n')
    for path, text in zip(files, texts):
        parts.append(f'| [`tools/{path.name}`](#{anchor(path.name)}) | {summary(path, text)} |\n')
    for path, text in zip(files, texts):
        parts.append(f'\n## tools/{path.name}\n\n```text\n{text.rstrip()}\n```\n')
    return ''.join(parts)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out', help='the page to write, e.g. docs/tools.md')
    parser.add_argument('--tools', default='tools', help='the tools folder (default: tools)')
    args = parser.parse_args(argv)
    Path(args.out).write_text(render(Path(args.tools)))
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
