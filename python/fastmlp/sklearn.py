"""scikit-learn estimators on fastmlp (optional extra ``sklearn``: ``pip install 'fastmlp[sklearn]'``).

    from fastmlp.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(30, 30), activation="logistic").fit(X, y)
    clf.predict_proba(X_test)

Drop-ins for sklearn.neural_network.MLPClassifier / MLPRegressor where the concept is the
same (hidden_layer_sizes, activation, alpha, batch_size, learning_rate_init, max_iter,
shuffle, random_state, tol, early_stopping, validation_fraction, n_iter_no_change,
warm_start, verbose, and the fitted attributes classes_, n_features_in_, loss_curve_,
n_iter_, coefs_, intercepts_...). The differences a scikit-learn user should know:

- The optimiser is plain mini-batch SGD (the lecture's), so the defaults differ:
  learning_rate_init=0.1 and batch_size="auto" = min(32, n_samples).
- alpha is fastmlp's weight_decay: the loss gains (alpha/2)·Σ W² per mini-batch mean
  loss (scikit-learn divides its alpha by the batch size instead).
- activation also takes "sigmoid" (= "logistic"), "leaky_relu", "elu", "maxout", a
  (name, param) pair such as ("leaky_relu", 0.2) or ("maxout", 3), or a list with one
  spec per hidden layer.
- backend ("native" or "numpy") and dtype ("float32" or "float64") pick the kernels and
  the arithmetic precision; the underlying fastmlp.MLP is the fitted attribute ``net_``.
- sample_weight is not supported.
"""
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import (_check_partial_fit_first_call, check_classification_targets,
                                      type_of_target, unique_labels)
from sklearn.utils.validation import check_is_fitted, column_or_1d

from . import training
from .checks import check_int, check_real, is_int
from .model import MLP

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

ACTIVATION_ALIASES = {"logistic": "sigmoid"}


class _BaseMLP(BaseEstimator):
    """Shared fit loop; subclasses say how targets map to the network's outputs."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, alpha=0.0001,
                 batch_size="auto", learning_rate_init=0.1, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 backend="native", dtype="float32", dropout=0.0, batch_norm=False):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.dtype = dtype
        self.dropout = dropout          # extensions: fastmlp.MLP's dropout and batch_norm
        self.batch_norm = batch_norm

    # -- parameters -------------------------------------------------------------------

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if np.isscalar(sizes) else list(sizes)
        if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0
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

    def _check_params(self, incremental=False):
        if incremental and self.early_stopping:
            raise ValueError("early_stopping: partial_fit does not support early_stopping=True")

        check_real(self.alpha, "alpha", 0)
        check_real(self.learning_rate_init, "learning_rate_init", 0, strict=True)
        check_int(self.max_iter, "max_iter", minimum=1)
        if not (self.batch_size == "auto" or (is_int(self.batch_size) and self.batch_size >= 1)):
            raise ValueError(f"batch_size: expected 'auto' or an integer >= 1, got "
                             f"{self.batch_size!r}")
        check_real(self.tol, "tol", 0)
        if not 0 < check_real(self.validation_fraction, "validation_fraction") < 1:
            raise ValueError(f"validation_fraction: expected a fraction in (0, 1), got "
                             f"{self.validation_fraction!r}")
        check_int(self.n_iter_no_change, "n_iter_no_change", minimum=1)
        for name in ("shuffle", "verbose", "warm_start", "early_stopping"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype: expected 'float32' or 'float64', got {self.dtype!r}")

    # -- data -------------------------------------------------------------------------

    def _validate(self, X, y, reset):
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=not is_classifier(self),
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return np.ascontiguousarray(X, dtype=self.dtype), y

    def _validate_X(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        return np.ascontiguousarray(X, dtype=self.net_.dtype)

    # -- training ---------------------------------------------------------------------

    def _new_net(self, n_features, n_outputs):
        self._random_state = check_random_state(self.random_state)
        seed = int(self._random_state.randint(np.iinfo(np.int32).max))
        self.net_ = MLP([n_features, *self._hidden_sizes(), n_outputs],
                        activation=self._activation_spec(),
                        output=ACTIVATION_ALIASES.get(self.out_activation_, self.out_activation_),
                        backend=self.backend, dtype=self.dtype, seed=seed,
                        dropout=self.dropout, batch_norm=self.batch_norm)
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self.best_loss_ = np.inf
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _fit(self, X, Y, incremental):
        """Train on X and the encoded targets Y: max_iter epochs, or one when incremental."""
        if self.early_stopping:
            stratify = Y if is_classifier(self) and self.n_outputs_ == 1 else None
            X, X_val, Y, Y_val = train_test_split(X, Y, random_state=self._random_state,
                                                  test_size=self.validation_fraction,
                                                  stratify=stratify)
            if len(X_val) < 2:
                raise ValueError("validation_fraction: the validation set has fewer than 2 "
                                 "rows; increase validation_fraction or the data")
            best_params = None
        n = X.shape[0]
        batch_size = min(32, n) if self.batch_size == "auto" else min(self.batch_size, n)
        for _ in range(1 if incremental else self.max_iter):
            try:
                history = training.fit(self.net_, X, Y, epochs=1, batch_size=batch_size,
                                       lr=self.learning_rate_init, weight_decay=self.alpha,
                                       shuffle=self.shuffle, check_untrained=False)
            except FloatingPointError as exc:   # the net keeps its last finite weights
                raise ValueError(f"learning_rate_init: training diverged with "
                                 f"learning_rate_init={self.learning_rate_init}; lower it or "
                                 f"scale X ({exc})") from exc
            self.n_iter_ += 1
            self.t_ += n
            self.loss_ = float(history.loss[-1])
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            if self.early_stopping:
                score = self._score_encoded(X_val, Y_val)
                self.validation_scores_.append(score)
                if self.verbose:
                    print(f"Validation score: {score:f}")
                improved = score >= self.best_validation_score_ + self.tol
                if score > self.best_validation_score_:
                    self.best_validation_score_ = score
                    best_params = self._copy_params()
            else:
                improved = self.loss_ <= self.best_loss_ - self.tol
                self.best_loss_ = min(self.best_loss_, self.loss_)
            self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
            if incremental:
                break
            if self._no_improvement_count > self.n_iter_no_change:
                if self.verbose:
                    what = "Validation score" if self.early_stopping else "Training loss"
                    print(f"{what} did not improve more than tol={self.tol:f} for "
                          f"{self.n_iter_no_change} consecutive epochs. Stopping.")
                break
        else:
            if not incremental:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                              "reached and the optimization hasn't converged yet.",
                              ConvergenceWarning)
        if self.early_stopping and best_params is not None:
            self._restore_params(best_params)
        training.warn_if_untrained(self.net_, X)   # once, after the last epoch
        return self

    def _copy_params(self):
        return [w.copy() for w in self.net_.weights], [b.copy() for b in self.net_.biases]

    def _restore_params(self, params):
        for current, best in zip(self.net_.weights + self.net_.biases, params[0] + params[1]):
            current[...] = best

    def fit(self, X, y):
        """Train from scratch (or, with warm_start, from the current weights) on X, y."""
        self._check_params()
        first = not (self.warm_start and hasattr(self, "net_"))
        self._no_improvement_count = 0
        return self._validate_and_fit(X, y, first, incremental=False)

    def _validate_and_fit(self, X, y, first, incremental):
        """Check X and y, encode the targets, make the network on the first call, train."""
        X, y = self._validate(X, y, reset=first)
        Y = self._encode_targets(y, first=first, incremental=incremental)
        if first:
            self._new_net(X.shape[1], self.n_outputs_)
        else:
            self._check_outputs(Y)
        return self._fit(X, Y, incremental=incremental)

    def _check_outputs(self, Y):
        if Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y: expected {self.n_outputs_} outputs as in the previous fit, "
                             f"got {Y.shape[1]}")

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

    def _forward(self, X):
        X = self._validate_X(X)   # first: it raises NotFittedError before net_ exists
        return self.net_.forward(X)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by fastmlp.

    Softmax outputs and cross-entropy for several classes; one sigmoid output for two
    classes; one sigmoid output per label (binary cross-entropy, the lecture's "extended"
    cross-entropy) for multi-label targets given as an indicator matrix. See the module
    docstring for the parameters and how they relate to scikit-learn's.
    """

    def _encode_targets(self, y, first, incremental):
        if first:
            check_classification_targets(y)
            if not incremental:
                self._label_binarizer = LabelBinarizer().fit(y)
                self.classes_ = self._label_binarizer.classes_
            self._set_outputs(y)
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental and set(classes) != set(self.classes_):
                raise ValueError(f"y: warm_start needs the classes of the previous fit "
                                 f"{self.classes_}, got {classes}")
            if len(np.setdiff1d(classes, self.classes_)):
                raise ValueError(f"y: has classes {np.setdiff1d(classes, self.classes_)} "
                                 f"not in classes_ {self.classes_}")
        return np.ascontiguousarray(self._label_binarizer.transform(y), dtype=self.dtype)

    def _set_outputs(self, y):
        self.out_activation_ = ("logistic" if self._label_binarizer.y_type_ != "multiclass"
                                else "softmax")
        self.n_outputs_ = len(self.classes_) if self._label_binarizer.y_type_ != "binary" else 1

    def partial_fit(self, X, y, classes=None):
        """One epoch of SGD over X, y. `classes` (all labels that will ever be seen) is
        required on the first call, as in scikit-learn."""
        self._check_params(incremental=True)
        first = _check_partial_fit_first_call(self, classes)
        if first:
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel")
                                      else classes)
            self.classes_ = self._label_binarizer.classes_
        return self._validate_and_fit(X, y, first, incremental=True)

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

    def _score_encoded(self, X, Y):
        from sklearn.metrics import accuracy_score
        return accuracy_score(self._label_binarizer.inverse_transform(
            Y[:, 0] if self.n_outputs_ == 1 else Y), self.predict(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multilabel": True}


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by fastmlp: identity outputs and the
    quadratic loss (1/2n)·Σ(a − y)², one output per target column.

    The network learns standardised targets (each column shifted and scaled to mean 0 and
    standard deviation 1 on the first fit / partial_fit call), so that plain SGD's step
    size does not depend on the targets' units; predict maps back. loss_curve_ is
    therefore in standardised units. See the module docstring for the parameters and how
    they relate to scikit-learn's.
    """

    def _encode_targets(self, y, first, incremental):
        Y = y.reshape(len(y), -1).astype(np.float64)
        if first:
            self.out_activation_ = "identity"
            self.n_outputs_ = Y.shape[1]
            # mean and standard deviation of Y / its largest magnitude, scaled back: the
            # squares of targets past ~1e154 would overflow float64
            peak = np.max(np.abs(Y), axis=0) if len(Y) else np.ones(Y.shape[1])
            peak = np.where(peak > 0, peak, 1.0)
            self._y_mean = (Y / peak).mean(axis=0) * peak
            std = (Y / peak).std(axis=0) * peak
            self._y_scale = np.where(std > 0, std, 1.0)
        return np.ascontiguousarray((Y - self._y_mean) / self._y_scale, dtype=self.dtype)

    def partial_fit(self, X, y):
        """One epoch of SGD over X, y (the network is created on the first call)."""
        self._check_params(incremental=True)
        return self._validate_and_fit(X, y, first=not hasattr(self, "net_"), incremental=True)

    def predict(self, X):
        p = self._forward(X) * self._y_scale + self._y_mean
        return p[:, 0] if self.n_outputs_ == 1 else p

    def _score_encoded(self, X, Y):
        # R² of each column is unchanged when targets and predictions share its scaling
        from sklearn.metrics import r2_score
        return r2_score(Y, self._forward(X))
