"""fastmlp.sklearn against scikit-learn's own MLP estimators: fit times and test scores side
by side, in one run, on scikit-learn's bundled data with its preprocessing advice (X
standardised on the training split), every solver, default parameters otherwise.

    python -m pytest benches/bench_sklearn.py --benchmark-only

Each (data set, solver) fits SEEDS random states with each library, the libraries taking
turns; the times table gives the median fit per library (ratios against scikit-learn), the
scores table the mean test accuracy (R² for regression) over the seeds. fastmlp with
dtype=None computes in X's float64, as scikit-learn does, and with the same random_state
draws the same weights and shuffles, so the scores agree to rounding; "fastmlp float32" is
the opt-in single precision.
"""
import statistics
import time
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import datasets  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as TheirClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as TheirRegressor  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from fastmlp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

from conftest import SETTLE_SECONDS  # noqa: E402

SEEDS = range(5)
DATA = {
    "digits": lambda: datasets.load_digits(return_X_y=True),
    "iris": lambda: datasets.load_iris(return_X_y=True),
    "wine": lambda: datasets.load_wine(return_X_y=True),
    "breast_cancer": lambda: datasets.load_breast_cancer(return_X_y=True),
    "diabetes": lambda: datasets.load_diabetes(return_X_y=True),
    "make_regression": lambda: datasets.make_regression(2000, 20, noise=10.0, random_state=0),
}
REGRESSION = {"diabetes", "make_regression"}


def split(name):
    X, y = DATA[name]()
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def runners(name, solver):
    theirs, ours = ((TheirRegressor, MLPRegressor) if name in REGRESSION
                    else (TheirClassifier, MLPClassifier))
    return {"scikit-learn": lambda seed: theirs(solver=solver, random_state=seed),
            "fastmlp": lambda seed: ours(solver=solver, random_state=seed),
            "fastmlp float32": lambda seed: ours(solver=solver, random_state=seed,
                                                 dtype="float32")}


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
@pytest.mark.parametrize("name", DATA)
def test_fit_against_scikit_learn(benchmark, record_measured, table, name, solver):
    X_train, X_test, y_train, y_test = split(name)
    make = runners(name, solver)
    seconds = {lib: [] for lib in make}
    scores = {lib: [] for lib in make}

    def session():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for seed in SEEDS:
                for lib, new in make.items():   # the libraries take turns, seed by seed
                    time.sleep(SETTLE_SECONDS)
                    start = time.perf_counter()
                    model = new(seed).fit(X_train, y_train)
                    seconds[lib].append(time.perf_counter() - start)
                    scores[lib].append(model.score(X_test, y_test))

    benchmark.group = f"fit {name} {solver}"
    benchmark.pedantic(session, rounds=1, iterations=1)
    for lib in make:
        record_measured(f"fit {name} {solver}", lib, statistics.median(seconds[lib]),
                        baseline="scikit-learn")
    metric = "R²" if name in REGRESSION else "accuracy"
    line = f"{name:<16} {solver:<6} {metric:<9}" + "".join(
        f" {lib} {np.mean(scores[lib]):.4f} ±{np.std(scores[lib]):.4f} |" for lib in make)
    table(f"test scores, mean ± sd over {len(SEEDS)} seeds", line.rstrip(" |"))
