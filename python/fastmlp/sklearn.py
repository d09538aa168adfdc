"""scikit-learn estimators on fastmlp (optional extra ``sklearn``: ``pip install 'fastmlp[sklearn]'``).

    from fastmlp.sklearn import MLPClassifier        # was: from sklearn.neural_network import
    clf = MLPClassifier(hidden_layer_sizes=(30, 30)).fit(X, y)
    clf.predict_proba(X_test)

Drop-ins for sklearn.neural_network.MLPClassifier / MLPRegressor: every parameter of theirs,
with its meaning and its default (solver "adam", "sgd" or "lbfgs"; learning_rate_init 0.001;
batch_size "auto" = min(200, n_samples); alpha scaled by each batch's size; Glorot-uniform
weights drawn as scikit-learn draws them; learning_rate "constant", "invscaling" or
"adaptive"; early stopping, tol, n_iter_no_change, warm_start, partial_fit, sample_weight,
sparse X), the same fitted attributes, and the training running in fastmlp's kernels (one
C++ call per epoch, or per L-BFGS function evaluation, on the native backend).

fastmlp's extensions, each defaulting to scikit-learn's behaviour:

- activation also takes "sigmoid" (= "logistic"), "leaky_relu", "elu", "maxout", a
  (name, param) pair such as ("leaky_relu", 0.2) or ("maxout", 3), or a list with one spec
  per hidden layer.
- backend ("native" or "numpy") picks the kernels; dtype ("float32" or "float64"; None, the
  default: X's, as scikit-learn computes in float32 only for float32 X). The underlying
  fastmlp.MLP is the fitted attribute ``net_``.
- dropout and batch_norm: fastmlp.MLP's (off by default); the stochastic solvers only.
- MLPClassifier(class_weight=None | dict | "balanced") weighs the samples by class.
- validation_loss_curve_: the validation set's loss after each epoch (early_stopping=True).

What still differs from scikit-learn is listed in the README ("Moving from scikit-learn").
"""
import numbers
import warnings

import numpy as np

try:
    import scipy.optimize
    import sklearn  # noqa: F401  (first: its submodules may be cached, the package not)
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state
    from sklearn.utils._param_validation import Interval, Options, StrOptions
    from sklearn.utils.class_weight import compute_sample_weight
    from sklearn.utils.multiclass import (_check_partial_fit_first_call, type_of_target,
                                          unique_labels)
    from sklearn.utils.validation import (_check_sample_weight, check_is_fitted, column_or_1d,
                                          validate_data)
except ImportError as exc:  # pragma: no cover - exercised by test_optional_extras
    raise ImportError("fastmlp.sklearn needs scikit-learn >= 1.6: pip install 'fastmlp[sklearn]'"
                      ) from exc

from . import optim, training
from .checks import dense_rows, is_sparse, rows_per_chunk
from .model import MLP

ACTIVATION_ALIASES = {"logistic": "sigmoid"}
OUTPUT_OF = {"logistic": "sigmoid", "softmax": "softmax", "identity": "identity", "exp": "exp"}
# scikit-learn's adaptive rate: divided by 5 on a plateau, training stops below this
ADAPTIVE_MIN_LR = 1e-6


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, the solvers, the fitted
    attributes; subclasses say how targets map to the network's outputs."""

    # scikit-learn's own constraints (sklearn.neural_network._multilayer_perceptron), so a
    # bad value gets its InvalidParameterError; our extensions are checked by fastmlp.
    _parameter_constraints = {
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
        "activation": "no_validation",   # our specs; parsed by fastmlp
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "power_t": [Interval(numbers.Real, 0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(numbers.Real, 0, 1, closed="left")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_1": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_2": [Interval(numbers.Real, 0, 1, closed="left")],
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left"),
                             Options(numbers.Real, {np.inf})],
        "max_fun": [Interval(numbers.Integral, 1, None, closed="left")],
        "backend": [StrOptions({"native", "numpy"})],
        "dtype": [StrOptions({"float32", "float64"}), None],
        "dropout": "no_validation",      # a rate or one per hidden layer: checked by MLP
        "batch_norm": "no_validation",   # a flag or one per hidden layer: checked by MLP
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 backend="native", dtype=None, dropout=0.0, batch_norm=False):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype
        self.dropout = dropout          # extensions: fastmlp.MLP's dropout and batch_norm
        self.batch_norm = batch_norm

    # -- parameters -------------------------------------------------------------------

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0
                   for s in sizes):
            raise ValueError(f"hidden_layer_sizes: expected positive integers, got "
                             f"{self.hidden_layer_sizes!r}")
        return [int(s) for s in sizes]

    def _activation_spec(self):
        def one(spec):
            if isinstance(spec, str):
                return ACTIVATION_ALIASES.get(spec, spec)
            name, param = spec
            return (ACTIVATION_ALIASES.get(name, name), param)
        spec = self.activation
        return [one(s) for s in spec] if isinstance(spec, list) else one(spec)

    def _optimizer(self):
        """The solver's fastmlp optimizer: alpha is weight decay per sample (each batch
        divides it by its size, as scikit-learn does)."""
        if self.solver == "adam":
            return optim.Adam(self.learning_rate_init, betas=(self.beta_1, self.beta_2),
                              eps=self.epsilon, weight_decay=self.alpha, decay_per_sample=True,
                              eps_style="sklearn")
        schedule = (optim.InvScaling(self.power_t)
                    if self.learning_rate == "invscaling" else None)
        return optim.SGD(self.learning_rate_init, momentum=self.momentum,
                         nesterov=self.nesterovs_momentum and self.momentum > 0,
                         weight_decay=self.alpha, schedule=schedule, decay_per_sample=True)

    # -- data -------------------------------------------------------------------------

    def _validate_X(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False,
                          dtype=(np.float64, np.float32))
        return X if is_sparse(X) else np.ascontiguousarray(X, dtype=self.net_.dtype)

    def _forward(self, X):
        """The network's outputs for X, a few thousand rows at a time when X is sparse."""
        X = self._validate_X(X)   # first: it raises NotFittedError before net_ exists
        if not is_sparse(X):
            return self.net_.forward(X)
        chunk = rows_per_chunk(X, 1)
        return np.concatenate([self.net_.forward(dense_rows(X, slice(lo, lo + chunk),
                                                            self.net_.dtype))
                               for lo in range(0, X.shape[0], chunk)])

    # -- fit --------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Fit the model to X and y (from scratch, or with warm_start from the current
        weights); sample_weight: one weight >= 0 per row (the loss is their weighted mean)."""
        self._validate_params()
        return self._fit(X, y, sample_weight, incremental=False)

    def _partial_fit(self, X, y, sample_weight):
        self._validate_params()
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return self._fit(X, y, sample_weight, incremental=True)

    def _fit(self, X, y, sample_weight, incremental):
        first = not hasattr(self, "net_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        sample_weight = self._weighted_by_class(y, sample_weight, incremental)
        Y = self._encode(y, first)
        self._random_state = check_random_state(self.random_state)
        if first:
            self._initialize(X, Y)
        Y = self._targets(Y)
        if is_sparse(X):   # CSR of the net's dtype once: each epoch reads its rows
            X = X.tocsr().astype(self.net_.dtype, copy=False)
        else:
            X = np.ascontiguousarray(X, dtype=self.net_.dtype)
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, Y, sample_weight)
        else:
            self._fit_stochastic(X, Y, sample_weight, incremental)
        if not all(np.isfinite(p).all() for p in self.net_.weights + self.net_.biases):
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")
        training.warn_if_untrained(self.net_, X)
        return self

    def _weighted_by_class(self, y, sample_weight, incremental):
        """sample_weight, times the class weights (the classifier's class_weight)."""
        return sample_weight

    def _targets(self, Y):
        """The encoded targets as the network trains on them: class labels for a softmax
        output (the cheaper loss kernel), else a matrix of its dtype."""
        if self.out_activation_ == "softmax":
            return Y.argmax(axis=1)
        return np.ascontiguousarray(Y, dtype=self.net_.dtype)

    def _initialize(self, X, Y):
        """A new network, its weights drawn as scikit-learn draws them (Glorot uniform from
        its random_state, bound sqrt(factor / (fan_in + fan_out)), factor 2 for a logistic
        network and 6 otherwise, biases too), and the fitted attributes reset."""
        dtype = self.dtype or X.dtype.name
        self.out_activation_ = self._output_activation()
        self.n_outputs_ = Y.shape[1]
        sizes = [X.shape[1], *self._hidden_sizes(), self.n_outputs_]
        output = OUTPUT_OF[self.out_activation_]
        self.net_ = MLP(sizes, activation=self._activation_spec(), output=output,
                        backend=self.backend, dtype=dtype, seed=None, dropout=self.dropout,
                        batch_norm=self.batch_norm)
        factor = 2.0 if all(a == "sigmoid" for a, _ in self.net_.activations) else 6.0
        weights, biases = [], []
        for w in self.net_.weights:
            fan_out, fan_in = w.shape
            bound = np.sqrt(factor / (fan_in + fan_out))
            weights.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out)).T)
            biases.append(self._random_state.uniform(-bound, bound, fan_out))
        self.net_.weights, self.net_.biases = weights, biases
        self.n_iter_ = 0
        self.t_ = 0
        self._sgd = None
        if self.solver != "lbfgs":
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.validation_loss_curve_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
                self._best_params = self._copy_model()
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.validation_loss_curve_ = None
                self.best_validation_score_ = None

    def _batch_size(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going "
                          "to be clipped")
        return int(np.clip(self.batch_size, 1, n))

    def _fit_stochastic(self, X, Y, sample_weight, incremental):
        if not incremental or self._sgd is None:
            self._sgd, self._sgd_lr = self._optimizer(), None
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if self.early_stopping:
            stratify = Y if is_classifier(self) and self.n_outputs_ == 1 else None
            arrays = [X, Y] if sample_weight is None else [X, Y, sample_weight]
            split = train_test_split(*arrays, random_state=self._random_state,
                                     test_size=self.validation_fraction, stratify=stratify)
            X, X_val, Y, Y_val = split[:4]
            sample_weight, sw_val = (None, None) if sample_weight is None else split[4:]
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
        n = X.shape[0]
        batch_size = self._batch_size(n)
        self._sample_idx = np.arange(n)
        self.n_iter_ = 0
        try:
            for _ in range(self.max_iter):
                self._epoch(X, Y, sample_weight, batch_size)
                if self.early_stopping:
                    self._validate_epoch(X_val, Y_val, sw_val)
                else:
                    self._track_loss()
                if self._no_improvement_count > self.n_iter_no_change and self._stop():
                    break
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                                  f"reached and the optimization hasn't converged yet.",
                                  ConvergenceWarning)
        except KeyboardInterrupt:   # the model keeps its last completed epoch
            warnings.warn("Training interrupted by user.")
        if self.early_stopping:
            for current, best in zip(training.model_state(self.net_), self._best_params):
                np.copyto(current, best)

    def _epoch(self, X, Y, sample_weight, batch_size):
        """One epoch of the solver: one update per batch, in the C++ trainer on the native
        backend."""
        self._carry_velocity()
        try:
            history = training.fit(self.net_, X, Y, epochs=1, batch_size=batch_size,
                                   optimizer=self._sgd,
                                   shuffle=self._shuffled if self.shuffle else False,
                                   check_untrained=False, sample_weight=sample_weight)
        except FloatingPointError as exc:   # the net keeps its last finite weights
            raise ValueError(f"Solver produced non-finite parameter weights. The input data "
                             f"may contain large values and need to be preprocessed ({exc})"
                             ) from exc
        self.n_iter_ += 1
        self.t_ += X.shape[0]
        self.loss_ = float(history.loss[0])
        self.loss_curve_.append(self.loss_)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")

    def _copy_model(self):
        """Copies of what training changes: the parameters (batch norm's too) and the
        running statistics."""
        return [a.copy() for a in training.model_state(self.net_)]

    def _shuffled(self, n):
        """scikit-learn's shuffle of an epoch: its previous order permuted by random_state,
        the draws of sklearn.utils.shuffle (without its argument checks, which cost more
        than a small epoch)."""
        permutation = np.arange(n)
        self._random_state.shuffle(permutation)
        self._sample_idx = self._sample_idx[permutation]
        return self._sample_idx

    def _carry_velocity(self):
        """scikit-learn's momentum keeps the rate inside the velocity (v ← μv − lr·g, W ← W +
        v); fastmlp's (torch's) outside (v ← μv + g, W ← W − lr·v). They are the same while
        the rate holds; when it changes between epochs (invscaling, adaptive), scaling the
        velocity by old rate / new rate keeps them the same."""
        lr = self._sgd.current_lr()
        previous, self._sgd_lr = getattr(self, "_sgd_lr", None), lr
        if previous is None or previous == lr or not self._sgd.buffers:
            return
        for buffers in self._sgd.buffers:
            for velocity in buffers:
                velocity *= velocity.dtype.type(previous / lr)

    def _track_loss(self):
        """scikit-learn's rule without early stopping: an epoch counts as no improvement
        unless the loss fell by more than tol below the best loss so far."""
        self._no_improvement_count = (self._no_improvement_count + 1
                                      if self.loss_curve_[-1] > self.best_loss_ - self.tol else 0)
        self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])

    def _validate_epoch(self, X_val, Y_val, sw_val):
        """Early stopping's rule: the validation score (accuracy or R²) must beat the best
        by tol; the weights of the best epoch are kept."""
        score = self._score_encoded(X_val, Y_val, sw_val)
        self.validation_scores_.append(score)
        self.validation_loss_curve_.append(self.net_.loss(
            dense_rows(X_val, slice(None), self.net_.dtype), Y_val, sample_weight=sw_val))
        if self.verbose:
            print(f"Validation score: {score:f}")
        self._no_improvement_count = (self._no_improvement_count + 1
                                      if score < self.best_validation_score_ + self.tol else 0)
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            self._best_params = self._copy_model()

    def _stop(self):
        """n_iter_no_change epochs without improvement: stop, or, with the adaptive rate,
        divide it by 5 and go on while it stays above 1e-6."""
        what = "Validation score" if self.early_stopping else "Training loss"
        message = (f"{what} did not improve more than tol={self.tol:f} for "
                   f"{self.n_iter_no_change} consecutive epochs.")
        if self.solver != "sgd" or self.learning_rate != "adaptive":
            if self.verbose:
                print(message + " Stopping.")
            return True
        if self._sgd.lr <= ADAPTIVE_MIN_LR:
            if self.verbose:
                print(message + " Learning rate too small. Stopping.")
            return True
        self._sgd.lr /= 5.0
        self._no_improvement_count = 0
        if self.verbose:
            print(message + f" Setting learning rate to {self._sgd.lr:f}")
        return False

    def _fit_lbfgs(self, X, Y, sample_weight):
        """scipy's L-BFGS-B over all the weights and biases, as scikit-learn runs it: J and
        its gradient of the whole set from fastmlp (one native call for dense X)."""
        net = self.net_
        if any(net.dropout) or any(net.batch_norm):
            raise ValueError("solver: 'lbfgs' minimises the loss of the whole set; dropout and "
                             "batch_norm train on mini-batches: use solver='adam' or 'sgd'")
        params = net.weights + net.biases
        sizes = np.cumsum([0] + [p.size for p in params])
        total_weight = X.shape[0] if sample_weight is None else float(sample_weight.sum())
        weight_decay = self.alpha / total_weight if total_weight else 0.0

        def loss_and_gradient(theta):
            for p, lo, hi in zip(params, sizes[:-1], sizes[1:]):
                p[...] = theta[lo:hi].reshape(p.shape)
            loss, dws, dbs = self._full_batch(X, Y, sample_weight, weight_decay)
            return loss, np.concatenate([g.ravel() for g in dws + dbs]).astype(np.float64)

        theta = np.concatenate([p.ravel() for p in params]).astype(np.float64)
        result = scipy.optimize.minimize(
            loss_and_gradient, theta, method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol})
        if result.status != 0:
            warnings.warn(f"lbfgs failed to converge after {result.nit} iteration(s) (status="
                          f"{result.status}): {result.message}. Increase the number of "
                          f"iterations or scale the data.", ConvergenceWarning)
        self.n_iter_ = min(result.nit, self.max_iter)
        self.loss_ = float(result.fun)
        for p, lo, hi in zip(params, sizes[:-1], sizes[1:]):
            p[...] = result.x[lo:hi].reshape(p.shape)

    def _full_batch(self, X, Y, sample_weight, weight_decay):
        """(J, ∂J/∂W, ∂J/∂b) of the whole set: one call, or, for sparse X, the weighted sum
        of a few thousand rows' at a time."""
        net = self.net_
        if not is_sparse(X):
            return net.loss_and_gradients(X, Y, weight_decay, sample_weight)
        chunk = rows_per_chunk(X, 1)
        weights = np.ones(X.shape[0]) if sample_weight is None else sample_weight
        total = weights.sum()
        loss, grads = 0.0, None
        for lo in range(0, X.shape[0], chunk):
            part = slice(lo, lo + chunk)
            share = weights[part].sum() / total if total else 0.0
            j, dws, dbs = net.loss_and_gradients(dense_rows(X, part, net.dtype), Y[part],
                                                 sample_weight=weights[part])
            loss += share * j
            scaled = [share * g for g in dws + dbs]
            grads = scaled if grads is None else [a + b for a, b in zip(grads, scaled)]
        n_weights = len(net.weights)
        dws = [g + weight_decay * w for g, w in zip(grads[:n_weights], net.weights)]
        loss += 0.5 * weight_decay * sum(float(np.vdot(w, w)) for w in net.weights)
        return loss, dws, grads[n_weights:]

    # -- fitted attributes in scikit-learn's layout -------------------------------------

    @property
    def coefs_(self):
        """Weight matrices as scikit-learn lays them out: coefs_[l] is W(l)ᵀ (s_l, s_(l+1))."""
        check_is_fitted(self)
        return [w.T for w in self.net_.weights]

    @property
    def intercepts_(self):
        check_is_fitted(self)
        return list(self.net_.biases)

    @property
    def n_layers_(self):
        check_is_fitted(self)
        return len(self.net_.weights) + 1

    def __sklearn_is_fitted__(self):
        return hasattr(self, "net_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by fastmlp: scikit-learn's MLPClassifier
    with the same parameters and defaults (see the module docstring), plus class_weight.

    Softmax outputs and cross-entropy for several classes; one sigmoid output for two
    classes; one sigmoid output per label (binary cross-entropy) for multi-label targets
    given as an indicator matrix.
    """

    _parameter_constraints = {**_BaseMLP._parameter_constraints,
                              "class_weight": [dict, StrOptions({"balanced"}), None]}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 backend="native", dtype=None, dropout=0.0, batch_norm=False,
                 class_weight=None):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state,
            tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            backend=backend, dtype=dtype, dropout=dropout, batch_norm=batch_norm)
        self.class_weight = class_weight

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(f"warm_start can only be used where `y` has the same "
                                     f"classes as in the previous call to fit. Previously got "
                                     f"{self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        return X, y

    def _encode(self, y, first):
        return self._label_binarizer.transform(y)

    def _output_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _weighted_by_class(self, y, sample_weight, incremental):
        if self.class_weight is None:
            return sample_weight
        if self._label_binarizer.y_type_.startswith("multilabel"):
            raise ValueError("class_weight: not supported for multi-label targets")
        if incremental and self.class_weight == "balanced":
            raise ValueError("class_weight 'balanced' is not supported for partial_fit: the "
                             "class frequencies of one batch are not those of the data; pass a "
                             "dict of weights")
        by_class = compute_sample_weight(self.class_weight, y)
        return by_class if sample_weight is None else sample_weight * by_class

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch of the solver over X, y. `classes` (all labels that will ever be seen)
        is required on the first call, as in scikit-learn."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel")
                                      else classes)
        return self._partial_fit(X, y, sample_weight)

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in the order of classes_.

        For multi-label targets, column k is the probability that label k is on."""
        p = self._forward(X)
        if self.n_outputs_ == 1:
            p = p[:, 0]
            return np.column_stack([1 - p, p])
        return p

    def predict_log_proba(self, X):
        return np.log(self.predict_proba(X))

    def predict(self, X):
        p = self._forward(X)
        return self._label_binarizer.inverse_transform(p[:, 0] if self.n_outputs_ == 1 else p)

    def _score_encoded(self, X, Y, sample_weight):
        if Y.ndim == 1:   # class labels
            y = self.classes_[Y]
        else:
            y = self._label_binarizer.inverse_transform(Y[:, 0] if self.n_outputs_ == 1 else Y)
        return accuracy_score(y, self.predict(X), sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by fastmlp: scikit-learn's MLPRegressor with
    the same parameters and defaults (see the module docstring).

    loss="squared_error": identity outputs and half the squared error; loss="poisson": the
    exp output (predictions e^z) and half the Poisson deviance, for counts (y >= 0).

    scale_targets=True (fastmlp's extension, squared_error only) trains on targets shifted
    and scaled to mean 0 and standard deviation 1 per column (their statistics from the
    first fit / partial_fit), and predict maps back: targets of any size (even past 1e154,
    whose squares overflow float64) then train with the same learning rate; loss_curve_ is
    in the scaled units.
    """

    _parameter_constraints = {**_BaseMLP._parameter_constraints,
                              "loss": [StrOptions({"squared_error", "poisson"})],
                              "scale_targets": ["boolean"]}

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 backend="native", dtype=None, dropout=0.0, batch_norm=False,
                 scale_targets=False):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state,
            tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            backend=backend, dtype=dtype, dropout=dropout, batch_norm=batch_norm)
        self.loss = loss
        self.scale_targets = scale_targets

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _output_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _encode(self, y, first):
        Y = y.reshape(len(y), -1).astype(np.float64)
        if not first and Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y: expected {self.n_outputs_} outputs as in the previous fit, "
                             f"got {Y.shape[1]}")
        if self.scale_targets and self.loss == "poisson":
            raise ValueError("scale_targets: Poisson targets are counts; they cannot be shifted")
        if first:   # later partial_fit and warm_start calls keep the first fit's scaling
            self._y_mean, self._y_scale = self._target_scaling(Y)
        return (Y - self._y_mean) / self._y_scale

    def _target_scaling(self, Y):
        """(mean, standard deviation) per column with scale_targets, else (0, 1). Computed
        on Y / its largest magnitude, scaled back: squares of targets past ~1e154 overflow."""
        if not self.scale_targets or len(Y) == 0:
            return np.zeros(Y.shape[1]), np.ones(Y.shape[1])
        peak = np.max(np.abs(Y), axis=0)
        peak = np.where(peak > 0, peak, 1.0)
        std = (Y / peak).std(axis=0) * peak
        return (Y / peak).mean(axis=0) * peak, np.where(std > 0, std, 1.0)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch of the solver over X, y (the network is created on the first call)."""
        return self._partial_fit(X, y, sample_weight)

    def predict(self, X):
        p = self._forward(X)
        if self.scale_targets:
            p = p * self._y_scale + self._y_mean
        return p[:, 0] if self.n_outputs_ == 1 else p

    def _score_encoded(self, X, Y, sample_weight):
        # R² of each column is unchanged when targets and predictions share its scaling
        p = self._forward(X)
        return r2_score(Y[:, 0] if self.n_outputs_ == 1 else Y,
                        p[:, 0] if self.n_outputs_ == 1 else p, sample_weight=sample_weight)
