"""tools/quantize.py: INT8 (QDQ) of a trained digits classifier, its accuracy in ONNX Runtime
and OpenVINO, and the errors for bad input (nothing written)."""
import os.path as osp
import re
import sys

import pytest
import torch

from helpers import REPO, run

DIGITS = osp.join(REPO, 'configs', 'demo', 'partialnet-t0_digits.py')


def _rows(log):
    return {(m[0], m[1]): float(m[2]) for m in
            re.findall(r'^\| (torch|onnxruntime|openvino) +\| (fp32|int8) +\| ([0-9.]+) ', log,
                       re.M)}


@pytest.mark.slow
def test_int8_digits_top1_within_one_point_in_both_runtimes(tmp_path, digits_checkpoint):
    out = tmp_path / 'q' / 't0_int8.onnx'
    code, log = run([sys.executable, 'tools/quantize.py', DIGITS, digits_checkpoint, str(out),
                      '--calib-num', '200', '--eval', '--runs', '3', '--time-size'])
    assert code == 0, log[-3000:]
    assert out.is_file() and (tmp_path / 'q' / 't0_int8_fp32.onnx').is_file()
    top1 = _rows(log)
    assert set(top1) == {('torch', 'fp32'), ('onnxruntime', 'fp32'), ('onnxruntime', 'int8'),
                         ('openvino', 'fp32'), ('openvino', 'int8')}, log[-2000:]
    assert top1[('torch', 'fp32')] > 90
    for runtime in ('onnxruntime', 'openvino'):
        assert top1[(runtime, 'fp32')] == top1[('torch', 'fp32')]
        assert top1[(runtime, 'fp32')] - top1[(runtime, 'int8')] <= 1.0
    import onnx
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear'} <= ops  # QDQ format


@pytest.mark.slow
def test_bad_inputs_name_the_problem_and_write_nothing(tmp_path, digits_checkpoint):
    empty = tmp_path / 'empty'
    empty.mkdir()
    out = tmp_path / 'out.onnx'
    not_a_classifier = tmp_path / 'other.pth'
    torch.save({'state_dict': {'weight': torch.zeros(2)}}, not_a_classifier)
    detector = osp.join(REPO, 'configs', 'mask_rcnn_partialnet_t0_1x.py')
    for args, message in (
            ([DIGITS, digits_checkpoint, str(out), '--calib-dir', str(empty)],
             f'calibration folder {empty} holds no images'),
            ([DIGITS, str(not_a_classifier), str(out)], 'holds no PartialNet classifier'),
            ([DIGITS, str(tmp_path / 'missing.pth'), str(out)], 'missing.pth can not be found'),
            ([detector, digits_checkpoint, str(out)], "quantization takes an mmpretrain"),
            ([DIGITS, digits_checkpoint, str(out), '--eval', '--runtime', 'tensorrt'],
             "unknown runtime 'tensorrt'")):
        code, log = run([sys.executable, 'tools/quantize.py', *args])
        assert code == 2 and message in log, (args, log[-2000:])
        assert sorted(p.name for p in tmp_path.iterdir()) == ['empty', 'other.pth']
