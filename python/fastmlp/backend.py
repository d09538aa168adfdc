"""The backend table: each backend's kernels, and the training module built on them.

    get_backend("numpy")   # fastmlp.reference, the spec; training in Python (numpy_training)
    get_backend("native")  # fastmlp._core, the C++ kernels; training in C++ (native_training)

Both tables expose the same kernel names with the same signatures (see fastmlp.reference),
and `.training`, a module with the one training interface (see fastmlp.numpy_training).
This is the only module that tells the backends apart by name.
"""
from types import SimpleNamespace

from . import native_core, native_training, numpy_training, reference

BACKENDS = ("numpy", "native")
KERNEL_NAMES = tuple(reference.KERNELS)

_tables = {}
# set by fastmlp.set_num_threads: the user picked the native kernels' thread count
threads_chosen_by_user = False


def _native_kernels():
    core = native_core.load()
    missing = [op for op in KERNEL_NAMES if not hasattr(core, op)]
    if missing:   # a stale build from an older source tree
        raise RuntimeError(f"fastmlp._core lacks the kernels {', '.join(missing)}; reinstall "
                           f"fastmlp")
    return {op: getattr(core, op) for op in KERNEL_NAMES}


def get_backend(name="numpy"):
    """The table of backend `name` ("numpy" or "native"): its kernels as attributes, and
    `.training`, its training module. RuntimeError if the native backend is not built."""
    if name not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {name!r}")
    if name not in _tables:
        if name == "numpy":
            kernels, training = dict(reference.KERNELS), numpy_training
        else:
            kernels, training = _native_kernels(), native_training
        # rows_independent: row i of every kernel's result depends on row i of its inputs
        # alone (the native products never split a reduction by the rows there are); NumPy's
        # BLAS picks its kernels by the size of the product, so the last bits may change
        # with the number of rows. Evaluation takes the rows in chunks only where it is so.
        _tables[name] = SimpleNamespace(name=name, kernels=kernels, training=training,
                                        rows_independent=name == "native", **kernels)
    return _tables[name]


def native_unavailable():
    """Why the native backend cannot be used here, or None when it can."""
    try:
        get_backend("native")
    except RuntimeError as exc:
        return str(exc)
    return None


def default_backend():
    """"native" when it is built, else "numpy"."""
    return "numpy" if native_unavailable() else "native"
