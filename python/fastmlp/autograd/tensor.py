"""Tensor and the reverse-mode engine: the lecture's computational graph, recorded as it runs.

Every op applied to a Tensor that requires grad records a node (its Function's context,
holding the input Tensors). ``backward()`` walks that graph from the output to the leaves
in reverse topological order and applies the chain rule at each node: the node's
incoming gradient times its local gradients gives the gradients of its inputs, summed
where a value feeds several nodes.
"""
import numpy as np


class Tensor:
    """An ndarray (scalars included) that remembers how it was computed.

    Tensor(value, requires_grad=False, dtype=None) copies `value` into a floating-point
    array (integers and booleans become float64). Leaves with requires_grad=True collect
    ∂(output)/∂(leaf) in ``.grad`` on ``backward()``, accumulating over calls like PyTorch;
    set ``.grad = None`` (or use an optimiser's zero_grad) between steps.
    """

    # Makes `ndarray + Tensor` defer to Tensor.__radd__ instead of looping over elements.
    __array_ufunc__ = None

    def __init__(self, value, requires_grad=False, dtype=None):
        data = np.array(value.data if isinstance(value, Tensor) else value, dtype=dtype)
        if data.dtype.kind in "biu":
            data = data.astype(np.float64)
        elif data.dtype.kind != "f":
            raise TypeError(f"value: expected real numbers, got an array of dtype {data.dtype}")
        self.data = data
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._ctx = None             # the Context of the op that produced this tensor
        self._retains_grad = False

    @classmethod
    def _from_op(cls, data, ctx):
        """An op's output: wraps `data` without copying; `ctx` is None when not recorded."""
        out = cls.__new__(cls)
        out.data = data
        out.requires_grad = ctx is not None
        out.grad = None
        out._ctx = ctx
        out._retains_grad = False
        return out

    # -- plain array facts -------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    dtype = property(lambda self: self.data.dtype)

    @property
    def is_leaf(self):
        return self._ctx is None

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, separator=', ')}{grad})"

    def item(self):
        return self.data.item()

    def numpy(self):
        return self.data

    def detach(self):
        """The same values, cut from the graph."""
        return Tensor._from_op(self.data, None)

    def retain_grad(self):
        """Keep ``.grad`` on this intermediate tensor too (leaves always keep theirs)."""
        self._retains_grad = True
        return self

    # -- operators (the ops live in ops.py) --------------------------------------------
    def __add__(self, other):
        return ops.add(self, other)

    def __radd__(self, other):
        return ops.add(other, self)

    def __sub__(self, other):
        return ops.sub(self, other)

    def __rsub__(self, other):
        return ops.sub(other, self)

    def __mul__(self, other):
        return ops.mul(self, other)

    def __rmul__(self, other):
        return ops.mul(other, self)

    def __matmul__(self, other):
        return ops.matmul(self, other)

    def __rmatmul__(self, other):
        return ops.matmul(other, self)

    def __neg__(self):
        return ops.neg(self)

    def sum(self, axis=None, keepdims=False):
        return ops.sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return ops.mean(self, axis, keepdims)

    def reshape(self, *shape):
        return ops.reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        return ops.transpose(self, (axes[0] if len(axes) == 1 else axes) or None)

    @property
    def T(self):
        return ops.transpose(self)

    # -- the engine --------------------------------------------------------------------
    def backward(self, grad=None):
        """Reverse mode: accumulate ∂self/∂leaf into every leaf's ``.grad``.

        `grad` seeds ∂L/∂self; it may be omitted only when self holds one value (a loss).
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad (no leaf of its "
                               "graph was created with requires_grad=True, or it was built "
                               "under no_grad)")
        if grad is None:
            if self.data.size != 1:
                raise ValueError(f"grad: backward() of a tensor of shape {self.shape} needs a "
                                 "seed gradient of that shape; only one-element outputs default to 1")
            grad = np.ones_like(self.data)
        else:
            grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"grad: expected shape {self.shape}, got {grad.shape}")

        pending = {id(self): grad}     # gradients summed so far, by tensor
        for node in _reverse_topological_order(self):
            g = pending.pop(id(node), None)
            if g is None:            # every path to it returned None (e.g. labels of a loss)
                continue
            if node._ctx is None or node._retains_grad:
                node.grad = g.copy() if node.grad is None else node.grad + g
            if node._ctx is not None:
                _propagate(node._ctx, g, pending)


def _reverse_topological_order(root):
    """Tensors of root's graph that require grad, each after every tensor computed from it.

    An iterative depth-first post-order (deep graphs must not hit the recursion limit).
    """
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            stack.extend((t, False) for t in node._ctx.inputs
                         if isinstance(t, Tensor) and t.requires_grad and id(t) not in seen)
    return order[::-1]


def _propagate(ctx, grad_output, pending):
    """Chain rule at one node: its Function's backward, summed into the inputs' gradients."""
    name = ctx.fn.__name__
    grads = ctx.fn.backward(ctx, grad_output)
    if not isinstance(grads, tuple):
        grads = (grads,)
    if len(grads) != len(ctx.inputs):
        raise RuntimeError(f"{name}.backward returned {len(grads)} gradients for "
                           f"{len(ctx.inputs)} inputs")
    for tensor, g in zip(ctx.inputs, grads):
        if g is None or not (isinstance(tensor, Tensor) and tensor.requires_grad):
            continue
        g = np.asarray(g, dtype=tensor.dtype)
        if g.shape != tensor.shape:
            raise RuntimeError(f"{name}.backward returned a gradient of shape {g.shape} for "
                               f"an input of shape {tensor.shape}")
        key = id(tensor)
        pending[key] = pending[key] + g if key in pending else g


# ops.py imports Tensor from this module, so it can only be imported once Tensor exists.
from . import ops  # noqa: E402
