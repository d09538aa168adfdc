"""Batch normalization: torch.nn.BatchNorm1d's semantics (the spec), on both backends."""
import numpy as np
import pytest

from fastmlp import MLP, data, gradcheck, optim

from conftest import MLP_BACKENDS, native_skip_reason

torch = pytest.importorskip("torch")

SIZES = [12, 16, 10, 4]
TORCH_ACT = {"sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}


def torch_twin(net):
    """The same network in torch, float64: Linear -> BatchNorm1d -> activation per hidden
    layer where net normalises (no BatchNorm1d elsewhere), then the output Linear."""
    layers, j = [], 0
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        linear = torch.nn.Linear(w.shape[1], w.shape[0], dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if l < len(net.activations):
            if net.batch_norm[l]:
                bn = torch.nn.BatchNorm1d(w.shape[0], dtype=torch.float64)   # momentum 0.1, eps 1e-5
                with torch.no_grad():
                    bn.weight.copy_(torch.from_numpy(net.gammas[j]))
                    bn.bias.copy_(torch.from_numpy(net.betas[j]))
                layers.append(bn)
                j += 1
            layers.append(TORCH_ACT[net.activations[l][0]]())
    return torch.nn.Sequential(*layers)


def torch_params(model):
    """Its arrays in net.parameter_lists order: weights, biases, gammas, betas."""
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    norms = [m for m in model if isinstance(m, torch.nn.BatchNorm1d)]
    return [[m.weight for m in linears], [m.bias for m in linears],
            [m.weight for m in norms], [m.bias for m in norms]]


def make_net(backend, activation="sigmoid", batch_norm=True, seed=1):
    net = MLP(SIZES, activation=activation, backend=backend, dtype="float64", seed=seed,
              batch_norm=batch_norm)
    rng = np.random.default_rng(seed)
    for g, b in zip(net.gammas, net.betas):   # not the initial 1 and 0: exercise them
        g[:] = 1 + 0.3 * rng.standard_normal(g.shape)
        b[:] = 0.3 * rng.standard_normal(b.shape)
    return net


def batches(steps=20, seed=0):
    rng = np.random.default_rng(seed)
    for step in range(steps):
        n = 8 + step % 5   # batches of 8 .. 12 rows
        yield rng.standard_normal((n, SIZES[0])) * 2 + 1, rng.integers(0, SIZES[-1], n)


@pytest.mark.parametrize("batch_norm", [True, [False, True]], ids=["all", "second"])
@pytest.mark.parametrize("activation", ["sigmoid", "relu", "tanh"])
@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_twenty_sgd_steps_equal_torch_batchnorm1d(backend, activation, batch_norm):
    """Forward (the batch loss), backward (∂J/∂W, b, γ, β) and the running statistics of
    every step, and the weights and evaluation after 20 steps, to 1e-10."""
    net = make_net(backend, activation, batch_norm)
    model = torch_twin(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sgd = optim.SGD(0.1)
    for X, y in batches():
        model.train()
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(X)),
                                                 torch.from_numpy(y))
        loss.backward()
        assert abs(net.loss(X, y, training=True) - loss.item()) < 1e-10
        for ours, theirs in zip(net.gradients(X, y), torch_params(model), strict=False):
            for got, want in zip(ours, theirs, strict=True):
                np.testing.assert_allclose(got, want.grad.numpy(), rtol=0, atol=1e-10)
        opt.step()
        assert abs(net.step(X, y, optimizer=sgd) - loss.item()) < 1e-10
        norms = [m for m in model if isinstance(m, torch.nn.BatchNorm1d)]
        assert len(norms) == len(net.running_means) > 0
        for m, mean, var in zip(norms, net.running_means, net.running_vars):
            np.testing.assert_allclose(mean, m.running_mean.numpy(), rtol=0, atol=1e-10)
            np.testing.assert_allclose(var, m.running_var.numpy(), rtol=0, atol=1e-10)
    for ours, theirs in zip(net.parameter_lists, torch_params(model)):
        for got, want in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(got, want.detach().numpy(), rtol=0, atol=1e-10)
    model.eval()   # evaluation: the running statistics
    X, _ = next(batches(1, seed=5))
    with torch.no_grad():
        want = torch.softmax(model(torch.from_numpy(X)), dim=1).numpy()
    np.testing.assert_allclose(net.forward(X), want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("activation", ["sigmoid", "relu", ("maxout", 2), "identity"], ids=str)
def test_native_and_numpy_fits_match(activation):
    X, y = data.load_digits("float64")
    nets = [MLP([64, 20, 15, 10], activation=activation, backend=b, dtype="float64",
                batch_norm=True, dropout=[0.2, 0.0]) for b in ("numpy", "native")]
    # momentum, not Adam: Adam would blow the rounding noise of a normalised layer's bias
    # gradient (which is 0) up to steps of 1e-10, different on each backend
    hists = [net.fit(X, y, epochs=2, batch_size=32, optimizer=optim.SGD(0.05, momentum=0.9))
             for net in nets]
    np.testing.assert_allclose(hists[1].loss, hists[0].loss, rtol=1e-9)
    for ours, theirs in zip(nets[1].parameter_lists + [nets[1].running_means, nets[1].running_vars],
                            nets[0].parameter_lists + [nets[0].running_means, nets[0].running_vars]):
        for got, want in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * max(np.abs(want).max(), 1))


@pytest.mark.parametrize("activation", ["sigmoid", "relu", ("maxout", 2)], ids=str)
def test_gradients_pass_the_gradient_check(activation, mlp_backend):
    """γ and β included. The bias of a normalised layer has gradient 0 (the mean takes it
    away), which finite differences see as rounding noise of about 1e-11: over the check's
    floor of 1e-7 that is 1e-4, so the bound is 1e-3 (a wrong formula gives order 1)."""
    rng = np.random.default_rng(2)
    net = MLP([3, 6, 5, 3], activation=activation, backend=mlp_backend, dtype="float64",
              batch_norm=True, seed=4)
    for g, b in zip(net.gammas, net.betas):
        g[:] = 1 + 0.5 * rng.standard_normal(g.shape)
        b[:] = 0.5 * rng.standard_normal(b.shape)
    X, Y = rng.standard_normal((9, 3)), rng.integers(0, 3, 9)
    assert gradcheck(net, X, Y, weight_decay=0.01, eps=1e-5) < 1e-3


def test_batch_norm_trains_a_deep_sigmoid_network_that_plain_sgd_cannot(mlp_backend):
    """The lecture's vanishing gradient on the bundled digits: 64-30-30-30-30-30-10
    sigmoid, plain SGD at lr 0.5, batches of 10, 10 epochs."""
    X, y = data.load_digits()
    train, _, (X_test, y_test) = data.train_val_test_split(X, y, val_size=0.0, test_size=0.2)
    sizes = [64, 30, 30, 30, 30, 30, 10]
    scores = {}
    for bn in (False, True):
        net = MLP(sizes, activation="sigmoid", backend=mlp_backend, seed=0, batch_norm=bn)
        net.fit(*train, epochs=10, batch_size=10, lr=0.5)
        scores[bn] = net.score(X_test, y_test)
    assert scores[False] < 0.2, f"plain SGD reached test accuracy {scores[False]:.3f}"
    assert scores[True] > 0.9, f"with batch norm: test accuracy {scores[True]:.3f}"


@pytest.mark.parametrize("backend", MLP_BACKENDS[1:])   # NumPy's BLAS is not batch-invariant
def test_predict_on_a_set_equals_predict_row_by_row(backend):
    X, y = data.load_digits()
    net = MLP([64, 30, 10], activation="relu", backend=backend, batch_norm=True)
    net.fit(X, y, epochs=1, batch_size=16, lr=0.1)
    rows = np.concatenate([net.forward(X[i:i + 1]) for i in range(50)])
    np.testing.assert_array_equal(net.forward(X[:50]), rows)


def test_weight_decay_skips_gamma_and_beta(mlp_backend):
    X, y = next(batches())
    net = make_net(mlp_backend)
    before = [p.copy() for params in net.parameter_lists for p in params]
    grads = [g for gs in net.gradients(X, y) for g in gs]
    net.step(X, y, optimizer=optim.SGD(0.1, weight_decay=0.5))
    after = [p for params in net.parameter_lists for p in params]
    n_weights = len(net.weights)
    for i, (old, g, new) in enumerate(zip(before, grads, after)):
        decay = 0.5 * old if i < n_weights else 0
        np.testing.assert_allclose(new, old - 0.1 * (g + decay), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_fit_2_save_load_fit_2_equals_fit_4(backend, tmp_path):
    X, y = data.load_digits("float64")
    X, y = X[:400], y[:400]
    whole, half = (MLP([64, 20, 10], activation="relu", backend=backend, seed=3, dtype="float64",
                       batch_norm=True) for _ in range(2))
    whole.fit(X, y, epochs=4, batch_size=25, optimizer=optim.Adam(0.01))
    half.fit(X, y, epochs=2, batch_size=25, optimizer=optim.Adam(0.01))
    half.save(tmp_path / "half")
    again = MLP.load(tmp_path / "half.npz")
    assert again.batch_norm == [True] and again.n_params == whole.n_params
    again.fit(X, y, epochs=2, batch_size=25, optimizer=again.optimizer)
    for ours, theirs in zip(whole.parameter_lists + [whole.running_means, whole.running_vars],
                            again.parameter_lists + [again.running_means, again.running_vars]):
        for got, want in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(got, want)


def test_a_failed_epoch_restores_the_running_statistics(mlp_backend):
    X, y = data.load_digits()
    X, y = X[:300], y[:300]
    net = MLP([64, 20, 10], activation="relu", backend=mlp_backend, batch_norm=True)
    net.fit(X, y, epochs=1, batch_size=30, lr=0.1)
    before = [a.copy() for a in net.running_means + net.running_vars + net.gammas]
    bad = X.copy()
    bad[-1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        net.fit(bad, y, epochs=1, batch_size=30, lr=0.1)
    for got, want in zip(net.running_means + net.running_vars + net.gammas, before):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("call,match", [
    (lambda net, X, y: net.fit(X, y, batch_size=1), r"^batch_size: batch normalization needs"),
    (lambda net, X, y: net.fit(X[:11], y[:11], batch_size=10),
     r"^batch_size: .*leave one of 1$"),
    (lambda net, X, y: net.step(X[:1], y[:1], lr=0.1), r"^X: batch normalization needs"),
    (lambda net, X, y: net.gradients(X[:1], y[:1]), r"^X: batch normalization needs"),
])
def test_batches_of_one_row_are_refused(call, match, mlp_backend):
    X, y = data.load_digits()
    net = MLP([64, 10, 10], backend=mlp_backend, batch_norm=True)
    with pytest.raises(ValueError, match=match):
        call(net, X, y)


@pytest.mark.parametrize("batch_norm,error,match", [
    ("yes", TypeError, r"^batch_norm: expected True or False"),
    (1, TypeError, r"^batch_norm: expected True or False"),
    ([True], ValueError, r"^batch_norm: expected one flag per hidden layer \(2\), got 1"),
    ([True, None], TypeError, r"^batch_norm\[1\]: expected True or False"),
])
def test_bad_flags_are_refused(batch_norm, error, match):
    with pytest.raises(error, match=match):
        MLP([4, 5, 5, 2], batch_norm=batch_norm)


def test_parameters_and_repr():
    net = MLP([4, 5, ("maxout" and 6), 2], activation=["relu", ("maxout", 3)],
              batch_norm=[False, True])
    assert [g.shape for g in net.gammas] == [(18,)] and len(net.parameter_lists) == 4
    assert net.n_params == 4 * 5 + 5 + 5 * 18 + 18 + 6 * 2 + 2 + 2 * 18
    assert "batch_norm=[False, True]" in repr(net)


def test_over_mpi_every_batch_needs_a_row_per_rank():
    """(2 ranks == 1 process with batch norm: tests/test_mpi.py, batch_norm_sigmoid.)"""
    from fastmlp import distributed
    X, y = data.load_digits()
    net = MLP([64, 10, 10], batch_norm=True)
    args = (1, 10, 0.1, None, None, None, None, True, False)   # epochs .. progress
    assert distributed._checked_args(net, X[:22], y[:22], 2, *args)[3] == 10
    with pytest.raises(ValueError, match=r"^batch_size: batch normalization over 3 MPI ranks "
                                         r"needs batches of at least 3 rows .* leave one of 2$"):
        distributed._checked_args(net, X[:22], y[:22], 3, *args)


# ---------------------------------------------------------------- the C++ trainer

native = pytest.mark.skipif(native_skip_reason() is not None, reason=str(native_skip_reason()))


def all_arrays(net):
    return [p for arrays in net.parameter_lists for p in arrays] + net.running_means + \
        net.running_vars


@native
@pytest.mark.parametrize("rule", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["sigmoid", "relu", ("maxout", 3), "identity"], ids=str)
def test_a_cpp_step_is_bitwise_the_python_loop_over_the_native_kernels(activation, dtype, rule):
    """The C++ step normalises in place of z, updates γ, β as soon as their gradients are
    known and the running statistics after the forward pass: the same kernels and the same
    arithmetic as numpy_training's loop run on the native kernel table."""
    from fastmlp import native_training, numpy_training
    from fastmlp.checks import check_Y
    X, y = data.load_digits(dtype)
    make = {"sgd": lambda: optim.SGD(0.3, weight_decay=0.01),
            "momentum": lambda: optim.SGD(0.1, momentum=0.9, weight_decay=0.01),
            "adam": lambda: optim.Adam(0.01, weight_decay=0.01)}[rule]
    cpp, py = (MLP([64, 12, 9, 10], activation=activation, dtype=dtype, seed=1,
                   batch_norm=[True, True], dropout=[0.3, 0.0]) for _ in range(2))
    Y = check_Y(py, y[:40], 40)
    opts = [make(), make()]
    for _ in range(3):
        got = native_training.step(cpp, X[:40], Y, opts[0], 0.3)
        want = numpy_training.step(py, X[:40], Y, opts[1], 0.3)
        assert got[0] == pytest.approx(want[0], rel=1e-6) and got[1] == want[1]
    for a, b in zip(all_arrays(cpp) + opts[0].state_arrays(),
                    all_arrays(py) + opts[1].state_arrays(), strict=True):
        np.testing.assert_array_equal(a, b)


@native
def test_a_cpp_epoch_is_bitwise_one_cpp_step_per_batch_and_thread_count_free():
    import fastmlp
    from fastmlp import native_training
    X, y = data.load_digits("float64")
    order = np.random.default_rng(0).permutation(len(X))
    results = []
    before = fastmlp.build_info()["num_threads"]
    try:
        for threads in (1, 2):
            fastmlp.set_num_threads(threads)
            net = MLP([64, 300, 200, 10], activation="relu", dtype="float64", seed=2,
                      batch_norm=True)
            native_training.epoch(net, X, y, order, 100, optim.SGD(0.1, momentum=0.9), 0.1, None)
            results.append(all_arrays(net))
    finally:
        fastmlp.set_num_threads(before)
    step_net = MLP([64, 300, 200, 10], activation="relu", dtype="float64", seed=2, batch_norm=True)
    sgd = optim.SGD(0.1, momentum=0.9)
    for lo in range(0, len(X), 100):
        rows = order[lo:lo + 100]
        native_training.step(step_net, X[rows], y[rows], sgd, 0.1)
    for a, b, c in zip(*results, all_arrays(step_net), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_early_stopping_restores_the_best_epochs_gamma_beta_and_running_statistics(mlp_backend):
    X, y = data.load_digits()
    net = MLP([64, 30, 10], activation="relu", backend=mlp_backend, batch_norm=True, seed=1)
    seen = []
    hist = net.fit(X[:200], y[:200], epochs=40, batch_size=10, lr=1.0, patience=2,
                   validation_data=(X[1000:], y[1000:]),
                   progress=lambda h: seen.append([a.copy() for a in net.gammas + net.betas +
                                                   net.running_means + net.running_vars]))
    assert hist.stopped_epoch is not None and hist.best_epoch < hist.stopped_epoch
    for got, want in zip(net.gammas + net.betas + net.running_means + net.running_vars,
                         seen[hist.best_epoch], strict=True):
        np.testing.assert_array_equal(got, want)
