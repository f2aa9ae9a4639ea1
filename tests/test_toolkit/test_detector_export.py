"""The whole detector as one ONNX file (RTMDet, RTMDet-Ins, Mask R-CNN): its detections against
mmdet's predict in ONNX Runtime and OpenVINO, its metadata, the runtime-only side (the
preprocessing against mmdet's pipeline, masks, COCO results, tools/deploy_infer.py with torch
and OpenMMLab unimportable) and the errors of bad input."""
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from partialnet_mm.toolkit.detector_export import (DetectorMismatch, MatchReport, check_export,
                                                   export_detector, load_detector,
                                                   match_detections)
from partialnet_mm.toolkit.end2end import FAMILIES, UnsupportedDetector, end2end_model
from partialnet_runtime import Detector, read_meta
from partialnet_runtime.coco import rle_encode
from partialnet_runtime.detector import paste_mask, preprocess

from helpers import REPO, coco_data_options, mm_build, run

DEMO = osp.join(REPO, 'configs', 'demo')
RTMDET = osp.join(DEMO, 'rtmdet_partialnet-t0_synthetic.py')
MASK_RCNN = osp.join(DEMO, 'mask_rcnn_partialnet_t0_synthetic.py')
RTMDET_INS = osp.join(REPO, 'configs', 'rtmdet-ins_partialnet-t0_8xb32-300e_coco.py')
# (config, export size): small sizes, every family
CASES = {'rtmdet': (RTMDET, None), 'two-stage': (MASK_RCNN, None),
         'rtmdet-ins': (RTMDET_INS, (128, 160))}


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """Each family exported once (dynamic batch and size), checked at export, from a
    checkpoint of random weights that the tests comparing with PyTorch load too."""
    folder = tmp_path_factory.mktemp('end2end')
    out = {}
    for family, (config, size) in CASES.items():
        torch.manual_seed(0)
        _, model = load_detector(config)
        checkpoint = str(folder / f'{family}.pth')
        torch.save(dict(state_dict=model.state_dict()), checkpoint)
        out[family] = export_detector(config, str(folder / f'{family}.onnx'), checkpoint,
                                      size=size)
        out[family].checkpoint = checkpoint
    return out


@pytest.mark.parametrize('family', list(CASES))
def test_export_matches_mmdet_predict(exported, family):
    """Every detection of mmdet's predict above the score threshold has a partner (same label,
    IoU >= 0.99, score within 1e-3), at batch 1 and at batch 2 of another size."""
    r = exported[family]
    assert r.family == family and r.dynamic
    assert r.report.reference > 0  # the check compared detections, not nothing
    assert r.report.matched + r.report.ties == r.report.reference
    assert r.report.matched >= 0.95 * r.report.reference
    assert r.report.worst_iou >= 0.99 and r.report.worst_score <= 1e-3
    assert r.report.mask_disagreement <= 0.001
    assert not osp.exists(r.path + '.data')  # one file


@pytest.mark.parametrize('family', list(CASES))
def test_outputs_follow_mmdeploy_and_openvino_agrees(exported, family):
    """end2end.onnx's interface: input -> dets (N, K, 5), labels (N, K) int64 [, masks]; a
    batch of 2 pads the shorter image's rows (label -1); OpenVINO computes the same."""
    import onnxruntime as ort
    import openvino as ov

    path = exported[family].path
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    assert [i.name for i in session.get_inputs()] == ['input']
    names = [o.name for o in session.get_outputs()]
    assert names == ['dets', 'labels'] + (['masks'] if family != 'rtmdet' else [])
    h, w = exported[family].size
    x = np.random.RandomState(0).randn(2, 3, h, w).astype(np.float32)
    out = session.run(None, {'input': x})
    assert out[0].shape[:2] == out[1].shape and out[0].shape[0] == 2 and out[0].shape[2] == 5
    assert out[1].dtype == np.int64 and out[0].dtype == np.float32
    if family == 'two-stage':
        assert out[2].shape[2:] == (28, 28)
    if family == 'rtmdet-ins':
        assert out[2].shape[2:] == (h, w)
    padded = out[1] < 0
    assert (out[0][padded] == 0).all()
    compiled = ov.Core().compile_model(path, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
    got = compiled.create_infer_request().infer({0: x})
    ov_out = [got[o] for o in compiled.outputs]
    assert ov_out[0].shape == out[0].shape
    for b in range(2):  # as sets: the order of tied scores is each sort's own
        report = MatchReport()
        valid = out[1][b] >= 0
        match_detections(dict(bboxes=ov_out[0][b][valid, :4], scores=ov_out[0][b][valid, 4],
                              labels=ov_out[1][b][valid]),
                         dict(bboxes=out[0][b][valid, :4], scores=out[0][b][valid, 4],
                              labels=out[1][b][valid]), -1, 10 ** 6, report, 'openvino')
        assert not report.failures and report.ties == 0
        if family != 'rtmdet':
            assert np.abs(np.sort(ov_out[2][b].ravel()) - np.sort(out[2][b].ravel())).max() < 1e-3


def test_check_catches_a_graph_that_differs(exported, tmp_path):
    """The export check is not vacuous: the same file checked against a detector whose head
    changed after the export fails, naming the detections without a partner."""
    cfg, model = load_detector(RTMDET, exported['rtmdet'].checkpoint)
    e2e = end2end_model(model)
    with torch.no_grad():
        for conv in model.bbox_head.rtm_cls:
            conv.bias.add_(torch.linspace(-2, 2, conv.bias.numel()))
    with pytest.raises(DetectorMismatch, match='has no partner'):
        check_export(model, e2e, exported['rtmdet'].path, [(1, 3, 160, 160)])


def test_match_allows_ties_only_at_the_cut():
    """A reference detection missing from the output is a tie when it scores at the last kept
    score of a full output, a failure anywhere else."""
    box = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], np.float32)
    ref = dict(bboxes=box, scores=np.array([0.9, 0.5, 0.5], np.float32),
               labels=np.array([0, 1, 1]))
    got = dict(bboxes=box[:2], scores=ref['scores'][:2], labels=ref['labels'][:2])
    report = MatchReport()
    match_detections(ref, got, 0.1, 2, report, 'cut')
    assert (report.matched, report.ties, report.failures) == (2, 1, [])
    report = MatchReport()
    match_detections(ref, got, 0.1, 100, report, 'not full')
    assert report.ties == 0 and len(report.failures) == 1


def test_metadata_carries_the_test_pipeline(exported):
    """Class names, Resize / Pad (114) and the data preprocessor, thresholds: in the file."""
    meta = read_meta(exported['rtmdet'].path)
    assert meta['classes'] == ['circle', 'square', 'triangle']
    pre = meta['preprocess']
    assert pre['resize'] == dict(scale=[160, 160], keep_ratio=True)
    assert pre['pad'] == dict(size=[160, 160], size_divisor=None, value=[114, 114, 114])
    assert pre['mean'] == [103.53, 116.28, 123.675] and not pre['to_rgb']
    assert meta['score_thr'] == 0.001 and meta['mask_kind'] is None
    meta = read_meta(exported['two-stage'].path)
    assert meta['preprocess']['to_rgb'] and meta['preprocess']['pad_size_divisor'] == 32
    assert meta['mask_kind'] == 'roi' and meta['score_thr'] == 0.05
    assert read_meta(exported['rtmdet-ins'].path)['mask_kind'] == 'image'


@pytest.mark.parametrize('family', ['rtmdet', 'two-stage'])
def test_runtime_side_matches_mmdet_on_images(exported, family, coco_root):
    """The runtime-only path on image files (its own resize, pad and normalisation, boxes and
    masks mapped back to the image) against mmdet's test pipeline and predict with rescale:
    the same input tensor, the same detections in image pixels, the same masks."""
    from mmengine.dataset import Compose
    from mmdet.registry import TRANSFORMS

    config = CASES[family][0]
    cfg, model = load_detector(config, exported[family].checkpoint)
    pipeline = Compose([TRANSFORMS.build(t) for t in cfg.test_dataloader.dataset.pipeline
                        if t['type'] != 'LoadAnnotations'])
    detector = Detector(exported[family].path)
    images = sorted(os.listdir(osp.join(coco_root, 'val')))[:2]
    for name in images:
        path = osp.join(coco_root, 'val', name)
        data = pipeline(dict(img_path=path, img_id=0))
        batch = model.data_preprocessor(dict(inputs=[data['inputs']],
                                             data_samples=[data['data_samples']]))
        prepared = preprocess(cv2.imread(path), detector.meta)
        np.testing.assert_allclose(prepared.input, batch['inputs'].numpy(), atol=1e-4)
        with torch.no_grad():
            pred = model.predict(batch['inputs'], batch['data_samples'], rescale=True)[0]
        p = pred.pred_instances
        det = detector(cv2.imread(path))
        ref = dict(bboxes=p.bboxes.numpy(), scores=p.scores.numpy(), labels=p.labels.numpy())
        got = dict(bboxes=det.boxes, scores=det.scores, labels=det.labels)
        report = MatchReport()
        match_detections(ref, got, detector.meta['score_thr'], 100, report, name)
        assert not report.failures and report.reference > 0
        if family == 'two-stage':
            assert det.masks.shape[1:] == p.masks.shape[1:]
            agree = (det.masks == p.masks.numpy()[:len(det.masks)]).mean()
            assert agree > 0.99


def test_paste_mask_is_mmdets_paste():
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask

    rng = np.random.RandomState(0)
    mask = rng.rand(28, 28).astype(np.float32)
    mask = cv2.GaussianBlur(mask, (7, 7), 2)
    box = np.array([10.3, 5.7, 70.2, 50.9], np.float32)
    ref, _ = _do_paste_mask(torch.from_numpy(mask)[None, None], torch.from_numpy(box)[None],
                            64, 96, skip_empty=False)
    got = paste_mask(mask, box, 64, 96)
    assert np.abs(got - ref[0].numpy()).max() < 0.02  # OpenCV's remap: 1/32 px weights


def test_rle_is_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.RandomState(1)
    for shape in ((7, 5), (40, 33), (1, 1)):
        for density in (0.0, 0.3, 1.0):
            m = rng.rand(*shape) < density
            ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            assert rle_encode(m) == dict(size=list(shape), counts=ref['counts'].decode())


def _runtime_only_env(tmp_path, blocked='torch,torchvision,mmcv,mmengine,mmdet,partialnet_mm'):
    """A tool environment in which the named packages cannot be imported."""
    guard = tmp_path / 'guard'
    guard.mkdir(exist_ok=True)
    (guard / 'sitecustomize.py').write_text(
        'import os, sys\n'
        'class _Block:\n'
        '    names = tuple(os.environ["BLOCK_IMPORTS"].split(","))\n'
        '    def find_spec(self, name, path=None, target=None):\n'
        '        if name.split(".")[0] in self.names:\n'
        '            raise ImportError(f"{name} is not installed here")\n'
        'sys.meta_path.insert(0, _Block())\n')
    return dict(os.environ, PYTHONPATH=str(guard), BLOCK_IMPORTS=blocked)


def _infer(args, env):
    proc = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'deploy_infer.py'), *args],
                          env=env, capture_output=True, text=True, timeout=300, cwd='/')
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize('runtime', ['onnxruntime', 'openvino'])
def test_deploy_infer_runs_without_torch(exported, coco_root, tmp_path, runtime):
    """tools/deploy_infer.py with torch, mmcv, mmengine, mmdet and partialnet_mm unimportable:
    a picture per image and one COCO results file (masks as RLE) whose boxes are those of the
    runtime's Detector."""
    env = _runtime_only_env(tmp_path)
    images = [osp.join(coco_root, 'val', n) for n in sorted(os.listdir(osp.join(coco_root,
                                                                                'val')))[:2]]
    out = tmp_path / 'out'
    code, log = _infer([exported['two-stage'].path, *images, '--out-dir', str(out),
                        '--runtime', runtime, '--score-thr', '0.05'], env)
    assert code == 0, log
    assert 'is not installed here' not in log
    for image in images:
        picture = cv2.imread(str(out / (osp.splitext(osp.basename(image))[0] + '.png')))
        assert picture is not None and min(picture.shape[:2]) >= 384  # enlarged to be read
    results = json.load(open(out / 'results.json'))
    assert results and {'image_id', 'category_id', 'category_name', 'bbox', 'score',
                        'segmentation'} <= set(results[0])
    assert all(r['score'] > 0.05 for r in results)
    det = Detector(exported['two-stage'].path)(cv2.imread(images[0]), score_thr=0.05)
    first = [r for r in results if r['image_id'] == results[0]['image_id']]
    assert len(first) == len(det.scores)
    np.testing.assert_allclose([r['bbox'][0] for r in first], det.boxes[:, 0], atol=1e-3)


def test_deploy_infer_bad_input(exported, tmp_path):
    """No metadata, an image that does not decode (the others still processed), a runtime not
    installed: each a one-line error, exit code 2."""
    import onnx
    import onnx.helper as oh

    env = _runtime_only_env(tmp_path)
    plain = tmp_path / 'plain.onnx'
    graph = oh.make_graph([oh.make_node('Identity', ['input'], ['y'])], 'g',
                          [oh.make_tensor_value_info('input', onnx.TensorProto.FLOAT, [1])],
                          [oh.make_tensor_value_info('y', onnx.TensorProto.FLOAT, [1])])
    onnx.save(oh.make_model(graph, ir_version=10, opset_imports=[oh.make_opsetid('', 17)]),
              str(plain))
    good = tmp_path / 'good.png'
    cv2.imwrite(str(good), np.full((100, 120, 3), 114, np.uint8))
    code, log = _infer([str(plain), str(good), '--out-dir', str(tmp_path / 'a')], env)
    assert code == 2 and 'has no' in log and 'not exported by partialnet_mm' in log
    assert not (tmp_path / 'a').exists()

    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'not an image')
    code, log = _infer([exported['rtmdet'].path, str(broken), str(good), '--out-dir',
                        str(tmp_path / 'b')], env)
    assert code == 2 and f'{broken} does not decode' in log
    assert (tmp_path / 'b' / 'good.png').exists() and (tmp_path / 'b' / 'results.json').exists()

    blocked = _runtime_only_env(tmp_path, 'torch,mmdet,openvino')
    code, log = _infer([exported['rtmdet'].path, str(good), '--out-dir', str(tmp_path / 'c'),
                        '--runtime', 'openvino'], blocked)
    assert code == 2 and 'pip install openvino==' in log
    assert len(log.strip().splitlines()) == 1 and not (tmp_path / 'c').exists()


def test_export_tool_bad_input(exported, tmp_path):
    """An unsupported detector family names the supported ones; a checkpoint that does not fit
    names the keys; both exit 2 and write nothing."""
    out = tmp_path / 'x.onnx'
    code, log = run([sys.executable, 'tools/export_onnx.py',
                     'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', str(out)])
    assert code == 2 and 'RetinaHead' in log
    assert all(name in log for name in FAMILIES.values())
    code, log = run([sys.executable, 'tools/export_onnx.py', RTMDET, str(out), '--checkpoint',
                     exported['two-stage'].checkpoint])  # Mask R-CNN weights
    assert code == 2 and 'does not fit' in log and 'missing keys' in log
    assert 'Traceback' not in log and not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_unsupported_family_is_named():
    with pytest.raises(UnsupportedDetector, match='supported: RTMDet'):
        end2end_model(mm_build('mmdet', dict(
            type='RetinaNet', backbone=dict(type='PartialNet', arch='t0', out_indices=(3,)),
            neck=None, bbox_head=dict(
                type='RetinaHead', num_classes=2, in_channels=256,
                anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                                      scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
                                      strides=[32]),
                bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                                target_stds=[1.0, 1.0, 1.0, 1.0])))))


@pytest.mark.slow
def test_deployed_ap_equals_pytorch(exported, coco_root):
    """COCO evaluation of the ONNX file (tools/deploy_test.py) in both runtimes equals the
    PyTorch model's (mmdet's own test loop) within 0.005: random weights, whose detections are
    many and near-tied, are the hard case for equality."""
    r = exported['two-stage']
    code, out = run([sys.executable, 'tools/deploy_test.py', MASK_RCNN, r.path, '--runtime',
                     'onnxruntime,openvino', '--checkpoint', r.checkpoint,
                     '--cfg-options', *coco_data_options(coco_root)])
    assert code == 0, out[-3000:]
    rows = {line.split('|')[1].strip(): [float(v) for v in line.split('|')[2:4]]
            for line in out.splitlines() if line.startswith('| ') and '---' not in line
            and not line.startswith('| runtime')}
    assert set(rows) == {'pytorch', 'onnxruntime', 'openvino'}, out[-2000:]
    for runtime in ('onnxruntime', 'openvino'):
        for got, ref in zip(rows[runtime], rows['pytorch']):  # bbox AP, segm AP
            assert abs(got - ref) <= 0.005, out[-2000:]


def test_export_tool_takes_deployment_nms_settings(tmp_path):
    """--cfg-options sets the NMS the file runs (as a deployment picks it) and its metadata."""
    import onnxruntime as ort

    out = tmp_path / 'det.onnx'
    code, log = run([sys.executable, 'tools/export_onnx.py', RTMDET, str(out), '--cfg-options',
                     'model.test_cfg.score_thr=0.05', 'model.test_cfg.max_per_img=5'])
    assert code == 0 and 'detections matched' in log, log[-2000:]
    assert read_meta(str(out))['score_thr'] == 0.05
    x = np.random.RandomState(0).randn(2, 3, 160, 160).astype(np.float32)
    dets, labels = ort.InferenceSession(str(out)).run(None, {'input': x})
    assert dets.shape[1] <= 5 and (dets[labels >= 0][:, 4] > 0.05).all()


def test_int8_detector_quantizes_the_network_and_keeps_the_post_processing_fp32(
        exported, coco_root, tmp_path):
    """tools/quantize.py on an mmdet config: the end-to-end RTMDet at its fixed size with every
    conv of the backbone, neck and head in INT8 (QDQ) and the decoding, top-k and NMS fp32;
    the metadata kept, so the runtime side runs it, its detections near the fp32 file's."""
    import onnx

    out = tmp_path / 'int8' / 'rtmdet_int8.onnx'
    code, log = run([sys.executable, 'tools/quantize.py', RTMDET, exported['rtmdet'].checkpoint,
                     str(out), '--calib-num', '4', '--cfg-options',
                     *coco_data_options(coco_root)])
    assert code == 0, log[-3000:]
    fp32 = tmp_path / 'int8' / 'rtmdet_int8_fp32.onnx'
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([fp32.name, out.name])
    graph = onnx.load(str(out)).graph
    producer = {o: n for n in graph.node for o in n.output}

    def quantized_input(node):
        source = producer.get(node.input[0])
        return source is not None and source.op_type == 'DequantizeLinear'

    convs = [n for n in graph.node if n.op_type == 'Conv' and '/fp32/' not in n.name]
    assert convs and all(quantized_input(n) for n in convs)
    assert all(n.name.startswith(('/backbone/', '/neck/', '/bbox_head/')) for n in convs)
    post = [n for n in graph.node if n.op_type in ('TopK', 'NonMaxSuppression')]
    assert post and not any(quantized_input(n) for n in post)
    assert read_meta(str(out)) == read_meta(str(fp32))
    image = cv2.imread(osp.join(coco_root, 'val', sorted(os.listdir(osp.join(coco_root,
                                                                              'val')))[0]))
    ref, got = Detector(str(fp32))(image), Detector(str(out))(image)
    assert got.boxes.shape[1] == 4 and len(got.scores) == len(got.labels)
    assert len(ref.scores) > 0 and len(got.scores) > 0


def test_int8_detector_refuses_openvino_and_dynamic(exported, tmp_path):
    for extra in (['--runtime', 'openvino'], ['--dynamic']):
        code, log = run([sys.executable, 'tools/quantize.py', RTMDET,
                         exported['rtmdet'].checkpoint, str(tmp_path / 'x.onnx'), *extra])
        assert code == 2 and 'a detector is quantized for onnxruntime' in log, log[-2000:]
    assert not any(tmp_path.iterdir())
