"""ONNX export (run in onnxruntime) and the PyTorch round trip, on every activation and
output, against forward() / predict()."""
import importlib
import sys
import warnings

import numpy as np
import pytest

from fastmlp import MLP
from fastmlp.specs import OUTPUT_LOSSES

ACTIVATIONS = ["sigmoid", "tanh", "relu", ("leaky_relu", 0.2), ("elu", 0.7), ("maxout", 3),
               "identity"]
OUTPUTS = list(OUTPUT_LOSSES)   # every output fastmlp has
TOLERANCE = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-14)}


def net_and_X(activation, output, dtype):
    # two hidden layers, the second of a different kind, so each layer's mapping counts
    net = MLP([5, 8, 6, 3], activation=[activation, "tanh"], output=output, dtype=dtype,
              seed=1)
    for b in net.biases:   # nonzero biases: each must land in its own layer
        b[:] = np.random.default_rng(len(b)).standard_normal(len(b))
    X = 2 * np.random.default_rng(0).standard_normal((13, 5)).astype(dtype)
    return net, X


def act_id(a):
    return a if isinstance(a, str) else f"{a[0]}-{a[1]}"


# ---------------------------------------------------------------- ONNX

def run_onnx(model, X, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from fastmlp import onnx as fonnx
    path = tmp_path / "model.onnx"
    fonnx.export(model, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (Y,) = session.run(None, {"X": X})
    assert Y.dtype == X.dtype
    return Y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=act_id)
def test_onnx_export_computes_forward(activation, output, dtype, tmp_path):
    pytest.importorskip("onnx")
    net, X = net_and_X(activation, output, dtype)
    np.testing.assert_allclose(run_onnx(net, X, tmp_path), net.forward(X), **TOLERANCE[dtype])


def fitted(estimator, y, **params):
    """fastmlp.sklearn's `estimator` fitted for a few epochs on 60 rows of 4 features ->
    (it, the rows); skips without onnx or scikit-learn."""
    pytest.importorskip("onnx")
    pytest.importorskip("sklearn")
    from sklearn.exceptions import ConvergenceWarning

    import fastmlp.sklearn
    X = np.random.default_rng(0).standard_normal((60, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)   # 5 epochs: on purpose
        model = getattr(fastmlp.sklearn, estimator)(hidden_layer_sizes=(7,), max_iter=5,
                                                     random_state=0, **params)
        return model.fit(X, y(X)), X


@pytest.mark.parametrize("labels", ["binary", "multiclass", "multilabel"])
def test_onnx_export_of_a_classifier_gives_predict_proba(labels, tmp_path):
    y = {"binary": lambda X: np.where(X[:, 0] > 0, "yes", "no"),
         "multiclass": lambda X: np.array(["a", "b", "c"])[np.argmax(X[:, :3], axis=1)],
         "multilabel": lambda X: (X[:, :3] > 0).astype(int)}[labels]
    clf, X = fitted("MLPClassifier", y, activation="relu", dtype="float32")
    X32 = X.astype(np.float32)
    np.testing.assert_allclose(run_onnx(clf, X32, tmp_path), clf.predict_proba(X32),
                               **TOLERANCE["float32"])


@pytest.mark.parametrize("n_outputs", [1, 2])
def test_onnx_export_of_a_regressor_gives_predict_in_the_targets_units(n_outputs, tmp_path):
    mix = np.random.default_rng(1).standard_normal((n_outputs, n_outputs))

    def targets(X):   # far from mean 0, scale 1: the export must undo the scaling
        Y = 1000 + 50 * X[:, :n_outputs] @ mix
        return Y[:, 0] if n_outputs == 1 else Y
    reg, X = fitted("MLPRegressor", targets, activation="elu", dtype="float64")
    Y = run_onnx(reg, X, tmp_path)
    np.testing.assert_allclose(Y[:, 0] if n_outputs == 1 else Y, reg.predict(X),
                               **TOLERANCE["float64"])


def test_onnx_export_refuses_what_it_cannot_export(tmp_path):
    pytest.importorskip("onnx")
    from fastmlp import onnx as fonnx
    with pytest.raises(TypeError, match=r"^model: expected a fastmlp.MLP or a fitted "
                                        r"fastmlp.sklearn estimator, got str"):
        fonnx.export("net", str(tmp_path / "m.onnx"))


def test_onnx_export_without_onnx_names_the_extra(monkeypatch, tmp_path):
    from fastmlp import onnx as fonnx
    monkeypatch.setitem(sys.modules, "onnx", None)   # as if not installed
    with pytest.raises(ImportError, match=r"^fastmlp.onnx needs the onnx package: "
                                          r"pip install 'fastmlp\[onnx\]'$"):
        fonnx.export(MLP([2, 2]), str(tmp_path / "m.onnx"))


# ---------------------------------------------------------------- PyTorch

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=act_id)
def test_to_torch_computes_forward_and_from_torch_reads_it_back(activation, output, dtype):
    torch = pytest.importorskip("torch")
    net, X = net_and_X(activation, output, dtype)
    seq = net.to_torch()
    with torch.no_grad():
        Y = seq(torch.from_numpy(X)).numpy()
    assert Y.dtype == X.dtype
    np.testing.assert_allclose(Y, net.forward(X), **TOLERANCE[dtype])
    back = MLP.from_torch(seq, backend="numpy")
    assert (back.sizes, back.activations, back.output, back.dtype, back.backend) == \
        (net.sizes, net.activations, net.output, net.dtype, "numpy")
    for a, b in zip(net.weights + net.biases, back.weights + back.biases):
        np.testing.assert_array_equal(a, b)


def test_from_torch_reads_a_network_built_in_torch():
    torch = pytest.importorskip("torch")
    from torch import nn
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(4, 6), nn.LeakyReLU(0.3), nn.Linear(6, 5, bias=False),
                        nn.ELU(), nn.Linear(5, 2), nn.Identity()).double()
    net = MLP.from_torch(seq)
    assert net.sizes == [4, 6, 5, 2] and net.output == "identity" and net.dtype == "float64"
    assert net.activations == [("leaky_relu", 0.3), ("elu", 1.0)]
    X = np.random.default_rng(0).standard_normal((9, 4))
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(X), seq(torch.from_numpy(X)).numpy(),
                                   **TOLERANCE["float64"])


def torch_cases():
    from torch import nn

    from fastmlp.torch_io import Maxout
    return [
        ("not_sequential", nn.Linear(2, 2), TypeError, r"^seq: expected a torch.nn.Sequential, got Linear"),
        ("empty", nn.Sequential(), ValueError, r"^seq: expected an nn.Sequential that starts with an nn.Linear, got \[\]"),
        ("starts_with_relu", nn.Sequential(nn.ReLU(), nn.Linear(2, 2)), ValueError, r"^seq: expected an nn.Sequential that starts with an nn.Linear"),
        ("unsupported_module", nn.Sequential(nn.Linear(2, 3), nn.GELU(), nn.Linear(3, 2)), ValueError, r"^seq\[1\]: GELU does not map to a fastmlp activation; expected nn.Sigmoid"),
        ("two_activations", nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Tanh(), nn.Linear(3, 2)), ValueError, r"^seq\[2\]: expected an nn.Linear after the activation seq\[1\], got Tanh"),
        ("shapes", nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(4, 2)), ValueError, r"^seq\[2\]: nn.Linear takes 4 features, but the layer before gives 3"),
        ("maxout_shapes", nn.Sequential(nn.Linear(2, 6), Maxout(3), nn.Linear(6, 2)), ValueError, r"^seq\[2\]: nn.Linear takes 6 features, but the layer before gives 2"),
        ("maxout_multiple", nn.Sequential(nn.Linear(2, 5), Maxout(3), nn.Linear(1, 2)), ValueError, r"^seq\[1\]: Maxout\(3\) needs a multiple of 3 features, got 5"),
        ("no_linear_at_the_end", nn.Sequential(nn.Linear(2, 3), nn.ReLU()), ValueError, r"^seq\[1:\]: ReLU does not map to a fastmlp output; expected nn.Softmax\(dim=1\), nn.Sigmoid, fastmlp.torch_io.Exp or nothing"),
        ("two_outputs", nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Softmax(dim=1)), ValueError, r"^seq\[1:\]: expected at most one output module after the last nn.Linear"),
        ("softmax_dim", nn.Sequential(nn.Linear(2, 3), nn.Softmax(dim=0)), ValueError, r"^seq\[1:\]: Softmax\(dim=0\) does not map to a fastmlp output"),
        ("float16", nn.Sequential(nn.Linear(2, 3)).half(), ValueError, r"^seq: expected every nn.Linear in one of \('float32', 'float64'\), got \['float16'\]"),
        ("mixed_dtypes", nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 2).double()), ValueError, r"^seq: expected every nn.Linear in one of .*, got \['float32', 'float64'\]"),
    ]


@pytest.mark.parametrize("case", range(13))
def test_from_torch_says_what_does_not_map(case):
    pytest.importorskip("torch")
    cases = torch_cases()
    assert len(cases) == 13
    _, seq, error, match = cases[case]
    with pytest.raises(error, match=match):
        MLP.from_torch(seq)


def test_torch_interop_without_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)   # as if not installed
    monkeypatch.delitem(sys.modules, "fastmlp.torch_io", raising=False)
    with pytest.raises(ImportError, match=r"^fastmlp's PyTorch interop needs torch: "
                                          r"pip install 'fastmlp\[torch\]'$"):
        MLP([2, 2]).to_torch()
    with pytest.raises(ImportError, match=r"pip install 'fastmlp\[torch\]'"):
        importlib.import_module("fastmlp.torch_io")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exports_carry_batch_norm_and_leave_out_dropout(dtype, tmp_path):
    """A trained net with batch norm (running statistics away from 0 and 1) and dropout:
    ONNX and torch compute predict's forward (batch norm from the running statistics, no
    dropout)."""
    torch = pytest.importorskip("torch")
    net = MLP([5, 8, 6, 3], activation=["relu", ("maxout", 2)], batch_norm=True,
              dropout=[0.3, 0.0], dtype=dtype, seed=1)
    X = 2 * np.random.default_rng(0).standard_normal((40, 5)).astype(dtype) + 1
    net.fit(X, np.arange(40) % 3, epochs=3, batch_size=8, lr=0.1)
    assert not np.allclose(net.running_means[0], 0)
    expected = net.forward(X)
    with torch.no_grad():
        np.testing.assert_allclose(net.to_torch()(torch.from_numpy(X)).numpy(), expected,
                                   **TOLERANCE[dtype])
    if importlib.util.find_spec("onnxruntime"):
        np.testing.assert_allclose(run_onnx(net, X, tmp_path), expected, **TOLERANCE[dtype])
