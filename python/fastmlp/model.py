"""The multilayer perceptron: its architecture, its weights, and the public API.

The math is fastmlp.equations over the net's kernel table, and training is the backend's
training module (both from fastmlp.get_backend(backend)): with backend="numpy" the model
is the textbook reference, with backend="native" the same equations run on the C++
kernels and whole steps and epochs run in C++.
"""
import threading

import numpy as np

from . import distributed, equations, model_file, optim, training
from .backend import get_backend
from .checks import (all_finite, check_batch_rows, check_int, check_real, check_sample_weight,
                     check_X, check_Y, is_int)
from .specs import (activation_spec, check_dtype, check_n_params, check_output, check_sizes,
                    parse_activations, parse_batch_norm, parse_dropout, weight_shapes)


# MLP(init=...): variance scaling. W(l) has mean 0 and variance 1/n, n from its fan-in and
# fan-out (its rows): normal draws N(0, 1) / √n, or uniform ones U(−1, 1) · √(3/n).
INITS = {
    "lecun_normal": ("normal", lambda fan_in, fan_out: fan_in),
    "glorot_uniform": ("uniform", lambda fan_in, fan_out: (fan_in + fan_out) / 2),
    "glorot_normal": ("normal", lambda fan_in, fan_out: (fan_in + fan_out) / 2),
    "he_normal": ("normal", lambda fan_in, fan_out: fan_in / 2),
    "he_uniform": ("uniform", lambda fan_in, fan_out: fan_in / 2),
}


def initial_weights(rng, init, rows, fan_in):
    """W (rows, fan_in) in float64, drawn from rng by initialiser `init`."""
    kind, n = INITS[init]
    n = n(fan_in, rows)
    if kind == "normal":
        return rng.standard_normal((rows, fan_in)) / np.sqrt(n)
    return rng.uniform(-1, 1, (rows, fan_in)) * np.sqrt(3 / n)


# load()'s cap on the parameters a file may declare: 2^28 (1 GiB of float32) unless the
# caller allows more
DEFAULT_MAX_LOAD_PARAMS = 2**28


class MLP:
    """A multilayer perceptron trained by mini-batch gradient descent with backpropagation.

    sizes       layer widths [s_1 (inputs), hidden …, s_L (outputs)]
    activation  one spec for every hidden layer or a list, one per hidden layer; a spec is
                a name from specs.HIDDEN_ACTIVATIONS or (name, param): ("leaky_relu", 0.2),
                ("elu", 1.0), ("maxout", 3) (k pieces per unit; default 0.1, 1.0, 2)
    output      "softmax", "sigmoid", "identity", or "exp" (predicts e^z: Poisson
                regression of counts)
    loss        None picks the output's natural loss (cross_entropy, binary_cross_entropy,
                quadratic, poisson); "quadratic" is also allowed with a sigmoid output
    backend     "native" (the C++ kernels, the default) or "numpy" (the reference); it can be
                reassigned later (net.backend = "numpy"), the weights stay
    dtype       "float32" or "float64"; inputs are converted to it
    seed        seeds the one Generator that draws the initial weights (in float64, then
                cast) and every shuffle of fit(), and is the dropout masks' mask_seed (None:
                a random one)
    dropout     a rate p in [0, 1) for every hidden layer, or a list with one per hidden
                layer (0: none; the inputs are never dropped): while training, each hidden
                unit's output is dropped with probability p and the kept ones are scaled by
                1/(1 − p) (inverted dropout); forward, predict, loss and score use every
                unit unscaled. The masks are a pure function of (mask_seed, update number,
                layer, row of the batch, unit): the same on both backends and any thread
                count, and a resumed fit continues them (the update number is the
                optimizer's step count, which save() writes)
    batch_norm  True/False for every hidden layer, or a list with one per hidden layer:
                normalise the layer's pre-activations z over the mini-batch, then scale and
                shift by learned γ, β (net.gammas, net.betas) before the activation, as
                torch.nn.BatchNorm1d (momentum 0.1, eps 1e-5); training keeps running means
                and variances (net.running_means, net.running_vars), which forward, predict,
                loss and score use
    init        how the initial weights are drawn (biases start at 0): "lecun_normal",
                N(0, 1/fan_in), the lecture's; "glorot_uniform", U(±√(6/(fan_in+fan_out)));
                "glorot_normal", N(0, 2/(fan_in+fan_out)); "he_normal", N(0, 2/fan_in);
                "he_uniform", U(±√(6/fan_in)). fan_out counts the rows of W (a maxout
                layer's pieces too).
    """

    def __init__(self, sizes, activation="sigmoid", output="softmax", loss=None,
                 backend="native", dtype="float32", seed=0, dropout=0.0, batch_norm=False,
                 init="lecun_normal"):
        self._configure(sizes, activation, output, loss, backend, dtype, seed, dropout,
                        batch_norm=batch_norm)
        if init not in INITS:
            raise ValueError(f"init: expected one of {tuple(INITS)}, got {init!r}")
        self._weights, self._biases = [], []
        for rows, fan_in in weight_shapes(self.sizes, self.activations):
            self._weights.append(initial_weights(self._rng, init, rows, fan_in).astype(self.dtype))
            self._biases.append(np.zeros(rows, dtype=self.dtype))
        shapes = self._batch_norm_shapes()
        self._gammas = [np.ones(shape, dtype=self.dtype) for shape in shapes]
        self._betas = [np.zeros(shape, dtype=self.dtype) for shape in shapes]
        self._running_means = [np.zeros(shape, dtype=self.dtype) for shape in shapes]
        self._running_vars = [np.ones(shape, dtype=self.dtype) for shape in shapes]

    def _batch_norm_shapes(self):
        """The shape of γ, β and the running statistics of each batch-normalised layer:
        one per row of its W (a maxout layer normalises each piece)."""
        return [(rows,) for (rows, _), bn in zip(weight_shapes(self.sizes, self.activations),
                                                 self._batch_norm) if bn]

    def _configure(self, sizes, activation, output, loss, backend, dtype, seed, dropout=0.0,
                   mask_seed=None, batch_norm=False):
        """Everything but the weights, checked."""
        self.sizes = check_sizes(sizes)
        self.activations = parse_activations(activation, len(self.sizes) - 2)
        self._dropout = parse_dropout(dropout, len(self.sizes) - 2)
        self._batch_norm = parse_batch_norm(batch_norm, len(self.sizes) - 2)
        self.output, self.loss_name = check_output(output, loss, self.sizes[-1])
        self.dtype = check_dtype(dtype)
        if seed is not None and (not is_int(seed) or seed < 0):
            raise ValueError(f"seed: expected an integer >= 0 or None, got {seed!r}")
        self.seed = seed
        if mask_seed is None:
            mask_seed = seed if seed is not None else np.random.SeedSequence().entropy
        self.mask_seed = int(mask_seed) % 2**64
        self.backend = backend
        check_n_params(self.sizes, self.activations)
        training.init_guards(self)
        self.optimizer = None   # the fastmlp.optim optimizer of the last fit or step
        self._rng = np.random.default_rng(seed)

    # ------------------------------------------------------------ attributes

    @property
    def backend(self):
        """The kernel table's name; assign "numpy" or "native" to switch, keeping the weights."""
        return self._kernels.name

    @backend.setter
    def backend(self, name):
        self._kernels = get_backend(name)

    @property
    def dropout(self):
        """The dropout rate of each hidden layer (fixed at construction)."""
        return list(self._dropout)

    @property
    def batch_norm(self):
        """Whether each hidden layer is batch-normalised (fixed at construction)."""
        return list(self._batch_norm)

    @property
    def gammas(self):
        """γ of each batch-normalised layer (in layer order), shaped (rows of its W,)."""
        return self._gammas

    @property
    def betas(self):
        """β of each batch-normalised layer."""
        return self._betas

    @property
    def running_means(self):
        """The running mean of z of each batch-normalised layer, for evaluation."""
        return self._running_means

    @property
    def running_vars(self):
        """The running (unbiased) variance of z of each batch-normalised layer."""
        return self._running_vars

    @property
    def parameter_lists(self):
        """The lists of trained arrays: [weights, biases], then [gammas, betas] with batch
        norm; net.gradients returns one gradient list per list here."""
        lists = [self._weights, self._biases]
        return lists + [self._gammas, self._betas] if any(self._batch_norm) else lists

    @property
    def weights(self):
        """W(l) for each layer, shaped (s_(l+1), s_l); edit them in place or assign a list."""
        return self._weights

    @weights.setter
    def weights(self, values):
        self._assign_params("_weights", values, "weights")

    @property
    def biases(self):
        """b(l) for each layer, shaped (s_(l+1),)."""
        return self._biases

    @biases.setter
    def biases(self, values):
        self._assign_params("_biases", values, "biases")

    def _assign_params(self, attr, values, name):
        """Checked new weights or biases; refused while another thread trains (fit's own
        thread may assign them: its progress callback, or early stopping's restore)."""
        checked = self._checked_params(values, name, [p.shape for p in getattr(self, attr)])
        if training.training_here(self):
            setattr(self, attr, checked)
            return
        with training.exclusive(self, name):
            setattr(self, attr, checked)

    def _checked_params(self, values, name, shapes, copy=True):
        """`values` checked against `shapes`, as C-contiguous arrays of the dtype: copies
        (the caller's arrays stay theirs), or, with copy=False, the arrays themselves when
        they are already that (load's, fresh from the file)."""
        values = list(values)
        if len(values) != len(shapes):
            raise ValueError(f"{name}: expected {len(shapes)} arrays, got {len(values)}")
        out = []
        for i, (v, shape) in enumerate(zip(values, shapes)):
            v = np.asarray(v)
            if v.shape != shape:
                raise ValueError(f"{name}[{i}]: expected shape {shape}, got {v.shape}")
            if v.dtype.kind not in "iuf":
                raise TypeError(f"{name}[{i}]: expected real numbers, got dtype {v.dtype}")
            if not all_finite(v):
                raise ValueError(f"{name}[{i}]: contains NaN or infinity")
            out.append(np.array(v, dtype=self.dtype, order="C") if copy
                       else np.asarray(v, dtype=self.dtype, order="C"))
        return out

    @property
    def n_params(self):
        """Number of weights and biases (and batch norm's γ and β)."""
        return sum(p.size for params in self.parameter_lists for p in params)

    def __repr__(self):
        specs = [activation_spec(*act) for act in self.activations]
        extra = f", dropout={self._dropout!r}" if any(self._dropout) else ""
        extra += f", batch_norm={self._batch_norm!r}" if any(self._batch_norm) else ""
        return (f"MLP({self.sizes}, activation={specs!r}, output={self.output!r}, "
                f"loss={self.loss_name!r}, backend={self.backend!r}, dtype={self.dtype!r}"
                f"{extra})")

    def __getstate__(self):
        state = self.__dict__.copy()
        for name in ("_training_lock", "_intents", "_holder", "_snapshot", "_snapshot_state"):
            state.pop(name, None)   # a lock and the undo buffers: rebuilt on demand
        state["_kernels"] = self.backend   # the table by name: it holds a module
        return state

    def __setstate__(self, state):
        state.setdefault("optimizer", None)   # pickled before models kept their optimizer
        state.setdefault("_dropout", [0.0] * (len(state["sizes"]) - 2))   # before dropout
        state.setdefault("mask_seed", (state["seed"] or 0) % 2**64)
        state.setdefault("_batch_norm", [False] * (len(state["sizes"]) - 2))
        for name in ("_gammas", "_betas", "_running_means", "_running_vars"):
            state.setdefault(name, [])
        self.__dict__.update(state)
        self.backend = state["_kernels"]
        training.init_guards(self)

    # ------------------------------------------------------------ public API

    def _output_layer(self, X):
        """(z(L), a(L)) of checked inputs."""
        return equations.output_layer(self._kernels, self, X)

    def forward(self, X):
        """Output activations a(L), shape (n, K): class probabilities for softmax/sigmoid;
        e^z for an exp output."""
        z, out = self._output_layer(check_X(self, X))
        if self.output == "softmax":
            return self._kernels.softmax(z)
        return np.exp(z) if self.output == "exp" else out

    def loss(self, X, Y, weight_decay=0.0, sample_weight=None, dropout_step=None,
             training=False):
        """J = the mean loss over the rows of X (weighted by sample_weight, when given) +
        (weight_decay/2) Σ W², as predict sees the net. training=True: as a training step on
        the batch X takes J (batch norm with the batch's own statistics), with the dropout
        masks of update number dropout_step when given (which implies training); without,
        no dropout."""
        X = check_X(self, X)
        Y = check_Y(self, Y, len(X))
        weight_decay = check_real(weight_decay, "weight_decay", 0)
        sample_weight = check_sample_weight(self, sample_weight, len(X))
        if dropout_step is None and not training:
            return self._kernels.training.evaluate(self, X, Y, weight_decay, sample_weight)[0]
        masks = None if dropout_step is None else (
            check_int(dropout_step, "dropout_step", minimum=0), 0)
        check_batch_rows(self, len(X), "X")
        _, z, out, _ = equations.forward(self._kernels, self, X, masks,
                                         batch_stats=self._kernels)[-1]
        loss, _ = equations.loss_and_delta(self._kernels, self, z, out, Y, sample_weight)
        return loss + equations.weight_penalty(self, weight_decay)

    def gradients(self, X, Y, weight_decay=0.0, sample_weight=None, dropout_step=None):
        """(list of ∂J/∂W(l), list of ∂J/∂b(l)) by backpropagation, weight decay included;
        with batch norm also the lists of ∂J/∂γ and ∂J/∂β (one list per parameter_lists
        entry): the gradients of loss(X, Y, weight_decay, sample_weight, dropout_step,
        training=True). dropout_step=u: with the fixed dropout masks of update number u (a
        gradient check of a net with dropout); None: without dropout."""
        return self.loss_and_gradients(X, Y, weight_decay, sample_weight, dropout_step)[1:]

    def loss_and_gradients(self, X, Y, weight_decay=0.0, sample_weight=None, dropout_step=None):
        """(J, then the gradient lists of gradients()) from one forward and one backward
        pass (one C++ call on the native backend): what a full-batch optimizer such as
        L-BFGS asks for at each point."""
        X = check_X(self, X)
        Y = check_Y(self, Y, len(X))
        weight_decay = check_real(weight_decay, "weight_decay", 0)
        sample_weight = check_sample_weight(self, sample_weight, len(X))
        masks = None if dropout_step is None else (
            check_int(dropout_step, "dropout_step", minimum=0), 0)
        check_batch_rows(self, len(X), "X")
        grads = [[np.empty_like(p) for p in params] for params in self.parameter_lists]
        loss, _ = self._kernels.training.gradients(self, X, Y, None, 1.0, weight_decay, grads,
                                                   masks, sample_weight)
        if weight_decay:
            grads[0] = [dw + np.dtype(self.dtype).type(weight_decay) * w
                        for dw, w in zip(grads[0], self._weights)]
        return (loss, *grads)

    def step(self, X, Y, lr=None, weight_decay=None, optimizer=None, sample_weight=None):
        """One update on the batch (X, Y); returns the batch loss J before the update.

        lr alone: plain SGD (weight_decay 0 unless given). optimizer: a fastmlp.optim
        optimizer or its name, as in fit(). All or nothing: if the step fails or is
        interrupted, or its loss or new weights are not finite (FloatingPointError: a
        diverging run), the weights and the optimizer's state stay as they were."""
        return training.step(self, X, Y, lr, weight_decay, optimizer, sample_weight)

    def fit(self, X, Y, epochs=30, batch_size=10, lr=None, weight_decay=None, optimizer=None,
            validation_data=None, patience=None, shuffle=True, progress=False, comm=None,
            sample_weight=None):
        """Train by mini-batch gradient descent for `epochs` passes over (X, Y); returns a
        History.

        optimizer: None for plain SGD at lr (0.5 unless given) with L2 weight_decay (0
        unless given), the lecture's; a fastmlp.optim optimizer (SGD with momentum, Adam,
        AdamW, with a learning-rate schedule); or its name ("sgd", "adam", "adamw"), with
        lr and weight_decay when given. The net keeps it as `net.optimizer`: a later fit
        with the same optimizer (the object, or the name with the same settings) continues
        its state, and save() writes it.

        Each epoch shuffles the rows with the net's generator (unless shuffle=False; a
        callable shuffle(n) gives each epoch's permutation of range(n) instead) and
        takes one update per batch of `batch_size` rows (the last batch may be smaller).
        validation_data=(Xv, Yv) is scored after every epoch. With `patience`, training
        stops once val_loss has not improved for `patience` epochs, and the net ends up
        holding the weights of its best epoch. progress=True shows a tqdm bar per epoch (a
        printed line when tqdm is missing); a callable is called with the History after
        every epoch. comm, an MPI communicator (mpi4py), trains data-parallel over its
        ranks: see fastmlp.distributed. sample_weight (one weight >= 0 per row) makes each
        batch's loss the weighted mean of its rows' losses. X may be a scipy.sparse matrix:
        each epoch makes a few batches of its rows dense at a time (the same batches).

        NaN or infinity in X is a ValueError and leaves the net untouched. Nothing is lost:
        an epoch that fails, is interrupted (KeyboardInterrupt) or diverges
        (FloatingPointError: a loss or weight not finite) is undone, so the net holds the
        weights of its last completed epoch; the error says which, and carries the History
        as `.history`. Only one thread may train a net at a time (RuntimeError for a second
        one)."""
        args = dict(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                    optimizer=optimizer, validation_data=validation_data, patience=patience,
                    shuffle=shuffle, progress=progress)
        if comm is not None:
            if sample_weight is not None:
                raise ValueError("sample_weight: not supported with comm (MPI training)")
            return distributed.fit(self, X, Y, comm, **args)
        return training.fit(self, X, Y, **args, sample_weight=sample_weight)

    def to_torch(self):
        """This network as a torch.nn.Sequential (a copy, in its dtype); fastmlp.torch_io."""
        from .torch_io import to_torch
        return to_torch(self)

    @classmethod
    def from_torch(cls, seq, **kwargs):
        """The MLP of an nn.Sequential of nn.Linear and activations (fastmlp.torch_io), in
        its weights' dtype; kwargs go to MLP (backend, seed, loss)."""
        from .torch_io import read_sequential
        config, weights, biases = read_sequential(seq)
        net = cls(**config, **kwargs)
        net.weights, net.biases = weights, biases
        return net

    def predict(self, X):
        """Class labels (n,) for softmax; 0/1 (n, K) for sigmoid (σ(z) ≥ 0.5 exactly where
        z ≥ 0); values (n, K) for identity, e^z for exp. A single sigmoid, identity or exp
        output gives (n,)."""
        z, out = self._output_layer(check_X(self, X))
        if self.output == "softmax":
            return z.argmax(axis=1)
        if self.output == "sigmoid":
            pred = (z >= 0).astype(np.int64)
        else:
            pred = np.exp(z) if self.output == "exp" else out
        return pred[:, 0] if self.sizes[-1] == 1 else pred

    def score(self, X, Y):
        """Accuracy (a sigmoid row counts when all its outputs are right); R² for identity
        and exp outputs."""
        X = check_X(self, X)
        Y = check_Y(self, Y, len(X))
        z, out = self._output_layer(X)
        return equations.score_from_sum(self, equations.score_sum(self, z, out, Y), Y)

    # ------------------------------------------------------------ persistence

    def save(self, path, comm=None):
        """Write the architecture, dtype, weights, generator state and optimizer (its
        settings and state) to an .npz file
        (".npz" is appended to a path without it, as NumPy does). No pickle. With an MPI
        communicator `comm` (after fit(..., comm=comm) every rank holds the same model),
        only its rank 0 writes; the other ranks return at once.

        Atomic: the file is written under a temporary name in the same directory and then
        renamed over `path`, so a crash mid-save leaves the old file (or none), never half
        a model."""
        if comm is not None and comm.Get_rank() != 0:
            return
        opt = self.optimizer
        config = {"sizes": self.sizes, "activations": self.activations, "output": self.output,
                  "loss": self.loss_name, "dtype": self.dtype, "backend": self.backend,
                  "seed": self.seed, "rng_state": self._rng.bit_generator.state,
                  "dropout": self._dropout, "mask_seed": self.mask_seed,
                  "batch_norm": self._batch_norm,
                  "optimizer": None if opt is None else opt.config()}
        model_file.write(path, config, self._weights, self._biases,
                         () if opt is None else opt.buffers,
                         list(zip(self._gammas, self._betas, self._running_means,
                                  self._running_vars)))

    @classmethod
    def load(cls, path, backend=None, max_params=DEFAULT_MAX_LOAD_PARAMS):
        """Read a model written by save(); backend=None uses the one it was saved with.

        Never unpickles. A file that is not a complete fastmlp model of this format
        (truncated, corrupted, foreign, another format version, arrays of the wrong shape
        or dtype, non-finite weights: the weights setter's check), not a regular file, or
        declaring more than max_params weights and biases raises ValueError naming the file
        and the problem. Memory and time: about the weights' size and one read of them (no
        initial weights are drawn, nothing is copied)."""
        def build(config, weights, biases, buffers, norms):
            net = cls.__new__(cls)
            net._configure(config["sizes"], config["activations"], config["output"],
                           config["loss"], config["backend"] if backend is None else backend,
                           config["dtype"], config["seed"], config.get("dropout", 0.0),
                           config.get("mask_seed"), config.get("batch_norm", False))
            shapes = weight_shapes(net.sizes, net.activations)
            net._weights = net._checked_params(weights, "weights", shapes, copy=False)
            net._biases = net._checked_params(biases, "biases", [s[:1] for s in shapes],
                                              copy=False)
            norm_shapes = net._batch_norm_shapes()
            net._gammas, net._betas, net._running_means, net._running_vars = (
                net._checked_params(arrays, name, norm_shapes, copy=False)
                for arrays, name in zip(norms, ("gammas", "betas", "running_means",
                                                "running_vars")))
            net._rng.bit_generator.state = config["rng_state"]
            if config.get("optimizer") is not None:
                net.optimizer = optim.from_config(config["optimizer"], buffers)
            return net
        return model_file.read(path, build, check_int(max_params, "max_params", minimum=1))
