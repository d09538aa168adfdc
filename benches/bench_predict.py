"""predict: throughput on 10,000 rows and the latency of a single row, fastmlp native
against scikit-learn's MLPClassifier.predict, PyTorch under torch.inference_mode() and a
plain NumPy forward, all with the same weights, in one run.

    python -m pytest benches/bench_predict.py --benchmark-only

The network is the design's mid case (784-256-256-10 relu), fitted by
fastmlp.sklearn.MLPClassifier; scikit-learn's estimator gets a copy of its coefs_ and
intercepts_ (and must then predict the same labels), PyTorch its to_torch() copy. The
runners take turns with the benches' pause between them; each one's best turn counts
(ratios against scikit-learn). "fastmlp MLP" is MLP.predict of the estimator's net_,
"fastmlp.sklearn" the estimator's predict (class labels through its label binarizer).
"""
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier as TheirClassifier  # noqa: E402

from fastmlp.bench import CASES, synthetic, take_turns  # noqa: E402
from fastmlp.sklearn import MLPClassifier  # noqa: E402
from fastmlp.specs import DTYPES  # noqa: E402

from conftest import SETTLE_SECONDS  # noqa: E402

ROWS = 10_000
SINGLE_CALLS = 2_000   # single-row predictions per turn
ROUNDS = 7


def fitted(dtype):
    """(ours, theirs) with the same weights, and X (ROWS rows of the net's dtype)."""
    sizes, _, batch_size, _ = CASES["mid"]
    X, y = synthetic(ROWS, sizes, dtype)
    hidden = tuple(sizes[1:-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(hidden_layer_sizes=hidden, max_iter=2, batch_size=batch_size, dtype=dtype,
                             random_state=0).fit(X, y)
        theirs = TheirClassifier(hidden_layer_sizes=hidden, max_iter=1, batch_size=batch_size,
                                 random_state=0).fit(X, y)
    theirs.coefs_ = [c.astype(dtype) for c in ours.coefs_]
    theirs.intercepts_ = [b.astype(dtype) for b in ours.intercepts_]
    agree = np.mean(ours.predict(X) == theirs.predict(X))
    assert agree > 0.999, f"scikit-learn with fastmlp's weights agrees on {agree:.2%} only"
    return ours, theirs, X


def numpy_forward(ours):
    """predict as a user writes it in NumPy from the estimator's coefs_ (W(l)ᵀ)."""
    layers = list(zip(ours.coefs_, ours.intercepts_))

    def predict(X):
        a = X
        for w, b in layers[:-1]:
            a = np.maximum(a @ w + b, 0)
        w, b = layers[-1]
        return (a @ w + b).argmax(axis=1)
    return predict


def torch_predict(ours):
    try:
        import torch
    except ImportError:
        return None
    model = ours.net_.to_torch().eval()

    def predict(X):
        with torch.inference_mode():
            return model(torch.from_numpy(X)).argmax(dim=1).numpy()
    return predict


def predictors(dtype):
    ours, theirs, X = fitted(dtype)
    found = {"scikit-learn": theirs.predict, "fastmlp MLP": ours.net_.predict,
             "fastmlp.sklearn": ours.predict, "numpy forward": numpy_forward(ours),
             "torch": torch_predict(ours)}
    return {name: fn for name, fn in found.items() if fn is not None}, X


def timed(benchmark, group, jobs):
    benchmark.group = group
    return benchmark.pedantic(take_turns, args=(jobs, ROUNDS, SETTLE_SECONDS), rounds=1,
                              iterations=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_predict_rows(benchmark, record_measured, dtype):
    fns, X = predictors(dtype)
    labels = fns["fastmlp MLP"](X)
    for name, fn in fns.items():
        assert np.mean(fn(X) == labels) > 0.999, name
    seconds = timed(benchmark, f"predict {ROWS} rows {dtype}",
                    {name: (lambda fn=fn: fn(X)) for name, fn in fns.items()})
    for name, turns in seconds.items():
        record_measured(f"predict {ROWS:,} rows {dtype}", name, min(turns), items=ROWS,
                        baseline="scikit-learn")


@pytest.mark.parametrize("dtype", DTYPES)
def test_predict_one_row(benchmark, record_measured, dtype):
    fns, X = predictors(dtype)
    row = X[:1]

    def calls(fn):
        def run():
            for _ in range(SINGLE_CALLS):
                fn(row)
        return run
    seconds = timed(benchmark, f"predict 1 row {dtype}",
                    {name: calls(fn) for name, fn in fns.items()})
    for name, turns in seconds.items():   # the table's rate: single-row calls per second
        record_measured(f"predict 1 row {dtype} (x{SINGLE_CALLS})", name, min(turns),
                        items=SINGLE_CALLS, baseline="scikit-learn")
