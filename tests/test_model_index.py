"""The model index (model-index.yml and the metafiles it imports), and its registration with
mmpretrain's ModelHub on ``import partialnet_mm``."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from modelindex import load

from helpers import REPO, mm_build

INDEX = load(osp.join(REPO, 'model-index.yml'))
INDEX.build_models_with_collections()
MODELS = {m.name: m for m in INDEX.models}
COLLECTIONS = {c.name: c for c in INDEX.collections}
# what mmpretrain's ModelHub gets: the classification metafile only
CLASSIFIERS = [m.name for m in load(osp.join(REPO, 'configs', 'metafile-classification.yml')).models]
CONFIGS = sorted(c for c in glob.glob(osp.join(REPO, 'configs', '*.py')))


def test_every_config_has_an_entry_and_every_entry_a_config():
    # demo configs (configs/demo) and bases (configs/_base_) are not models of their own
    assert {osp.basename(c)[:-3] for c in CONFIGS} == set(MODELS)
    for name, model in MODELS.items():
        assert model.config == f'configs/{name}.py'
        assert osp.isfile(osp.join(REPO, model.config)), model.config
        # the copy the package ships under .mim resolves too
        assert osp.isfile(osp.join(REPO, 'partialnet_mm', '.mim', model.config)), model.config


def test_entries_carry_the_papers_figures_labelled_and_no_invented_weights():
    for name, model in MODELS.items():
        assert model.weights is None, name
        assert model.in_collection in {'PartialNet', 'ECA-Net', 'PartialNet Mask R-CNN',
                                       'ECA-Net Mask R-CNN', 'PartialNet Semantic Segmentation',
                                       'PartialNet RTMDet'}
        paper = COLLECTIONS[model.in_collection].paper
        assert paper['URL'].startswith('https://arxiv.org/') and paper['Title'], name
        if model.results:
            assert 'paper' in model.data['Results From'], name
    top1 = {m.name: m.results[0].metrics['Top 1 Accuracy'] for m in INDEX.models
            if m.results and m.results[0].task == 'Image Classification'}
    assert top1 == {'partialnet-t0_8xb512_in1k': 73.9, 'partialnet-t1_8xb512_in1k': 78.1,
                    'partialnet-t2_8xb512_in1k': 80.2, 'partialnet-s_8xb512_in1k': 82.1,
                    'partialnet-m_8xb256_in1k': 83.1, 'partialnet-l_8xb256_in1k': 83.9,
                    'eca-resnet50_8xb32_in1k': 77.48}
    box = {m.name: (m.results[0].metrics['box AP'], m.results[1].metrics['mask AP'])
           for m in INDEX.models if m.results and m.results[0].task == 'Object Detection'}
    assert box == {'mask_rcnn_partialnet_s_1x': (42.7, 39.3), 'mask_rcnn_partialnet_m_1x': (44.3, 40.6),
                   'mask_rcnn_partialnet_l_1x': (44.7, 41.0), 'mask_rcnn_eca_r50_1x': (39.0, 35.6)}


@pytest.mark.parametrize('name', sorted(MODELS))
def test_parameters_match_the_built_model_within_1pct(name):
    model = MODELS[name]
    cfg = Config.fromfile(osp.join(REPO, model.config))
    scope = cfg.get('default_scope', 'mmpretrain')
    built = mm_build(scope, cfg.model)
    params = sum(p.numel() for p in built.parameters())
    listed = model.metadata.parameters
    assert abs(listed / params - 1) < 0.01, (name, listed, params)
    assert model.metadata.flops > 0


def test_classifiers_are_in_mmpretrains_model_hub():
    import mmpretrain

    import partialnet_mm  # noqa: F401  registers the index on import
    assert set(CLASSIFIERS) == {n for n, m in MODELS.items()
                                if Config.fromfile(osp.join(REPO, m.config)).get(
                                    'default_scope', 'mmpretrain') == 'mmpretrain'}
    assert mmpretrain.list_models('partialnet') == sorted(n for n in CLASSIFIERS
                                                          if n.startswith('partialnet'))
    assert mmpretrain.list_models('eca-resnet50') == ['eca-resnet50_8xb32_in1k']
    # detectors and segmentors are not in the classification hub (get_model builds in
    # mmpretrain's scope)
    assert mmpretrain.list_models('mask_rcnn_partialnet') == []
    assert mmpretrain.list_models('fpn_partialnet') == mmpretrain.list_models('upernet') == []

    model = mmpretrain.get_model('partialnet-s_8xb512_in1k')
    assert type(model.backbone).__name__ == 'PartialNet' and model.backbone.arch['embed_dims'] == 96
    params = sum(p.numel() for p in model.parameters())
    assert params == MODELS['partialnet-s_8xb512_in1k'].metadata.parameters
    assert model._metainfo.config.filename == osp.join(
        osp.realpath(osp.join(REPO, 'partialnet_mm', '.mim')), 'configs', 'partialnet-s_8xb512_in1k.py')


def test_registering_again_is_a_no_op():
    import mmpretrain

    from partialnet_mm.registration.model_index import register_model_index
    before = mmpretrain.list_models()
    assert register_model_index() == CLASSIFIERS
    assert mmpretrain.list_models() == before
