"""Map the authors' PartialNet state-dict layout onto ours.

The authors' classifier (github haiduo/PartialNet) stores a flat ``stages`` list
that interleaves block stages and merging layers (0, 2, 4, 6 are blocks; 1, 3, 5
are merging layers), ``spatial_mixing`` for PATConv, an ``nn.Sequential`` MLP
whose index 4 is PAT_sp, ``avgpool_pre_head`` and ``head``. PyTorch Lightning
checkpoints prefix every key with ``model.``. Ours is mmpretrain's
ImageClassifier layout: ``backbone.*`` and ``head.*``.

PAT_sp's two BNs are both C/2 wide, so their roles are not visible in the shapes:
``mlp.4.norm`` is taken as the BN on the attended half and ``mlp.4.norm2`` as the
BN before the 1x1 conv, by analogy with PAT_ch, where ``spatial_mixing.norm`` is
the BN on the attended part.
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping, Tuple

import torch

from ..checkpoint import format_keys

_BN = r'(weight|bias|running_mean|running_var|num_batches_tracked)'

# (authors' key pattern inside a block, our key inside a block)
_BLOCK_RULES = [
    (r'spatial_mixing\.partial_conv3\.weight', 'token_mixer.conv.weight'),
    (r'spatial_mixing\.attn\.cfc1\.weight', 'token_mixer.attn.attention.cfc.conv.weight'),
    (rf'spatial_mixing\.attn\.bn\.{_BN}', r'token_mixer.attn.attention.cfc.norm.\1'),
    (rf'spatial_mixing\.norm\.{_BN}', r'token_mixer.attn.norm.\1'),
    (r'spatial_mixing\.attn\.(qkv\.weight|proj\.weight|proj\.bias|rpe_k\.lookup_table_bias)',
     r'token_mixer.attn.attn.\1'),
    (r'mlp\.0\.weight', 'mlp.fc1.conv.weight'),
    (rf'mlp\.1\.{_BN}', r'mlp.fc1.norm.\1'),
    (r'mlp\.3\.weight', 'mlp.fc2.weight'),
    (r'mlp\.4\.conv_attn\.weight', 'mlp.pat_sp.attn.conv.weight'),
    (r'mlp\.4\.conv\.weight', 'mlp.pat_sp.mix.conv.weight'),
    (rf'mlp\.4\.norm\.{_BN}', r'mlp.pat_sp.attn.norm.\1'),
    (rf'mlp\.4\.norm2\.{_BN}', r'mlp.pat_sp.mix.norm.\1'),
]


def _map_key(key: str) -> str:
    m = re.fullmatch(r'patch_embed\.proj\.weight', key)
    if m:
        return 'backbone.patch_embed.conv.weight'
    m = re.fullmatch(rf'patch_embed\.norm\.{_BN}', key)
    if m:
        return f'backbone.patch_embed.norm.{m.group(1)}'
    m = re.fullmatch(r'stages\.(\d+)\.(.*)', key)
    if m:
        index, rest = int(m.group(1)), m.group(2)
        stage = (index + 1) // 2
        if index % 2 == 1:  # merging layer before stage `stage`
            if rest == 'reduction.weight':
                return f'backbone.stages.{stage}.downsample.conv.weight'
            n = re.fullmatch(rf'norm\.{_BN}', rest)
            if n:
                return f'backbone.stages.{stage}.downsample.norm.{n.group(1)}'
        else:
            b = re.fullmatch(r'blocks\.(\d+)\.(.*)', rest)
            if b:
                for pattern, ours in _BLOCK_RULES:
                    if re.fullmatch(pattern, b.group(2)):
                        inner = re.sub(pattern, ours, b.group(2))
                        return f'backbone.stages.{stage}.blocks.{b.group(1)}.{inner}'
    if key == 'avgpool_pre_head.1.weight':
        return 'head.pre_logits_layers.fc.weight'
    m = re.fullmatch(r'head\.(weight|bias)', key)
    if m:
        return f'head.fc.{m.group(1)}'
    raise KeyError(key)


def convert_authors_state_dict(state_dict: Mapping[str, torch.Tensor]
                               ) -> Tuple['OrderedDict[str, torch.Tensor]', Dict[str, object]]:
    """Convert an authors' classifier state dict (``model.`` prefix optional).

    Returns ``(converted, info)`` where ``info['with_pat_sp']`` tells whether the
    checkpoint has PAT_sp (build the model to match) and ``info['embed_dims']`` /
    ``info['depths']`` describe the network it came from. Raises KeyError listing
    every key it cannot place.
    """
    if not state_dict:
        raise ValueError('empty state dict')
    keys = list(state_dict)
    if all(k.startswith('model.') for k in keys):
        state_dict = {k[len('model.'):]: v for k, v in state_dict.items()}
    converted, unknown = OrderedDict(), []
    for key, value in state_dict.items():
        try:
            new = _map_key(key)
        except KeyError:
            unknown.append(key)
            continue
        if new == 'head.pre_logits_layers.fc.weight' and value.dim() == 4:
            value = value.flatten(1)
        converted[new] = value
    if unknown:
        raise KeyError(f'keys not in the authors\' PartialNet layout: {format_keys(unknown, 8)}')
    if 'backbone.patch_embed.conv.weight' not in converted:
        raise KeyError('not an authors\' PartialNet checkpoint: patch_embed.proj.weight is missing')
    depths = []
    for stage in range(4):
        ids = {int(m.group(1)) for k in converted
               for m in [re.match(rf'backbone\.stages\.{stage}\.blocks\.(\d+)\.', k)] if m}
        depths.append(max(ids) + 1 if ids else 0)
    info = dict(
        with_pat_sp=any('.mlp.pat_sp.' in k for k in converted),
        embed_dims=int(converted['backbone.patch_embed.conv.weight'].shape[0]),
        depths=tuple(depths),
    )
    return converted, info
