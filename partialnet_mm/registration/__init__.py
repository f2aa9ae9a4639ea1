"""Registration of the pure-torch models into the OpenMMLab registries.

Each framework is registered only when it is installed, so the models import
and run with torch (+ mmengine) alone, e.g. on a benchmark machine.
"""
import importlib
import importlib.util
import warnings

# The one list of the frameworks we plug into: config default_scope -> our registration
# module. The tools (train/test, reparameterize, FLOPs) accept exactly these scopes.
FRAMEWORKS = {'mmdet': '.det', 'mmpretrain': '.cls', 'mmseg': '.seg'}


def check_scope(scope) -> str:
    """``scope`` when it is one of :data:`FRAMEWORKS`; else a ValueError naming them."""
    if scope not in FRAMEWORKS:
        raise ValueError(f"config default_scope is {scope!r}: partialnet_mm's tools run "
                         f"{', '.join(FRAMEWORKS)} configs (default_scope one of "
                         f"{tuple(FRAMEWORKS)})")
    return scope


def register_all() -> dict:
    """Register into every installed framework; returns {framework: registered?}."""
    done = {}
    for framework, module in FRAMEWORKS.items():
        if importlib.util.find_spec(framework) is None:
            done[framework] = False
            continue
        try:
            importlib.import_module(module, __name__)
            done[framework] = True
        except Exception as err:  # an installed but broken framework must not hide the models
            warnings.warn(f'partialnet_mm: {framework} is installed but failed to import, so '
                          f'PartialNet is not registered there: {type(err).__name__}: {err}', stacklevel=2)
            done[framework] = False
    return done
