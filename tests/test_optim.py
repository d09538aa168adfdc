"""Optimizers and schedules (fastmlp.optim): torch.optim's numbers in float64 on both
backends, native against the twin, exact resumption through save/load, and all-or-nothing
steps and epochs that leave the optimizer's state untouched."""
import math

import numpy as np
import pytest

import fastmlp
from fastmlp import MLP, optim

from conftest import MLP_BACKENDS, fail_at_call

rng = np.random.default_rng(0)
X = rng.standard_normal((48, 6))
LABELS = rng.integers(0, 3, 48)
SIZES = [6, 8, 5, 3]

OPTIMIZERS = {
    "sgd": lambda: optim.SGD(0.1),
    "momentum": lambda: optim.SGD(0.1, momentum=0.9),
    "momentum_decay": lambda: optim.SGD(0.1, momentum=0.9, weight_decay=0.01),
    "nesterov": lambda: optim.SGD(0.1, momentum=0.9, nesterov=True),
    "nesterov_decay": lambda: optim.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda: optim.Adam(0.01),
    "adam_decay": lambda: optim.Adam(0.01, weight_decay=0.01),
    "adamw": lambda: optim.AdamW(0.01),
}


def new_net(backend, dtype="float64", seed=3):
    return MLP(SIZES, activation="tanh", backend=backend, dtype=dtype, seed=seed)


def params_of(net):
    return [p.copy() for p in net.weights + net.biases]


# ---------------------------------------------------------------- against torch.optim

def torch_twin(net):
    """The net as a torch Sequential of Linear + Tanh, with the same weights."""
    torch = pytest.importorskip("torch")
    layers = []
    for i, (w, b) in enumerate(zip(net.weights, net.biases)):
        linear = torch.nn.Linear(w.shape[1], w.shape[0]).double()
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w))
            linear.bias.copy_(torch.from_numpy(b))
        layers += [linear] + ([torch.nn.Tanh()] if i < len(net.weights) - 1 else [])
    return torch.nn.Sequential(*layers)


def torch_optimizer(model, opt):
    """torch.optim's optimizer with fastmlp's settings; weight decay on the weights only."""
    torch = pytest.importorskip("torch")
    weights = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    biases = [m.bias for m in model if isinstance(m, torch.nn.Linear)]
    groups = [{"params": weights, "weight_decay": opt.weight_decay},
              {"params": biases, "weight_decay": 0.0}]
    if isinstance(opt, optim.Adam):
        cls = torch.optim.AdamW if opt.decoupled else torch.optim.Adam
        return cls(groups, lr=opt.lr, betas=opt.betas, eps=opt.eps)
    return torch.optim.SGD(groups, lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov)


def torch_params(model):
    torch = pytest.importorskip("torch")
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    return [m.weight.detach().numpy() for m in linears] + [m.bias.detach().numpy() for m in linears]


def assert_close(got, want, rtol):
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * np.abs(w).max())


@pytest.mark.parametrize("steps", [1, 50])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_steps_match_torch_optim(backend, name, steps):
    torch = pytest.importorskip("torch")
    net = new_net(backend)
    model = torch_twin(net)
    opt = OPTIMIZERS[name]()
    topt = torch_optimizer(model, opt)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(LABELS)
    for _ in range(steps):
        net.step(X, LABELS, optimizer=opt)
        topt.zero_grad()
        torch.nn.functional.cross_entropy(model(Xt), yt).backward()
        topt.step()
    assert net.optimizer is opt and opt.state["step"] == steps
    assert_close(params_of(net), torch_params(model), 1e-12)


# fastmlp's schedule, and torch's (given torch.optim.lr_scheduler and the optimizer)
SCHEDULES = {
    "step_decay": (lambda: optim.StepDecay(2, gamma=0.5),
                   lambda lrs, o: lrs.StepLR(o, 2, gamma=0.5)),
    "cosine": (lambda: optim.Cosine(T_max=4, eta_min=0.001),
               lambda lrs, o: lrs.CosineAnnealingLR(o, T_max=4, eta_min=0.001)),
    "invscaling": (lambda: optim.InvScaling(power_t=0.25),   # t: rows trained on
                   lambda lrs, o: lrs.LambdaLR(o, lambda epoch: 1 / (epoch * len(X) + 1) ** 0.25)),
}


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("name", ["momentum", "adam"])
@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_schedules_match_torch_lr_schedulers(backend, name, schedule):
    torch = pytest.importorskip("torch")
    make_schedule, make_torch_schedule = SCHEDULES[schedule]
    net = new_net(backend)
    model = torch_twin(net)
    opt = OPTIMIZERS[name]()
    opt.schedule = make_schedule()
    topt = torch_optimizer(model, opt)
    tsched = make_torch_schedule(torch.optim.lr_scheduler, topt)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(LABELS)
    hist = net.fit(X, LABELS, epochs=6, batch_size=16, optimizer=opt, shuffle=False)
    rates = []
    for _ in range(6):
        rates.append(topt.param_groups[0]["lr"])
        for lo in range(0, len(X), 16):
            topt.zero_grad()
            torch.nn.functional.cross_entropy(model(Xt[lo:lo + 16]), yt[lo:lo + 16]).backward()
            topt.step()
        tsched.step()
    np.testing.assert_allclose(hist.lr, rates, rtol=1e-12)
    assert_close(params_of(net), torch_params(model), 1e-12)


def test_plateau_divides_by_five_after_two_epochs_without_improvement():
    """scikit-learn's "adaptive": lr / 5 when the loss has not improved by tol twice."""
    sched = optim.Plateau()
    opt = optim.SGD(1.0, schedule=sched)
    lrs = []
    for loss in [5.0, 4.0, 3.99995, 3.99999, 3.0, 3.0, 3.0, 3.0, 3.0]:
        lrs.append(opt.current_lr())
        opt.epoch_ended(10, loss)
    assert lrs == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.2, 0.2, 0.2, 0.04, 0.04], rel=1e-15)
    assert opt.current_lr() == pytest.approx(0.008)


@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_plateau_monitors_the_validation_loss_in_fit(backend):
    net = new_net(backend)
    opt = optim.SGD(0.05, schedule=optim.Plateau(tol=1e9))   # improves only from inf
    hist = net.fit(X, LABELS, epochs=6, batch_size=16, optimizer=opt,
                   validation_data=(X[:8], LABELS[:8]))
    assert hist.lr == pytest.approx([0.05, 0.05, 0.05, 0.01, 0.01, 0.002], rel=1e-15)


# ---------------------------------------------------------------- native against the twin

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_native_fit_matches_the_numpy_twin(name, dtype):
    if "native" not in fastmlp.BACKENDS or fastmlp.backend.native_unavailable():
        pytest.skip("native backend not built")
    nets = {b: new_net(b, dtype) for b in ("numpy", "native")}
    hists = {b: net.fit(X, LABELS, epochs=3, batch_size=10, optimizer=OPTIMIZERS[name]())
             for b, net in nets.items()}
    rtol = 1e-9 if dtype == "float64" else 2e-4
    assert_close(params_of(nets["native"]), params_of(nets["numpy"]), rtol)
    np.testing.assert_allclose(hists["native"].loss, hists["numpy"].loss, rtol=rtol)
    for a, b in zip(nets["native"].optimizer.state_arrays(), nets["numpy"].optimizer.state_arrays()):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())
    assert nets["native"].optimizer.state == nets["numpy"].optimizer.state


@pytest.mark.parametrize("name", ["momentum", "nesterov_decay", "adam_decay", "adamw"])
def test_a_cpp_epoch_is_bitwise_the_python_loop_over_the_native_kernels(name):
    """The C++ update rules make the same kernel calls as numpy_training.update."""
    if fastmlp.backend.native_unavailable():
        pytest.skip("native backend not built")
    from fastmlp import native_training, numpy_training
    cpp, py = new_net("native"), new_net("native")
    order = np.random.default_rng(1).permutation(len(X))
    opt_cpp, opt_py = OPTIMIZERS[name](), OPTIMIZERS[name]()
    got = native_training.epoch(cpp, X, LABELS, order, 10, opt_cpp, 0.05, None)
    want = numpy_training.epoch(py, X, LABELS, order, 10, opt_py, 0.05, None)
    assert got[1] == want[1] and got[0] == pytest.approx(want[0], rel=1e-12)
    for a, b in zip(params_of(cpp) + opt_cpp.state_arrays(), params_of(py) + opt_py.state_arrays()):
        np.testing.assert_array_equal(a, b)
    assert opt_cpp.state == opt_py.state


# ---------------------------------------------------------------- state: resume, undo

@pytest.mark.parametrize("name", ["momentum", "adam", "adamw"])
@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_fit_2_save_load_fit_2_equals_fit_4(backend, name, tmp_path):
    def make():
        opt = OPTIMIZERS[name]()
        opt.schedule = optim.Cosine(T_max=4)
        return opt
    whole = new_net(backend)
    whole.fit(X, LABELS, epochs=4, batch_size=10, optimizer=make())
    half = new_net(backend)
    half.fit(X, LABELS, epochs=2, batch_size=10, optimizer=make())
    half.save(tmp_path / "half.npz")
    again = MLP.load(tmp_path / "half.npz")
    assert again.optimizer.config() == half.optimizer.config()
    hist = again.fit(X, LABELS, epochs=2, batch_size=10, optimizer=again.optimizer)
    for a, b in zip(params_of(whole) + whole.optimizer.state_arrays(),
                    params_of(again) + again.optimizer.state_arrays()):
        np.testing.assert_array_equal(a, b)
    assert whole.optimizer.state == again.optimizer.state
    assert hist.lr == pytest.approx([optim.Cosine(4).lr(make().lr, {"epoch": e}) for e in (2, 3)])


@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_a_name_with_the_same_settings_continues_and_other_settings_start_over(backend):
    net = new_net(backend)
    net.fit(X, LABELS, epochs=1, batch_size=16, optimizer="adam", lr=0.01)
    first = net.optimizer
    net.fit(X, LABELS, epochs=1, batch_size=16, optimizer="adam", lr=0.01)
    assert net.optimizer is first and first.state["step"] == 6 and first.state["epoch"] == 2
    net.fit(X, LABELS, epochs=1, batch_size=16, optimizer="adam", lr=0.02)
    assert net.optimizer is not first and net.optimizer.state["step"] == 3
    net.fit(X, LABELS, epochs=1, batch_size=16, lr=0.1)   # plain SGD replaces it
    assert isinstance(net.optimizer, optim.SGD) and net.optimizer.momentum == 0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_a_diverging_step_leaves_the_optimizer_state_untouched(backend):
    net = MLP(SIZES, activation="relu", backend=backend, dtype="float64", seed=3)
    opt = optim.SGD(0.1, momentum=0.9)
    net.step(X, LABELS, optimizer=opt)
    before = params_of(net) + [a.copy() for a in opt.state_arrays()]
    state = dict(opt.state)
    opt.lr = 1e300   # |lr · g| overflows: infinite weights
    with pytest.raises(FloatingPointError, match="^step: training diverged"):
        net.step(X * 1e10, LABELS, optimizer=opt)
    for a, b in zip(before, params_of(net) + opt.state_arrays()):
        np.testing.assert_array_equal(a, b)
    assert opt.state == state


@pytest.mark.parametrize("name", ["momentum", "adam"])
@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_a_step_that_fails_after_updating_leaves_the_optimizer_state_untouched(
        backend, name, monkeypatch):
    net = new_net(backend)
    opt = OPTIMIZERS[name]()
    net.step(X, LABELS, optimizer=opt)
    before = params_of(net) + [a.copy() for a in opt.state_arrays()]
    state = dict(opt.state)
    # weights, buffers and the update count have moved, and then something fails
    fail_at_call(monkeypatch, net._kernels.training, "step", 1, MemoryError, after=True)
    with pytest.raises(MemoryError):
        net.step(X, LABELS, optimizer=opt)
    for a, b in zip(before, params_of(net) + opt.state_arrays()):
        np.testing.assert_array_equal(a, b)
    assert opt.state == state


@pytest.mark.parametrize("name", ["momentum", "adam"])
@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_an_interrupted_epoch_leaves_the_state_of_the_last_completed_one(backend, name,
                                                                        monkeypatch):
    net, reference = new_net(backend), new_net(backend)
    reference.fit(X, LABELS, epochs=2, batch_size=16, optimizer=OPTIMIZERS[name]())
    # epoch 3 runs (weights and state move), then is interrupted
    fail_at_call(monkeypatch, net._kernels.training, "epoch", 3, after=True)
    opt = OPTIMIZERS[name]()
    with pytest.raises(KeyboardInterrupt, match="interrupted in epoch 3"):
        net.fit(X, LABELS, epochs=3, batch_size=16, optimizer=opt)
    for a, b in zip(params_of(reference) + reference.optimizer.state_arrays(),
                    params_of(net) + opt.state_arrays()):
        np.testing.assert_array_equal(a, b)
    assert opt.state == reference.optimizer.state and net.optimizer is opt


# ---------------------------------------------------------------- arguments

def test_optimizer_arguments_are_checked():
    with pytest.raises(ValueError, match="^momentum: expected a number in"):
        optim.SGD(0.1, momentum=1.0)
    with pytest.raises(ValueError, match="^nesterov: Nesterov momentum needs momentum > 0"):
        optim.SGD(0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"^betas\[1\]: expected a number in \[0, 1\)"):
        optim.Adam(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="^eps: expected a number > 0"):
        optim.Adam(eps=0)
    with pytest.raises(ValueError, match="^lr: expected a number > 0"):
        optim.AdamW(lr=-1)
    with pytest.raises(ValueError, match="^optimizer: expected an optimizer object or one of"):
        new_net("numpy").fit(X, LABELS, epochs=1, optimizer="rmsprop")
    with pytest.raises(ValueError, match="^lr: set it on the optimizer object"):
        new_net("numpy").fit(X, LABELS, epochs=1, optimizer=optim.Adam(), lr=0.1)
    with pytest.raises(TypeError, match="^schedule: expected a fastmlp.optim schedule"):
        optim.SGD(0.1, schedule="cosine")


def test_adamw_decay_is_not_part_of_the_loss_but_adams_is():
    net = new_net("numpy")
    hist_w = net.fit(X, LABELS, epochs=1, batch_size=48, optimizer=optim.AdamW(weight_decay=0.5))
    net2 = new_net("numpy")
    hist_a = net2.fit(X, LABELS, epochs=1, batch_size=48, optimizer=optim.Adam(weight_decay=0.5))
    plain = new_net("numpy").loss(X, LABELS)
    assert hist_w.loss[0] == pytest.approx(plain)
    penalty = 0.25 * sum(float(np.vdot(w, w)) for w in new_net("numpy").weights)
    assert hist_a.loss[0] == pytest.approx(plain + penalty)
    assert math.isfinite(hist_a.loss[0])


# ---------------------------------------------------------------- autograd.nn

@pytest.mark.parametrize("name", ["nesterov_decay", "adam_decay", "adamw"])
@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_autograd_nn_optimizers_make_the_models_steps(backend, name):
    """nn.SGD / nn.Adam / nn.AdamW run fastmlp.optim's rules over the same kernels: a
    hand-built Sequential takes the steps the MLP takes."""
    from fastmlp import autograd
    from fastmlp.autograd import Tensor, nn
    net = new_net(backend)
    model = nn.Sequential(*[layer for i in range(len(net.weights))
                            for layer in [nn.Linear(*net.weights[i].shape[::-1])]
                            + ([nn.Tanh()] if i < len(net.weights) - 1 else [])])
    linears = [m for m in model.layers if isinstance(m, nn.Linear)]
    for m, w, b in zip(linears, net.weights, net.biases):
        m.weight.data[...], m.bias.data[...] = w, b
    opt = OPTIMIZERS[name]()
    settings = {k: v for k, v in opt.hyperparameters().items()}
    if "betas" in settings:
        settings["betas"] = tuple(settings["betas"])
    nn_opt = {"sgd": nn.SGD, "adam": nn.Adam, "adamw": nn.AdamW}[opt.name](model.parameters(),
                                                                           **settings)
    with autograd.backend(backend):
        for _ in range(10):
            net.step(X, LABELS, optimizer=opt)
            nn_opt.zero_grad()
            autograd.softmax_cross_entropy(model(Tensor(X)), LABELS).backward()
            nn_opt.step()
    got = [m.weight.data for m in linears] + [m.bias.data for m in linears]
    assert_close(got, params_of(net), 1e-12)
    assert nn_opt.rule.state["step"] == 10


# ---------------------------------------------------------------- the model file

def adam_model_arrays(tmp_path):
    net = new_net("numpy")
    net.fit(X, LABELS, epochs=1, batch_size=16, optimizer=optim.Adam(0.01, schedule=optim.Plateau()))
    net.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as f:
        return {name: f[name] for name in f.files}


def with_optimizer(arrays, **changes):
    import json
    config = json.loads(str(arrays["config"]))
    config["optimizer"] = {**config["optimizer"], **changes} if changes.pop("_merge", True) \
        else changes["value"]
    return {**arrays, "config": np.array(json.dumps(config))}


BAD_OPTIMIZER_FILES = {
    "not_an_object": lambda a: with_optimizer(a, _merge=False, value="adam"),
    "unknown_name": lambda a: with_optimizer(a, name="rmsprop"),
    "negative_lr": lambda a: with_optimizer(a, lr=-1.0),
    "unknown_setting": lambda a: with_optimizer(a, momentum=0.9),
    "bad_schedule": lambda a: with_optimizer(a, schedule={"name": "Warp"}),
    "negative_step": lambda a: with_optimizer(a, state={"step": -1, "epoch": 0, "samples": 0}),
    "buffer_missing": lambda a: {k: v for k, v in a.items() if k != "opt0_1"},
    "buffer_extra": lambda a: {**a, "opt99_0": a["opt0_0"]},
    "buffer_shape": lambda a: {**a, "opt0_0": a["opt0_0"].T.copy()},
    "buffer_nan": lambda a: {**a, "opt1_1": np.full_like(a["opt1_1"], np.nan)},
}


def test_a_saved_optimizer_round_trips(tmp_path):
    arrays = adam_model_arrays(tmp_path)
    net = MLP.load(tmp_path / "good.npz")
    assert isinstance(net.optimizer, optim.Adam) and isinstance(net.optimizer.schedule, optim.Plateau)
    assert net.optimizer.state["step"] == 3 and len(net.optimizer.buffers) == 6
    np.testing.assert_array_equal(net.optimizer.buffers[0][1], arrays["opt0_1"])


@pytest.mark.parametrize("kind", sorted(BAD_OPTIMIZER_FILES))
def test_load_refuses_a_bad_optimizer(kind, tmp_path):
    arrays = BAD_OPTIMIZER_FILES[kind](adam_model_arrays(tmp_path))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"bad\.npz.*: "):
        MLP.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["nesterov_decay", "adam_decay", "adamw"])
def test_native_optimizers_train_bitwise_the_same_on_1_and_2_threads(name, dtype):
    """Layers wide enough that the products, and the updates of W past one block, split
    across threads: the weights and the optimizer's state do not depend on the count."""
    if fastmlp.backend.native_unavailable():
        pytest.skip("native backend not built")
    rng = np.random.default_rng(5)
    Xw, yw = rng.standard_normal((256, 300)), rng.integers(0, 10, 256)
    before, results = fastmlp.get_num_threads(), []
    try:
        for threads in (1, 2):
            fastmlp.set_num_threads(threads)
            net = MLP([300, 200, 100, 10], activation="relu", dtype=dtype, seed=4)
            opt = OPTIMIZERS[name]()
            net.fit(Xw, yw, epochs=2, batch_size=64, optimizer=opt)
            results.append(params_of(net) + [a.copy() for a in opt.state_arrays()])
    finally:
        fastmlp.set_num_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
