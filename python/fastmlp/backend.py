"""The kernel table: each op name maps to its NumPy twin and, when built, its native version.

    get_backend("numpy")   # fastmlp.reference, the spec
    get_backend("native")  # fastmlp._core, the C++ kernels

Both tables expose the same names with the same signatures (see fastmlp.reference).
"""
from types import SimpleNamespace

from . import reference

BACKENDS = ("numpy", "native")
KERNEL_NAMES = tuple(reference.KERNELS)

_tables = {}
# set by fastmlp.set_num_threads: the user picked the native kernels' thread count
threads_chosen_by_user = False


def _native_module():
    try:
        from . import _core
    except ModuleNotFoundError as exc:  # pragma: no cover - only without a compiled build
        raise RuntimeError(
            "fastmlp's native backend is not built (no fastmlp._core); reinstall with "
            "`pip install .` or use backend='numpy'") from exc
    except ImportError as exc:  # e.g. a bad FASTMLP_ISA value
        raise RuntimeError(f"fastmlp._core failed to import: {exc}") from exc
    return _core


def get_backend(name="numpy"):
    """The kernel table of backend `name` ("numpy" or "native"), as a namespace of functions."""
    if name not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {name!r}")
    if name not in _tables:
        if name == "numpy":
            kernels = dict(reference.KERNELS)
        else:
            core = _native_module()
            kernels = {op: getattr(core, op) for op in KERNEL_NAMES if hasattr(core, op)}
        _tables[name] = SimpleNamespace(name=name, kernels=kernels, **kernels)
    return _tables[name]
