"""PartialNet as timm models: registered on import, timm's interface (features_only, the
forward_* methods, reset_classifier, pretrained), the same outputs as our mmpretrain
classifier, timm's reparameterize_model == our switch_to_deploy on every variant, and the
steps of timm's validate.py / onnx_export.py run on them."""
import copy
import dataclasses
import os.path as osp
import subprocess
import sys

import pytest
import torch

timm = pytest.importorskip('timm')

import partialnet_mm  # noqa: E402,F401
from partialnet_mm.deploy import randomize_norms  # noqa: E402
from partialnet_mm.timm_models import VARIANTS, TimmPartialNet, checkpoint_filter_fn  # noqa

from helpers import REPO, authors_t0_state_dict, tool_env  # noqa: E402

NAMES = [f'partialnet_{v}' for v in VARIANTS]


def _model(name='partialnet_t0', **kwargs):
    torch.manual_seed(0)
    return randomize_norms(timm.create_model(name, **kwargs)).eval()


def test_registered_with_timm_with_cfgs_saying_no_weights():
    assert sorted(timm.list_models('partialnet*')) == sorted(NAMES)
    assert timm.list_models('partialnet*', pretrained=True) == [n + '.' for n in []]
    for name in NAMES:
        cfg = timm.models.get_pretrained_cfg(name).to_dict()
        assert cfg['input_size'] == (3, 224, 224) and cfg['crop_pct'] == 0.9
        assert cfg['first_conv'] == 'backbone.patch_embed.conv'
        assert cfg['classifier'] == 'head.fc' and cfg['url'] == ''
        assert 'no PartialNet weights are published' in cfg['notes'][0]


def test_pretrained_true_without_a_file_says_no_weights_are_published():
    with pytest.raises(RuntimeError, match='no PartialNet weights are published'):
        timm.create_model('partialnet_t0', pretrained=True)


@pytest.mark.parametrize('arch', ['t0', 's'])
def test_same_outputs_as_our_mmpretrain_classifier(arch):
    from mmengine.config import Config

    from partialnet_mm.mmconfig import build_model
    cfg = Config.fromfile(osp.join(REPO, 'configs', f'partialnet-{arch}_8xb512_in1k.py'))
    ours = randomize_norms(build_model(cfg, backbone_weights=False)).eval()
    model = timm.create_model(f'partialnet_{arch}').eval()
    model.load_state_dict({k: v for k, v in ours.state_dict().items()
                           if k.startswith(('backbone.', 'head.'))})  # strict: the same keys
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ours(x, mode='tensor'), atol=1e-5, rtol=0)


@pytest.mark.parametrize('name', NAMES)
def test_timms_reparameterize_model_is_our_switch_to_deploy(name):
    """timm.utils.reparameterize_model (setattr(parent, name, child.fuse()), or the child's
    switch_to_deploy) and ours build the same network: same keys, same tensors, same output."""
    model = _model(name)
    ours = copy.deepcopy(model)
    ours.backbone.switch_to_deploy()
    theirs = timm.utils.reparameterize_model(model)
    assert theirs.backbone.deploy and not model.backbone.deploy  # a copy
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(theirs(x), ours(x), atol=0, rtol=0)
        torch.testing.assert_close(theirs(x), expected, atol=1e-4, rtol=0)


def test_features_only_gives_the_four_stages():
    model = timm.create_model('partialnet_t2', features_only=True).eval()
    assert model.feature_info.channels() == [64, 128, 256, 512]
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 128, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 32, 24), (1, 128, 16, 12),
                                              (1, 256, 8, 6), (1, 512, 4, 3)]
    two = timm.create_model('partialnet_t2', features_only=True, out_indices=(1, 2))
    assert len(two.model.backbone.stages) == 3  # the last stage pruned away
    assert two.feature_info.channels() == [128, 256]


def test_forward_methods_and_classifier():
    model = _model('partialnet_t0')
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 256, 2, 2)
        torch.testing.assert_close(model.forward_head(features), model(x))
        assert model.forward_head(features, pre_logits=True).shape == (2, 1280)
        final, inter = model.forward_intermediates(x, indices=[0, 2])
        torch.testing.assert_close(final, features)
        assert [i.shape[1] for i in inter] == [32, 128]
        assert [i.shape[1] for i in model.forward_intermediates(
            x, indices=2, intermediates_only=True)] == [128, 256]  # the last two
        model.reset_classifier(5)
        assert model(x).shape == (2, 5) and model.get_classifier().out_features == 5
        model.reset_classifier(0)
        assert model(x).shape == (2, 1280) and model.num_classes == 0
    with pytest.raises(ValueError, match='pools by average'):
        timm.create_model('partialnet_t0', global_pool='max')
    assert timm.create_model('partialnet_t0', num_classes=0)(x).shape == (2, 1280)


def test_pretrained_file_ours_and_the_authors(tmp_path):
    """timm's way to load local weights (pretrained_cfg_overlay file) through
    checkpoint_filter_fn: our mmpretrain checkpoint layout and the authors' Lightning one."""
    source = _model('partialnet_t0')
    path = tmp_path / 'ours.pth'
    torch.save({'meta': {}, 'state_dict': {**source.state_dict(),
                                           'data_preprocessor.mean': torch.zeros(3)}}, path)
    loaded = timm.create_model('partialnet_t0', pretrained=True,
                               pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source(x), atol=0, rtol=0)
    # a PretrainedCfg object naming the file is a weights source too (timm passes either)
    cfg = timm.models.get_pretrained_cfg('partialnet_t0')
    cfg = dataclasses.replace(cfg, file=str(path))
    loaded = timm.create_model('partialnet_t0', pretrained=True, pretrained_cfg=cfg).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source(x), atol=0, rtol=0)
    authors = authors_t0_state_dict(pat_sp=True, prefix='model.')
    model = TimmPartialNet('t0')
    model.load_state_dict(checkpoint_filter_fn(authors, model))  # strict
    assert torch.equal(model.backbone.patch_embed.conv.weight,
                       authors['model.patch_embed.proj.weight'])


def _digits_image_folder(root):
    """The digits test split as timm's ImageFolder layout (one folder per class, PNG)."""
    import cv2

    from partialnet_mm.datasets.digits import DigitsDataset
    data = DigitsDataset(split='test', size=64, pipeline=[]).load_data_list()
    for i, item in enumerate(data):
        folder = root / str(item['gt_label'])
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f'{i:04d}.png'), item['img'])
    return data


@pytest.mark.slow
def test_validate_flow_on_an_image_folder(digits_checkpoint, tmp_path):
    """validate.py's steps (create_model with a checkpoint, resolve_data_config,
    create_dataset + create_loader, timm.utils.accuracy) on the digits written as an
    ImageFolder give the top-1 of our own classifier on the same images."""
    from timm.data import create_dataset, create_loader, resolve_data_config
    from timm.utils import accuracy

    from partialnet_mm.models.classifiers.partialnet_classifier import (
        PartialNetClassifier, load_classifier_checkpoint)
    data = _digits_image_folder(tmp_path / 'val')
    model = timm.create_model(
        'partialnet_t0', num_classes=10, mid_channels=256, pretrained=True,
        pretrained_cfg_overlay=dict(file=digits_checkpoint, input_size=(3, 64, 64),
                                    crop_pct=1.0, mean=(0.5,) * 3, std=(0.5,) * 3,
                                    interpolation='bilinear', num_classes=10)).eval()
    config = resolve_data_config({}, model=model)
    dataset = create_dataset('', root=str(tmp_path / 'val'))
    loader = create_loader(dataset, input_size=config['input_size'], batch_size=64,
                           use_prefetcher=False, interpolation=config['interpolation'],
                           mean=config['mean'], std=config['std'], crop_pct=config['crop_pct'])
    correct = total = 0
    with torch.no_grad():
        for images, target in loader:
            top1, = accuracy(model(images), target, topk=(1,))
            correct += top1.item() * len(target) / 100
            total += len(target)
    # the digits config's network: head width 256
    ours = PartialNetClassifier('t0', num_classes=10, mid_channels=256).eval()
    load_classifier_checkpoint(ours, digits_checkpoint)
    images = torch.stack([torch.from_numpy(d['img']).permute(2, 0, 1) for d in data]).float()
    labels = torch.tensor([d['gt_label'] for d in data])
    with torch.no_grad():
        expected = (ours((images - 127.5) / 127.5).argmax(1) == labels).sum().item()
    assert total == len(data) == 360
    assert round(correct) == expected and expected / total > 0.9


@pytest.mark.slow
def test_onnx_export_flow_of_the_reparameterized_model(tmp_path):
    """onnx_export.py --reparam's steps: reparameterize_model, timm.utils.onnx.onnx_export
    (its check on), then the file in onnxruntime gives the model's output."""
    import onnxruntime as ort
    from timm.utils.onnx import onnx_export
    model = timm.utils.reparameterize_model(_model('partialnet_t0'))
    path = str(tmp_path / 'partialnet_t0.onnx')
    x = torch.randn(1, 3, 64, 64)
    onnx_export(model, path, example_input=x, check=True)
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    out, = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), model(x), atol=1e-4, rtol=0)


def test_timm_script_runs_a_script_with_the_models_registered(tmp_path):
    """tools/timm_script.py: the script runs as `python SCRIPT ARGS` would, with
    partialnet_* in timm's registry; a missing script is a clear error."""
    script = tmp_path / 'validate.py'
    script.write_text('import argparse, sys, timm\n'
                      'p = argparse.ArgumentParser(); p.add_argument("--model")\n'
                      'p.add_argument("--reparam", action="store_true")\n'
                      'a = p.parse_args()\n'
                      'm = timm.create_model(a.model)\n'
                      'm = timm.utils.reparameterize_model(m) if a.reparam else m\n'
                      'print(sys.argv[0], type(m).__name__, m.backbone.deploy)\n')
    tool = osp.join(REPO, 'tools', 'timm_script.py')
    proc = subprocess.run([sys.executable, tool, str(script), '--model', 'partialnet_t0',
                           '--reparam'], capture_output=True, text=True, env=tool_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(script), 'TimmPartialNet', 'True']
    proc = subprocess.run([sys.executable, tool, str(tmp_path / 'nope.py')],
                          capture_output=True, text=True, env=tool_env())
    assert proc.returncode == 1 and 'timm script not found' in proc.stderr
