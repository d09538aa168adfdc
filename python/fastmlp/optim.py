"""Optimizers, as torch.optim defines them, and learning-rate schedules, as scikit-learn
(or torch.optim.lr_scheduler) defines them.

    net.fit(X, Y, optimizer=fastmlp.optim.Adam(lr=1e-3))
    net.fit(X, Y, optimizer="adam", lr=1e-3)              # the same, by name
    net.fit(X, Y, optimizer=SGD(0.1, momentum=0.9, nesterov=True,
                                schedule=Cosine(T_max=30)))
    net.fit(X, Y, lr=0.5)                                 # plain SGD, the lecture's

An optimizer holds its hyperparameters and its state: the buffers (SGD's velocity, Adam's
first and second moments, one per weight and bias array), the number of updates applied,
and the schedule's position. The model it trains keeps it as `net.optimizer`: `save`
writes it, `load` restores it, a step or epoch that fails leaves it as it was, and a
later fit with the same optimizer (the object, or its name with the same settings)
continues it exactly.

Weight decay never applies to biases. SGD and Adam add weight_decay·W to the gradient (L2,
which also adds (weight_decay/2)·ΣW² to the reported loss J); AdamW decays the weights
directly (decoupled, not part of J). With decay_per_sample=True the weight decay is
per sample, as scikit-learn's alpha: each batch divides it by its size (the sum of its
sample weights, when fit has them).

Schedules set the learning rate of each epoch from the optimizer's `lr`, at the start of
the epoch; fit's History records it (`history.lr`).
"""
import math

import numpy as np

from .checks import all_finite, check_int, check_real, is_real


# ---------------------------------------------------------------- schedules

class Schedule:
    """The learning rate of each epoch from the optimizer's `base_lr` and `state`:
    "epoch" (epochs done) and "samples" (rows trained on), and what the schedule keeps."""

    def lr(self, base_lr, state):
        raise NotImplementedError

    def epoch_ended(self, state, base_lr, loss):
        """Called after each epoch with the loss it monitors (validation loss when there is
        validation data, else the training loss)."""

    def config(self):
        return {"name": type(self).__name__, **vars(self)}


class Constant(Schedule):
    """The optimizer's lr every epoch."""

    def lr(self, base_lr, state):
        return base_lr


class StepDecay(Schedule):
    """lr · gamma^(epoch // step_size) (torch.optim.lr_scheduler.StepLR)."""

    def __init__(self, step_size, gamma=0.1):
        self.step_size = check_int(step_size, "step_size", minimum=1)
        self.gamma = check_real(gamma, "gamma", 0, strict=True)

    def lr(self, base_lr, state):
        return base_lr * self.gamma ** (state["epoch"] // self.step_size)


class Cosine(Schedule):
    """eta_min + (lr − eta_min)(1 + cos(π · epoch / T_max)) / 2: down to eta_min at epoch
    T_max, and back up after it, as torch.optim.lr_scheduler.CosineAnnealingLR does."""

    def __init__(self, T_max, eta_min=0.0):
        self.T_max = check_int(T_max, "T_max", minimum=1)
        self.eta_min = check_real(eta_min, "eta_min", 0)

    def lr(self, base_lr, state):
        return self.eta_min + (base_lr - self.eta_min) * (
            1 + math.cos(math.pi * state["epoch"] / self.T_max)) / 2


class InvScaling(Schedule):
    """lr / (t + 1)^power_t, t the rows trained on before the epoch (scikit-learn's
    learning_rate="invscaling")."""

    def __init__(self, power_t=0.5):
        self.power_t = check_real(power_t, "power_t", 0)

    def lr(self, base_lr, state):
        return base_lr / (state["samples"] + 1) ** self.power_t


class Plateau(Schedule):
    """Divide the rate by 1/factor (5 by default) when the monitored loss has not improved
    by `tol` for `patience` epochs in a row, down to min_lr (scikit-learn's
    learning_rate="adaptive")."""

    def __init__(self, factor=0.2, patience=2, tol=1e-4, min_lr=1e-6):
        self.factor = check_real(factor, "factor", 0, strict=True)
        if self.factor >= 1:
            raise ValueError(f"factor: expected a number < 1, got {factor!r}")
        self.patience = check_int(patience, "patience", minimum=1)
        self.tol = check_real(tol, "tol", 0)
        self.min_lr = check_real(min_lr, "min_lr", 0)

    def lr(self, base_lr, state):
        return state.get("plateau_lr", base_lr)

    def epoch_ended(self, state, base_lr, loss):
        best = state.get("best", math.inf)
        state["wait"] = state.get("wait", 0) + 1 if loss > best - self.tol else 0
        state["best"] = min(best, loss)
        if state["wait"] >= self.patience:
            state["wait"] = 0
            lr = self.lr(base_lr, state)
            if lr > self.min_lr:
                state["plateau_lr"] = max(lr * self.factor, self.min_lr)


SCHEDULES = {cls.__name__: cls for cls in (Constant, StepDecay, Cosine, InvScaling, Plateau)}


def schedule_from_config(config):
    args = dict(config)
    return SCHEDULES[args.pop("name")](**args)


# ---------------------------------------------------------------- optimizers

class Optimizer:
    """Hyperparameters, the schedule, and the state of one optimizer over one net."""

    name = None
    buffer_names = ()   # per weight and bias array, in the order the update kernel takes
    decoupled = False

    def __init__(self, lr, weight_decay, schedule, decay_per_sample):
        self.lr = check_real(lr, "lr", 0, strict=True)
        self.weight_decay = check_real(weight_decay, "weight_decay", 0)
        if not isinstance(decay_per_sample, (bool, np.bool_)):
            raise TypeError(f"decay_per_sample: expected True or False, got {decay_per_sample!r}")
        self.decay_per_sample = bool(decay_per_sample)
        if schedule is not None and not isinstance(schedule, Schedule):
            raise TypeError(f"schedule: expected a fastmlp.optim schedule or None, got "
                            f"{schedule!r}")
        self.schedule = schedule or Constant()
        self.reset()

    def reset(self):
        """Forget the state: no buffers, no updates applied, the schedule at epoch 0."""
        self.state = {"step": 0, "epoch": 0, "samples": 0}
        self.buffers = []   # per parameter array (weights, then biases): its buffers

    def hyperparameters(self):
        raise NotImplementedError

    def _per_sample(self):
        """decay_per_sample among the hyperparameters, when it is set (the settings of
        optimizers without it read as they always did)."""
        return {"decay_per_sample": True} if self.decay_per_sample else {}

    def config(self):
        """Everything but the buffers, as JSON-able values (for save and for comparing)."""
        return {"name": self.name, **self.hyperparameters(),
                "schedule": self.schedule.config(), "state": dict(self.state)}

    def same_settings(self, other):
        return (type(self) is type(other) and self.hyperparameters() == other.hyperparameters()
                and self.schedule.config() == other.schedule.config())

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args}, schedule={type(self.schedule).__name__})"

    @property
    def l2_penalty(self):
        """The weight decay that is part of the loss J (none for decoupled decay)."""
        return 0.0 if self.decoupled else self.weight_decay

    def batch_decay(self, batch_weight):
        """(weight decay, L2 penalty in J) of a batch whose sample weights sum to
        batch_weight (its row count without weights): the optimizer's own, or, per sample,
        divided by batch_weight (none for a batch of weight 0)."""
        if not self.decay_per_sample:
            return self.weight_decay, self.l2_penalty
        if batch_weight == 0:
            return 0.0, 0.0
        return self.weight_decay / batch_weight, self.l2_penalty / batch_weight

    def current_lr(self):
        """The learning rate of the epoch about to run (or running)."""
        return self.schedule.lr(self.lr, self.state)

    def attach(self, params):
        """Zeroed buffers for `params` (the net's weights, then biases), unless it holds
        buffers of their shapes and dtypes already; buffers of other shapes (another
        net's) mean its state starts over."""
        if not self.buffer_names:
            return
        if [(b[0].shape, b[0].dtype) for b in self.buffers] == [(p.shape, p.dtype) for p in params]:
            return
        if self.buffers:
            self.reset()
        self.buffers = [[np.zeros_like(p, order="C") for _ in self.buffer_names] for p in params]

    def epoch_ended(self, rows, loss):
        self.state["epoch"] += 1
        self.state["samples"] += rows
        self.schedule.epoch_ended(self.state, self.lr, loss)

    def update(self, kernels, params, grads, weight_decays, lr):
        """One update of every array in `params` (in place) by its gradient in `grads`
        (None: left as it is) and its weight decay, through the kernel table `kernels`."""
        self.attach(params)
        self.state["step"] += 1
        buffers = self.buffers or [()] * len(params)
        for param, grad, bufs, weight_decay in zip(params, grads, buffers, weight_decays):
            if grad is not None:
                self.apply(kernels, param, grad, bufs, lr, weight_decay)

    def apply(self, kernels, param, grad, buffers, lr, weight_decay):
        """One update of one parameter array, in place, by the backend's kernel."""
        raise NotImplementedError

    def state_arrays(self):
        """The buffers, flat (parameter by parameter): what training's all-or-nothing
        snapshot copies and the model file stores."""
        return [b for bufs in self.buffers for b in bufs]


class SGD(Optimizer):
    """torch.optim.SGD (dampening 0): with momentum, v ← momentum·v + g and
    W ← W − lr·(g + momentum·v if nesterov else v); without, W ← W − lr·g; g = ∂J/∂W +
    weight_decay·W."""

    name = "sgd"

    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0, schedule=None,
                 decay_per_sample=False):
        self.momentum = check_real(momentum, "momentum", 0)
        if self.momentum >= 1:
            raise ValueError(f"momentum: expected a number in [0, 1), got {momentum!r}")
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov: expected True or False, got {nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0")
        self.nesterov = bool(nesterov)
        self.buffer_names = ("velocity",) if self.momentum else ()
        super().__init__(lr, weight_decay, schedule, decay_per_sample)

    def hyperparameters(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay, **self._per_sample()}

    def apply(self, kernels, param, grad, buffers, lr, weight_decay):
        if self.momentum:
            kernels.momentum_update(param, grad, buffers[0], lr, self.momentum, self.nesterov,
                                    weight_decay)
        else:
            kernels.sgd_update(param, grad, lr, weight_decay)


EPS_STYLES = ("torch", "sklearn")


class Adam(Optimizer):
    """torch.optim.Adam: m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g², W ← W −
    lr/(1−β1^t) · m / (√v/√(1−β2^t) + eps); g = ∂J/∂W + weight_decay·W (L2).

    eps_style="sklearn" adds eps to √v before the bias correction, as scikit-learn (and the
    Adam paper's efficient form) does: W ← W − lr·√(1−β2^t)/(1−β1^t) · m / (√v + eps),
    which is torch's formula with eps/√(1−β2^t) for eps."""

    name = "adam"
    buffer_names = ("m", "v")

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 schedule=None, decay_per_sample=False, eps_style="torch"):
        if eps_style not in EPS_STYLES:
            raise ValueError(f"eps_style: expected one of {EPS_STYLES}, got {eps_style!r}")
        self.eps_style = eps_style
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2
                and all(is_real(b) for b in betas)):
            raise TypeError(f"betas: expected a pair of numbers, got {betas!r}")
        for i, beta in enumerate(betas):
            if not 0 <= beta < 1:
                raise ValueError(f"betas[{i}]: expected a number in [0, 1), got {beta!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = check_real(eps, "eps", 0, strict=True)
        super().__init__(lr, weight_decay, schedule, decay_per_sample)

    def hyperparameters(self):
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay, **self._per_sample(),
                **({"eps_style": self.eps_style} if self.eps_style != "torch" else {})}

    def step_eps(self, step):
        """The eps of torch's formula at update number `step`: eps itself, or for
        eps_style="sklearn" eps/√(1−β2^step) (in double, as the C++ trainer computes it)."""
        if self.eps_style == "torch":
            return self.eps
        return self.eps / math.sqrt(1.0 - math.pow(self.betas[1], step))

    def apply(self, kernels, param, grad, buffers, lr, weight_decay):
        step = self.state["step"]
        kernels.adam_update(param, grad, buffers[0], buffers[1], lr, *self.betas,
                            self.step_eps(step), weight_decay, self.decoupled, step)


class AdamW(Adam):
    """torch.optim.AdamW: Adam without the L2 term, the weights decayed directly first,
    W ← W · (1 − lr·weight_decay)."""

    name = "adamw"
    decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 schedule=None, decay_per_sample=False, eps_style="torch"):
        super().__init__(lr, betas, eps, weight_decay, schedule, decay_per_sample, eps_style)


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam, AdamW)}


def make(name, **settings):
    """An optimizer by name ("sgd", "adam", "adamw") with `settings`, its defaults for the
    rest."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected an optimizer object or one of "
                         f"{tuple(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name](**settings)


def from_config(config, arrays):
    """The optimizer that config() and state_arrays() describe (the model file)."""
    settings = {k: v for k, v in config.items() if k not in ("name", "schedule", "state")}
    if "betas" in settings:
        settings["betas"] = tuple(settings["betas"])
    opt = make(config["name"], schedule=schedule_from_config(config["schedule"]), **settings)
    state = dict(config["state"])
    for key in ("step", "epoch", "samples"):
        check_int(state.get(key), f"optimizer state {key!r}", minimum=0)
    opt.state = state
    if not all(all_finite(a) for a in arrays):
        raise ValueError("optimizer buffers: contain NaN or infinity")
    per_param = len(opt.buffer_names)
    opt.buffers = [list(arrays[i:i + per_param]) for i in range(0, len(arrays), per_param)] \
        if per_param else []
    return opt
