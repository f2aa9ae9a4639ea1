"""tools/quantize.py: INT8 of a trained digits classifier for ONNX Runtime (QDQ) and OpenVINO
(NNCF), its accuracy in both, its graph (full maps in INT8), and the errors for bad input
(nothing written)."""
import os
import os.path as osp
import re
import subprocess
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
def test_int8_digits_top1_within_half_a_point_in_both_runtimes(tmp_path, digits_checkpoint):
    out = tmp_path / 'q' / 't0_int8.onnx'
    code, log = run([sys.executable, 'tools/quantize.py', DIGITS, digits_checkpoint, str(out),
                     '--runtime', 'onnxruntime,openvino', '--calib-num', '200', '--eval',
                     '--runs', '3'])
    assert code == 0, log[-3000:]
    assert sorted(p.name for p in out.parent.iterdir()) == [
        't0_int8.onnx', 't0_int8_fp32.onnx', 't0_int8_openvino.bin', 't0_int8_openvino.xml']
    top1 = _rows(log)
    assert set(top1) == {('torch', 'fp32'), ('onnxruntime', 'fp32'), ('onnxruntime', 'int8'),
                         ('openvino', 'fp32'), ('openvino', 'int8')}, log[-2000:]
    assert top1[('torch', 'fp32')] > 90
    for runtime in ('onnxruntime', 'openvino'):
        assert abs(top1[(runtime, 'fp32')] - top1[('torch', 'fp32')]) <= 0.3  # 1 image
        assert top1[(runtime, 'fp32')] - top1[(runtime, 'int8')] <= 0.5
    # every full-map operation outside the fp32 gates reads INT8 (a DequantizeLinear input)
    import onnx
    graph = onnx.load(str(out)).graph
    producer = {o: n for n in graph.node for o in n.output}
    full_map_ops = [n for n in graph.node if n.op_type in ('Conv', 'Mul', 'Add', 'Concat',
                                                           'GlobalAveragePool')
                    and '/backbone/' in n.name and '/fp32/' not in n.name]
    assert len(full_map_ops) > 100
    fp32_fed = [n.name for n in full_map_ops
                if producer.get(n.input[0]) is None
                or producer[n.input[0]].op_type != 'DequantizeLinear']
    assert fp32_fed == []
    assert not [n for n in graph.node if n.op_type in ('ReduceSum', 'HardSigmoid')]


@pytest.mark.slow
def test_bad_inputs_name_the_problem_and_write_nothing(tmp_path, digits_checkpoint, capsys):
    import runpy
    main = runpy.run_path(osp.join(REPO, 'tools', 'quantize.py'), run_name='tool')['main']
    empty = tmp_path / 'empty'
    empty.mkdir()
    broken = tmp_path / 'broken'
    broken.mkdir()
    (broken / 'a.png').write_bytes(b'not a png')
    (broken / 'b.jpg').write_bytes(b'')
    guard = tmp_path / 'guard'
    guard.mkdir()
    (guard / 'sitecustomize.py').write_text(
        'import sys\n'
        'class _Block:\n'
        '    def find_spec(self, name, path=None, target=None):\n'
        '        if name.split(".")[0] == "nncf":\n'
        '            raise ImportError("nncf is not installed here")\n'
        'sys.meta_path.insert(0, _Block())\n')
    out = tmp_path / 'out.onnx'
    not_a_classifier = tmp_path / 'other.pth'
    torch.save({'state_dict': {'weight': torch.zeros(2)}}, not_a_classifier)
    detector = osp.join(REPO, 'configs', 'mask_rcnn_partialnet_t0_1x.py')
    for args, message in (
            ([DIGITS, digits_checkpoint, str(out), '--calib-dir', str(empty)],
             f'calibration folder {empty} holds no images'),
            ([DIGITS, str(not_a_classifier), str(out)], 'holds no PartialNet classifier'),
            ([DIGITS, str(tmp_path / 'missing.pth'), str(out)], 'missing.pth can not be found'),
            ([detector, digits_checkpoint, str(out)], 'does not fit'),
            ([DIGITS, digits_checkpoint, str(out), '--calib-dir', str(broken)],
             f'calibration folder {broken}: none of its 2 images decodes'),
            ([DIGITS, digits_checkpoint, str(tmp_path / 'out.engine')],
             'the output must be a .onnx path'),
            ([DIGITS, digits_checkpoint, str(out), '--runtime', 'tensorrt'],
             "no INT8 quantizer for runtime 'tensorrt'")):
        try:  # in this process: a refusal needs no new interpreter
            code = main(args)
        except SystemExit as stop:  # argparse's refusals
            code = stop.code
        captured = capsys.readouterr()
        log = captured.out + captured.err
        assert code == 2 and message in log, (args, log[-2000:])
        assert len([line for line in log.splitlines() if line.startswith('error:')]) == 1, log
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(guard), REPO]))
    proc = subprocess.run([sys.executable, 'tools/quantize.py', DIGITS, digits_checkpoint,
                           str(out), '--runtime', 'openvino'], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and 'pip install nncf==3.4.0' in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['broken', 'empty', 'guard',
                                                          'other.pth']


@pytest.mark.slow
def test_calibration_skips_and_counts_images_that_do_not_decode(tmp_path, digits_checkpoint):
    import cv2
    import numpy as np
    folder = tmp_path / 'calib'
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f'{i}.png'), np.full((64, 64, 3), 40 * i, np.uint8))
    (folder / 'bad.png').write_bytes(b'not a png')
    out = tmp_path / 'int8.onnx'
    code, log = run([sys.executable, 'tools/quantize.py', DIGITS, digits_checkpoint, str(out),
                     '--calib-dir', str(folder)])
    assert code == 0, log[-2000:]
    assert f'skipped {folder / "bad.png"}: not a readable image' in log
    assert 'calibrated on 3 images, 1 skipped' in log and out.is_file()
