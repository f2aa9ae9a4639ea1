"""Reading checkpoints: a truncated or corrupt file is one error naming it, everywhere."""
import os
import os.path as osp
import re
import runpy

import pytest
import torch

from partialnet_mm.checkpoint import CheckpointError, read_checkpoint
from partialnet_mm.models import PartialNet

from helpers import REPO, TINY


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
def test_a_truncated_or_corrupt_checkpoint_names_the_file(broken_checkpoints, tmp_path, capsys):
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
    for tool, *argv in (['convert_authors_checkpoint.py', truncated, out],
                        ['extract_backbone.py', truncated, out],
                        ['reparameterize_model.py', demo, truncated, out]):
        # each tool's main(argv) in this process: it returns an exit code (an exception out of
        # it would be a traceback on the command line)
        main = runpy.run_path(osp.join(REPO, 'tools', tool), run_name='tool')['main']
        try:
            code = main(argv)
        except SystemExit as stop:  # SystemExit(message): the message is what the user reads
            code = stop.code
        captured = capsys.readouterr()
        log = captured.out + captured.err + (code if isinstance(code, str) else '')
        assert code and f'cannot read checkpoint {truncated}' in log, (tool, log[-2000:])
        assert not osp.exists(out)
