"""check_op: run one kernel from the NumPy twin and the native backend on the same seeded
inputs and hold them to the numerical contract: every native kernel matches its NumPy twin
element by element, within atol + 8·sqrt(K)·eps·(|A||B|) for a product over K terms (eps of
the dtype) and within a few ulps for element-wise ops, in float32 and float64 alike.

Shapes and dtypes are asserted before values. Tolerances are per output, as a Bound:
|native − numpy| <= rtol·|numpy| + atol element by element, with atol a scalar or an
array (a per-element bound such as 8·sqrt(K)·eps·(|A||B|) for a product over K terms).
The helpers below build the bounds the contract names; each says why it is what it is.
"""
from dataclasses import dataclass

import numpy as np

import fastmlp


@dataclass(frozen=True)
class Bound:
    rtol: float = 0.0
    atol: object = 0.0   # scalar or array broadcastable to the output


def exact():
    """Selections, copies and the same arithmetic in the same order: bitwise equal."""
    return Bound()


def elementwise(dtype, ulps=4):
    """Transcendental element-wise ops (exp, tanh, expm1 from two different libms, each
    within ~1–2 ulp of the true value): `ulps`·eps relative. ulp(x) <= eps·|x|, so this
    allows at least `ulps` ulps. atol = the smallest normal number, because near 0 the
    results are subnormal and libms round or flush those differently."""
    finfo = np.finfo(dtype)
    return Bound(rtol=ulps * finfo.eps, atol=float(finfo.tiny))


def reduction(dtype, k, scale, ulps=4):
    """A result summed over k terms, in a different order (lanes vs NumPy's pairwise sum):
    atol = 8·sqrt(k)·eps·scale, with `scale` Σ|term| (e.g. |A||B| for a product), as in the
    contract; plus `ulps`·eps relative for the element-wise work around the sum."""
    eps = np.finfo(dtype).eps
    return Bound(rtol=ulps * eps, atol=8.0 * np.sqrt(max(k, 1)) * eps * np.asarray(scale) +
                 float(np.finfo(dtype).tiny))


def to_layout(x, layout):
    """The same values as x in another memory layout: "c", "fortran", "strided" (every
    other element of a twice-as-large array, along both axes) or "readonly"."""
    if not isinstance(x, np.ndarray) or layout == "c":
        return x
    if layout == "fortran":
        return np.asfortranarray(x)
    if layout == "strided":
        big = np.zeros(tuple(2 * d for d in x.shape), dtype=x.dtype)
        view = big[tuple(slice(None, None, 2) for _ in x.shape)]
        view[...] = x
        return view
    if layout == "readonly":
        y = x.copy()
        y.flags.writeable = False
        return y
    raise ValueError(f"layout: unknown {layout!r}")


def _in_place(inplace):
    """The indices of the arguments an op updates in place: none (False), the first (True),
    or the given tuple (an optimizer's parameters and state)."""
    if inplace is True:
        return (0,)
    return tuple(inplace) if inplace else ()


def _as_outputs(result, args, inplace):
    """An op's outputs as a tuple; an in-place op (returns None) outputs the arguments it
    updates."""
    if inplace:
        assert result is None, f"in-place op returned {type(result).__name__}, expected None"
        return tuple(args[i] for i in _in_place(inplace))
    return result if isinstance(result, tuple) else (result,)


def _assert_close(name, got, want, bound):
    got64 = np.asarray(got, dtype=np.float64)
    want64 = np.asarray(want, dtype=np.float64)
    same_nan = np.isnan(got64) == np.isnan(want64)
    assert same_nan.all(), f"{name}: NaN at different places"
    err = np.abs(np.where(np.isnan(want64), 0.0, got64 - want64))
    err = np.where(got64 == want64, 0.0, err)          # equal infinities
    limit = bound.rtol * np.abs(want64) + np.broadcast_to(bound.atol, want64.shape)
    bad = ~(err <= limit)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err - limit, -np.inf)), want64.shape)
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {bad.size} elements outside the bound; worst at "
            f"{tuple(int(j) for j in i)}: native {got64[i]!r}, numpy {want64[i]!r}, "
            f"|diff| {err[i]:.3g} > {limit[i]:.3g}")


def check_op(op, make_inputs, shape, dtype, bounds, *, seed=0, layout="c", inplace=False):
    """Hold native `op` to its NumPy twin on make_inputs(rng, shape, dtype).

    bounds(args, ref_outputs) -> one Bound per output (None outputs must match as None).
    inplace: False, True (the op updates its first argument and returns None) or a tuple of
    the indices of the arguments it updates; those are its outputs.
    layout: the native op gets its array arguments in this layout ("c", "fortran",
    "strided", "readonly"); the arguments updated in place always stay C-ordered.
    Also checks that native outputs are fresh C-contiguous arrays and that the op leaves
    its (other) inputs untouched. Returns the reference outputs.
    """
    ref_op = getattr(fastmlp.get_backend("numpy"), op)
    native_op = getattr(fastmlp.get_backend("native"), op)
    args = make_inputs(np.random.default_rng(seed), shape, np.dtype(dtype))
    ref_args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    nat_args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    written = _in_place(inplace)
    nat_args = [a if i in written else to_layout(a, layout) for i, a in enumerate(nat_args)]

    want = _as_outputs(ref_op(*ref_args), ref_args, inplace)
    got = _as_outputs(native_op(*nat_args), nat_args, inplace)

    # Structure first: same number of outputs, same kinds, shapes and dtypes.
    assert len(got) == len(want), f"{op}: {len(got)} outputs, numpy gives {len(want)}"
    for j, (g, w) in enumerate(zip(got, want)):
        name = f"{op} output {j}"
        if w is None:
            assert g is None, f"{name}: expected None, got {type(g).__name__}"
        elif isinstance(w, float):
            assert type(g) is float, f"{name}: expected a Python float, got {type(g).__name__}"
        else:
            assert isinstance(g, np.ndarray), f"{name}: expected an ndarray, got {type(g).__name__}"
            assert g.shape == w.shape, f"{name}: shape {g.shape}, numpy gives {w.shape}"
            assert g.dtype == w.dtype, f"{name}: dtype {g.dtype}, numpy gives {w.dtype}"
            assert g.flags.c_contiguous, f"{name}: not C-contiguous"
            if not inplace:
                assert not any(np.shares_memory(g, a) for a in nat_args
                               if isinstance(a, np.ndarray)), f"{name}: shares memory with an input"
    for i, (a, n) in enumerate(zip(args, nat_args)):
        if isinstance(a, np.ndarray) and i not in written:
            assert np.array_equal(a, n, equal_nan=True), f"{op}: modified input {i}"

    # Then values.
    for j, (g, w, b) in enumerate(zip(got, want, bounds(args, want))):
        if w is not None:
            _assert_close(f"{op} output {j} ({np.dtype(dtype).name}, shape {shape})", g, w, b)
    return want
