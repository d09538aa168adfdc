"""To and from PyTorch (optional extra ``torch``: ``pip install 'fastmlp[torch]'``):
MLP.to_torch() and MLP.from_torch(seq) call these.

The nn.Sequential is, per layer, nn.Linear(s_l, rows) holding W(l) and b(l) (torch's
Linear stores its weight as (out, in), as fastmlp does), then the activation: nn.Sigmoid,
nn.Tanh, nn.ReLU, nn.LeakyReLU(slope), nn.ELU(alpha), nothing for identity, Maxout(k)
(below) for maxout; the output layer ends in nn.Softmax(dim=1), nn.Sigmoid or nothing.
So seq(X) is net.forward(X), in the net's dtype. A Linear without a bias reads back as
zero biases.
"""
try:
    import torch
    from torch import nn
except ImportError as exc:
    raise ImportError("fastmlp's PyTorch interop needs torch: pip install 'fastmlp[torch]'") \
        from exc

import numpy as np

from .specs import BATCH_NORM_EPS, BATCH_NORM_MOMENTUM, DTYPES


class Maxout(nn.Module):
    """Maxout over groups of k consecutive features: (n, m·k) -> (n, m), as fastmlp's
    maxout layer (unit j's pieces are features j·k … j·k+k−1)."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, z):
        return z.unflatten(-1, (-1, self.k)).amax(dim=-1)

    def extra_repr(self):
        return f"k={self.k}"


class Exp(nn.Module):
    """e^z: fastmlp's exp output (Poisson regression), which torch has no module for."""

    def forward(self, z):
        return torch.exp(z)


def _activation_module(act, param):
    """The nn.Module of a fastmlp activation, or None for identity."""
    return {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU,
            "leaky_relu": lambda: nn.LeakyReLU(param), "elu": lambda: nn.ELU(param),
            "maxout": lambda: Maxout(int(param)), "softmax": lambda: nn.Softmax(dim=1),
            "exp": Exp, "identity": lambda: None}[act]()


def to_torch(net):
    """net as an nn.Sequential with copies of its weights, in its dtype, in eval mode (as
    predict computes: batch norm with the running statistics, no dropout; .train() for
    training). A batch-normalised layer gets an nn.BatchNorm1d with γ, β and the running
    statistics after its nn.Linear; a layer with dropout an nn.Dropout after its activation."""
    dtype = getattr(torch, net.dtype)
    modules = []
    normalised = iter(range(len(net.gammas)))
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        modules.append(_filled(nn.Linear(w.shape[1], w.shape[0], dtype=dtype),
                               weight=w, bias=b))
        hidden = l < len(net.weights) - 1
        if hidden and net.batch_norm[l]:
            j = next(normalised)
            modules.append(_filled(
                nn.BatchNorm1d(w.shape[0], eps=BATCH_NORM_EPS, momentum=BATCH_NORM_MOMENTUM,
                               dtype=dtype),
                weight=net.gammas[j], bias=net.betas[j], running_mean=net.running_means[j],
                running_var=net.running_vars[j]))
        act, param = net.activations[l] if hidden else (net.output, 0.0)
        module = _activation_module(act, param)
        if module is not None:
            modules.append(module)
        if hidden and net.dropout[l]:
            modules.append(nn.Dropout(net.dropout[l]))
    return nn.Sequential(*modules).eval()


def _filled(module, **arrays):
    """module with copies of the named arrays in its parameters and buffers."""
    with torch.no_grad():
        for name, array in arrays.items():
            getattr(module, name).copy_(torch.from_numpy(np.ascontiguousarray(array)))
    return module


def _hidden_activation(module, where):
    """(name, param) of a module that follows a hidden Linear."""
    simple = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.ReLU: "relu", nn.Identity: "identity"}
    if type(module) in simple:
        return simple[type(module)], None
    if type(module) is nn.LeakyReLU:
        return "leaky_relu", float(module.negative_slope)
    if type(module) is nn.ELU:
        return "elu", float(module.alpha)
    if type(module) is Maxout:
        return "maxout", module.k
    raise ValueError(f"{where}: {type(module).__name__} does not map to a fastmlp activation; "
                     f"expected nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Identity "
                     f"or fastmlp.torch_io.Maxout")


def _output(modules, where):
    """The output of the modules after the last Linear: 'softmax', 'sigmoid', 'exp' or
    'identity'."""
    if not modules:
        return "identity"
    module, *rest = modules
    if rest:
        raise ValueError(f"{where}: expected at most one output module after the last "
                         f"nn.Linear, got {[type(m).__name__ for m in modules]}")
    if type(module) is nn.Softmax and module.dim in (1, -1):
        return "softmax"
    if type(module) is nn.Sigmoid:
        return "sigmoid"
    if type(module) is Exp:
        return "exp"
    if type(module) is nn.Identity:
        return "identity"
    raise ValueError(f"{where}: {type(module).__name__}"
                     f"{f'(dim={module.dim})' if type(module) is nn.Softmax else ''} does not "
                     f"map to a fastmlp output; expected nn.Softmax(dim=1), nn.Sigmoid, "
                     f"fastmlp.torch_io.Exp or nothing (identity)")


def read_sequential(seq):
    """What MLP.from_torch builds from `seq` (an nn.Sequential of nn.Linear, each followed
    by at most one supported activation; see the module docstring): (MLP's sizes,
    activation, output and dtype as keyword arguments, the weights, the biases)."""
    if not isinstance(seq, nn.Sequential):
        raise TypeError(f"seq: expected a torch.nn.Sequential, got {type(seq).__name__}")
    modules = list(seq)
    linear_at = [i for i, m in enumerate(modules) if type(m) is nn.Linear]
    if not linear_at or linear_at[0] != 0:
        raise ValueError(f"seq: expected an nn.Sequential that starts with an nn.Linear, got "
                         f"{[type(m).__name__ for m in modules]}")
    sizes, activations, weights, biases = [modules[0].in_features], [], [], []
    dtypes = {modules[i].weight.dtype for i in linear_at}
    names = {str(d).removeprefix("torch.") for d in dtypes}
    if len(names) != 1 or not names <= set(DTYPES):
        raise ValueError(f"seq: expected every nn.Linear in one of {DTYPES}, got "
                         f"{sorted(names)}")
    for n, i in enumerate(linear_at):
        linear = modules[i]
        end = linear_at[n + 1] if n + 1 < len(linear_at) else len(modules)
        rows = linear.out_features
        if linear.in_features != sizes[-1]:
            raise ValueError(f"seq[{i}]: nn.Linear takes {linear.in_features} features, but "
                             f"the layer before gives {sizes[-1]}")
        w = linear.weight.detach().cpu().numpy().copy()
        b = (linear.bias.detach().cpu().numpy().copy() if linear.bias is not None
             else np.zeros(rows, dtype=w.dtype))
        weights.append(w)
        biases.append(b)
        if end == len(modules):
            output = _output(modules[i + 1:], f"seq[{i + 1}:]")
            sizes.append(rows)
            break
        if end - i > 2:
            raise ValueError(f"seq[{i + 2}]: expected an nn.Linear after the activation "
                             f"seq[{i + 1}], got {type(modules[i + 2]).__name__}")
        act, param = (_hidden_activation(modules[i + 1], f"seq[{i + 1}]") if end - i == 2
                      else ("identity", None))
        if act == "maxout" and rows % param:
            raise ValueError(f"seq[{i + 1}]: Maxout({param}) needs a multiple of {param} "
                             f"features, got {rows} from seq[{i}]")
        activations.append(act if param is None else (act, param))
        sizes.append(rows // param if act == "maxout" else rows)
    config = dict(sizes=sizes, activation=activations, output=output, dtype=names.pop())
    return config, weights, biases
