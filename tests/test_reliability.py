"""Nothing lost: failed, interrupted or diverging steps and epochs are undone; save() is
atomic; load() refuses anything but a complete model; predict() is thread-safe and one
model trains in one thread at a time. Both backends (the native epoch runs in C++)."""
import contextlib
import io
import json
import os
import pickle
import sys
import threading
import warnings
import zipfile

import numpy as np
import pytest

import fastmlp
from fastmlp import MLP, native_training, numpy_training
from fastmlp.model_file import FORMAT_VERSION

from conftest import MLP_BACKENDS, fail_at_call, run_in_threads

rng = np.random.default_rng(0)
X = rng.standard_normal((40, 4))
LABELS = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)


def params_of(net):
    return [p.copy() for p in net.weights + net.biases]


def assert_same_params(a, b):
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p, q)


def new_net(backend, **kwargs):
    return MLP([4, 6, 3], activation="relu", backend=backend, seed=2, **kwargs)


def trained(backend, epochs, **kwargs):
    net = new_net(backend, **kwargs.pop("net", {}))
    net.fit(X, LABELS, epochs=epochs, batch_size=8, lr=0.1, **kwargs)
    return net


backends = pytest.mark.parametrize("backend", MLP_BACKENDS)


# ---- divergence ----

@backends
@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # NumPy's overflow warnings on the way
def test_a_diverging_step_raises_and_is_undone(backend):
    net = new_net(backend)
    for _ in range(5):   # lr 1e30: the first step's weights are huge, a later loss is not finite
        before = params_of(net)
        try:
            net.step(X, LABELS, 1e30)
        except FloatingPointError as exc:
            assert str(exc).startswith("step: training diverged (batch loss")
            assert "the step was undone; try a smaller lr than 1e+30" in str(exc)
            break
    else:
        pytest.fail("five steps at lr 1e30 should diverge")
    assert_same_params(before, params_of(net))
    assert all(np.isfinite(p).all() for p in params_of(net))


@backends
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_run_diverging_in_a_later_epoch_keeps_the_last_finite_epoch(backend):
    # a linear net, inputs of scale 30, lr 0.05: finite for a few epochs, then not
    Xr = X * 30
    Y = Xr[:, :3] + 1.0
    net = MLP([4, 6, 3], activation="identity", output="identity", backend=backend, seed=2)
    with pytest.raises(FloatingPointError) as info:
        net.fit(Xr, Y, epochs=50, batch_size=40, lr=0.05, shuffle=False)
    done = len(info.value.history.loss)
    assert done >= 1, "the run should diverge after at least one finite epoch"
    assert f"in epoch {done + 1}" in str(info.value)
    assert f"the model holds its weights as of epoch {done}" in str(info.value)
    assert np.isfinite(info.value.history.loss).all()
    reference = MLP([4, 6, 3], activation="identity", output="identity", backend=backend, seed=2)
    reference.fit(Xr, Y, epochs=done, batch_size=40, lr=0.05, shuffle=False)
    assert_same_params(params_of(reference), params_of(net))


@backends
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_in_the_first_epoch_leaves_the_initial_weights(backend):
    net = new_net(backend)
    before = params_of(net)
    with pytest.raises(FloatingPointError, match=r"in epoch 1 .* as of fit\(\) started"):
        net.fit(X, LABELS, epochs=3, lr=1e30)
    assert_same_params(before, params_of(net))


# ---- NaN or infinity in X: the native fit() finds it in its first epoch, not up front ----

@backends
@pytest.mark.parametrize("row", [0, 17, 39])   # first batch, a middle one, the short last one
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("shuffle", [True, False])
def test_a_nonfinite_X_in_fit_changes_nothing(backend, row, value, shuffle):
    net = new_net(backend)
    before = params_of(net)
    bad = X.copy()
    bad[row, 2] = value
    with pytest.raises(ValueError, match=r"^X: contains NaN or infinity \(or numbers beyond float32\)$"):
        net.fit(bad, LABELS, epochs=3, batch_size=8, lr=0.1, shuffle=shuffle)
    assert_same_params(before, params_of(net))
    # nothing drawn from the generator either: the next fit is the one a fresh net makes
    net.fit(X, LABELS, epochs=2, batch_size=8, lr=0.1)
    assert_same_params(params_of(trained(backend, 2)), params_of(net))


@backends
def test_a_nonfinite_X_is_refused_even_with_no_epoch_to_run(backend):
    with pytest.raises(ValueError, match=r"^X: contains NaN or infinity"):
        new_net(backend).fit(np.full_like(X, np.nan), LABELS, epochs=0)


@backends
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_finite_X_that_overflows_the_first_layer_is_divergence_not_bad_input(backend):
    # finite rows whose products overflow float32: z(0) is infinite, X is not to blame
    huge = np.full_like(X, 1e37)
    with pytest.raises(FloatingPointError, match=r"in epoch 1 .* as of fit\(\) started"):
        new_net(backend).fit(huge, LABELS, epochs=1, batch_size=8, lr=0.1)


def test_the_native_epoch_stops_at_the_batch_with_a_nonfinite_row():
    net = new_net("native")
    ws = native_training.workspace(net, 8)
    weights, biases = native_training.params(net)
    bad = X.astype(np.float32)
    bad[20, 1] = np.nan
    reference = new_net("native")
    reference.fit(X[:16], LABELS[:16], epochs=1, batch_size=8, lr=0.1, shuffle=False)
    with pytest.raises(ValueError, match="^x: a row contains NaN or infinity$"):
        ws.epoch(weights, biases, bad, LABELS, None, 8, 0.1, 0.0)
    # batches 0 and 1 applied, batch 2 (rows 16..23) not
    assert_same_params(params_of(reference), params_of(net))
    before = params_of(net)
    with pytest.raises(ValueError, match="^x: a row contains NaN or infinity$"):
        ws.step(weights, biases, bad[16:24], LABELS[16:24], 0.1, 0.0)
    assert_same_params(before, params_of(net))


@backends
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_nonfinite_X_in_step_changes_nothing(backend, value):
    # the native step finds it as it reads the batch, the NumPy one before it starts
    net = new_net(backend)
    before = params_of(net)
    bad = X.copy()
    bad[5, 0] = value
    with pytest.raises(ValueError, match=r"^X: contains NaN or infinity \(or numbers beyond float32\)$"):
        net.step(bad, LABELS, 0.1)
    assert_same_params(before, params_of(net))
    net.step(X, LABELS, 0.1)   # and the net trains on as if nothing happened
    fresh = new_net(backend)
    fresh.step(X, LABELS, 0.1)
    assert_same_params(params_of(fresh), params_of(net))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_native_step_finds_a_nonfinite_input_anywhere_in_a_row(isa, dtype):
    """The C++ finiteness check sums pieces of 16 or 32 numbers per ISA: a NaN or an
    infinity at any of a row's 37 inputs (whole pieces and a tail) stops the step."""
    net = MLP([37, 5, 3], activation="relu", backend="native", dtype=dtype, seed=2)
    X37 = np.random.default_rng(1).standard_normal((6, 37))
    y = np.arange(6) % 3
    before = params_of(net)
    for column in range(37):
        for value in (np.nan, np.inf, -np.inf):
            bad = X37.copy()
            bad[4, column] = value
            with pytest.raises(ValueError, match=r"^X: contains NaN or infinity"):
                net.step(bad, y, 0.1)
    assert_same_params(before, params_of(net))


# ---- interruptions ----

@backends
def test_keyboard_interrupt_mid_epoch_leaves_the_last_completed_epoch(backend, monkeypatch):
    net = new_net(backend)
    if backend == "native":   # the epoch is one C++ call: interrupted as it returns
        fail_at_call(monkeypatch, native_training, "epoch", 3, after=True)
    else:                     # the Python loop: interrupted after a few steps of epoch 3
        fail_at_call(monkeypatch, numpy_training, "train_batch", 2 * 5 + 3)
    with pytest.raises(KeyboardInterrupt, match=r"^fit: interrupted in epoch 3; the model holds its weights as of epoch 2$") as info:
        net.fit(X, LABELS, epochs=5, batch_size=8, lr=0.1)
    assert len(info.value.history.loss) == 2
    assert_same_params(params_of(trained(backend, 2)), params_of(net))


@backends
def test_any_failure_inside_a_step_undoes_it(backend, monkeypatch):
    net = new_net(backend)
    before = params_of(net)
    if backend == "native":   # the weights have moved, and then something fails
        fail_at_call(monkeypatch, native_training, "step", 1, MemoryError, after=True)
    else:
        table = net._kernels
        calls = []

        def failing_update(*args):
            calls.append(1)
            if len(calls) == 3:   # after the first layer's W and b were updated
                raise KeyboardInterrupt
            return table.sgd_update(*args)
        monkeypatch.setattr(net, "_kernels", type(table)(**{**vars(table), "sgd_update": failing_update}))
    with pytest.raises((MemoryError, KeyboardInterrupt)):
        net.step(X, LABELS, 0.1)
    assert_same_params(before, params_of(net))


@backends
def test_a_failing_progress_callback_keeps_the_finished_epochs(backend):
    def stop(history):
        if len(history.loss) == 2:
            raise RuntimeError("stop")
    net = new_net(backend)
    with pytest.raises(RuntimeError, match="stop"):
        net.fit(X, LABELS, epochs=5, batch_size=8, lr=0.1, progress=stop)
    assert_same_params(params_of(trained(backend, 2)), params_of(net))


# ---- threads ----

@backends
@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity"])
def test_concurrent_predict_equals_single_threaded(backend, output):
    big = np.random.default_rng(1).standard_normal((300, 64))
    net = MLP([64, 128, 128, 5], activation="relu", output=output, backend=backend, seed=4)
    expected_pred, expected_out = net.predict(big), net.forward(big)
    results = []

    def work(i):
        for _ in range(5):
            rows = slice(i * 7 % 50, None)   # different batches too: rows never mix
            results.append((rows, net.predict(big[rows]), net.forward(big[rows])))
    errors = run_in_threads(work, 8)
    assert not errors
    assert len(results) == 40
    for rows, pred, out in results:
        np.testing.assert_array_equal(pred, expected_pred[rows])
        np.testing.assert_array_equal(out, expected_out[rows])


@backends
def test_training_one_model_from_two_threads_is_refused(backend):
    net = new_net(backend)
    in_fit, release = threading.Event(), threading.Event()

    def hold(history):   # the first thread waits inside fit, holding the model
        in_fit.set()
        release.wait(10)
    first = threading.Thread(target=lambda: net.fit(X, LABELS, epochs=1, progress=hold))
    first.start()
    try:
        assert in_fit.wait(10)
        before = params_of(net)
        with pytest.raises(RuntimeError, match=r"^step: this model is being trained by another thread"):
            net.step(X, LABELS, 0.1)
        with pytest.raises(RuntimeError, match=r"^fit: this model is being trained by another thread"):
            net.fit(X, LABELS, epochs=1)
        with pytest.raises(RuntimeError, match=r"^weights: this model is being trained by another thread"):
            net.weights = [np.zeros_like(w) for w in net.weights]
        with pytest.raises(RuntimeError, match=r"^biases: this model is being trained by another thread"):
            net.biases = [np.zeros_like(b) for b in net.biases]
        assert_same_params(before, params_of(net))
        np.testing.assert_array_equal(net.predict(X), net.predict(X))   # reading is fine
    finally:
        release.set()
        first.join()
    net.step(X, LABELS, 0.1)   # free again


def test_a_native_workspace_in_use_is_refused_with_the_same_exception_class():
    """The C++ Trainer's busy check is the model's condition too: RuntimeError."""
    net = MLP([256, 512, 512, 10], activation="relu", backend="native", seed=0)
    Xw = np.random.default_rng(2).standard_normal((4096, 256)).astype(np.float32)
    yw = np.arange(4096) % 10
    ws = native_training.workspace(net, 64)
    weights, biases = native_training.params(net)
    busy_errors, done = [], threading.Event()

    def train():   # long C++ epochs with the GIL released, until a step has collided
        try:
            for _ in range(50):
                if busy_errors:
                    break
                with contextlib.suppress(RuntimeError):   # the step held it: try again
                    ws.epoch(weights, biases, Xw, yw, None, 64, 0.01, 0.0)
        finally:
            done.set()
    worker = threading.Thread(target=train)
    worker.start()
    while not done.is_set() and not busy_errors:
        try:
            ws.step(weights, biases, Xw[:8], yw[:8], 0.01, 0.0)
        except RuntimeError as exc:
            busy_errors.append(exc)
    worker.join()
    assert busy_errors, "the epoch never overlapped a step"
    assert str(busy_errors[0]).startswith("workspace: already in use by another thread")


@backends
def test_the_training_thread_itself_may_assign_weights_between_epochs(backend):
    net = new_net(backend)
    zeros = [np.zeros_like(w) for w in net.weights]

    def reset_first_layer(history):   # runs in fit's own thread, between epochs
        if len(history.loss) == 1:
            net.weights = [zeros[0], net.weights[1]]
    net.fit(X, LABELS, epochs=1, progress=reset_first_layer)
    np.testing.assert_array_equal(net.weights[0], zeros[0])
    net.weights = zeros   # and any thread may once training is over
    assert_same_params(zeros, net.weights)


# ---- save ----

@backends
def test_save_is_atomic_when_writing_fails(backend, tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    old = new_net(backend)
    old.save(path)
    content = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        trained(backend, 1).save(path)
    assert path.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]   # no temporary file left


def test_save_is_atomic_when_the_rename_fails(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    new_net("numpy").save(path)
    content = path.read_bytes()
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        trained("numpy", 1).save(path)
    assert path.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


def test_save_appends_npz_and_replaces_an_existing_file(tmp_path):
    net = trained("numpy", 1)
    net.save(tmp_path / "m")
    new_net("numpy").save(tmp_path / "m.npz")
    net.save(str(tmp_path / "m"))
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]
    assert_same_params(params_of(MLP.load(tmp_path / "m.npz")), params_of(net))


# ---- load ----

def saved_arrays(tmp_path, **kwargs):
    net = MLP([4, 6, 3], activation=("maxout", 2), backend="numpy", seed=2, **kwargs)
    net.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as f:
        return {name: f[name] for name in f.files}


def write_npz(tmp_path, arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


def with_config(arrays, **changes):
    config = json.loads(str(arrays["config"]))
    config.update(changes)
    return {**arrays, "config": np.array(json.dumps(config))}


def forged_header(tmp_path, arrays):
    """A valid model whose W0 header claims 10^12 floats but holds 12: refused from the
    header, before anything that large is allocated."""
    path = write_npz(tmp_path, arrays)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**6, 10**6)})
    with zipfile.ZipFile(path) as src:
        members = {info.filename: src.read(info) for info in src.infolist()}
    members["W0.npy"] = header.getvalue() + b"\0" * 48
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name, data in members.items():
            dst.writestr(name, data)
    return out.getvalue()


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch exploited",))


BAD_FILES = {
    "empty": lambda d, a: b"",
    "text": lambda d, a: b"sizes: [4, 6, 3]\n",
    "pickle": lambda d, a: pickle.dumps({"W0": np.zeros(3)}),
    "pickle_exploit": lambda d, a: pickle.dumps(Exploit()),
    "npy": lambda d, a: a["W0"],
    "object_array": lambda d, a: {**a, "W0": np.array([None, 1], dtype=object)},
    "no_version": lambda d, a: {k: v for k, v in a.items() if k != "format_version"},
    "future_version": lambda d, a: {**a, "format_version": np.int64(FORMAT_VERSION + 1)},
    "version_str": lambda d, a: {**a, "format_version": np.array("1")},
    "config_not_json": lambda d, a: {**a, "config": np.array("{sizes")},
    "config_list": lambda d, a: {**a, "config": np.array("[1, 2]")},
    "config_bytes": lambda d, a: {**a, "config": np.frombuffer(b"{}", np.uint8)},
    "config_missing_key": lambda d, a: {**a, "config": np.array(json.dumps({"sizes": [4, 6, 3]}))},
    "sizes_absurd": lambda d, a: with_config(a, sizes=[4, 10**9, 10**9]),
    "sizes_mismatch": lambda d, a: with_config(a, sizes=[4, 7, 3]),
    "activations_garbage": lambda d, a: with_config(a, activations=[["maxout"]]),
    "dtype_unknown": lambda d, a: with_config(a, dtype="int8"),
    "backend_unknown": lambda d, a: with_config(a, backend="tpu"),
    "rng_state_garbage": lambda d, a: with_config(a, rng_state={"bit_generator": "Nope"}),
    "W_missing": lambda d, a: {k: v for k, v in a.items() if k != "W1"},
    "W_extra": lambda d, a: {**a, "W2": np.zeros((3, 3), np.float32)},
    "W_shape": lambda d, a: {**a, "W0": np.zeros((12, 5), np.float32)},
    "W_transposed": lambda d, a: {**a, "W0": a["W0"].T.copy()},
    "W_dtype": lambda d, a: {**a, "W0": a["W0"].astype(np.float64)},
    "W_forged_header": forged_header,
    "W_nan": lambda d, a: {**a, "W1": np.full_like(a["W1"], np.nan)},
    "b_inf": lambda d, a: {**a, "b0": np.full_like(a["b0"], np.inf)},
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_load_refuses_foreign_and_corrupted_files(kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    content = BAD_FILES[kind](tmp_path, saved_arrays(tmp_path))
    path = tmp_path / "bad.npz"
    if isinstance(content, dict):
        path = write_npz(tmp_path, content)
    elif isinstance(content, np.ndarray):
        np.save(path, content)
        path = tmp_path / "bad.npz.npy"
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=r"bad\.npz.*: "):
        MLP.load(path)
    assert not (tmp_path / "exploited").exists()


def test_load_refuses_every_truncation(tmp_path):
    net = trained("numpy", 1)
    net.save(tmp_path / "m.npz")
    content = (tmp_path / "m.npz").read_bytes()
    for cut in sorted({0, 1, 4, 30, 100, len(content) // 2, len(content) - 22, len(content) - 1}
                      | set(range(0, len(content), max(1, len(content) // 40)))):
        (tmp_path / "cut.npz").write_bytes(content[:cut])
        with pytest.raises(ValueError, match=r"cut\.npz"):
            MLP.load(tmp_path / "cut.npz")


def test_load_of_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        MLP.load(tmp_path / "none.npz")


@backends
def test_round_trip_keeps_weights_generator_and_training(backend, tmp_path):
    net = trained(backend, 2)
    net.save(tmp_path / "m.npz")
    back = MLP.load(tmp_path / "m.npz")
    assert_same_params(params_of(net), params_of(back))
    net.fit(X, LABELS, epochs=1, batch_size=8, lr=0.1)
    back.fit(X, LABELS, epochs=1, batch_size=8, lr=0.1)
    assert_same_params(params_of(net), params_of(back))


# ---- one definition of a diverged run (issue 21, item 1) ----

@backends
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_step_to_huge_but_finite_weights_is_refused_and_undone_on_both_backends(backend):
    """|W| ~ 1e27 in float32 is finite, but Σ W² overflows float32: diverged, on both
    backends, in step as in fit; the model then trains on."""
    X4 = np.full((4, 2), 1000, np.float32)
    y4 = np.array([0, 1, 0, 1])
    net = MLP([2, 4, 2], activation="relu", backend=backend, seed=0)
    before = params_of(net)
    with pytest.raises(FloatingPointError, match="^step: training diverged"):
        net.step(X4, y4, lr=1e25)
    assert_same_params(before, params_of(net))
    with pytest.raises(FloatingPointError, match="^fit: training diverged in epoch 1"):
        net.fit(X4, y4, epochs=1, batch_size=4, lr=1e25, shuffle=False)
    assert_same_params(before, params_of(net))
    hist = net.fit(X4, y4, epochs=2, batch_size=4, lr=1e-7)
    assert all(np.isfinite(hist.loss))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_in_range_is_the_sum_of_squares_within_the_dtype(dtype):
    from fastmlp.checks import in_range
    big = np.finfo(dtype).max
    root = np.sqrt(big)
    assert in_range([np.array([root / 2, root / 2], dtype)])
    assert not in_range([np.array([root * 2], dtype)])
    assert not in_range([np.array([1.0, np.nan], dtype)])
    assert not in_range([np.array([np.inf], dtype)])
    assert in_range([np.full(4, root * 0.49, dtype)])   # 0.96 of the largest number
    assert in_range([np.zeros(0, dtype)])


# ---- an empty validation set (issue 21, item 4) ----

@backends
def test_an_empty_validation_set_is_refused(backend):
    net = new_net(backend)
    before = params_of(net)
    with pytest.raises(ValueError, match="^validation_data: expected at least one row"):
        net.fit(X, LABELS, epochs=2, validation_data=(X[:0], LABELS[:0]), patience=2)
    assert_same_params(before, params_of(net))


# ---- arguments (issue 21, item 7, the core API's part) ----

@pytest.mark.parametrize("lr, error, match", [
    (__import__("fractions").Fraction(1, 10), None, None),    # any numbers.Real is a number
    (10**400, ValueError, r"^lr: expected a finite number"),
    (1e-46, ValueError, r"^lr: 1e-46 is 0 in float32"),
])
def test_learning_rates_are_numbers_the_model_can_use(lr, error, match):
    net = new_net("numpy")
    if error is None:
        net.fit(X, LABELS, epochs=1, lr=lr)
        return
    before = params_of(net)
    with pytest.raises(error, match=match):
        net.fit(X, LABELS, epochs=1, lr=lr)
    with pytest.raises(error, match=match):
        net.step(X, LABELS, lr)
    assert_same_params(before, params_of(net))


@pytest.mark.parametrize("n, error, match", [
    (2.7, ValueError, r"^n: expected an integer >= 1, got 2.7"),
    ("2", ValueError, r"^n: expected an integer >= 1, got '2'"),
    (True, ValueError, r"^n: expected an integer >= 1, got True"),
    (2**31, ValueError, r"^n: expected at most \d+ threads"),
    (10000, ValueError, r"^n: expected at most \d+ threads"),
])
def test_set_num_threads_takes_a_sane_integer_only(n, error, match):
    import fastmlp
    before = fastmlp.get_num_threads()
    with pytest.raises(error, match=match):
        fastmlp.set_num_threads(n)
    assert fastmlp.get_num_threads() == before


# ---- files (issue 21, items 6 and 8) ----

def test_save_takes_bytes_paths_and_refuses_an_empty_name(tmp_path):
    net = new_net("numpy")
    net.save(os.fsencode(tmp_path / "model"))
    assert MLP.load(tmp_path / "model.npz").sizes == net.sizes
    with pytest.raises(ValueError, match=r"^path: expected a file name, got ''"):
        net.save("")
    with pytest.raises(ValueError, match=r"^path: expected a file name"):
        net.save(str(tmp_path) + os.sep)


def test_save_gives_the_umasks_permissions_and_writes_through_a_symlink(tmp_path):
    old = os.umask(0o027)
    try:
        net = new_net("numpy")
        net.save(tmp_path / "m.npz")
        assert (os.stat(tmp_path / "m.npz").st_mode & 0o777) == 0o640
        target = tmp_path / "real.npz"
        net.save(target)
        os.symlink(target, tmp_path / "link.npz")
        MLP([4, 6, 3], backend="numpy", seed=9).save(tmp_path / "link.npz")
        assert os.path.islink(tmp_path / "link.npz")   # still a link, to the new model
        assert MLP.load(target).seed == 9
    finally:
        os.umask(old)


def test_save_removes_the_stale_temporaries_of_a_killed_save(tmp_path):
    from fastmlp import model_file
    stale, fresh = tmp_path / "m.npz.abc123.tmp", tmp_path / "m.npz.def456.tmp"
    for p in (stale, fresh):
        p.write_bytes(b"\0" * 100)
    old = os.stat(stale).st_mtime - model_file.STALE_SECONDS - 10
    os.utime(stale, (old, old))
    new_net("numpy").save(tmp_path / "m.npz")
    assert not stale.exists() and fresh.exists()   # a live save's file is left alone


def test_load_refuses_what_is_not_a_regular_file_and_caps_the_parameters(tmp_path):
    with pytest.raises(ValueError, match="is not a regular file"):
        MLP.load("/dev/zero")
    net = MLP([4, 50, 3], backend="numpy")
    net.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"declares 403 parameters; expected at most max_params=400"):
        MLP.load(tmp_path / "m.npz", max_params=400)
    assert MLP.load(tmp_path / "m.npz", max_params=403).n_params == 403


def test_load_draws_no_initial_weights(tmp_path, monkeypatch):
    net = MLP([4, 50, 3], backend="numpy")
    net.save(tmp_path / "m.npz")
    def draws(self, *args, **kwargs):   # the constructor draws the initial weights
        raise AssertionError("load drew initial weights")
    monkeypatch.setattr(MLP, "__init__", draws)
    again = MLP.load(tmp_path / "m.npz")
    assert_same_params(params_of(net), params_of(again))


def test_cli_checks_the_save_path_before_training(capsys, tmp_path):
    from fastmlp import cli
    status = cli.main(["train", "--backend", "numpy", "--save", str(tmp_path / "missing" / "x.npz")])
    out, err = capsys.readouterr()
    assert status == 1 and "no such directory" in err and "epoch" not in out


# ---- an interrupt anywhere in the training guard (issue 21, item 3) ----

def guard_lines():
    from fastmlp import training
    code = training.exclusive.__wrapped__.__code__
    return code, sorted({line for _, _, line in code.co_lines()
                         if line is not None and line > code.co_firstlineno})


def interrupted_at(code, line, call):
    """call() with a KeyboardInterrupt raised as `line` of `code` is about to run (once) ->
    the interrupt, or None when the line never ran."""
    fired = []

    def local(frame, event, arg):
        if event == "line" and frame.f_lineno == line and not fired:
            fired.append(line)
            raise KeyboardInterrupt
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code is code else None
    sys.settrace(tracer)
    try:
        call()
    except KeyboardInterrupt as exc:
        return exc
    finally:
        sys.settrace(None)
    assert not fired, "an interrupt raised in the guard was swallowed"
    return None


@backends
@pytest.mark.parametrize("method", ["fit", "step", "assign"])
def test_an_interrupt_at_any_line_of_the_training_guard_leaves_the_model_free(backend, method):
    code, lines = guard_lines()
    calls = {"fit": lambda net: net.fit(X, LABELS, epochs=2, batch_size=8, lr=0.1),
             "step": lambda net: net.step(X, LABELS, 0.1),
             "assign": lambda net: setattr(net, "weights", [w.copy() for w in net.weights])}
    interrupted = 0
    for line in lines:
        net = new_net(backend)
        exc = interrupted_at(code, line, lambda: calls[method](net))
        interrupted += exc is not None
        if exc is not None and method == "fit":
            assert hasattr(exc, "history"), f"no .history after an interrupt at line {line}"
        net.step(X, LABELS, 0.1)   # never "being trained by another thread" afterwards
        net.fit(X, LABELS, epochs=1, batch_size=8, lr=0.1)
    assert interrupted >= 4   # the guard's lines do run and were interrupted


def test_the_interrupt_injection_would_catch_a_guard_that_leaks_its_lock(monkeypatch):
    """The check can fail: the previous guard (release in a finally after a plain
    assignment) leaves the lock held when interrupted between its lines."""
    import contextlib
    import threading
    from fastmlp import training

    @contextlib.contextmanager
    def leaky(net, caller):
        if not net._training_lock.acquire(blocking=False):
            raise RuntimeError(f"{caller}: this model is being trained by another thread")
        net._holder = None
        try:
            yield
        finally:
            net._holder = None
            net._training_lock.release()
    monkeypatch.setattr(training, "exclusive", leaky)
    code = leaky.__wrapped__.__code__
    lines = sorted({line for _, _, line in code.co_lines()
                    if line is not None and line > code.co_firstlineno})
    stuck = 0
    for line in lines:
        net = new_net("numpy")
        interrupted_at(code, line, lambda: net.step(X, LABELS, 0.1))
        try:
            net.step(X, LABELS, 0.1)
        except RuntimeError:
            stuck += 1
    assert stuck >= 1


# ---- a fit that ends silently useless (issue 21, "Also") ----

def test_fit_warns_when_every_relu_is_dead_or_the_output_is_constant():
    """Unscaled features in the thousands with relu and lr 0.1: the hidden layer dies in
    the first epoch and the model outputs the majority class for everything; fit says so,
    with the remedy. A scaled copy of the same data trains without a warning."""
    rng = np.random.default_rng(0)
    Xu = np.abs(rng.standard_normal((300, 10))) * 1000
    yu = (Xu[:, 0] > np.median(Xu[:, 0])).astype(int)
    net = MLP([10, 32, 2], activation="relu", backend="numpy", seed=0)
    with pytest.warns(fastmlp.TrainingWarning) as record:
        net.fit(Xu, yu, epochs=3, batch_size=32, lr=0.1)
    messages = " | ".join(str(w.message) for w in record)
    assert "every unit of hidden layer 0 outputs 0" in messages
    assert "scale X" in messages
    Xs = (Xu - Xu.mean(axis=0)) / Xu.std(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", fastmlp.TrainingWarning)
        MLP([10, 32, 2], activation="relu", backend="numpy", seed=0).fit(
            Xs, yu, epochs=10, batch_size=32, lr=0.1)


def test_fit_warns_when_the_output_is_the_same_for_every_row():
    from fastmlp.training import warn_if_untrained
    net = MLP([3, 4, 2], activation="tanh", backend="numpy", seed=0)
    net.weights = [np.zeros_like(w) for w in net.weights]   # a constant function
    X3 = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.warns(fastmlp.TrainingWarning, match="the same for every row"):
        warn_if_untrained(net, X3)
    with warnings.catch_warnings():   # identical rows may well give one output
        warnings.simplefilter("error", fastmlp.TrainingWarning)
        warn_if_untrained(net, np.ones((10, 3)))
