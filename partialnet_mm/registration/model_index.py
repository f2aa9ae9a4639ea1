"""Our classifiers in mmpretrain's model index (``mmpretrain.list_models``, ``get_model``).

The model index ships inside the package under ``.mim/`` (``model-index.yml`` and the
``configs/metafile-*.yml`` it imports), as OpenMMLab packages ship theirs. Only the
classification metafile is registered with mmpretrain's ``ModelHub``: ``get_model`` builds
every entry in mmpretrain's scope, which a Mask R-CNN config is not.
"""
from pathlib import Path

from mmpretrain.apis import ModelHub
from modelindex import load

MIM_ROOT = Path(__file__).resolve().parent.parent / '.mim'
CLASSIFICATION_INDEX = MIM_ROOT / 'configs' / 'metafile-classification.yml'


def register_model_index(path: Path = CLASSIFICATION_INDEX) -> list:
    """Register the models of ``path`` with ``ModelHub``, config paths relative to ``.mim``.

    Returns the registered names. Registering the same file again (a module reload) is a
    no-op; a name another index already holds is ModelHub's ValueError."""
    if not path.is_file():
        raise FileNotFoundError(f'partialnet_mm: the model index {path} is missing from the '
                                'installed package (reinstall it)')
    names = [model.name.lower() for model in load(str(path)).models]
    mine = [name for name in names if ModelHub.has(name)
            and Path(ModelHub._models_dict[name].filepath).resolve() == path.resolve()]
    if len(mine) == len(names):
        return names
    ModelHub.register_model_index(path, config_prefix=MIM_ROOT)
    return names
