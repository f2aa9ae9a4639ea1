"""What several test modules share that pytest fixtures cannot carry (names used in
``parametrize`` lists, plain functions): the repository, a tiny arch, running a tool."""
import os
import os.path as osp
import subprocess

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(REPO, 'configs', 'demo', 'mask_rcnn_partialnet_t0_synthetic.py')
TINY = dict(embed_dims=16, depths=(1, 1, 2, 1), act_cfg=dict(type='GELU'))


def tool_env(unset=(), **extra):
    """The environment a tool runs in: this one, the repository first on PYTHONPATH, the
    names in ``unset`` removed and ``extra`` added."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get('PYTHONPATH', '')]))
    for name in unset:
        env.pop(name, None)
    env.update(extra)
    return env


def coco_data_options(root):
    """``--cfg-options`` pointing a detection config's loaders and COCO metrics at a generated
    COCO set (the ``coco_root`` fixture), loading in the main process."""
    root = root.rstrip('/') + '/'
    opts = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.dataset.data_root={root}', f'{loader}.num_workers=0',
                 f'{loader}.persistent_workers=False']
    for ev in ('val_evaluator', 'test_evaluator'):
        opts.append(f'{ev}.ann_file={root}annotations/instances_val.json')
    return opts


def run(args, timeout=600, cwd=REPO):
    """Run a command (a tool) from the repository root; returns (exit code, stdout+stderr)."""
    env = tool_env()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def mm_build(scope: str, cfg: dict):
    """Build a model in an OpenMMLab scope ('mmdet', 'mmpretrain', 'mmseg') without leaving a
    global default scope behind for later tests."""
    from mmengine.config import Config

    from partialnet_mm.mmconfig import build_model
    return build_model(Config(dict(default_scope=scope, model=cfg)))


def authors_t0_state_dict(pat_sp=True, prefix='model.'):
    """A state dict in the layout of the authors' T0 classifier (tests/data lists its keys
    and shapes), with realistic magnitudes."""
    sd = {}
    with open(osp.join(REPO, 'tests', 'data', 'authors_state_dict_t0.txt')) as f:
        for line in f:
            if line.startswith('#') or not line.strip():
                continue
            key, shape = line.rstrip('\n').split('\t')
            if not pat_sp and '.mlp.4.' in key:
                continue
            shape = tuple(int(s) for s in shape.strip('()').split(',') if s.strip())
            if not shape:
                value = torch.tensor(7)
            elif key.endswith('running_var'):
                value = torch.rand(shape) + 0.5
            else:  # realistic magnitudes, so a forward pass stays finite
                value = torch.randn(shape) * 0.05
            sd[prefix + key] = value
    return sd
