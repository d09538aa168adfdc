"""What networks fastmlp builds: activations, outputs and their losses, dtypes, sizes.

The same rules are stated once in C++ for the native trainer (csrc/mlp.h, make_network),
with the same words in its errors.
"""
import numpy as np

from .checks import check_int, check_real, is_int, is_real
from .reference import ACTIVATIONS, DEFAULT_PARAM

HIDDEN_ACTIVATIONS = ACTIVATIONS + ("maxout",)
DEFAULT_MAXOUT_PIECES = 2
# output -> its losses, the natural one first
OUTPUT_LOSSES = {
    "softmax": ("cross_entropy",),
    "sigmoid": ("binary_cross_entropy", "quadratic"),
    "identity": ("quadratic",),
    "exp": ("poisson",),
}
# the element-wise activation linear_forward applies in the output layer; softmax and exp
# are applied outside it (their loss kernels take the logits z; exp predicts e^z, a log
# link for counts)
OUTPUT_ACTIVATION = {"softmax": "identity", "sigmoid": "sigmoid", "identity": "identity",
                     "exp": "identity"}
# outputs that predict values (scored by R²) rather than classes
REGRESSION_OUTPUTS = ("identity", "exp")
DTYPES = ("float32", "float64")
# More parameters than this is a mistake in `sizes` (16 GiB of float32), not a model.
MAX_PARAMS = 2**32


def _is_spec(spec):
    """'relu' or ('leaky_relu', 0.2): one activation, as opposed to a list of them."""
    return isinstance(spec, str) or (
        isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str)
        and is_real(spec[1]))


def parse_activation(spec, name="activation"):
    """An activation spec -> (name, param): param is the leaky slope, the ELU alpha or the
    maxout piece count k, with the defaults filled in (0.0 for the others)."""
    if not _is_spec(spec):
        raise TypeError(f"{name}: expected a name or (name, param), got {spec!r}")
    act, param = (spec, None) if isinstance(spec, str) else spec
    if act not in HIDDEN_ACTIVATIONS:
        raise ValueError(f"{name}: unknown activation {act!r}; expected one of "
                         f"{HIDDEN_ACTIVATIONS}")
    if act == "maxout":
        return act, check_int(DEFAULT_MAXOUT_PIECES if param is None else param,
                              f"{name} (maxout pieces)", minimum=1)
    if act in DEFAULT_PARAM:
        return act, check_real(DEFAULT_PARAM[act] if param is None else param,
                               f"{name} ({act} parameter)")
    if param is not None:
        raise ValueError(f"{name}: {act!r} takes no parameter, got {param!r}")
    return act, 0.0


def activation_spec(name, param):
    """(name, param) -> the shortest spec that parses back to it: 'relu' or ('elu', 0.5)."""
    return (name, param) if name == "maxout" or name in DEFAULT_PARAM else name


def parse_activations(activation, n_hidden):
    """One spec for every hidden layer, or a list with one spec per hidden layer."""
    if _is_spec(activation):
        return [parse_activation(activation)] * n_hidden
    if not isinstance(activation, (list, tuple)):
        raise TypeError(f"activation: expected a name, (name, param) or a list of them, "
                        f"got {activation!r}")
    if len(activation) != n_hidden:
        raise ValueError(f"activation: expected one per hidden layer ({n_hidden}), got "
                         f"{len(activation)}")
    return [parse_activation(spec, f"activation[{i}]") for i, spec in enumerate(activation)]


def check_sizes(sizes):
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__") or len(sizes) < 2 \
            or not all(is_int(s) and s >= 1 for s in sizes):
        raise ValueError(f"sizes: expected a list of at least two layer widths >= 1 "
                         f"(inputs, hidden..., outputs), got {sizes!r}")
    return [int(s) for s in sizes]


def check_output(output, loss, n_outputs):
    """(output, loss) with loss=None replaced by the output's natural loss."""
    if output not in OUTPUT_LOSSES:
        raise ValueError(f"output: expected one of {tuple(OUTPUT_LOSSES)}, got {output!r}")
    if loss is None:
        loss = OUTPUT_LOSSES[output][0]
    elif loss not in OUTPUT_LOSSES[output]:
        raise ValueError(f"loss: {loss!r} is not supported with output={output!r}; "
                         f"expected one of {OUTPUT_LOSSES[output]}")
    if output == "softmax" and n_outputs < 2:
        raise ValueError(f"sizes: a softmax output needs at least 2 units, got {n_outputs}; "
                         f"use output='sigmoid' for one binary output")
    return output, loss


def check_dtype(dtype):
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
    return name


def weight_shapes(sizes, activations):
    """(rows, fan_in) of each W(l); a maxout layer has k rows per unit."""
    pieces = [k if act == "maxout" else 1 for act, k in activations] + [1]
    return [(s * k, fan_in) for s, k, fan_in in zip(sizes[1:], pieces, sizes[:-1])]


def check_n_params(sizes, activations):
    n_params = sum(rows * fan_in + rows for rows, fan_in in weight_shapes(sizes, activations))
    if n_params > MAX_PARAMS:
        raise ValueError(f"sizes: {sizes} need {n_params} parameters; expected at most "
                         f"{MAX_PARAMS}")


def per_hidden_layer(value, n_hidden, name, what, check):
    """One value for every hidden layer, or a list with one per hidden layer -> a list of
    check(value, its name) per hidden layer."""
    if isinstance(value, (list, tuple)):
        if len(value) != n_hidden:
            raise ValueError(f"{name}: expected one {what} per hidden layer ({n_hidden}), "
                             f"got {len(value)}")
        return [check(v, f"{name}[{i}]") for i, v in enumerate(value)]
    return [check(value, name)] * n_hidden


def _check_rate(p, name):
    if not is_real(p):
        raise TypeError(f"{name}: expected a rate in [0, 1), got {p!r}")
    if not 0 <= p < 1:   # NaN fails too
        raise ValueError(f"{name}: expected a rate in [0, 1) (the fraction of units dropped), "
                         f"got {p!r}")
    return float(p)


def parse_dropout(dropout, n_hidden):
    """One dropout rate for every hidden layer, or a list with one per hidden layer -> a
    list of floats in [0, 1)."""
    return per_hidden_layer(dropout, n_hidden, "dropout", "rate", _check_rate)


# batch normalization's constants: torch.nn.BatchNorm1d's defaults
BATCH_NORM_MOMENTUM = 0.1
BATCH_NORM_EPS = 1e-5


def _check_flag(flag, name):
    if not isinstance(flag, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {flag!r}")
    return bool(flag)


def parse_batch_norm(batch_norm, n_hidden):
    """True/False for every hidden layer, or a list with one per hidden layer -> a list of
    bools."""
    return per_hidden_layer(batch_norm, n_hidden, "batch_norm", "flag", _check_flag)
