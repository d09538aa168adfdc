"""Property tests (hypothesis): the native kernels equal their NumPy twins over random
shapes (0 and 1 included), dtypes and memory layouts; random junk arguments give a
TypeError/ValueError or a result, never a crash; fuzzed model and IDX files are refused
with a ValueError or read as valid. Run under the sanitizer build too (.ci/sanitize)."""
import gzip
import io
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastmlp
from fastmlp import MLP
from fastmlp.data.idx import IDX_DTYPES, read_idx

native = fastmlp.get_backend("native")
reference = fastmlp.get_backend("numpy")

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = (np.float32, np.float64)
LAYOUTS = ("c", "fortran", "strided", "reversed", "misaligned")
ACTS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "identity")


def laid_out(a, layout):
    """The same values as `a` in another memory layout."""
    if a.ndim == 0:   # one element has one layout (and NumPy's layout helpers make it 1-D)
        return a.copy()
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "strided":
        return np.repeat(a, 3, axis=-1)[..., 1::3]
    if layout == "reversed":
        return np.flip(np.flip(a).copy())
    if layout == "misaligned":   # data one byte off the dtype's alignment: the binding copies
        buf = np.empty(a.nbytes + 1, np.uint8)
        out = np.frombuffer(buf.data, a.dtype, count=a.size, offset=1).reshape(a.shape)
        out[...] = a
        return out
    return np.array(a, order="C")   # (np.ascontiguousarray would make a 0-d array 1-d)


@st.composite
def arrays(draw, shape, dtype, scale=3.0):
    seed = draw(st.integers(0, 2**32 - 1))
    a = np.asarray(np.random.default_rng(seed).uniform(-scale, scale, shape), dtype=dtype)
    return laid_out(a, draw(st.sampled_from(LAYOUTS)))


dims = st.integers(0, 19)
small = st.integers(1, 9)


def close(got, want, dtype, k=1):
    eps = np.finfo(dtype).eps
    tol = 8 * np.sqrt(max(k, 1)) * eps * 30 + 30 * eps
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    assert got.dtype == want.dtype and got.shape == want.shape


@SETTINGS
@given(st.sampled_from(DTYPES), dims, dims, dims, st.data())
def test_matmul_matches_numpy(dtype, n, k, m, data):
    a, b = data.draw(arrays((n, k), dtype)), data.draw(arrays((k, m), dtype))
    scale = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)) + 1
    got = native.matmul(a, b)
    assert got.dtype == dtype and got.shape == (n, m)
    np.testing.assert_array_less(np.abs(got - reference.matmul(a, b)), 8 * np.sqrt(k + 1) * np.finfo(dtype).eps * scale)


@SETTINGS
@given(st.sampled_from(DTYPES), dims, small, small, st.sampled_from(ACTS), st.data())
def test_linear_forward_and_backward_match_numpy(dtype, n, k, m, act, data):
    x, w, b = data.draw(arrays((n, k), dtype)), data.draw(arrays((m, k), dtype)), data.draw(arrays((m,), dtype))
    param = data.draw(st.floats(0.01, 2.0))
    for got, want in zip(native.linear_forward(x, w, b, act, param), reference.linear_forward(x, w, b, act, param)):
        close(got, want, dtype, k)
    delta = data.draw(arrays((n, m), dtype))
    z = data.draw(arrays((n, k), dtype))
    a_prev = reference.activation_forward(np.ascontiguousarray(z), act, param)
    for got, want in zip(native.linear_backward(delta, x, w, z, a_prev, act, param),
                         reference.linear_backward(delta, x, w, z, a_prev, act, param)):
        close(got, want, dtype, max(n, m))


@SETTINGS
@given(st.sampled_from(DTYPES), st.lists(st.integers(0, 7), max_size=3), st.sampled_from(ACTS), st.data())
def test_activations_match_numpy_on_any_shape(dtype, shape, act, data):
    z = data.draw(arrays(tuple(shape), dtype, scale=30.0))
    param = data.draw(st.floats(0.01, 2.0))
    a = native.activation_forward(z, act, param)
    close(a, reference.activation_forward(z, act, param), dtype)
    close(native.activation_derivative(z, a, act, param), reference.activation_derivative(z, a, act, param), dtype)


@SETTINGS
@given(st.sampled_from(DTYPES), dims, small, st.data())
def test_softmax_and_losses_match_numpy(dtype, n, k, data):
    z = data.draw(arrays((n, k), dtype, scale=50.0))
    close(native.softmax(z), reference.softmax(z), dtype, k)
    labels = data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    labels = np.array(labels, dtype=data.draw(st.sampled_from((np.int64, np.int32, np.uint8))))
    for y in (labels, np.eye(k, dtype=dtype)[labels]):
        (j, dz), (j_ref, dz_ref) = native.softmax_cross_entropy(z, y), reference.softmax_cross_entropy(z, y)
        assert j == pytest.approx(j_ref, rel=1e-4 if dtype == np.float32 else 1e-12, abs=1e-6)
        close(dz, dz_ref, dtype, k)
    y = data.draw(arrays((n, k), dtype, scale=1.0))
    for op in ("sigmoid_binary_cross_entropy", "quadratic_loss"):
        (j, d), (j_ref, d_ref) = getattr(native, op)(z, np.abs(y)), getattr(reference, op)(z, np.abs(y))
        assert j == pytest.approx(j_ref, rel=1e-4 if dtype == np.float32 else 1e-12, abs=1e-6)
        close(d, d_ref, dtype, k)


@SETTINGS
@given(st.sampled_from(DTYPES), dims, small, st.integers(1, 4), st.data())
def test_maxout_matches_numpy(dtype, n, m, k, data):
    z = data.draw(arrays((n, m * k), dtype))
    (a, arg), (a_ref, arg_ref) = native.maxout_forward(z, k), reference.maxout_forward(z, k)
    np.testing.assert_array_equal(a, a_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    da = data.draw(arrays((n, m), dtype))
    np.testing.assert_array_equal(native.maxout_backward(da, arg, k), reference.maxout_backward(da, arg, k))


@SETTINGS
@given(st.sampled_from(DTYPES), st.lists(st.integers(0, 9), max_size=3), st.data())
def test_sgd_update_matches_numpy(dtype, shape, data):
    w = np.array(data.draw(arrays(tuple(shape), dtype)), order="C")
    dw = data.draw(arrays(tuple(shape), dtype))
    lr, wd = data.draw(st.floats(0.0, 2.0)), data.draw(st.floats(0.0, 0.1))
    w_ref = w.copy()
    native.sgd_update(w, dw, lr, wd)
    reference.sgd_update(w_ref, dw, lr, wd)
    close(w, w_ref, dtype)


@SETTINGS
@given(st.sampled_from(DTYPES), st.lists(st.integers(0, 9), max_size=3), st.booleans(), st.data())
def test_momentum_update_matches_numpy_bitwise(dtype, shape, nesterov, data):
    w, velocity = (np.array(data.draw(arrays(tuple(shape), dtype)), order="C") for _ in range(2))
    dw = data.draw(arrays(tuple(shape), dtype))
    lr, momentum, wd = data.draw(st.floats(0.0, 2.0)), data.draw(st.floats(0.0, 0.999)), data.draw(st.floats(0.0, 0.1))
    w_ref, velocity_ref = w.copy(), velocity.copy()
    native.momentum_update(w, dw, velocity, lr, momentum, nesterov, wd)
    reference.momentum_update(w_ref, dw, velocity_ref, lr, momentum, nesterov, wd)
    np.testing.assert_array_equal(w, w_ref)
    np.testing.assert_array_equal(velocity, velocity_ref)


@SETTINGS
@given(st.sampled_from(DTYPES), st.lists(st.integers(0, 9), max_size=3), st.booleans(), st.data())
def test_adam_update_matches_numpy_bitwise(dtype, shape, decoupled, data):
    w, m, v = (np.array(data.draw(arrays(tuple(shape), dtype)), order="C") for _ in range(3))
    np.abs(v, out=v)   # (in place: a 0-d array stays an array)
    dw = data.draw(arrays(tuple(shape), dtype))
    lr, wd = data.draw(st.floats(0.0, 1.0)), data.draw(st.floats(0.0, 0.1))
    beta1, beta2 = data.draw(st.floats(0.0, 0.999)), data.draw(st.floats(0.0, 0.9999))
    eps, step = data.draw(st.floats(1e-12, 1e-2)), data.draw(st.integers(1, 10**6))
    w_ref, m_ref, v_ref = w.copy(), m.copy(), v.copy()
    native.adam_update(w, dw, m, v, lr, beta1, beta2, eps, wd, decoupled, step)
    reference.adam_update(w_ref, dw, m_ref, v_ref, lr, beta1, beta2, eps, wd, decoupled, step)
    for got, want in ((w, w_ref), (m, m_ref), (v, v_ref)):
        np.testing.assert_array_equal(got, want)


# ---- junk arguments: a clear error or a result, never a crash ----

JUNK_DTYPES = (np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8, np.bool_,
               np.complex128, object, ">f8", np.longdouble)


@st.composite
def junk(draw):
    kind = draw(st.sampled_from(("array", "array", "array", "scalar", "name", "none", "list")))
    if kind == "array":
        shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
        dtype = draw(st.sampled_from(JUNK_DTYPES))
        a = np.random.default_rng(draw(st.integers(0, 99))).integers(-3, 4, shape).astype(dtype)
        return laid_out(a, draw(st.sampled_from(LAYOUTS))) if a.dtype.kind == "f" and a.dtype.isnative else a
    if kind == "scalar":
        return draw(st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True), st.booleans()))
    if kind == "name":
        return draw(st.sampled_from(ACTS + ("maxout", "", "relu\0x")))
    return None if kind == "none" else [1.0, 2.0]


OPS_ARITY = {"matmul": 2, "linear_forward": 5, "linear_backward": 7, "activation_forward": 3,
             "activation_derivative": 4, "activation_backward": 5, "maxout_forward": 2,
             "maxout_backward": 3, "softmax": 1, "softmax_cross_entropy": 2,
             "sigmoid_binary_cross_entropy": 2, "quadratic_loss": 2, "sgd_update": 4,
             "momentum_update": 7, "adam_update": 11}


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(OPS_ARITY)), st.data())
def test_junk_arguments_give_type_or_value_errors(op, data):
    args = [data.draw(junk()) for _ in range(OPS_ARITY[op])]
    try:
        getattr(native, op)(*args)
    except (TypeError, ValueError) as exc:
        assert ":" in str(exc)   # "argument: what was expected"


# ---- fuzzed model files ----

@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    out = []
    for activation in ("relu", ("maxout", 2)):
        path = tmp_path_factory.mktemp("m") / "m.npz"
        MLP([3, 4, 2], activation=activation, backend="numpy", seed=1).save(path)
        out.append(path.read_bytes())
    return out


mutations = st.lists(st.tuples(st.sampled_from(("flip", "set", "cut", "insert", "delete")),
                               st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                     min_size=1, max_size=4)


def mutate(content, steps):
    data = bytearray(content)
    for how, where, value in steps:
        at = int(where * len(data)) if data else 0
        if how == "flip" and data:
            data[at] ^= 1 << (value % 8)
        elif how == "set" and data:
            data[at] = value
        elif how == "cut":
            del data[at:]
        elif how == "insert":
            data[at:at] = bytes([value]) * (1 + value % 5)
        elif how == "delete" and data:
            del data[at:at + 1 + value % 9]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 1), mutations)
def test_fuzzed_model_files_are_refused_or_valid(saved_models, tmp_path, which, steps):
    original = saved_models[which]
    content = mutate(original, steps)
    path = tmp_path / "fuzzed.npz"
    path.write_bytes(content)
    try:
        net = MLP.load(path)
    except ValueError as exc:
        assert str(exc).startswith(repr(path) + ":"), exc
        return
    # a mutation that left a valid model (e.g. in zip padding): a usable, finite model
    assert all(np.isfinite(p).all() for p in net.weights + net.biases)
    assert net.forward(np.ones((2, 3))).shape == (2, 2)


# ---- fuzzed IDX files ----

def idx_bytes(array, type_code):
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(IDX_DTYPES[type_code]).tobytes()


def read_written_idx(path, content):
    """read_idx of `content` written to `path`, or None if it was refused, which it must
    be with a ValueError that names the file."""
    path.write_bytes(content)
    try:
        return read_idx(path)
    except ValueError as exc:
        assert str(path) in str(exc)
        return None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(IDX_DTYPES)), st.lists(st.integers(0, 4), min_size=1, max_size=3),
       st.one_of(st.none(), mutations), st.booleans())
def test_fuzzed_idx_files_are_refused_or_consistent(tmp_path, type_code, shape, steps, gz):
    content = idx_bytes(np.arange(np.prod(shape)).reshape(shape) % 100, type_code)
    if steps is not None:
        content = mutate(content, steps)
    if gz:
        content = gzip.compress(content)
        if steps is not None and len(steps) > 1:   # and a damaged gzip stream too
            content = mutate(content, steps[1:])
    array = read_written_idx(tmp_path / ("f.idx.gz" if gz else "f.idx"), content)
    if array is None:
        return
    # whatever was read, the header and the data agree
    assert array.dtype.isnative and array.ndim >= 1


@SETTINGS
@given(st.binary(max_size=64), st.integers(0, 255), st.lists(st.integers(0, 2**32 - 1), max_size=6))
def test_idx_headers_with_any_dimensions_are_refused_or_exact(tmp_path, data, type_code, dims):
    content = struct.pack(">BBBB", 0, 0, type_code, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + data
    array = read_written_idx(tmp_path / "h.idx", content)
    if array is None:
        return
    assert array.shape == tuple(dims) and array.nbytes == len(data)
