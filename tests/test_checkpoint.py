"""Reading checkpoints: a truncated or corrupt file is one error naming it, everywhere."""
import os
import os.path as osp
import re
import sys

import pytest
import torch

from partialnet_mm.checkpoint import CheckpointError, read_checkpoint
from partialnet_mm.models import PartialNet

from helpers import REPO, TINY, run


@pytest.fixture
def broken_checkpoints(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save(dict(state_dict=PartialNet(TINY).state_dict(), meta=dict(epoch=1)), good)
    data = good.read_bytes()
    files = dict(truncated=data[:len(data) // 2], empty=b'', garbage=os.urandom(4096))
    for name, content in files.items():
        (tmp_path / f'{name}.pth').write_bytes(content)
    return [str(tmp_path / f'{name}.pth') for name in files]


@pytest.mark.slow
def test_a_truncated_or_corrupt_checkpoint_names_the_file(broken_checkpoints, tmp_path):
    for bad in broken_checkpoints:
        backbone = PartialNet(TINY, init_cfg=dict(type='Pretrained', checkpoint=bad))
        with pytest.raises(CheckpointError, match=f'cannot read checkpoint {re.escape(bad)}.*'
                                                  'truncated'):
            backbone.init_weights()
        with pytest.raises(CheckpointError, match=re.escape(bad)):
            read_checkpoint(bad)
    truncated = broken_checkpoints[0]
    out = str(tmp_path / 'out.pth')
    demo = osp.join(REPO, 'configs', 'demo', 'partialnet-t0_digits.py')
    for tool in (['tools/convert_authors_checkpoint.py', truncated, out],
                 ['tools/extract_backbone.py', truncated, out],
                 ['tools/reparameterize_model.py', demo, truncated, out]):
        code, log = run([sys.executable, *tool])
        assert code != 0 and f'cannot read checkpoint {truncated}' in log, log[-2000:]
        assert 'Traceback' not in log, log[-2000:]
        assert not osp.exists(out)
