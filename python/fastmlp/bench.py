"""Samples per second for one training epoch of the design's three cases, on this machine.

Used by `fastmlp bench` and by benches/bench_training.py. Each runner is a function
that trains one epoch on synthetic data; rates are only comparable within one run.
"""
import time

import numpy as np

CASES = {  # name: (sizes, activation, batch size, samples per epoch)
    "seed": ([784, 30, 30, 10], "sigmoid", 10, 6000),
    "mid": ([784, 256, 256, 10], "relu", 64, 6400),
    "big": ([784, 1024, 1024, 10], "relu", 256, 4096),
}
QUICK_BATCHES = 8   # --quick: an epoch of this many batches per case
LR = 0.1


def synthetic(n, sizes, dtype, seed=0):
    """Uniform pixels in [0, 1) and random labels: the work per epoch is what matters."""
    rng = np.random.default_rng(seed)
    return rng.random((n, sizes[0])).astype(dtype), rng.integers(0, sizes[-1], n)


def fastmlp_optimizer(name):
    """fit()'s optimizer arguments for `name` (OPTIMIZER_NAMES)."""
    from . import optim
    return {"sgd": {"lr": LR},
            "momentum": {"optimizer": optim.SGD(LR, momentum=0.9)},
            "adam": {"optimizer": optim.Adam(1e-3)}}[name]


def torch_optimizer(torch, params, name):
    """torch.optim's same optimizer in its fastest form (fused where it is offered)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=LR)
    if name == "momentum":
        return torch.optim.SGD(params, lr=LR, momentum=0.9, fused=True)
    return torch.optim.Adam(params, lr=1e-3, fused=True)


OPTIMIZER_NAMES = ("sgd", "momentum", "adam")


def fastmlp_epoch(backend, sizes, activation, batch_size, X, y, dtype, optimizer="sgd",
                  **model_options):
    from .model import MLP
    net = MLP(sizes, activation=activation, output="softmax", backend=backend, dtype=dtype,
              seed=0, **model_options)
    settings = fastmlp_optimizer(optimizer)
    return lambda: net.fit(X, y, epochs=1, batch_size=batch_size, **settings)


def torch_epoch(sizes, activation, batch_size, X, y, dtype, optimizer="sgd"):
    """The same network and optimizer in PyTorch (CPU), or None without PyTorch."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    act = {"sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU}[activation]
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out), act()]
    model = torch.nn.Sequential(*layers[:-1]).to(getattr(torch, dtype))
    opt = torch_optimizer(torch, model.parameters(), optimizer)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(X)))

    def epoch():
        for start in range(0, len(X), batch_size):
            idx = perm[start:start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(Xt[idx]), yt[idx]).backward()
            opt.step()
    return epoch


def numpy_loop_epoch(sizes, activation, batch_size, X, y, dtype):
    """The same network and plain SGD as a user writes it by hand in vectorised NumPy (not
    fastmlp's NumPy backend): a shuffle per epoch, then per batch X[rows] @ W.T + b, the
    activation, the softmax cross-entropy gradient, d.T @ a and an in-place update.

    Each batch gathers its own shuffled rows: copying all of X[perm] first (what many
    loops do) allocated 63 MB (float32) or 125 MB (float64) per epoch, whose fresh pages
    cost 28-406 ms on the benchmark VM, more than a whole seed epoch's work at its worst.
    Gathering per batch is the stronger loop, and the one fastmlp is measured against."""
    rng = np.random.default_rng(0)
    Ws = [(rng.standard_normal((fan_out, fan_in)) / np.sqrt(fan_in)).astype(dtype)
          for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
    bs = [np.zeros(fan_out, dtype) for fan_out in sizes[1:]]
    sigmoid = activation == "sigmoid"

    def epoch():
        perm = rng.permutation(len(X))
        for s in range(0, len(X), batch_size):
            rows = perm[s:s + batch_size]
            a, labels = X[rows], y[rows]
            acts = [a]
            for W, b in zip(Ws[:-1], bs[:-1]):
                z = a @ W.T + b
                a = 1 / (1 + np.exp(-z)) if sigmoid else np.maximum(z, 0)
                acts.append(a)
            z = a @ Ws[-1].T + bs[-1]
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(labels)), labels] -= 1
            d = p / len(labels)                       # ∂J/∂z of the mean cross-entropy
            for l in reversed(range(len(Ws))):
                dW, db = d.T @ acts[l], d.sum(axis=0)
                if l:
                    a = acts[l]
                    d = (d @ Ws[l]) * (a * (1 - a) if sigmoid else (a > 0))
                Ws[l] -= LR * dW
                bs[l] -= LR * db
    return epoch


def flops_per_sample(sizes):
    """Multiply-adds ×2 of one training sample: every layer's forward product and weight
    gradient (2 · fan_in · fan_out each), and the δ product of every layer but the first."""
    products = [fan_in * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
    return 2 * (2 * sum(products) + sum(products[1:]))


GEMM_SIZE = 1024


def gemm_runner(dtype, size=GEMM_SIZE):
    """(a function running native matmul on size³ operands, its FLOPs): the machine's rate
    as the benches measure it (benches/bench_gemm.py), the yardstick of the epochs."""
    from .backend import get_backend
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size)).astype(dtype) for _ in range(2))
    matmul = get_backend("native").matmul
    return (lambda: matmul(a, b)), 2 * size ** 3


RUNNER_NAMES = ("numpy loop", "torch", "numpy", "native")


def make_runner(runner, case, dtype, n=None, optimizer="sgd", **model_options):
    """(epoch function or None if `runner` is unavailable, samples per epoch); `runner`
    one of RUNNER_NAMES ("numpy loop": numpy_loop_epoch, plain SGD only); `optimizer` one
    of OPTIMIZER_NAMES; model_options (dropout=...) go to fastmlp's MLP."""
    sizes, activation, batch_size, default_n = CASES[case]
    n = default_n if n is None else n
    X, y = synthetic(n, sizes, dtype)
    if runner == "torch":
        return torch_epoch(sizes, activation, batch_size, X, y, dtype, optimizer), n
    if runner == "numpy loop":
        if optimizer != "sgd" or model_options:
            raise ValueError("the numpy loop runner trains with plain SGD only")
        return numpy_loop_epoch(sizes, activation, batch_size, X, y, dtype), n
    return fastmlp_epoch(runner, sizes, activation, batch_size, X, y, dtype, optimizer,
                         **model_options), n


def take_turns(epochs, rounds, pause=0.0):
    """{name: [seconds of each timed epoch]} for the epoch functions in `epochs`: one
    untimed warm-up each, then `rounds` rounds in which they take turns, so that a machine
    whose speed drifts (a shared VM) slows them all alike. `pause` seconds before each
    timed epoch let the previous runner's idle threads fall asleep."""
    for epoch in epochs.values():
        epoch()
    seconds = {name: [] for name in epochs}
    for _ in range(rounds):
        for name, epoch in epochs.items():
            time.sleep(pause)
            start = time.perf_counter()
            epoch()
            seconds[name].append(time.perf_counter() - start)
    return seconds
