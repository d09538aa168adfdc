"""Samples per second for one training epoch: the design's three cases, native vs the
NumPy reference (and PyTorch CPU when installed), float32 and float64, in one run.

    python -m pytest benches/bench_training.py --benchmark-only
"""
import numpy as np
import pytest

import fastmlp

CASES = {  # name: (sizes, activation, batch size, samples per epoch)
    "seed": ([784, 30, 30, 10], "sigmoid", 10, 6000),
    "mid": ([784, 256, 256, 10], "relu", 64, 6400),
    "big": ([784, 1024, 1024, 10], "relu", 256, 4096),
}
DTYPES = ("float32", "float64")


def synthetic(n, sizes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], n)
    return X, y


def torch_epoch(sizes, activation, batch_size, X, y, dtype):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    act = {"sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU}[activation]
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out), act()]
    model = torch.nn.Sequential(*layers[:-1]).to(getattr(torch, dtype))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("runner", ["numpy", "native", "torch"])
def test_epoch(record, case, dtype, runner):
    sizes, activation, batch_size, n = CASES[case]
    X, y = synthetic(n, sizes, dtype)
    if runner == "torch":
        epoch = torch_epoch(sizes, activation, batch_size, X, y, dtype)
    else:
        net = fastmlp.MLP(sizes, activation=activation, output="softmax", backend=runner,
                          dtype=dtype, seed=0)

        def epoch():
            net.fit(X, y, epochs=1, batch_size=batch_size, lr=0.1)
    record(f"epoch {case} {dtype}", runner, epoch, items=n, rounds=3)
