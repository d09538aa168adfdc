"""Export to ONNX (optional extra ``onnx``: ``pip install 'fastmlp[onnx]'``).

    fastmlp.onnx.export(net, "model.onnx")      # an MLP: its forward()
    fastmlp.onnx.export(clf, "clf.onnx")        # fastmlp.sklearn.MLPClassifier: predict_proba
    fastmlp.onnx.export(reg, "reg.onnx")        # fastmlp.sklearn.MLPRegressor: predict

The graph takes "X" (n, sizes[0]) in the net's dtype and gives "Y": for an MLP the output
activations a(L) (forward(): softmax/sigmoid probabilities, or identity values); for a
classifier its predict_proba (one column per class, in the order of classes_); for a
regressor its predict, in the targets' units (n, n_outputs). Each layer is a Gemm with
W(l) as stored (transB=1), then its activation: Sigmoid, Tanh, Relu, LeakyRelu(alpha =
the slope), Elu(alpha), nothing for identity, and maxout as Reshape (n, units, k) +
ReduceMax over the k pieces (unit j's pieces are rows j·k … j·k+k−1 of W); a
batch-normalised layer normalises its Gemm's output by its running statistics first, and
dropout (training only) is left out, as predict leaves it.
"""
import numpy as np

from .specs import BATCH_NORM_EPS

OPSET = 17   # ReduceMax takes its axes as an attribute up to opset 17
ELEMENTWISE = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu",
               "leaky_relu": "LeakyRelu", "elu": "Elu"}


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("fastmlp.onnx needs the onnx package: pip install 'fastmlp[onnx]'") \
            from exc
    return onnx


def _parts(model):
    """(the MLP, what follows its forward(): None, "binary" (p -> [1 - p, p]) or the
    regressor's (scale, mean))."""
    from .model import MLP
    if isinstance(model, MLP):
        return model, None
    net = getattr(model, "net_", None)
    if not isinstance(net, MLP):
        raise TypeError(f"model: expected a fastmlp.MLP or a fitted fastmlp.sklearn estimator, "
                        f"got {type(model).__name__}")
    if hasattr(model, "classes_"):   # predict_proba: one column for two classes is p(1)
        return net, "binary" if net.sizes[-1] == 1 and len(model.classes_) == 2 else None
    scale, mean = getattr(model, "_y_scale", None), getattr(model, "_y_mean", None)
    if scale is None or mean is None:
        raise TypeError(f"model: a {type(model).__name__} without its target scaling "
                        f"(_y_scale, _y_mean) cannot be exported")
    return net, (scale, mean)


class _Graph:
    """Nodes and initializers, each output named after its step."""

    def __init__(self, onnx, dtype):
        self.onnx, self.dtype, self.nodes, self.inits, self.last = onnx, dtype, [], [], "X"

    def const(self, name, value, dtype=None):
        self.inits.append(self.onnx.numpy_helper.from_array(
            np.asarray(value, dtype=dtype or self.dtype), name))
        return name

    def add(self, op, name, *inputs, first=None, **attrs):
        """`op` on the last output (or `first`) and `inputs`; its output is the last."""
        self.nodes.append(self.onnx.helper.make_node(
            op, [self.last if first is None else first, *inputs], [name], name=name, **attrs))
        self.last = name


def _piecewise(g, act, param, l):
    """Leaky ReLU or ELU in float64 from elementary ops, Where(z > 0, z, negative part):
    ONNX's LeakyRelu and Elu take alpha as a 32-bit float (0.2 would become
    0.20000000298...), and onnxruntime has no float64 Elu."""
    z = g.last
    zero, alpha = g.const(f"zero{l}", 0.0), g.const(f"alpha{l}", param)
    if act == "leaky_relu":
        g.add("Mul", f"negative{l}", alpha, first=z)
    else:   # alpha (e^min(z, 0) - 1)
        g.add("Min", f"nonpositive{l}", zero, first=z)
        g.add("Exp", f"exp{l}")
        g.add("Sub", f"expm1{l}", g.const(f"one{l}", 1.0))
        g.add("Mul", f"negative{l}", alpha)
    negative = g.last
    g.add("Greater", f"positive{l}", zero, first=z)
    g.add("Where", f"a{l}", z, negative)


def _batch_norm(g, net, j, l):
    """Batch norm j (of layer l) as evaluation has it, (z − μ) / √(σ² + ε) · γ + β, from
    elementary ops in the order of equations.batch_norm_eval (so float64 stays float64)."""
    t = np.dtype(net.dtype).type
    std = np.sqrt(net.running_vars[j] + t(BATCH_NORM_EPS))
    g.add("Sub", f"centred{l}", g.const(f"running_mean{l}", net.running_means[j]))
    g.add("Div", f"normalised{l}", g.const(f"running_std{l}", std))
    g.add("Mul", f"scaled{l}", g.const(f"gamma{l}", net.gammas[j]))
    g.add("Add", f"shifted{l}", g.const(f"beta{l}", net.betas[j]))


def build(model):
    """The ONNX ModelProto of `model` (see the module docstring), checked."""
    onnx = _onnx()
    net, after = _parts(model)
    g = _Graph(onnx, net.dtype)
    n_layers = len(net.weights)
    normalised = iter(range(len(net.gammas)))
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        g.add("Gemm", f"z{l}", g.const(f"W{l}", w), g.const(f"b{l}", b), transB=1)
        if l < n_layers - 1 and net.batch_norm[l]:   # with the running statistics
            _batch_norm(g, net, next(normalised), l)
        act, param = net.activations[l] if l < n_layers - 1 else (net.output, 0.0)
        if act == "maxout":
            shape = g.const(f"pieces_shape{l}", [0, w.shape[0] // param, param], np.int64)
            g.add("Reshape", f"pieces{l}", shape)
            g.add("ReduceMax", f"a{l}", axes=[2], keepdims=0)
        elif act == "softmax":
            g.add("Softmax", f"a{l}", axis=1)
        elif act == "exp":   # Poisson regression's prediction e^z
            g.add("Exp", f"a{l}")
        elif act in ("leaky_relu", "elu") and net.dtype == "float64":
            _piecewise(g, act, param, l)
        elif act in ("leaky_relu", "elu"):
            g.add(ELEMENTWISE[act], f"a{l}", alpha=float(param))
        elif act in ELEMENTWISE:
            g.add(ELEMENTWISE[act], f"a{l}")
    if after == "binary":   # [1 - p, p]
        p = g.last
        g.add("Sub", "not_p", p, first=g.const("one", 1.0))
        g.add("Concat", "proba", p, axis=1)
    elif after is not None:
        scale, mean = after
        g.add("Mul", "scaled", g.const("y_scale", scale))
        g.add("Add", "unscaled", g.const("y_mean", mean))
    g.add("Identity", "Y")
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(net.dtype))
    n_out = 2 if after == "binary" else net.sizes[-1]
    graph = onnx.helper.make_graph(
        g.nodes, "fastmlp", [onnx.helper.make_tensor_value_info("X", elem, ["n", net.sizes[0]])],
        [onnx.helper.make_tensor_value_info("Y", elem, ["n", n_out])], g.inits)
    proto = onnx.helper.make_model(graph, producer_name="fastmlp",
                                   opset_imports=[onnx.helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model, path):
    """Write `model` (a fastmlp.MLP, or a fitted fastmlp.sklearn MLPClassifier or
    MLPRegressor) to `path` as an ONNX model; see the module docstring for what it
    computes. Returns the ModelProto."""
    proto = build(model)
    _onnx().save(proto, path)
    return proto
