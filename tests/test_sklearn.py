"""fastmlp.sklearn against scikit-learn's own estimator checks, and in its tools."""
import pickle
import warnings

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

def estimators():
    """Each estimator with its default parameters (scikit-learn's), on each backend."""
    backends = ["numpy"] if native_skip_reason() else ["numpy", "native"]
    return [cls(backend=b) for b in backends for cls in (MLPClassifier, MLPRegressor)]


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


@pytest.fixture(scope="module")
def cancer():
    """scikit-learn's breast cancer set, standardised as its user guide advises."""
    from sklearn.datasets import load_breast_cancer
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def assert_same_model(ours, theirs, rtol=1e-9, atol=1e-12):
    for name in ("coefs_", "intercepts_"):
        for a, b in zip(getattr(ours, name), getattr(theirs, name)):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=name)
    for name in ("n_iter_", "t_", "classes_", "out_activation_", "n_outputs_"):
        if hasattr(theirs, name):
            np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name), err_msg=name)
    for name in ("loss_curve_", "validation_scores_"):
        if getattr(theirs, name, None) is not None:
            np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=1e-9,
                                       err_msg=name)
    if hasattr(theirs, "loss_"):
        assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)


# Each solver and its options, as scikit-learn runs them: fastmlp's estimator, with the same
# random_state, draws the same initial weights and the same shuffles and makes the same
# updates, so it ends with scikit-learn's weights (to rounding) on either backend.
SAME_AS_SKLEARN = {
    "adam": dict(),
    "adam-batch64-alpha": dict(batch_size=64, alpha=0.05),
    "adam-early-stopping": dict(early_stopping=True, validation_fraction=0.2, max_iter=60),
    "sgd-nesterov": dict(solver="sgd", learning_rate_init=0.01),
    "sgd-momentum-invscaling": dict(solver="sgd", nesterovs_momentum=False,
                                    learning_rate="invscaling", learning_rate_init=0.2),
    "sgd-adaptive": dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.5,
                         n_iter_no_change=2, tol=1e-2),
    "sgd-no-momentum-no-shuffle": dict(solver="sgd", momentum=0.0, shuffle=False,
                                       batch_size=50),
    "lbfgs": dict(solver="lbfgs", max_iter=30),
    "logistic-tanh": dict(activation="logistic", max_iter=30),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", SAME_AS_SKLEARN)
def test_classifier_is_scikit_learns(cancer, case, backend):
    from sklearn.neural_network import MLPClassifier as Theirs
    X, y = cancer
    params = {"hidden_layer_sizes": (20,), "max_iter": 40, "random_state": 3,
              **SAME_AS_SKLEARN[case]}
    sample_weight = np.random.default_rng(0).integers(0, 3, len(y)).astype(float)
    theirs = Theirs(**params).fit(X, y, sample_weight=sample_weight)
    ours = MLPClassifier(backend=backend, **params).fit(X, y, sample_weight=sample_weight)
    assert_same_model(ours, theirs)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss, solver", [("squared_error", "adam"), ("squared_error", "lbfgs"),
                                          ("poisson", "adam"), ("poisson", "lbfgs")])
def test_regressor_is_scikit_learns(loss, solver, backend):
    from sklearn.datasets import load_diabetes
    from sklearn.neural_network import MLPRegressor as Theirs
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    y = y / 100 if loss == "poisson" else (y - y.mean()) / y.std()
    params = dict(loss=loss, solver=solver, hidden_layer_sizes=(16,), max_iter=30,
                  learning_rate_init=0.01, random_state=1)
    theirs = Theirs(**params).fit(X, y)
    ours = MLPRegressor(backend=backend, **params).fit(X, y)
    # 30 L-BFGS iterations amplify the products' rounding (which differs from scikit-learn's
    # BLAS) to ~5e-12 on the smallest weights (~4e-4): an absolute tolerance of 1e-10
    assert_same_model(ours, theirs, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_fit_and_warm_start_are_scikit_learns(cancer, backend):
    from sklearn.neural_network import MLPClassifier as Theirs
    X, y = cancer
    params = dict(hidden_layer_sizes=(8,), random_state=0)
    theirs, ours = Theirs(**params), MLPClassifier(backend=backend, **params)
    for lo in range(0, len(y), 100):
        theirs.partial_fit(X[lo:lo + 100], y[lo:lo + 100], classes=[0, 1])
        ours.partial_fit(X[lo:lo + 100], y[lo:lo + 100], classes=[0, 1])
    assert_same_model(ours, theirs)
    for model in (theirs, ours):
        model.set_params(warm_start=True, max_iter=5).fit(X, y)
    assert_same_model(ours, theirs)
    assert ours.n_iter_ == 5 and len(ours.loss_curve_) == len(y[::100]) + 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_X_fits_as_dense_X(cancer, backend):
    import scipy.sparse as sp
    X, y = cancer
    X = np.where(np.abs(X) < 0.8, 0.0, X)
    for solver in ("adam", "lbfgs"):
        params = dict(hidden_layer_sizes=(8,), solver=solver, max_iter=10, random_state=0,
                      backend=backend)
        dense = MLPClassifier(**params).fit(X, y)
        for sparse in (sp.csr_matrix(X), sp.csc_matrix(X)):
            model = MLPClassifier(**params).fit(sparse, y)
            assert_same_model(model, dense, rtol=1e-12)
            np.testing.assert_allclose(model.predict_proba(sparse), dense.predict_proba(X),
                                       rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_weight_weighs_the_samples(cancer, backend):
    X, y = cancer
    params = dict(hidden_layer_sizes=(8,), max_iter=10, random_state=0, backend=backend)
    weights = {0: 3.0, 1: 0.5}
    by_class = MLPClassifier(class_weight=weights, **params).fit(X, y)
    by_sample = MLPClassifier(**params).fit(X, y, sample_weight=np.where(y == 0, 3.0, 0.5))
    assert_same_model(by_class, by_sample, rtol=1e-12)
    balanced = MLPClassifier(class_weight="balanced", **params).fit(X, y)
    n0, n1 = np.bincount(y)
    expected = np.where(y == 0, len(y) / (2 * n0), len(y) / (2 * n1))
    assert_same_model(balanced, MLPClassifier(**params).fit(X, y, sample_weight=expected),
                      rtol=1e-12)
    with pytest.raises(ValueError, match="balanced"):
        MLPClassifier(class_weight="balanced", **params).partial_fit(X, y, classes=[0, 1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_classifier_learns_digits(digits, backend):
    X, y, Xt, yt = digits
    clf = MLPClassifier((30,), random_state=0, backend=backend).fit(X, y)
    assert clf.score(Xt, yt) > 0.9
    assert clf.classes_.tolist() == list(range(10))
    assert clf.n_features_in_ == 64 and clf.n_iter_ == len(clf.loss_curve_) <= 200
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    proba = clf.predict_proba(Xt)
    assert proba.shape == (300, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(clf.predict(Xt), clf.classes_[proba.argmax(axis=1)])
    assert [c.shape for c in clf.coefs_] == [(64, 30), (30, 10)]  # scikit-learn's layout
    assert clf.out_activation_ == "softmax" and clf.n_layers_ == 3
    assert clf.net_.dtype == "float32"   # X is float32: computed in float32, as scikit-learn


def test_early_stopping_records_the_validation_curves(digits):
    X, y, _, _ = digits
    clf = MLPClassifier((32,), early_stopping=True, n_iter_no_change=3, learning_rate_init=0.01,
                        random_state=0, backend="numpy").fit(X, y)
    assert clf.n_iter_ < 200 and len(clf.validation_scores_) == clf.n_iter_
    assert len(clf.validation_loss_curve_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None


def test_string_labels_binary_and_our_activations():
    X, y = make_moons(200, noise=0.1, seed=0)
    labels = np.array(["no", "yes"])[y]
    clf = MLPClassifier((16, 16), activation=["tanh", ("leaky_relu", 0.2)], max_iter=300,
                        learning_rate_init=0.01, random_state=0, backend="numpy").fit(X, labels)
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
    clf = MLPClassifier((16,), max_iter=300, learning_rate_init=0.01, random_state=0,
                        backend="numpy").fit(X, Y)
    assert clf.out_activation_ == "logistic" and clf.net_.output == "sigmoid"
    assert clf.predict(X).shape == (300, 3)
    assert clf.predict_proba(X).shape == (300, 3)
    assert clf.score(X, Y) > 0.85  # subset accuracy: all three labels right


def test_regressor_multi_output():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (300, 2))
    Y = np.column_stack([np.sin(2 * X[:, 0]), 5 + X[:, 0] * X[:, 1]])
    reg = MLPRegressor(hidden_layer_sizes=(32,), activation="tanh", max_iter=500,
                       learning_rate_init=0.01, random_state=0, backend="numpy").fit(X, Y)
    assert reg.predict(X).shape == (300, 2)
    assert reg.score(X, Y) > 0.8   # scikit-learn's own reaches 0.84 here
    single = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, backend="numpy").fit(X, Y[:, 0])
    assert single.predict(X).shape == (300,)


def test_pipeline_grid_search_and_cross_val(digits):
    X, y, _, _ = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=30, random_state=0,
                                                         backend="numpy"))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(8,), (32,)],
                               "mlpclassifier__solver": ["adam", "lbfgs"]}, cv=3).fit(X, y)
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
    assert clone.t_ == clf.t_ + len(X) and len(clone.loss_curve_) == 4


def test_partial_fit_needs_classes_and_known_ones(digits):
    X, y, _, _ = digits
    clf = MLPClassifier((32,), random_state=0, backend="numpy")
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X[:50], y[:50])
    clf.partial_fit(X[:100], y[:100], classes=np.arange(10))
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        clf.partial_fit(X[:5], np.full(5, 11))
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:5, :10], y[:5])
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(X, y)
    with pytest.raises(AttributeError, match="stochastic"):
        MLPClassifier(solver="lbfgs").partial_fit(X, y, classes=np.arange(10))


def test_warm_start_needs_the_same_classes(digits):
    X, y, _, _ = digits
    a = MLPClassifier((16,), max_iter=3, random_state=7, backend="numpy").fit(X, y)
    b = MLPClassifier((16,), max_iter=3, random_state=7, backend="numpy").fit(X, y)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])
    with pytest.raises(ValueError, match="warm_start"):
        a.set_params(warm_start=True).fit(X[y < 5], y[y < 5])


@pytest.mark.parametrize("params,match", [
    ({"hidden_layer_sizes": (0,)}, "hidden_layer_sizes"),
    ({"alpha": -1}, "'alpha' parameter"),
    ({"batch_size": 0}, "'batch_size' parameter"),
    ({"dtype": "float16"}, "'dtype' parameter"),
    ({"validation_fraction": 1.0}, "'validation_fraction' parameter"),
    ({"activation": "swish"}, "activation"),
    ({"solver": "newton"}, "'solver' parameter"),
    ({"max_iter": float("inf")}, "'max_iter' parameter"),
    ({"tol": None}, "'tol' parameter"),
    ({"learning_rate": "cyclic"}, "'learning_rate' parameter"),
    ({"n_iter_no_change": 2.5}, "'n_iter_no_change' parameter"),
    ({"early_stopping": "yes"}, "'early_stopping' parameter"),
    ({"backend": "gpu"}, "'backend' parameter"),
    ({"momentum": 1.0}, "'momentum' parameter"),
])
def test_bad_parameters_name_themselves(params, match):
    """scikit-learn's own parameter checks (InvalidParameterError, a ValueError and a
    TypeError), and fastmlp's for its extensions."""
    X, y = make_moons(40, seed=0)
    with pytest.raises(ValueError, match=match):
        MLPClassifier(**{"max_iter": 1, "backend": "numpy", **params}).fit(X, y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_divergence_is_an_error_not_nan(backend):
    X, y = make_moons(40, seed=0)
    with pytest.raises(ValueError, match="non-finite parameter weights"):
        MLPRegressor(solver="sgd", learning_rate_init=10.0, max_iter=5,
                     backend=backend).fit(X * 1e3, y * 1e6)


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
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the README's example runs without warnings
        exec(compile(example.split("```", 1)[0], "README.md", "exec"), {})
    assert float(capsys.readouterr().out.rsplit("test accuracy ", 1)[1]) > 0.9


@pytest.mark.parametrize("backend", BACKENDS)
def test_scaled_targets_learn_values_past_1e154(backend):
    """Their squares overflow float64: scikit-learn's default (and ours) diverges on them, a
    ValueError; scale_targets=True standardises them and predicts in their units."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2))
    y = (X[:, 0] + 3) * 1e200
    with pytest.raises(ValueError, match="non-finite"):
        MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, backend=backend).fit(X, y)
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=300, learning_rate_init=0.01,
                       backend=backend, random_state=0, scale_targets=True).fit(X, y)
    pred = reg.predict(X)
    assert np.all(np.isfinite(pred))
    # R² on the targets in units of 1e200 (scikit-learn's r2_score squares them itself)
    residual, total = ((pred - y) / 1e200) ** 2, ((y - y.mean()) / 1e200) ** 2
    assert 1 - residual.sum() / total.sum() > 0.5
    with pytest.raises(ValueError, match="scale_targets"):
        MLPRegressor(loss="poisson", scale_targets=True, backend=backend).fit(X, np.abs(y))


@pytest.mark.parametrize("backend", BACKENDS)
def test_warm_start_with_other_outputs_is_refused(backend):
    X = np.random.default_rng(0).standard_normal((30, 3))
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, warm_start=True,
                       backend=backend).fit(X, X[:, :2])
    with pytest.raises(ValueError, match="y: expected 2 outputs"):
        reg.fit(X, X)
    with pytest.raises(ValueError, match="y: expected 2 outputs"):
        reg.partial_fit(X, X[:, 0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_and_batch_norm_reach_the_network(backend):
    X, y = load_digits()
    clf = MLPClassifier((20, 10), dropout=0.2, batch_norm=True, max_iter=3, batch_size=32,
                        learning_rate_init=0.01, random_state=0, backend=backend).fit(X, y)
    assert clf.net_.dropout == [0.2, 0.2] and clf.net_.batch_norm == [True, True]
    assert clf.get_params()["dropout"] == 0.2 and clf.score(X, y) > 0.5
    # early stopping keeps batch norm's arrays of the best epoch too
    stopped = MLPClassifier((20,), batch_norm=True, early_stopping=True, max_iter=30,
                            n_iter_no_change=2, learning_rate_init=0.05, random_state=0,
                            backend=backend).fit(X, y)
    assert stopped.best_validation_score_ == max(stopped.validation_scores_)
    with pytest.raises(ValueError, match="lbfgs"):
        MLPClassifier((8,), dropout=0.1, solver="lbfgs", backend=backend).fit(X, y)
