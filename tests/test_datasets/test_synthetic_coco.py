"""The generated COCO set."""
import os.path as osp

from partialnet_mm.datasets.synthetic_coco import make_synthetic_coco


def test_synthetic_coco_is_deterministic_and_valid(coco_root, tmp_path):
    from pycocotools.coco import COCO
    again = str(tmp_path / 'again')
    make_synthetic_coco(again, num_train=8, num_val=4, size=128)
    for split in ('train', 'val'):
        a = open(osp.join(coco_root, 'annotations', f'instances_{split}.json')).read()
        assert a == open(osp.join(again, 'annotations', f'instances_{split}.json')).read()
        coco = COCO(osp.join(coco_root, 'annotations', f'instances_{split}.json'))
        assert len(coco.getCatIds()) == 3 and len(coco.getImgIds()) == (8 if split == 'train' else 4)
        for ann in coco.loadAnns(coco.getAnnIds()):
            mask = coco.annToMask(ann)
            assert abs(mask.sum() - ann['area']) <= 0.15 * ann['area'] + 10
            x, y, w, h = ann['bbox']
            ys, xs = mask.nonzero()
            assert abs(xs.min() - x) <= 2 and abs(ys.min() - y) <= 2
    with open(osp.join(coco_root, 'train', 'train_00000.png'), 'rb') as f, \
            open(osp.join(again, 'train', 'train_00000.png'), 'rb') as g:
        assert f.read() == g.read()
