"""Function: one node type of the computational graph, and the switches every op reads.

A Function subclass is a gate of the lecture's graphs: ``forward`` computes the output
from ndarrays and saves on ``ctx`` what the local gradients need; ``backward`` receives
∂L/∂output and returns ∂L/∂input for each input (chain rule: upstream times local).
Every op of fastmlp.autograd is built this way, so user-defined ops run on the same engine.

Switches (process-wide, not per thread):
    with no_grad(): ...            # evaluate without recording a graph
    with backend("native"): ...    # run the ops on the native kernels (default "numpy")
"""
from contextlib import contextmanager

import numpy as np

from ..backend import get_backend
from .tensor import Tensor

_grad_enabled = True
_backend_name = "numpy"


@contextmanager
def no_grad():
    """Ops inside record nothing: outputs do not require grad and no state is saved."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled():
    return _grad_enabled


def set_backend(name):
    """Make `name` ("numpy" or "native") the backend of ops applied from now on."""
    global _backend_name
    get_backend(name)            # fail here, with fastmlp's message, on a bad or unbuilt backend
    _backend_name = name


def get_backend_name():
    return _backend_name


@contextmanager
def backend(name):
    """Run the ops inside on backend `name`; the previous backend is restored on exit."""
    previous = _backend_name
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def kernel(name, table=None):
    """Kernel `name` of `table` (default: the current backend's table)."""
    table = table or get_backend(_backend_name)
    fn = table.kernels.get(name)
    if fn is None:
        raise NotImplementedError(f"the {table.name!r} backend has no {name!r} kernel yet; "
                                  "run this op under autograd.backend('numpy')")
    return fn


class Context:
    """What one recorded op keeps for its backward pass.

    fn: the Function; inputs: the positional arguments of apply (Tensors are the graph's
    edges); needs_input_grad: one bool per input; plus whatever forward saved on it.
    The backend is fixed at forward time, so backward runs on the same kernels.
    """

    def __init__(self, fn, inputs):
        self.fn = fn
        self.inputs = inputs
        self.needs_input_grad = tuple(isinstance(t, Tensor) and t.requires_grad for t in inputs)
        self.backend = get_backend(_backend_name)
        self.saved_tensors = ()

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays

    def kernel(self, name):
        """The kernel `name` of the backend this op was recorded on."""
        return kernel(name, self.backend)


class Function:
    """Base class of graph nodes. Subclasses define (as static methods)

        forward(ctx, *inputs, **options) -> ndarray      inputs arrive as ndarrays
        backward(ctx, grad_output) -> one gradient per positional input (None if not needed)

    and are used through ``Function.apply(*inputs, **options)``: Tensors among the inputs
    become edges of the graph; other values (numbers, arrays, labels) are constants, and
    keyword options (names, sizes) are passed to forward untouched.
    """

    @staticmethod
    def forward(ctx, *inputs, **options):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad_output):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **options):
        ctx = Context(cls, inputs)
        arrays = [t.data if isinstance(t, Tensor) else t for t in inputs]
        out = np.asarray(cls.forward(ctx, *arrays, **options))
        record = _grad_enabled and any(ctx.needs_input_grad)
        return Tensor._from_op(out, ctx if record else None)


def unbroadcast(grad, shape):
    """Sum `grad` back to `shape`: the gradient of an input NumPy broadcast to grad's shape."""
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    return grad.sum(axis=axes).reshape(shape) if axes else grad
