"""fastmlp: multilayer perceptrons trained fast on the CPU.

C++ kernels (fastmlp._core) with a NumPy twin (fastmlp.reference); pick one with
``backend="native"`` or ``backend="numpy"``.
"""
__version__ = "0.1.0"   # the one place the version is written (pyproject reads it)

import os

from . import autograd, backend, data, native_core
from .backend import BACKENDS, KERNEL_NAMES, get_backend
from .checks import check_int
from .gradcheck import gradcheck
from .model import MLP
from .training import History, TrainingWarning


def build_info():
    """What the native core was built with and which kernels it runs on this CPU."""
    return native_core.load().build_info()


def get_include():
    """The directory holding fastmlp/cython_kernels.pxd, for building Cython code that
    cimports the kernels (like numpy.get_include()): include_dirs=[fastmlp.get_include()]."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def set_isa(name):
    """Cap the instruction set of the native kernels ("generic", "avx2" or "avx512").

    The cap is also read from the FASTMLP_ISA environment variable at import. Returns the
    ISA now active (never more than the CPU supports).
    """
    return native_core.load().set_isa(name)


def set_num_threads(n):
    """Threads used by the native kernels (threadpoolctl's OpenMP limit works too). Once
    called, fit(comm=...) keeps this count instead of choosing one per MPI rank."""
    limit = 4 * (os.cpu_count() or 1)   # more only queue on the cores, and stay alive
    n = check_int(n, "n", minimum=1)
    if n > limit:
        raise ValueError(f"n: expected at most {limit} threads (4 per core here), got {n}")
    native_core.load().set_num_threads(n)
    backend.threads_chosen_by_user = True


def get_num_threads():
    return native_core.load().get_num_threads()


__all__ = ["BACKENDS", "KERNEL_NAMES", "History", "MLP", "TrainingWarning", "autograd",
           "build_info", "data", "get_backend", "get_include", "get_num_threads", "gradcheck",
           "set_isa", "set_num_threads", "__version__"]
