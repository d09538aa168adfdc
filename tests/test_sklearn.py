"""fastmlp.sklearn against scikit-learn's own estimator checks, and in its tools."""
import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from conftest import MLP_BACKENDS, native_skip_reason  # noqa: E402
from fastmlp.data import load_digits, make_moons  # noqa: E402
from fastmlp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


BACKENDS = MLP_BACKENDS

# Small and quick, but enough epochs for the accuracy/R² thresholds of the checks.
CHECK_PARAMS = dict(hidden_layer_sizes=(16,), max_iter=30, random_state=0)


def estimators():
    backends = ["numpy"] if native_skip_reason() else ["numpy", "native"]
    return [cls(backend=b, **CHECK_PARAMS) for b in backends for cls in (MLPClassifier, MLPRegressor)]


# No check is expected to fail. scikit-learn itself skips a few, for reasons of this
# environment, not of the estimators: array-API checks (SCIPY_ARRAY_API unset), pandas
# checks (pandas not installed), decision-function checks (no decision_function, as in
# scikit-learn's own MLPClassifier).
@parametrize_with_checks(estimators())
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits()
    return X[:600], y[:600], X[1000:1300], y[1000:1300]


@pytest.mark.parametrize("backend", BACKENDS)
def test_classifier_learns_digits(digits, backend):
    X, y, Xt, yt = digits
    clf = MLPClassifier((30,), activation="logistic", learning_rate_init=0.5, max_iter=30,
                        random_state=0, backend=backend).fit(X, y)
    assert clf.score(Xt, yt) > 0.85
    assert clf.classes_.tolist() == list(range(10))
    assert clf.n_features_in_ == 64 and clf.n_iter_ == len(clf.loss_curve_) <= 30
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    proba = clf.predict_proba(Xt)
    assert proba.shape == (300, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(clf.predict(Xt), clf.classes_[proba.argmax(axis=1)])
    assert [c.shape for c in clf.coefs_] == [(64, 30), (30, 10)]  # scikit-learn's layout
    assert clf.out_activation_ == "softmax" and clf.n_layers_ == 3


def test_string_labels_binary_and_our_activations():
    X, y = make_moons(200, noise=0.1, seed=0)
    labels = np.array(["no", "yes"])[y]
    clf = MLPClassifier((16, 16), activation=["tanh", ("leaky_relu", 0.2)], max_iter=100,
                        random_state=0, backend="numpy").fit(X, labels)
    assert clf.out_activation_ == "logistic" and clf.coefs_[-1].shape == (16, 1)
    assert clf.predict_proba(X).shape == (200, 2)
    assert set(clf.predict(X)) <= {"no", "yes"}
    assert clf.score(X, labels) > 0.95
    assert [a for a, _ in clf.net_.activations] == ["tanh", "leaky_relu"]
    assert clf.net_.activations[1] == ("leaky_relu", 0.2)


def test_multilabel_uses_sigmoid_outputs():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 4))
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] < 0.5]).astype(int)
    clf = MLPClassifier((16,), max_iter=100, random_state=0, backend="numpy").fit(X, Y)
    assert clf.out_activation_ == "logistic" and clf.net_.output == "sigmoid"
    assert clf.predict(X).shape == (300, 3)
    assert clf.predict_proba(X).shape == (300, 3)
    assert clf.score(X, Y) > 0.85  # subset accuracy: all three labels right


def test_regressor_multi_output_and_target_units():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (300, 2))
    Y = np.column_stack([1000 * np.sin(2 * X[:, 0]), 5 + X[:, 0] * X[:, 1]])
    reg = MLPRegressor((32,), activation="tanh", max_iter=200, random_state=0,
                       backend="numpy").fit(X, Y)
    assert reg.predict(X).shape == (300, 2)
    assert reg.score(X, Y) > 0.9
    assert MLPRegressor((8,), max_iter=5, backend="numpy").fit(X, Y[:, 0]).predict(X).shape == (300,)


def test_pipeline_grid_search_and_cross_val(digits):
    X, y, _, _ = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=10, random_state=0,
                                                         backend="numpy"))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(8,), (32,)],
                               "mlpclassifier__alpha": [0.0, 1e-3]}, cv=3).fit(X, y)
    assert grid.best_score_ > 0.8
    assert grid.best_params_["mlpclassifier__hidden_layer_sizes"] in [(8,), (32,)]
    scores = cross_val_score(grid.best_estimator_, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.7   # the point is that it runs


@pytest.mark.parametrize("backend", BACKENDS)
def test_pickle_round_trip(digits, backend):
    X, y, Xt, _ = digits
    clf = MLPClassifier((16,), max_iter=3, random_state=0, backend=backend).fit(X, y)
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.predict_proba(Xt), clf.predict_proba(Xt))
    clone.partial_fit(X, y)   # the unpickled estimator keeps training
    assert clone.n_iter_ == clf.n_iter_ + 1


def test_partial_fit_classifier(digits):
    X, y, Xt, yt = digits
    clf = MLPClassifier((32,), random_state=0, backend="numpy")
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X[:50], y[:50])
    for epoch in range(10):
        for lo in range(0, len(X), 100):   # batches need not hold every class
            clf.partial_fit(X[lo:lo + 100], y[lo:lo + 100], classes=np.arange(10))
    assert clf.n_iter_ == 60 and clf.t_ == 6000
    assert clf.score(Xt, yt) > 0.85
    with pytest.raises(ValueError, match="not in classes_"):
        clf.partial_fit(X[:5], np.full(5, 11))
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:5, :10], y[:5])


def test_partial_fit_regressor():
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (200, 3))
    y = X @ [1.0, -2.0, 0.5] + 3
    reg = MLPRegressor((16,), random_state=0, backend="numpy")
    for _ in range(50):
        reg.partial_fit(X, y)
    assert reg.n_iter_ == 50 and reg.score(X, y) > 0.95
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(X, y)


def test_early_stopping_keeps_best_validation_score(digits):
    X, y, _, _ = digits
    clf = MLPClassifier((32,), early_stopping=True, n_iter_no_change=3, max_iter=200,
                        random_state=0, backend="numpy").fit(X, y)
    assert clf.n_iter_ < 200 and len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)


def test_warm_start_and_seeding(digits):
    X, y, _, _ = digits
    a = MLPClassifier((16,), max_iter=3, random_state=7, backend="numpy").fit(X, y)
    b = MLPClassifier((16,), max_iter=3, random_state=7, backend="numpy").fit(X, y)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])
    a.set_params(warm_start=True, max_iter=2).fit(X, y)
    assert a.n_iter_ == 5 and len(a.loss_curve_) == 5
    with pytest.raises(ValueError, match="warm_start"):
        a.fit(X[y < 5], y[y < 5])


@pytest.mark.parametrize("params,match", [
    ({"hidden_layer_sizes": (0,)}, "hidden_layer_sizes"),
    ({"alpha": -1}, "alpha"),
    ({"batch_size": 0}, "batch_size"),
    ({"dtype": "float16"}, "dtype"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"activation": "swish"}, "activation"),
])
def test_bad_parameters_name_themselves(params, match):
    X, y = make_moons(40, seed=0)
    with pytest.raises(ValueError, match=match):
        MLPClassifier(max_iter=1, backend="numpy", **params).fit(X, y)


def test_divergence_is_an_error_not_nan():
    X, y = make_moons(40, seed=0)
    with pytest.raises(ValueError, match="diverged"):
        MLPClassifier(learning_rate_init=1e6, max_iter=5, backend="numpy").fit(X * 1e3, y)


def test_importing_fastmlp_does_not_import_the_optional_extras():
    import subprocess
    import sys
    code = ("import sys, fastmlp, fastmlp.data, fastmlp.plots, fastmlp.cli; "
            "print(sorted({'sklearn', 'matplotlib'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_readme_sklearn_example_runs(capsys):
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = text.split("## scikit-learn estimators", 1)[1].split("```python\n", 1)[1]
    exec(compile(example.split("```", 1)[0], "README.md", "exec"), {})
    assert float(capsys.readouterr().out.rsplit("test accuracy ", 1)[1]) > 0.9


@pytest.mark.parametrize("params, error, match", [
    ({"max_iter": float("inf")}, ValueError, r"^max_iter: expected an integer >= 1"),
    ({"max_iter": True}, ValueError, r"^max_iter: expected an integer >= 1"),
    ({"alpha": "x"}, TypeError, r"^alpha: expected a real number"),
    ({"tol": None}, TypeError, r"^tol: expected a real number"),
    ({"learning_rate_init": None}, TypeError, r"^learning_rate_init: expected a real number"),
    ({"learning_rate_init": float("inf")}, ValueError, r"^learning_rate_init: expected a finite"),
    ({"n_iter_no_change": 2.5}, ValueError, r"^n_iter_no_change: expected an integer >= 1"),
    ({"early_stopping": "yes"}, TypeError, r"^early_stopping: expected True or False"),
    ({"warm_start": "x"}, TypeError, r"^warm_start: expected True or False"),
])
def test_estimator_parameters_are_checked_under_their_own_names(params, error, match):
    """Issue 21, item 7: the core API's checks, reporting scikit-learn's parameter names."""
    from fastmlp.sklearn import MLPClassifier
    X = np.random.default_rng(0).standard_normal((20, 3))
    with pytest.raises(error, match=match):
        MLPClassifier(hidden_layer_sizes=(4,), backend="numpy", **params).fit(X, np.arange(20) % 2)


def test_the_regressor_learns_targets_past_1e154():
    """Issue 21, item 5: their squares overflow float64; the standardisation does not."""
    from fastmlp.sklearn import MLPRegressor
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2))
    y = (X[:, 0] + 3) * 1e200
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, backend="numpy",
                       random_state=0).fit(X, y)
    pred = reg.predict(X)
    assert np.all(np.isfinite(pred))
    # R² on the targets in units of 1e200 (scikit-learn's r2_score squares them itself)
    residual, total = ((pred - y) / 1e200) ** 2, ((y - y.mean()) / 1e200) ** 2
    assert 1 - residual.sum() / total.sum() > 0.5


def test_dropout_and_batch_norm_reach_the_network():
    from fastmlp import data
    from fastmlp.sklearn import MLPClassifier
    X, y = data.load_digits()
    clf = MLPClassifier((20, 10), dropout=0.2, batch_norm=True, max_iter=3, batch_size=32,
                        random_state=0).fit(X, y)
    assert clf.net_.dropout == [0.2, 0.2] and clf.net_.batch_norm == [True, True]
    assert clf.get_params()["dropout"] == 0.2 and clf.score(X, y) > 0.5
