"""The project's own promises: CI runs the README's commands; the fidelity targets hold; the wheel.
(The docs hold together: tests/test_docs.py.)"""
import os
import os.path as osp
import re

import pytest

from partialnet_mm.toolkit.complexity import PAPER, fidelity_table, format_table

from helpers import REPO, run


def _read(*parts):
    with open(os.path.join(REPO, *parts)) as f:
        return f.read()


def test_ci_runs_the_readme_commands():
    readme = _read('README.md')
    section = readme.split('## Set up', 1)[1]
    block = re.search(r'```bash\n(.*?)```', section, re.S).group(1)
    readme_cmds = [line.strip() for line in block.splitlines() if line.strip()]
    ci_cmds = [line.strip() for line in _read('.ci', 'run').splitlines()
               if line.strip() and not line.startswith(('#', 'set ', 'cd '))]
    assert readme_cmds == ci_cmds == ['bash tools/setup_env.sh',
                                      '.venv/bin/python -m pytest -q tests']


# The names `import partialnet_mm` gives (docs/backbone.md, docs/dpconv.md, the layers): a
# change here is a change of the public API, made on purpose.
PUBLIC_API = [
    'CHANNEL_ATTENTIONS', 'ChannelGates', 'DynamicPATChannel', 'DynamicPATConv',
    'DynamicPATSelfAttention', 'ECA', 'GaussianChannelAttention', 'ImageRelativePositionBias',
    'LayerNorm2d', 'PATChannel', 'PATConv', 'PATSelfAttention', 'PATSpatial', 'PartialMLP',
    'PartialNet', 'PartialNetBlock', 'PartialNetBlockV2', 'PartialNetClassifier',
    'PartialNetHead', 'PartialNetPreLogits', 'PartialNetStage', 'RelPosSelfAttention',
    'SEAttention', 'SRMAttention', 'SpatialAttentionGate', '__version__', 'checkpoint_form',
    'collect_gates', 'dpconv_losses', 'eca_kernel_size', 'freeze_state_dict',
    'load_backbone_checkpoint', 'mean_std_pool', 'patch_mmengine_checkpoint_loading',
    'quantizable', 'register_all']


def test_public_api():
    import partialnet_mm
    assert sorted(partialnet_mm.__all__) == PUBLIC_API
    assert all(hasattr(partialnet_mm, name) for name in PUBLIC_API)


@pytest.fixture(scope='module')
def table():
    return {r['arch']: r for r in fidelity_table()}


@pytest.mark.parametrize('arch', ['t2', 's', 'm', 'l'])
def test_params_and_deployed_flops_within_1pct_of_paper(table, arch):
    row = table[arch]
    assert abs(row['params'] / PAPER[arch]['params'] - 1) < 0.01
    assert abs(row['flops_deploy'] / PAPER[arch]['flops'] - 1) < 0.01


@pytest.mark.parametrize('arch', ['t0', 't1'])
def test_tiny_flops_within_2pct_of_paper(table, arch):
    assert abs(table[arch]['flops_train'] / PAPER[arch]['flops'] - 1) < 0.02


@pytest.mark.parametrize('arch', list(PAPER))
def test_training_graph_matches_authors_code(table, arch):
    row = table[arch]
    assert row['params'] == pytest.approx(row['authors_params'], abs=0.005)
    assert row['flops_train'] == pytest.approx(row['authors_flops_train'], abs=0.0005)
    assert row['flops_deploy'] < row['flops_train']
    if row['authors_flops_deploy'] is not None:
        # below the authors' fused graph only by the BNs we also fold (counted 2 per element)
        assert row['flops_deploy'] == pytest.approx(row['authors_flops_deploy'], rel=0.01)


def test_table_printable(table):
    text = format_table(list(table.values()))
    from partialnet_mm.toolkit.complexity import AUTHORS_CODE
    assert text.count('\n') == len(PAPER) + 1
    assert f"| S | {AUTHORS_CODE['s']['params']:.2f} |" in text


@pytest.mark.slow
def test_the_wheel_carries_the_package_configs_and_tools(tmp_path):
    """``pip install .`` (not editable): every subpackage of both packages (partialnet_mm and the
    torch-free partialnet_runtime), and the configs and tools under
    ``partialnet_mm/.mim``, which work from the installed package."""
    import glob
    import sys
    import zipfile

    code, log = run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                     '-q', '-w', str(tmp_path / 'dist'), REPO], timeout=300)
    assert code == 0, log[-3000:]
    wheel, = glob.glob(str(tmp_path / 'dist' / 'partialnet_mm-*.whl'))
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {osp.relpath(p, REPO) for package in ('partialnet_mm', 'partialnet_runtime')
               for p in glob.glob(osp.join(REPO, package, '**', '*.py'), recursive=True)
               if '.mim' not in p}
    assert 'partialnet_runtime/detector.py' in sources
    assert sources <= names, sorted(sources - names)
    assert 'partialnet_mm/.mim/model-index.yml' in names
    for folder, pattern in (('configs', '**/*.py'), ('configs', '*.yml'), ('tools', '*.py'),
                            ('tools', '*.sh')):
        expected = {f'partialnet_mm/.mim/{folder}/' + osp.relpath(p, osp.join(REPO, folder))
                    for p in glob.glob(osp.join(REPO, folder, pattern), recursive=True)}
        assert expected and expected <= names, sorted(expected - names)

    site = tmp_path / 'site'
    code, log = run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--target',
                     str(site), wheel], timeout=300)
    assert code == 0, log[-3000:]
    # outside the repository, with only the installed copy on the path
    mim = site / 'partialnet_mm' / '.mim'
    script = (f'import partialnet_mm, sys; assert partialnet_mm.__file__.startswith({str(site)!r})'
              f'; from mmengine.config import Config; '
              f'cfg = Config.fromfile({str(mim / "configs" / "mask_rcnn_partialnet_s_1x.py")!r}); '
              f'print(cfg.model.backbone.type, cfg.model.backbone.arch)')
    env = f'PYTHONPATH={site}'
    code, log = run(['bash', '-c', f'{env} {sys.executable} -c "{script}"'], cwd=str(tmp_path))
    assert code == 0 and 'PartialNet s' in log, log[-3000:]
    code, log = run(['bash', '-c', f'{env} {sys.executable} {mim / "tools" / "benchmark.py"} t0 '
                                   f'--smoke --no-cuda --no-peers'], cwd=str(tmp_path))
    assert code == 0 and 'PartialNet-T0 fused' in log, log[-3000:]
    # the model index registered from the installed copy: mmpretrain finds and builds it
    script = ('import partialnet_mm, mmpretrain; '
              "names = mmpretrain.list_models('partialnet'); "
              "m = mmpretrain.get_model('partialnet-t0_8xb512_in1k'); "
              "print(len(names), type(m.backbone).__name__, m._metainfo.config.filename)")
    code, log = run(['bash', '-c', f'{env} {sys.executable} -c "{script}"'], cwd=str(tmp_path))
    assert code == 0 and f'7 PartialNet {mim.resolve()}/configs/partialnet-t0_8xb512_in1k.py' in log, \
        log[-3000:]
