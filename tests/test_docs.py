"""The README and docs/ hold together: every relative link, #anchor and picture resolves; the
tools page is what the tools print; every tool is documented and every file named exists; the
README stays short and its config snippets build. (tests/test_readme.py runs the commands.)"""
import functools
import glob
import importlib.util
import os.path as osp
import re
from pathlib import Path

import pytest

from helpers import REPO

PAGES = ['README.md'] + sorted(osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'docs',
                                                                             '*.md')))
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')


def _read(page):
    with open(osp.join(REPO, page)) as f:
        return f.read()


def _prose(text):
    """The text without fenced code blocks and inline code spans (links there are not links)."""
    text = re.sub(r'^(```+|~~~+).*?^\1\s*$', '', text, flags=re.S | re.M)
    return re.sub(r'`[^`\n]*`', '', text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading.strip().lower())  # a link's text
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


@functools.lru_cache(maxsize=64)  # each page read once (there are 17)
def anchors(page: str) -> frozenset:
    seen, out = {}, set()
    text = re.sub(r'^(```+|~~~+).*?^\1\s*$', '', _read(page), flags=re.S | re.M)
    for heading in re.findall(r'^#{1,6} (.+)$', text, re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f'{base}-{n}')
    return frozenset(out)


def test_slug_is_githubs():
    assert slug('The detector as one file: end2end.onnx, run with nothing but a runtime') == \
        'the-detector-as-one-file-end2endonnx-run-with-nothing-but-a-runtime'
    assert slug('mmengine 0.10.7 on torch >= 2.6') == 'mmengine-0107-on-torch--26'
    assert slug('tools/dist_train.sh') == 'toolsdist_trainsh'
    assert slug('Fidelity to the paper and the authors\' code') == \
        'fidelity-to-the-paper-and-the-authors-code'


def test_every_link_anchor_and_picture_resolves():
    checked, broken = 0, []
    for page in PAGES:
        for target in LINK.findall(_prose(_read(page))):
            if re.match(r'[a-z]+:', target):  # https:, mailto:
                continue
            path, _, anchor = target.partition('#')
            resolved = osp.normpath(osp.join(osp.dirname(page), path)) if path else page
            checked += 1
            if not osp.exists(osp.join(REPO, resolved)):
                broken.append(f'{page}: {target} (no file {resolved})')
            elif anchor and (not resolved.endswith('.md') or anchor not in anchors(resolved)):
                broken.append(f'{page}: {target} (no heading #{anchor} in {resolved})')
    assert checked > 80 and not broken, '\n'.join(broken)


def test_the_readme_links_every_docs_page():
    readme = _read('README.md')
    assert [p for p in PAGES[1:] if f']({p})' not in readme] == []


def test_the_readme_is_short():
    assert len(_read('README.md').splitlines()) <= 200


def test_every_file_and_module_the_docs_name_exists_and_every_tool_is_documented():
    text = '\n'.join(_read(p) for p in PAGES)
    paths = set(re.findall(r'\b((?:tools|configs|docs)/[\w./-]+\.(?:py|sh|md|png|yml|json))',
                           text))
    # not the user's own files, nor placeholders (docs/bench/cpu_VARIANT.json)
    paths = {p for p in paths if not osp.basename(p).startswith('my_')
             and not re.search(r'[A-Z]{4,}', osp.basename(p))}
    assert len(paths) > 40
    assert [p for p in sorted(paths) if not osp.isfile(osp.join(REPO, p))] == []
    modules = set(re.findall(r'-m (partialnet_mm[\w.]+)', text))
    assert len(modules) >= 3 and all(importlib.util.find_spec(m) for m in modules)
    tools = {osp.basename(p) for p in glob.glob(osp.join(REPO, 'tools', '*.py'))}
    # every tool in the tools reference and in a page that says what it is for
    assert tools <= set(re.findall(r'^## tools/(\w+\.py)$', _read('docs/tools.md'), re.M))
    task_pages = '\n'.join(_read(p) for p in PAGES if p != 'docs/tools.md')
    assert sorted(t for t in tools if f'tools/{t}' not in task_pages) == []


def test_the_tools_page_is_what_the_tools_print():
    """docs/tools.md quotes each tool's --help (or a script's opening comment); a tool whose
    options change without the page fails here."""
    from partialnet_mm.toolkit.tool_reference import render
    text = render(Path(REPO) / 'tools')
    assert REPO not in text  # no path of this clone (another clone would differ)
    assert text == _read('docs/tools.md'), (
        'docs/tools.md is out of date: run .venv/bin/python -m '
        'partialnet_mm.toolkit.tool_reference docs/tools.md')


def test_tool_reference_summaries_and_anchors(tmp_path):
    from partialnet_mm.toolkit.tool_reference import anchor, shell_comment, summary
    script = tmp_path / 'x_y.sh'
    script.write_text('#!/usr/bin/env bash\n# Run x on y: one line.\n#   bash x_y.sh A\nset -e\n')
    assert shell_comment(script) == 'Run x on y: one line.\n  bash x_y.sh A\n'
    assert summary(script, shell_comment(script)) == 'Run x on y'
    help_text = 'usage: t.py [-h]\n\nDo a thing. More.\n\noptions:\n  -h\n'
    assert summary(tmp_path / 't.py', help_text) == 'Do a thing'
    assert anchor('x_y.sh') == slug('tools/x_y.sh')
    (tmp_path / 'bare.sh').write_text('set -e\n')
    with pytest.raises(ValueError, match='no opening comment'):
        shell_comment(tmp_path / 'bare.sh')


def _readme_configs():
    section = _read('README.md').split('## In your own config', 1)[1].split('\n## ', 1)[0]
    return re.findall(r'```python\n(.*?)```', section, re.S)


@pytest.mark.parametrize('index', range(3))
def test_the_readmes_config_snippets_build_and_run(tmp_path, index):
    """README "In your own config": each snippet (mmdet, mmpretrain, mmseg) loads on the
    framework's own base config, builds, and runs a forward pass."""
    import torch
    from mmengine.config import Config

    from partialnet_mm.mmconfig import build_model
    snippets = _readme_configs()
    assert len(snippets) == 3
    path = tmp_path / 'my_config.py'
    path.write_text(snippets[index])
    cfg = Config.fromfile(str(path))
    scope = cfg.default_scope
    assert scope == ('mmdet', 'mmpretrain', 'mmseg')[index]
    assert cfg.custom_imports.imports == ['partialnet_mm']
    model = build_model(cfg, backbone_weights=False).eval()
    assert type(model.backbone).__name__ == 'PartialNet'
    with torch.no_grad():
        x = torch.randn(1, 3, 128, 128)
        if scope == 'mmpretrain':
            assert model(x).shape == (1, 1000)
        else:
            feats = model.extract_feat(x)
            assert len(feats) == (3 if scope == 'mmdet' else 4)
