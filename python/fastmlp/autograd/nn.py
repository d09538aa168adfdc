"""Layers built from Tensors, and optimizers, so an MLP or a small CNN can be assembled by
hand.

    net = nn.Sequential(nn.Linear(2, 16, rng=0), nn.Tanh(), nn.Linear(16, 3, rng=1))
    opt = nn.SGD(net.parameters(), lr=0.5, weight_decay=1e-4)   # or nn.Adam(...), nn.AdamW
    loss = autograd.softmax_cross_entropy(net(Tensor(X)), y)
    opt.zero_grad(); loss.backward(); opt.step()

Weights follow the design's layout: Linear.weight is W(l) shaped (s_(l+1), s_l), so a
layer computes Z = X Wᵀ + b; Conv2d.weight is F shaped (c_out, c_in, kh, kw).
"""
import numpy as np

from .. import optim
from ..backend import get_backend
from . import ops
from ..reference.dropout import dropout_key
from .function import get_backend_name
from .tensor import Tensor


class Module:
    """A callable layer; parameters() finds the Tensors that require grad among its
    attributes, in sub-modules and in lists of them. train() / eval() set `training` on it
    and its sub-modules (Dropout and BatchNorm1d behave differently in each, as in torch)."""

    training = True

    def __call__(self, x):
        return self.forward(x)

    def train(self, mode=True):
        self.training = bool(mode)
        for value in vars(self).values():
            for item in value if isinstance(value, (list, tuple)) else (value,):
                if isinstance(item, Module):
                    item.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def forward(self, x):
        raise NotImplementedError

    def parameters(self):
        params, seen = [], set()
        for value in vars(self).values():
            for item in value if isinstance(value, (list, tuple)) else (value,):
                if isinstance(item, Module):
                    found = item.parameters()
                elif isinstance(item, Tensor) and item.requires_grad:
                    found = [item]
                else:
                    continue
                for p in found:
                    if id(p) not in seen:
                        seen.add(id(p))
                        params.append(p)
        return params


def _init(rng, shape, fan_in, dtype):
    """Gaussian weights with variance 1/fan_in, so the pre-activations start of order 1."""
    return Tensor(rng.standard_normal(shape) / np.sqrt(fan_in), requires_grad=True, dtype=dtype)


class Linear(Module):
    """z = x Wᵀ + b: x (n, in_features) -> (n, out_features). rng: a seed or a Generator."""

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float64):
        rng = np.random.default_rng(rng)
        self.weight = _init(rng, (out_features, in_features), in_features, dtype)
        self.bias = Tensor(np.zeros(out_features), requires_grad=True, dtype=dtype) if bias else None

    def forward(self, x):
        z = ops.matmul(x, self.weight.T)
        return z if self.bias is None else z + self.bias


class Activation(Module):
    """f applied element-wise; name is one of the design's activations (see ops.activation)."""

    def __init__(self, name, param=None):
        self.name, self.param = name, ops.activation_param(name, param)

    def forward(self, x):
        return ops.activation(x, self.name, self.param)


class Sigmoid(Activation):
    def __init__(self):
        super().__init__("sigmoid")


class Tanh(Activation):
    def __init__(self):
        super().__init__("tanh")


class ReLU(Activation):
    def __init__(self):
        super().__init__("relu")


class LeakyReLU(Activation):
    def __init__(self, slope=0.1):
        super().__init__("leaky_relu", slope)


class ELU(Activation):
    def __init__(self, alpha=1.0):
        super().__init__("elu", alpha)


class Identity(Activation):
    def __init__(self):
        super().__init__("identity")


class Maxout(Module):
    """Max over k pieces per unit: (n, m·k) -> (n, m); the Linear before it has m·k outputs."""

    def __init__(self, k):
        self.k = k

    def forward(self, x):
        return ops.maxout(x, self.k)


class Dropout(Module):
    """Inverted dropout while training (each unit dropped with probability p, the kept ones
    scaled by 1/(1 − p)); the identity in eval(). The masks come from fastmlp's counter-based
    generator, keyed by (seed, the number of training calls so far)."""

    def __init__(self, p=0.5, seed=0):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"p: expected a rate in [0, 1), got {p!r}")
        self.p, self.seed, self.calls = float(p), seed, 0

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        self.calls += 1
        return ops.dropout(x, self.p, dropout_key(self.seed, self.calls, 0))


class BatchNorm1d(Module):
    """torch.nn.BatchNorm1d over (n, num_features): while training, normalise with the
    batch's mean and biased variance, scale by weight (γ) and shift by bias (β), and update
    running_mean / running_var (unbiased) with `momentum`; in eval(), use those. γ and β
    are 1-D, so the optimizers here do not decay them."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float64):
        self.eps, self.momentum = eps, momentum
        self.weight = Tensor(np.ones(num_features), requires_grad=True, dtype=dtype)
        self.bias = Tensor(np.zeros(num_features), requires_grad=True, dtype=dtype)
        self.running_mean = np.zeros(num_features, dtype=dtype)
        self.running_var = np.ones(num_features, dtype=dtype)

    def forward(self, x):
        if not self.training:
            scale = self.weight * (1 / np.sqrt(self.running_var + self.eps))
            return (x - self.running_mean) * scale + self.bias
        stats = []
        y = ops.batch_norm(x, self.weight, self.bias, self.eps, stats)
        (mean, var), n, m = stats[0], x.shape[0], self.momentum
        self.running_mean = (1 - m) * self.running_mean + m * mean
        self.running_var = (1 - m) * self.running_var + m * var * (n / (n - 1))
        return y


class Softmax(Module):
    def forward(self, x):
        return ops.softmax(x)


class Conv2d(Module):
    """Valid, stride-1 convolution: (n, in_channels, H, W) -> (n, out_channels, H−kh+1, W−kw+1)."""

    def __init__(self, in_channels, out_channels, kernel_size, bias=True, rng=None,
                 dtype=np.float64):
        kh, kw = (kernel_size, kernel_size) if np.isscalar(kernel_size) else kernel_size
        rng = np.random.default_rng(rng)
        self.weight = _init(rng, (out_channels, in_channels, kh, kw), in_channels * kh * kw, dtype)
        self.bias = Tensor(np.zeros(out_channels), requires_grad=True, dtype=dtype) if bias else None

    def forward(self, x):
        return ops.conv2d(x, self.weight, self.bias)


class Flatten(Module):
    """(n, ...) -> (n, everything else), between convolutional and linear layers."""

    def forward(self, x):
        return x.reshape(x.shape[0], -1)


class Sequential(Module):
    def __init__(self, *layers):
        self.layers = list(layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class Optimizer:
    """torch.optim's interface over Tensors: zero_grad() and step(), with the update rule,
    the state and the kernel calls of a fastmlp.optim optimizer (`rule`), run on the
    current backend's kernels. As in the design, weight decay applies to weights and
    filters only: parameters with one dimension (biases) are updated without it."""

    rule_class = None

    def __init__(self, parameters, **settings):
        self.parameters = list(parameters)
        if not all(isinstance(p, Tensor) and p.requires_grad for p in self.parameters):
            raise TypeError("parameters: expected Tensors created with requires_grad=True")
        self.rule = self.rule_class(**settings)

    def zero_grad(self):
        for p in self.parameters:
            p.grad = None

    def step(self):
        rule = self.rule
        rule.update(get_backend(get_backend_name()), [p.data for p in self.parameters],
                    [p.grad for p in self.parameters],
                    [rule.weight_decay if p.ndim >= 2 else 0.0 for p in self.parameters],
                    rule.current_lr())


class SGD(Optimizer):
    """fastmlp.optim.SGD: W ← W − lr (∂J/∂W + weight_decay · W), or with momentum (and
    Nesterov) as torch.optim.SGD."""

    rule_class = optim.SGD

    def __init__(self, parameters, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(parameters, lr=lr, momentum=momentum, nesterov=nesterov,
                         weight_decay=weight_decay)


class Adam(Optimizer):
    """fastmlp.optim.Adam (torch.optim.Adam)."""

    rule_class = optim.Adam

    def __init__(self, parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(parameters, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class AdamW(Optimizer):
    """fastmlp.optim.AdamW (torch.optim.AdamW)."""

    rule_class = optim.AdamW

    def __init__(self, parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(parameters, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
