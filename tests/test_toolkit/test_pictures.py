"""Pictures of a detection run: the training curves from a scalar log, the demo's pictures."""
import json
import re
import sys

import cv2
import pytest

from partialnet_mm.toolkit.pictures import plot_training_curves, read_scalars

from helpers import run


def _scalars(path, epochs=3, iters=4):
    with open(path, 'w') as f:
        for e in range(1, epochs + 1):
            for i in range(1, iters + 1):
                it = (e - 1) * iters + i
                f.write(json.dumps(dict(loss=2.0 / it, lr=1e-3, epoch=e, iter=it, step=it)) + '\n')
            f.write(json.dumps({'coco/bbox_mAP': 0.1 * e, 'coco/segm_mAP': 0.12 * e, 'step': e})
                    + '\n')
    return path


def test_read_scalars_splits_training_and_validation(tmp_path):
    train, val = read_scalars(_scalars(tmp_path / 'scalars.json'))
    assert [r['iter'] for r in train] == list(range(1, 13))
    assert [(r['step'], r['coco/bbox_mAP']) for r in val] == [(1, 0.1), (2, 0.2),
                                                              (3, pytest.approx(0.3))]


def test_read_scalars_names_the_bad_line_and_the_missing_file(tmp_path):
    path = _scalars(tmp_path / 'scalars.json')
    with open(path, 'a') as f:
        f.write('{"loss": 1.0, "iter"\n')
    with pytest.raises(ValueError, match=r'scalars.json, line 16: not JSON'):
        read_scalars(path)
    with pytest.raises(FileNotFoundError, match='scalar log not found: .*none.json'):
        read_scalars(tmp_path / 'none.json')


def test_training_curves_png(tmp_path):
    out = plot_training_curves(str(_scalars(tmp_path / 's.json')), str(tmp_path / 'c' / 'c.png'),
                               initial={'coco/bbox_mAP': 0.0, 'coco/segm_mAP': 0.0})
    image = cv2.imread(out)
    assert image.shape == (300, 800, 3)
    assert image.std() > 10  # something is drawn
    (tmp_path / 'empty.json').write_text('')
    with pytest.raises(ValueError, match='no training loss'):
        plot_training_curves(str(tmp_path / 'empty.json'), str(tmp_path / 'x.png'))


@pytest.mark.slow
def test_demo_writes_and_prints_its_pictures(tmp_path):
    code, out = run([sys.executable, 'tools/demo.py', '--epochs', '1', '--num-train', '8',
                     '--num-val', '4', '--pictures', '2', '--data-root', str(tmp_path / 'data'),
                     '--work-dir', str(tmp_path / 'work')])
    assert code == 0, out[-3000:]
    drawn = re.search(r'Predictions \(ground truth \| untrained \| trained, 1 epochs\): (\S+)',
                      out).group(1)
    curves = re.search(r'Training loss and val AP per epoch \(.*\): (\S+)', out).group(1)
    assert drawn == str(tmp_path / 'work' / 'pictures' / 'predictions.png')
    picture = cv2.imread(drawn)
    # two val images of 160x160 drawn at 480x480 (3x, so that the labels fit), three columns
    # (ground truth, untrained, trained), a title row
    assert picture.shape == (18 + 2 * 480 + 4, 3 * 480 + 2 * 4, 3)
    assert cv2.imread(curves).shape == (300, 800, 3)
