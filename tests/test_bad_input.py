"""Bad input at every public entry point, on both backends: a TypeError or ValueError that
names the argument, or (for layouts that are merely unusual) the right result. Never a
crash, and a refused call changes nothing.

The cases are tables: each row is (id, call, expected error, message regex). Run under
the sanitizer build too (.ci/sanitize), so an out-of-bounds access would abort there.
"""
import mmap
import pickle
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp import MLP

from conftest import MLP_BACKENDS

SIZES = [4, 5, 3]
rng = np.random.default_rng(0)
X = rng.standard_normal((6, 4))
LABELS = np.array([0, 1, 2, 0, 1, 2])
ONE_HOT = np.eye(3)[LABELS]


def with_value(array, index, value):
    out = np.array(array, dtype=float)
    out.flat[index] = value
    return out


# ---- the model: constructor, forward/predict/score/loss/gradients/step/fit, weights ----

CONSTRUCTOR_CASES = [
    ("sizes_one_layer", dict(sizes=[4]), ValueError, r"^sizes: expected a list of at least two"),
    ("sizes_zero_width", dict(sizes=[4, 0, 3]), ValueError, r"^sizes: expected"),
    ("sizes_negative", dict(sizes=[4, -5, 3]), ValueError, r"^sizes: expected"),
    ("sizes_float", dict(sizes=[4, 2.5, 3]), ValueError, r"^sizes: expected"),
    ("sizes_str", dict(sizes="453"), ValueError, r"^sizes: expected"),
    ("sizes_absurd", dict(sizes=[10**6, 10**6, 10**6]), ValueError, r"^sizes: .* need \d+ parameters; expected at most"),
    ("sizes_astronomic", dict(sizes=[4, 10**30, 3]), ValueError, r"^sizes: .* parameters; expected at most"),
    ("activation_unknown", dict(activation="softplus"), ValueError, r"^activation: unknown activation 'softplus'"),
    ("activation_type", dict(activation=3), TypeError, r"^activation: expected a name"),
    ("activation_param_nan", dict(activation=("elu", float("nan"))), ValueError, r"^activation \(elu parameter\): expected a finite"),
    ("activation_count", dict(activation=["relu", "relu"]), ValueError, r"^activation: expected one per hidden layer \(1\)"),
    ("maxout_pieces", dict(activation=("maxout", 0)), ValueError, r"^activation \(maxout pieces\): expected an integer >= 1"),
    ("output_unknown", dict(output="tanh"), ValueError, r"^output: expected one of"),
    ("loss_unknown", dict(loss="hinge"), ValueError, r"^loss: 'hinge' is not supported"),
    ("loss_mismatch", dict(output="identity", loss="cross_entropy"), ValueError, r"^loss: 'cross_entropy' is not supported"),
    ("dtype_float16", dict(dtype="float16"), ValueError, r"^dtype: expected one of \('float32', 'float64'\)"),
    ("dtype_int", dict(dtype=int), ValueError, r"^dtype: expected one of"),
    ("backend_unknown", dict(backend="cuda"), ValueError, r"^backend: expected one of"),
    ("seed_negative", dict(seed=-1), ValueError, r"^seed: expected an integer >= 0"),
]


@pytest.mark.parametrize("kwargs, error, match", [c[1:] for c in CONSTRUCTOR_CASES],
                         ids=[c[0] for c in CONSTRUCTOR_CASES])
def test_constructor_bad_input(kwargs, error, match):
    kwargs = {"sizes": SIZES, **kwargs}
    with pytest.raises(error, match=match):
        MLP(**kwargs)


# Each call gets a fresh softmax net (4-5-3) on the backend under test.
METHOD_CASES = [
    # X
    ("X_list_of_str", lambda n: n.predict([["a"] * 4]), TypeError, r"^X: expected real numbers, got dtype <U1"),
    ("X_complex", lambda n: n.forward(X.astype(complex)), TypeError, r"^X: expected real numbers, got dtype complex128"),
    ("X_object", lambda n: n.predict(X.astype(object)), TypeError, r"^X: expected real numbers, got dtype object"),
    ("X_1d", lambda n: n.predict(X[0]), ValueError, r"^X: expected a 2-D array \(n, 4\), got shape \(4,\)"),
    ("X_3d", lambda n: n.predict(X[None]), ValueError, r"^X: expected a 2-D array"),
    ("X_scalar", lambda n: n.forward(1.0), ValueError, r"^X: expected a 2-D array"),
    ("X_features", lambda n: n.predict(X[:, :3]), ValueError, r"^X: expected 4 features per row \(sizes\[0\]\), got 3"),
    ("X_nan", lambda n: n.predict(with_value(X, 5, np.nan)), ValueError, r"^X: contains NaN or infinity"),
    ("X_inf", lambda n: n.score(with_value(X, 0, -np.inf), LABELS), ValueError, r"^X: contains NaN or infinity"),
    ("X_overflows_float32", lambda n: n.forward(with_value(X, 0, 1e300)), ValueError, r"^X: contains NaN or infinity"),
    ("X_none", lambda n: n.predict(None), TypeError, r"^X: expected real numbers, got dtype object"),
    # Y
    ("Y_label_too_big", lambda n: n.step(X, with_value(LABELS, 2, 3).astype(int), 0.1), ValueError, r"^Y: class labels must be in 0..2, got 0..3"),
    ("Y_label_negative", lambda n: n.loss(X, with_value(LABELS, 2, -1).astype(int)), ValueError, r"^Y: class labels must be in 0..2, got -1..2"),
    ("Y_label_fraction", lambda n: n.step(X, with_value(LABELS, 0, 0.5), 0.1), ValueError, r"^Y: class labels must be whole numbers"),
    ("Y_label_nan", lambda n: n.score(X, with_value(LABELS, 0, np.nan)), ValueError, r"^Y: class labels must be whole numbers"),
    ("Y_label_inf", lambda n: n.step(X, with_value(LABELS, 0, np.inf), 0.1), ValueError, r"^Y: class labels must be in 0..2"),
    ("Y_rows", lambda n: n.step(X, LABELS[:5], 0.1), ValueError, r"^Y: expected 6 rows \(one per row of X\), got shape \(5,\)"),
    ("Y_scalar", lambda n: n.loss(X, 1), ValueError, r"^Y: expected 6 rows"),
    ("Y_one_hot_width", lambda n: n.step(X, ONE_HOT[:, :2], 0.1), ValueError, r"^Y: expected labels \(n,\) or one-hot \(n, 3\), got shape \(6, 2\)"),
    ("Y_one_hot_sum", lambda n: n.step(X, ONE_HOT * 0.5, 0.1), ValueError, r"^Y: one-hot rows must sum to 1"),
    ("Y_one_hot_nan", lambda n: n.gradients(X, with_value(ONE_HOT, 4, np.nan)), ValueError, r"^Y: contains NaN or infinity"),
    ("Y_complex", lambda n: n.step(X, LABELS.astype(complex), 0.1), TypeError, r"^Y: expected numbers, got dtype complex128"),
    ("Y_str", lambda n: n.step(X, LABELS.astype(str), 0.1), TypeError, r"^Y: expected numbers, got strings \('0'...\); encode the labels as 0..2 .* or use fastmlp.sklearn.MLPClassifier"),
    ("fit_Y_str", lambda n: n.fit(X, np.array(list("abcabc"), dtype=object)), TypeError, r"^Y: expected numbers, got strings \('a'...\); encode the labels .*np.unique.* or use fastmlp.sklearn.MLPClassifier, which takes them"),
    ("fit_Y_bytes", lambda n: n.fit(X, LABELS.astype(bytes)), TypeError, r"^Y: expected numbers, got strings \(b'0'...\)"),
    ("X_ragged", lambda n: n.fit([[1, 2, 3, 4], [1, 2, 3]], LABELS[:2]), ValueError, r"^X: expected an array, or a list of rows of equal length; got rows of different lengths$"),
    ("Y_ragged", lambda n: n.step(X[:2], [[1, 0, 0], [0, 1]], 0.1), ValueError, r"^Y: expected an array, or a list of rows of equal length"),
    ("Y_3d", lambda n: n.step(X, ONE_HOT[:, :, None], 0.1), ValueError, r"^Y: expected labels \(n,\) or one-hot"),
    # step arguments
    ("lr_nan", lambda n: n.step(X, LABELS, float("nan")), ValueError, r"^lr: expected a finite number"),
    ("lr_inf", lambda n: n.step(X, LABELS, float("inf")), ValueError, r"^lr: expected a finite number"),
    ("lr_negative", lambda n: n.step(X, LABELS, -0.1), ValueError, r"^lr: expected a number > 0"),
    ("lr_zero", lambda n: n.step(X, LABELS, 0), ValueError, r"^lr: expected a number > 0"),
    ("lr_str", lambda n: n.step(X, LABELS, "0.1"), TypeError, r"^lr: expected a real number"),
    ("lr_none", lambda n: n.step(X, LABELS, None), TypeError, r"^lr: expected a real number"),
    ("lr_complex", lambda n: n.step(X, LABELS, 1j), TypeError, r"^lr: expected a real number"),
    ("weight_decay_negative", lambda n: n.step(X, LABELS, 0.1, -1.0), ValueError, r"^weight_decay: expected a number >= 0"),
    ("weight_decay_nan", lambda n: n.loss(X, LABELS, float("nan")), ValueError, r"^weight_decay: expected a finite number"),
    # fit arguments
    ("fit_batch_size_zero", lambda n: n.fit(X, LABELS, batch_size=0), ValueError, r"^batch_size: expected an integer >= 1, got 0"),
    ("fit_batch_size_negative", lambda n: n.fit(X, LABELS, batch_size=-4), ValueError, r"^batch_size: expected an integer >= 1"),
    ("fit_batch_size_float", lambda n: n.fit(X, LABELS, batch_size=2.0), ValueError, r"^batch_size: expected an integer >= 1"),
    ("fit_batch_size_bool", lambda n: n.fit(X, LABELS, batch_size=True), ValueError, r"^batch_size: expected an integer >= 1"),
    ("fit_epochs_negative", lambda n: n.fit(X, LABELS, epochs=-1), ValueError, r"^epochs: expected an integer >= 0"),
    ("fit_lr_negative", lambda n: n.fit(X, LABELS, lr=-0.5), ValueError, r"^lr: expected a number > 0"),
    ("fit_lr_inf", lambda n: n.fit(X, LABELS, lr=float("inf")), ValueError, r"^lr: expected a finite number"),
    ("fit_empty", lambda n: n.fit(X[:0], LABELS[:0]), ValueError, r"^X: expected at least one row"),
    ("fit_X_nan", lambda n: n.fit(with_value(X, 3, np.nan), LABELS), ValueError, r"^X: contains NaN"),
    ("fit_label_range", lambda n: n.fit(X, with_value(LABELS, 1, 7).astype(int)), ValueError, r"^Y: class labels must be in 0..2"),
    ("fit_validation_shape", lambda n: n.fit(X, LABELS, validation_data=(X[:, :2], LABELS)), ValueError, r"^X: expected 4 features"),
    ("fit_validation_type", lambda n: n.fit(X, LABELS, validation_data=X), TypeError, r"^validation_data: expected a pair"),
    ("fit_patience_without_validation", lambda n: n.fit(X, LABELS, patience=2), ValueError, r"^patience: early stopping needs validation_data"),
    ("fit_shuffle", lambda n: n.fit(X, LABELS, shuffle="yes"), TypeError, r"^shuffle: expected True, False or a callable"),
    # weights and biases
    ("weights_count", lambda n: setattr(n, "weights", n.weights[:1]), ValueError, r"^weights: expected 2 arrays, got 1"),
    ("weights_shape", lambda n: setattr(n, "weights", [np.zeros((5, 3)), np.zeros((3, 5))]), ValueError, r"^weights\[0\]: expected shape \(5, 4\), got \(5, 3\)"),
    ("weights_nan", lambda n: setattr(n, "weights", [np.full((5, 4), np.nan), np.zeros((3, 5))]), ValueError, r"^weights\[0\]: contains NaN or infinity"),
    ("weights_complex", lambda n: setattr(n, "weights", [np.zeros((5, 4), complex), np.zeros((3, 5))]), TypeError, r"^weights\[0\]: expected real numbers"),
    ("biases_inf", lambda n: setattr(n, "biases", [np.zeros(5), np.full(3, np.inf)]), ValueError, r"^biases\[1\]: contains NaN or infinity"),
    ("backend_switch", lambda n: setattr(n, "backend", "gpu"), ValueError, r"^backend: expected one of"),
]


def params_of(net):
    return [p.copy() for p in net.weights + net.biases]


@pytest.mark.parametrize("call, error, match", [c[1:] for c in METHOD_CASES],
                         ids=[c[0] for c in METHOD_CASES])
@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_model_bad_input_is_refused_and_changes_nothing(backend, call, error, match):
    net = MLP(SIZES, activation="relu", backend=backend, dtype="float32", seed=1)
    before, rng_state = params_of(net), net._rng.bit_generator.state
    with pytest.raises(error, match=match):
        call(net)
    for p, q in zip(before, params_of(net)):
        np.testing.assert_array_equal(p, q)
    assert net._rng.bit_generator.state == rng_state
    assert net.backend == backend


@pytest.mark.parametrize("output, Y, match", [
    ("sigmoid", np.full((6, 3), 2.0), r"^Y: sigmoid targets must be in \[0, 1\], got 2.0..2.0"),
    ("sigmoid", LABELS, r"^Y: expected \(n, 3\), got shape \(6,\)"),
    ("sigmoid", with_value(np.zeros((6, 3)), 1, np.inf), r"^Y: contains NaN or infinity"),
    ("identity", with_value(np.zeros((6, 3)), 1, np.nan), r"^Y: contains NaN or infinity"),
    ("identity", np.zeros((6, 2)), r"^Y: expected \(n, 3\), got shape \(6, 2\)"),
])
@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_targets_of_the_wrong_kind_for_the_output(backend, output, Y, match):
    net = MLP(SIZES, output=output, backend=backend)
    before = params_of(net)
    for call in (lambda: net.step(X, Y, 0.1), lambda: net.fit(X, Y, epochs=1), lambda: net.score(X, Y)):
        with pytest.raises(ValueError, match=match):
            call()
    for p, q in zip(before, params_of(net)):
        np.testing.assert_array_equal(p, q)


# ---- unusual layouts and kinds that are accepted: the same results as a plain array ----

def memmapped(array, tmp_path):
    path = tmp_path / "x.dat"
    mm = np.memmap(path, dtype=array.dtype, mode="w+", shape=array.shape)
    mm[...] = array
    mm.flush()
    return np.memmap(path, dtype=array.dtype, mode="r", shape=array.shape)


def readonly(array):
    out = array.copy()
    out.flags.writeable = False
    return out


LAYOUTS = {
    "fortran": lambda a, tmp: np.asfortranarray(a),
    "strided": lambda a, tmp: np.repeat(a, 2, axis=-1)[..., ::2],
    "reversed_rows": lambda a, tmp: a[::-1][::-1],
    "negative_strides": lambda a, tmp: np.flip(np.flip(a, 0).copy(), 0),
    "read_only": lambda a, tmp: readonly(a),
    "memmap": memmapped,
    "big_endian": lambda a, tmp: a.astype(a.dtype.newbyteorder(">")),
    "float16": lambda a, tmp: a.astype(np.float16),
    "int": lambda a, tmp: np.round(a * 4).astype(np.int32),
    "list": lambda a, tmp: a.tolist(),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_unusual_layouts_of_X_and_Y_give_the_plain_result(backend, layout, tmp_path):
    make = LAYOUTS[layout]
    Xl = make(X, tmp_path)
    Xp = np.asarray(Xl, dtype=np.float64)   # the same numbers, plainly
    a = MLP(SIZES, activation="tanh", backend=backend, dtype="float64", seed=3)
    b = MLP(SIZES, activation="tanh", backend=backend, dtype="float64", seed=3)
    np.testing.assert_array_equal(a.forward(Xl), b.forward(Xp))
    np.testing.assert_array_equal(a.predict(Xl), b.predict(Xp))
    Yl = LABELS if layout in ("float16", "list") else make(LABELS.reshape(2, 3), tmp_path).reshape(-1) \
        if layout != "int" else LABELS
    assert a.step(Xl, Yl, 0.1) == b.step(Xp, LABELS, 0.1)
    for p, q in zip(params_of(a), params_of(b)):
        np.testing.assert_array_equal(p, q)
    if layout == "read_only":
        assert not Xl.flags.writeable   # not made writable behind the user's back


@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_empty_batches_are_handled(backend):
    net = MLP(SIZES, backend=backend)
    assert net.forward(X[:0]).shape == (0, 3)
    assert net.predict(X[:0]).shape == (0,)
    dws, dbs = net.gradients(X[:0], LABELS[:0])
    assert all(np.all(dw == 0) for dw in dws) and all(np.all(db == 0) for db in dbs)


# ---- the kernel tables: the native bindings name the argument; layouts are accepted ----

F64 = rng.standard_normal((4, 3))
I64 = np.zeros((4, 3), np.int64)
M = np.zeros((4, 3))   # passed as m and v at once

KERNEL_CASES = [
    ("matmul_1d", "matmul", (np.ones(3), np.ones((3, 2))), ValueError, r"^a: expected a 2-D array \(n, k\), got shape \(3,\)"),
    ("matmul_0d", "matmul", (np.float64(1.0), np.ones((3, 2))), TypeError, r"^a: expected a numpy.ndarray, got numpy.float64"),
    ("matmul_bool", "matmul", (np.ones((2, 3), bool), np.ones((3, 2))), TypeError, r"^a: expected a float32 or float64 array, got dtype bool"),
    ("matmul_complex", "matmul", (np.ones((2, 3)), np.ones((3, 2), complex)), TypeError, r"^b: expected a float32 or float64 array, got dtype complex128"),
    ("matmul_float16", "matmul", (np.ones((2, 3), np.float16), np.ones((3, 2))), TypeError, r"^a: expected a float32 or float64 array, got dtype float16"),
    ("matmul_object", "matmul", (np.ones((2, 3), object), np.ones((3, 2))), TypeError, r"^a: expected a float32 or float64 array, got dtype object"),
    ("matmul_mixed", "matmul", (np.ones((2, 3), np.float32), np.ones((3, 2))), TypeError, r"^b: expected the dtype of a \(float32\), got float64"),
    ("matmul_inner", "matmul", (np.ones((2, 3)), np.ones((4, 2))), ValueError, r"^b: shape \(4, 2\) does not match: b.shape\[0\] must equal a.shape\[1\] = 3"),
    ("linear_forward_b_2d", "linear_forward", (F64, np.ones((2, 3)), np.ones((2, 1)), "relu", 0.0), ValueError, r"^b: expected a 1-D array"),
    ("linear_forward_name_none", "linear_forward", (F64, np.ones((2, 3)), np.ones(2), None, 0.0), TypeError, r"^name: expected an activation name \(str\), got NoneType"),
    ("linear_forward_param_str", "linear_forward", (F64, np.ones((2, 3)), np.ones(2), "elu", "1"), TypeError, r"^param: expected a number, got str"),
    ("linear_forward_param_bool", "linear_forward", (F64, np.ones((2, 3)), np.ones(2), "elu", True), TypeError, r"^param: expected a number, got bool"),
    ("linear_forward_param_f32_overflow", "linear_forward", (F64.astype(np.float32), np.ones((2, 3), np.float32), np.ones(2, np.float32), "elu", 1e39), ValueError, r"^param: expected a finite number in the array's dtype"),
    ("linear_backward_z_prev_shape", "linear_backward", (np.ones((4, 2)), F64, np.ones((2, 3)), np.ones((4, 2)), F64, "relu", 0.0), ValueError, r"^z_prev: expected the shape of x \(4, 3\), got \(4, 2\)"),
    ("linear_backward_delta_rows", "linear_backward", (np.ones((5, 2)), F64, np.ones((2, 3)), F64, F64, "relu", 0.0), ValueError, r"^x: shape \(4, 3\) does not match: x.shape\[0\] must equal delta.shape\[0\] = 5"),
    ("activation_forward_name_int", "activation_forward", (F64, 1, 0.0), TypeError, r"^name: expected an activation name \(str\), got int"),
    ("activation_forward_param_none", "activation_forward", (F64, "leaky_relu", None), TypeError, r"^param: expected a number, got NoneType"),
    ("activation_derivative_a_shape", "activation_derivative", (F64, F64.T, "tanh", 0.0), ValueError, r"^a: expected the shape of z \(4, 3\), got \(3, 4\)"),
    ("maxout_forward_k_float", "maxout_forward", (F64, 1.0), TypeError, r"^k: expected an integer, got float"),
    ("maxout_forward_k_huge", "maxout_forward", (F64, 2**80), ValueError, r"^k: expected an integer >= 1, got 1208925819614629174706176"),
    ("maxout_forward_3d", "maxout_forward", (F64[None], 1), ValueError, r"^z: expected a 2-D array \(n, m\*k\), got shape \(1, 4, 3\)"),
    ("maxout_backward_k_huge", "maxout_backward", (F64, I64, 2**62), ValueError, r"^k: too large, m\*k overflows"),
    ("maxout_backward_argmax_range", "maxout_backward", (F64, I64 + 5, 3), ValueError, r"^argmax: expected values in \[0, 3\) \(piece indices < k\), got 5 at flat index 0"),
    ("maxout_backward_argmax_float", "maxout_backward", (F64, I64.astype(float), 3), TypeError, r"^argmax: expected an integer array, got dtype float64"),
    ("softmax_1d", "softmax", (F64[0],), ValueError, r"^z: expected a 2-D array \(n, K\), got shape \(3,\)"),
    ("softmax_no_classes", "softmax", (np.ones((2, 0)),), ValueError, r"^z: expected at least one column"),
    ("softmax_cross_entropy_label_range", "softmax_cross_entropy", (F64, np.array([0, 1, 2, 3])), ValueError, r"^y: expected values in \[0, 3\) \(class labels < K\), got 3 at flat index 3"),
    ("softmax_cross_entropy_label_negative", "softmax_cross_entropy", (F64, np.array([0, -1, 2, 1], np.int8)), ValueError, r"^y: expected values in \[0, 3\).*got -1 at flat index 1"),
    ("softmax_cross_entropy_label_rows", "softmax_cross_entropy", (F64, np.array([0, 1])), ValueError, r"^y: expected integer labels of shape \(4,\), got shape \(2,\)"),
    ("softmax_cross_entropy_label_2d", "softmax_cross_entropy", (F64, I64), ValueError, r"^y: expected integer labels of shape \(4,\), got shape \(4, 3\)"),
    ("softmax_cross_entropy_bool_y", "softmax_cross_entropy", (F64, np.zeros(4, bool)), TypeError, r"^y: expected integer labels \(n,\) or float targets \(n, K\), got dtype bool"),
    ("sigmoid_bce_y_shape", "sigmoid_binary_cross_entropy", (F64, F64[:, :2]), ValueError, r"^y: expected the shape of z \(4, 3\), got \(4, 2\)"),
    ("quadratic_loss_1d", "quadratic_loss", (F64[0], F64[0]), ValueError, r"^a: expected a 2-D array \(n, K\)"),
    ("sgd_update_lr_str", "sgd_update", (F64.copy(), F64, "0.1", 0.0), TypeError, r"^lr: expected a number, got str"),
    ("sgd_update_lr_nan", "sgd_update", (F64.copy(), F64, float("nan"), 0.0), ValueError, r"^lr: expected a finite number, got nan"),
    ("sgd_update_wd_none", "sgd_update", (F64.copy(), F64, 0.1, None), TypeError, r"^weight_decay: expected a number, got NoneType"),
    ("sgd_update_readonly", "sgd_update", (readonly(F64), F64, 0.1, 0.0), ValueError, r"^w: expected a writable array"),
    ("sgd_update_misaligned", "sgd_update", (np.frombuffer(bytearray(33), np.float64, 4, 1), np.ones(4), 0.1, 0.0), ValueError, r"^w: expected a C-contiguous array .* at a misaligned address"),
    ("sgd_update_fortran", "sgd_update", (np.asfortranarray(F64), F64, 0.1, 0.0), ValueError, r"^w: expected a C-contiguous array"),
    ("momentum_update_velocity_readonly", "momentum_update", (F64.copy(), F64, readonly(np.zeros((4, 3))), 0.1, 0.9, False, 0.0), ValueError, r"^velocity: expected a writable array"),
    ("momentum_update_velocity_fortran", "momentum_update", (F64.copy(), F64, np.asfortranarray(np.zeros((4, 3))), 0.1, 0.9, False, 0.0), ValueError, r"^velocity: expected a C-contiguous array"),
    ("momentum_update_velocity_misaligned", "momentum_update", (np.zeros(4), np.ones(4), np.frombuffer(bytearray(33), np.float64, 4, 1), 0.1, 0.9, False, 0.0), ValueError, r"^velocity: expected a C-contiguous array .* at a misaligned address"),
    ("momentum_update_velocity_list", "momentum_update", (F64.copy(), F64, [0.0] * 12, 0.1, 0.9, False, 0.0), TypeError, r"^velocity: expected a numpy.ndarray, got list"),
    ("momentum_update_velocity_shape", "momentum_update", (F64.copy(), F64, np.zeros((3, 4)), 0.1, 0.9, False, 0.0), ValueError, r"^velocity: expected the shape of w \(4, 3\), got \(3, 4\)"),
    ("momentum_update_velocity_is_w", "momentum_update", (F64, F64.copy(), F64, 0.1, 0.9, False, 0.0), ValueError, r"^velocity: expected an array that shares no memory with w"),
    ("momentum_update_momentum_one", "momentum_update", (F64.copy(), F64, np.zeros((4, 3)), 0.1, 1.0, False, 0.0), ValueError, r"^momentum: expected a number in \[0, 1\), got 1.0"),
    ("momentum_update_momentum_nan", "momentum_update", (F64.copy(), F64, np.zeros((4, 3)), 0.1, float("nan"), False, 0.0), ValueError, r"^momentum: expected a finite number, got nan"),
    ("momentum_update_lr_negative", "momentum_update", (F64.copy(), F64, np.zeros((4, 3)), -1.0, 0.9, False, 0.0), ValueError, r"^lr: expected a number >= 0, got -1.0"),
    ("momentum_update_lr_f32_overflow", "momentum_update", (F64.astype(np.float32), F64.astype(np.float32), np.zeros((4, 3), np.float32), 1e39, 0.9, False, 0.0), ValueError, r"^lr: expected a finite number in the array's dtype"),
    ("momentum_update_nesterov_str", "momentum_update", (F64.copy(), F64, np.zeros((4, 3)), 0.1, 0.9, "yes", 0.0), TypeError, r"^nesterov: expected True or False, got str"),
    ("momentum_update_nesterov_int", "momentum_update", (F64.copy(), F64, np.zeros((4, 3)), 0.1, 0.9, 1, 0.0), TypeError, r"^nesterov: expected True or False, got int"),
    ("momentum_update_wd_negative", "momentum_update", (F64.copy(), F64, np.zeros((4, 3)), 0.1, 0.9, True, -1e-4), ValueError, r"^weight_decay: expected a number >= 0"),
    ("adam_update_m_dtype", "adam_update", (F64.copy(), F64, np.zeros((4, 3), np.float32), np.zeros((4, 3)), 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 1), TypeError, r"^m: expected the dtype of w \(float64\), got float32"),
    ("adam_update_v_int", "adam_update", (F64.copy(), F64, np.zeros((4, 3)), np.zeros((4, 3), np.int64), 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 1), TypeError, r"^v: expected a float32 or float64 array, got dtype int64"),
    ("adam_update_v_readonly", "adam_update", (F64.copy(), F64, np.zeros((4, 3)), readonly(np.zeros((4, 3))), 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 1), ValueError, r"^v: expected a writable array"),
    ("adam_update_v_is_m", "adam_update", (F64.copy(), F64, M, M, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 1), ValueError, r"^v: expected an array that shares no memory with m"),
    ("adam_update_v_none", "adam_update", (F64.copy(), F64, F64.copy(), None, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 1), TypeError, r"^v: expected a numpy.ndarray, got NoneType"),
    ("adam_update_beta1_one", "adam_update", (F64.copy(), F64, np.zeros((4, 3)), np.zeros((4, 3)), 1e-3, 1.0, 0.999, 1e-8, 0.0, False, 1), ValueError, r"^beta1: expected a number in \[0, 1\), got 1.0"),
    ("adam_update_beta2_negative", "adam_update", (F64.copy(), F64, np.zeros((4, 3)), np.zeros((4, 3)), 1e-3, 0.9, -0.1, 1e-8, 0.0, False, 1), ValueError, r"^beta2: expected a number in \[0, 1\), got -0.1"),
    ("adam_update_beta2_str", "adam_update", (F64.copy(), F64, np.zeros((4, 3)), np.zeros((4, 3)), 1e-3, 0.9, "0.999", 1e-8, 0.0, False, 1), TypeError, r"^beta2: expected a number, got str"),
    ("adam_update_eps_zero", "adam_update", (F64.copy(), F64, np.zeros((4, 3)), np.zeros((4, 3)), 1e-3, 0.9, 0.999, 0.0, 0.0, False, 1), ValueError, r"^eps: expected a number > 0, got 0.0"),
    ("adam_update_eps_inf", "adam_update", (F64.copy(), F64, np.zeros((4, 3)), np.zeros((4, 3)), 1e-3, 0.9, 0.999, float("inf"), 0.0, False, 1), ValueError, r"^eps: expected a finite number, got inf"),
    ("adam_update_wd_negative", "adam_update", (F64.copy(), F64, np.zeros((4, 3)), np.zeros((4, 3)), 1e-3, 0.9, 0.999, 1e-8, -1.0, True, 1), ValueError, r"^weight_decay: expected a number >= 0, got -1.0"),
    ("adam_update_decoupled_none", "adam_update", (F64.copy(), F64, np.zeros((4, 3)), np.zeros((4, 3)), 1e-3, 0.9, 0.999, 1e-8, 0.0, None, 1), TypeError, r"^decoupled: expected True or False, got NoneType"),
    ("adam_update_step_zero", "adam_update", (F64.copy(), F64, np.zeros((4, 3)), np.zeros((4, 3)), 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 0), ValueError, r"^step: expected an integer >= 1, got 0"),
    ("adam_update_step_float", "adam_update", (F64.copy(), F64, np.zeros((4, 3)), np.zeros((4, 3)), 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 2.0), TypeError, r"^step: expected an integer, got float"),
    ("adam_update_step_bool", "adam_update", (F64.copy(), F64, np.zeros((4, 3)), np.zeros((4, 3)), 1e-3, 0.9, 0.999, 1e-8, 0.0, False, True), TypeError, r"^step: expected an integer, got bool"),
]


@pytest.mark.parametrize("op, args, error, match", [c[1:] for c in KERNEL_CASES],
                         ids=[c[0] for c in KERNEL_CASES])
def test_native_kernel_bad_input(op, args, error, match):
    native = fastmlp.get_backend("native")
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    with pytest.raises(error, match=match):
        getattr(native, op)(*args)
    for saved, arg in zip(before, args):   # a refused call writes nothing
        if isinstance(arg, np.ndarray):
            np.testing.assert_array_equal(saved, arg)


def kernel_layout_calls(make):
    """A valid call of every kernel with each array input passed through `make`."""
    r = np.random.default_rng(7)
    x, w, b, d = r.standard_normal((5, 4)), r.standard_normal((3, 4)), r.standard_normal(3), r.standard_normal((5, 3))
    z = r.standard_normal((5, 4))
    return {
        "matmul": (make(x), make(w.T)),
        "linear_forward": (make(x), make(w), make(b), "elu", 0.5),
        "linear_backward": (make(d), make(x), make(w), make(z), make(np.tanh(z)), "tanh", 0.0),
        "activation_forward": (make(z), "leaky_relu", 0.1),
        "activation_derivative": (make(z), make(np.tanh(z)), "tanh", 0.0),
        "activation_backward": (make(z), make(z), make(np.tanh(z)), "tanh", 0.0),
        "maxout_forward": (make(z), 2),
        "maxout_backward": (make(d), make(np.argmax(d, axis=1)[:, None] % 2 * np.ones((1, 3), np.int64)), 2),
        "softmax": (make(d),),
        "softmax_cross_entropy": (make(d), make(np.arange(5) % 3)),
        "sigmoid_binary_cross_entropy": (make(d), make((d > 0).astype(float))),
        "quadratic_loss": (make(d), make(np.zeros_like(d))),
    }


KERNEL_LAYOUTS = ["fortran", "strided", "read_only", "memmap", "negative_strides"]


@pytest.mark.parametrize("layout", KERNEL_LAYOUTS)
@pytest.mark.parametrize("backend", ["numpy", "native"])
def test_kernels_accept_unusual_layouts(backend, layout, tmp_path):
    table = fastmlp.get_backend(backend)
    counter = iter(range(100))

    def make(a):
        if layout == "memmap":
            sub = tmp_path / str(next(counter))
            sub.mkdir()
            return memmapped(np.asarray(a), sub)
        if layout == "negative_strides":
            return np.flip(np.flip(np.asarray(a)).copy())
        return LAYOUTS[layout](np.asarray(a), tmp_path)

    plain = kernel_layout_calls(np.ascontiguousarray)
    for op, args in kernel_layout_calls(make).items():
        got, want = getattr(table, op)(*args), getattr(table, op)(*plain[op])
        for g, e in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            # a product may sum in another order for another layout: equal to rounding
            np.testing.assert_allclose(g, e, rtol=1e-13, atol=1e-13, err_msg=f"{op} on {layout}")


# ---- the sklearn estimators and pickling ----

@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_sklearn_estimators_refuse_bad_input(backend):
    pytest.importorskip("sklearn")
    from fastmlp.sklearn import MLPClassifier, MLPRegressor
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, backend=backend)
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(with_value(X, 0, np.nan), LABELS)
    with pytest.raises(ValueError, match=r"^hidden_layer_sizes: expected positive integers"):
        MLPClassifier(hidden_layer_sizes=(0,), backend=backend).fit(X, LABELS)
    clf.fit(X, LABELS)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match="infinity|inf"):
        MLPRegressor(hidden_layer_sizes=(5,), max_iter=2, backend=backend).fit(X, with_value(LABELS, 1, np.inf))


@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_a_trained_model_pickles(backend):
    net = MLP(SIZES, backend=backend)
    net.fit(X, LABELS, epochs=2, batch_size=3)
    copy = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(copy.forward(X), net.forward(X))
    copy.fit(X, LABELS, epochs=1)   # a fresh lock and workspace


def swapped(a):
    """`a` with the other byte order: the same numbers, stored the other way round."""
    return a.astype(a.dtype.newbyteorder(">" if sys.byteorder == "little" else "<"))


UPDATE_CALLS = {
    "sgd_update": lambda: (F64.copy(), F64.copy(), 0.1, 0.0),
    "momentum_update": lambda: (F64.copy(), F64.copy(), np.zeros((4, 3)), 0.1, 0.9, False, 0.0),
    "adam_update": lambda: (F64.copy(), F64.copy(), np.zeros((4, 3)), np.zeros((4, 3)), 1e-3, 0.9,
                            0.999, 1e-8, 0.0, False, 1),
}


@pytest.mark.parametrize("op", sorted(kernel_layout_calls(np.asarray)) + sorted(UPDATE_CALLS))
def test_native_kernels_refuse_a_swapped_byte_order(op):
    """The kernels read raw bytes: a float array of the other byte order is refused (it
    was read as other numbers), an integer one is converted."""
    native = fastmlp.get_backend("native")
    make = UPDATE_CALLS.get(op, lambda: kernel_layout_calls(np.ascontiguousarray)[op])
    arrays = [i for i, a in enumerate(make()) if isinstance(a, np.ndarray)]
    assert arrays
    for i in arrays:
        args = list(make())
        kind = args[i].dtype.kind
        args[i] = swapped(args[i])
        if kind == "f":
            with pytest.raises(TypeError, match=r"^\w+: expected this machine's byte order, got dtype >f8"):
                getattr(native, op)(*args)
        else:
            got, want = getattr(native, op)(*args), getattr(native, op)(*make())
            for g, e in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
                np.testing.assert_array_equal(g, e, err_msg=f"{op}, argument {i}")


@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_a_model_takes_swapped_byte_orders_as_the_numbers_they_hold(backend):
    net = MLP(SIZES, activation="relu", backend=backend, dtype="float64", seed=1)
    net.weights = [swapped(w) for w in net.weights]   # converted on assignment
    want = net.predict(X)
    np.testing.assert_array_equal(net.predict(swapped(X.astype(np.float64))), want)
    net.fit(swapped(X.astype(np.float64)), swapped(LABELS.astype(np.int64)), epochs=1)


def test_fastmlp_sklearn_without_scikit_learn_names_the_extra(monkeypatch):
    import importlib
    monkeypatch.setitem(sys.modules, "sklearn", None)   # as if not installed: import fails
    monkeypatch.delitem(sys.modules, "fastmlp.sklearn", raising=False)
    with pytest.raises(ImportError, match=r"^fastmlp.sklearn needs scikit-learn >= 1.6: "
                                          r"pip install 'fastmlp\[sklearn\]'$"):
        importlib.import_module("fastmlp.sklearn")
