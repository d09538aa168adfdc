// The training bindings: TrainingWorkspace, a thin wrapper of Trainer<T> (csrc/mlp.h). It
// converts and checks the Python arguments, releases the GIL around the Trainer's call and
// converts its result; the network's rules and the call's own checks are the Trainer's.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "bindings/args.h"
#include "kernels/activation.h"
#include "mlp.h"

namespace fastmlp::bindings {

// A TrainingWorkspace holds one network's buffers for batches of up to max_batch rows; the
// MLP keeps it across steps and epochs, so a steady-state step allocates nothing. The
// weights stay Python's ndarrays: they are passed to every call and updated in place.
namespace {

std::vector<long long> widths(const py::sequence& sizes) {
  std::vector<long long> out;
  for (py::handle item : sizes) {
    if (!py::isinstance<py::int_>(item)) throw py::type_error("sizes: expected integer widths");
    out.push_back(py::cast<long long>(item));
  }
  return out;
}

// hidden: one (name, param) per hidden layer; ("maxout", k) for k pieces per unit.
HiddenLayer hidden_layer(const py::handle& spec, std::size_t l) {
  const std::string arg = "hidden[" + std::to_string(l) + "]";
  if (!py::isinstance<py::tuple>(spec) && !py::isinstance<py::list>(spec))
    throw py::type_error(arg + ": expected a pair (activation name, param)");
  auto pair = py::reinterpret_borrow<py::sequence>(spec);
  if (pair.size() != 2 || !py::isinstance<py::str>(pair[0]))
    throw py::type_error(arg + ": expected a pair (activation name, param)");
  const std::string name = py::cast<std::string>(pair[0]);
  HiddenLayer layer;
  py::object param = pair[1];
  if (name == "maxout") {
    if (!py::isinstance<py::int_>(param)) throw py::type_error(arg + ": expected an integer number of maxout pieces");
    long long k = py::cast<long long>(param);
    if (k < 1) throw py::value_error(arg + ": expected maxout pieces >= 1, got " + std::to_string(k));
    layer.maxout_pieces = static_cast<std::size_t>(k);
    return layer;
  }
  if (!parse_activation(name.c_str(), &layer.act))
    throw py::value_error(arg + ": unknown activation '" + name + "'");
  if (!py::isinstance<py::int_>(param) && !py::isinstance<py::float_>(param))
    throw py::type_error(arg + ": expected a number as the activation's parameter");
  layer.param = py::cast<double>(param);  // finite: make_network's rule
  return layer;
}

// One call's weight and bias pointers, and references that keep their arrays alive while
// the GIL is released. Sized once per workspace, so a call allocates nothing for them.
template <class T>
struct ParamSlots {
  explicit ParamSlots(std::size_t layers) : keep(2 * layers), w(layers), b(layers) {}
  std::vector<py::object> keep;
  std::vector<T*> w, b;
};

// Drops the references of a ParamSlots when the call ends, however it ends.
template <class T>
class ReleaseParams {
 public:
  explicit ReleaseParams(ParamSlots<T>& slots) : slots_(slots) {}
  ~ReleaseParams() {
    for (py::object& o : slots_.keep) o = py::object();
  }
  ReleaseParams(const ReleaseParams&) = delete;
  ReleaseParams& operator=(const ReleaseParams&) = delete;

 private:
  ParamSlots<T>& slots_;
};

// A list of `count` numpy arrays named `name` ("expected a list of numpy arrays").
inline py::sequence array_list(const py::object& obj, const char* name, std::size_t count) {
  if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj))
    throw py::type_error(std::string(name) + ": expected a list of numpy arrays");
  auto list = py::reinterpret_borrow<py::sequence>(obj);
  if (list.size() != count)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(count) + " arrays, got " +
                          std::to_string(list.size()));
  return list;
}

// `item`, named `arg`, as an array updated in place: exactly dtype T, of shape rows x cols
// (cols 0: 1-D of rows), C-contiguous, aligned and writable (never a silent copy); kept
// alive in `keep` while the call runs.
template <class T>
T* writable_array(const py::object& item, const std::string& arg, py::ssize_t rows, py::ssize_t cols,
                  py::object& keep) {
  py::array arr = require_ndarray(item, arg.c_str());
  if (!arr.dtype().equal(py::dtype::of<T>()))
    throw py::type_error(arg + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(arr.dtype())));
  const py::ssize_t ndim = cols ? 2 : 1;
  bool same = arr.ndim() == ndim && arr.shape(0) == rows && (ndim == 1 || arr.shape(1) == cols);
  if (!same)
    throw py::value_error(arg + ": expected shape (" + std::to_string(rows) +
                          (cols ? ", " + std::to_string(cols) + ")" : ",)") + ", got " + shape_str(arr));
  if (!py::isinstance<py::array_t<T, py::array::c_style>>(arr) ||
      reinterpret_cast<std::uintptr_t>(arr.data()) % alignof(T) != 0)
    throw py::value_error(arg + ": expected a C-contiguous, aligned array (it is updated in place)");
  if (!arr.writeable()) throw py::value_error(arg + ": expected a writable array, got a read-only one");
  keep = arr;
  return static_cast<T*>(arr.mutable_data());
}

// weights[l] (rows(l), s_l) and biases[l] (rows(l),), as writable_array takes them.
template <class T>
void params(ParamSlots<T>& out, const Network& net, const py::object& weights,
            const py::object& biases, const char* weights_name = "weights",
            const char* biases_name = "biases") {
  for (auto [obj, name, is_weight] : {std::tuple{&weights, weights_name, true}, std::tuple{&biases, biases_name, false}}) {
    py::sequence list = array_list(*obj, name, net.n_layers());
    for (std::size_t l = 0; l < net.n_layers(); ++l) {
      const std::string arg = std::string(name) + "[" + std::to_string(l) + "]";
      (is_weight ? out.w : out.b)[l] =
          writable_array<T>(list[l], arg, py::ssize_t(net.rows(l)), is_weight ? py::ssize_t(net.sizes[l]) : 0,
                            out.keep[(is_weight ? 0 : net.n_layers()) + l]);
    }
  }
}

// The batch-normalised layers of net, in order.
inline std::vector<std::size_t> normalised_layers(const Network& net) {
  std::vector<std::size_t> layers;
  for (std::size_t l = 0; l < net.hidden.size(); ++l)
    if (net.has_batch_norm(l)) layers.push_back(l);
  return layers;
}

// Per layer, one array of batch normalization (gamma, beta, running mean or variance, or a
// gradient or optimizer buffer of one), null where a layer has none: `arrays` holds one
// (rows(l),) array per batch-normalised layer l, in order, as writable_array takes them.
template <class T>
struct NormSlots {
  explicit NormSlots(std::size_t layers) : keep(layers), at(layers, nullptr) {}
  std::vector<py::object> keep;
  std::vector<T*> at;

  void fill(const Network& net, const py::object& arrays, const char* name) {
    const std::vector<std::size_t> layers = normalised_layers(net);
    py::sequence list = array_list(arrays, name, layers.size());
    for (std::size_t j = 0; j < layers.size(); ++j)
      at[layers[j]] = writable_array<T>(list[j], std::string(name) + "[" + std::to_string(j) + "]",
                                        py::ssize_t(net.rows(layers[j])), 0, keep[layers[j]]);
  }
  T* const* data() { return at.data(); }
};

// Drops the references of NormSlots when the call ends, however it ends.
template <class T>
class ReleaseNorms {
 public:
  explicit ReleaseNorms(std::vector<NormSlots<T>>& slots) : slots_(slots) {}
  ~ReleaseNorms() {
    for (NormSlots<T>& s : slots_)
      for (py::object& o : s.keep) o = py::object();
  }
  ReleaseNorms(const ReleaseNorms&) = delete;
  ReleaseNorms& operator=(const ReleaseNorms&) = delete;

 private:
  std::vector<NormSlots<T>>& slots_;
};

template <class T>
struct CheckedBatch {
  CArray<T> x;
  CArray<std::int64_t> labels;
  CArray<T> values;
  CArray<T> sample_weight;
  Targets<T> targets;
  std::size_t n;
};

// x (n, s_1) of dtype T; y integer labels (n,) for a softmax output, or (n, K) of dtype T;
// sample_weight None or (n,) of dtype T, finite and >= 0.
template <class T>
CheckedBatch<T> batch(const Network& net, const py::object& x_obj, const py::object& y_obj,
                      const py::object& sample_weight) {
  CheckedBatch<T> out;
  py::array x = require_ndarray(x_obj, "x"), y = require_ndarray(y_obj, "y");
  if (!x.dtype().equal(py::dtype::of<T>()))
    throw py::type_error("x: expected the model's dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(x.dtype())));
  require_ndim(x, "x", 2, "(n, sizes[0])");
  if (std::size_t(x.shape(1)) != net.sizes.front())
    throw py::value_error("x: expected " + std::to_string(net.sizes.front()) +
                          " columns (sizes[0]), got shape " + shape_str(x));
  out.x = CArray<T>::ensure(x);
  out.n = static_cast<std::size_t>(x.shape(0));
  out.sample_weight = require_sample_weight<T>(sample_weight, x.shape(0), x, "x");
  out.targets.weights = weights(out.sample_weight);
  const std::size_t k = net.sizes.back();
  const char kind = y.dtype().kind();
  if (kind == 'i' || kind == 'u') {
    if (net.output != Output::softmax)
      throw py::type_error("y: integer labels need a softmax output; expected a float (n, K) array");
    if (y.ndim() != 1 || std::size_t(y.shape(0)) != out.n)
      throw py::value_error("y: expected integer labels of shape (" + std::to_string(out.n) +
                            ",), got shape " + shape_str(y));
    out.labels = require_indices(y, "y", static_cast<std::int64_t>(k), "class labels < K");
    out.targets.labels = out.labels.data();
    return out;
  }
  if (!y.dtype().equal(py::dtype::of<T>()))
    throw py::type_error("y: expected integer labels or the model's dtype " +
                         std::string(py::str(py::dtype::of<T>())) + ", got " + std::string(py::str(y.dtype())));
  if (y.ndim() != 2 || std::size_t(y.shape(0)) != out.n || std::size_t(y.shape(1)) != k)
    throw py::value_error("y: expected shape (" + std::to_string(out.n) + ", " + std::to_string(k) +
                          "), got " + shape_str(y));
  out.values = CArray<T>::ensure(y);
  out.targets.values = out.values.data();
  return out;
}

// Raised as _core.NonFiniteInputError, a ValueError: fit() tells it apart from a bad argument.
struct NonFiniteInput : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Hits count rows for classification (an int in Python) and are a sum of squares for
// regression (identity and exp outputs).
py::tuple result(const Network& net, StepResult r) {
  if (!r.x_finite) throw NonFiniteInput("x: a row contains NaN or infinity");
  py::object score_sum = net.output == Output::identity || net.output == Output::exp
                             ? py::object(py::float_(r.score_sum))
                             : py::object(py::int_(static_cast<long long>(r.score_sum)));
  return py::make_tuple(r.loss, score_sum);
}

// Batch normalization's arrays of a call, as Python gives them: one list per kind, one
// array per batch-normalised layer (empty lists for a net without).
struct NormArgs {
  py::object gammas, betas, running_means, running_vars;
};

// The update rule of a step or epoch, as Python gives it (python/fastmlp/native_training.py
// builds it from a fastmlp.optim optimizer): before the dtype is known.
struct UpdateArgs {
  UpdateRule settings;
  py::object state;  // one (per-weight arrays, per-bias arrays) pair per buffer of the rule
};

UpdateArgs update_args(double lr, double weight_decay, const std::string& rule,
                       const py::object& penalty, double momentum, bool nesterov,
                       const py::object& betas, double eps, bool sklearn_eps, bool decoupled,
                       long long step, const py::object& state, bool decay_per_sample,
                       std::uint64_t mask_seed) {
  UpdateArgs args;
  UpdateRule& up = args.settings;
  if (rule == "sgd") up.rule = Rule::sgd;
  else if (rule == "momentum") up.rule = Rule::momentum;
  else if (rule == "adam") up.rule = Rule::adam;
  else throw py::value_error("rule: expected 'sgd', 'momentum' or 'adam', got '" + rule + "'");
  up.lr = lr;
  up.weight_decay = weight_decay;
  up.penalty = penalty.is_none() ? weight_decay : require_finite_number<double>(penalty, "penalty");
  if (!(momentum >= 0.0 && momentum < 1.0))
    throw py::value_error("momentum: expected a number in [0, 1), got " + std::to_string(momentum));
  up.momentum = momentum;
  up.nesterov = nesterov;
  auto pair = py::reinterpret_borrow<py::sequence>(betas);
  if (!py::isinstance<py::sequence>(betas) || pair.size() != 2)
    throw py::type_error("betas: expected a pair of numbers");
  up.beta1 = require_finite_number<double>(pair[0], "betas[0]");
  up.beta2 = require_finite_number<double>(pair[1], "betas[1]");
  for (double beta : {up.beta1, up.beta2})
    if (!(beta >= 0.0 && beta < 1.0)) throw py::value_error("betas: expected numbers in [0, 1)");
  if (!(eps > 0.0) || !std::isfinite(eps)) throw py::value_error("eps: expected a finite number > 0");
  up.eps = eps;
  up.sklearn_eps = sklearn_eps;
  up.decoupled = decoupled;
  up.step = step;
  up.decay_per_sample = decay_per_sample;
  up.mask_seed = mask_seed;
  args.state = state;
  return args;
}

// progress(batches_done) called from an epoch running without the GIL: at most once per
// `interval` seconds of wall time, so taking the GIL costs nothing measurable (a clock read
// per batch otherwise). A Python exception it raises (KeyboardInterrupt: Ctrl-C is handled
// when Python code runs) stops the epoch; Python then undoes it. None: no calls.
BatchDone throttled(const py::object& progress, double interval) {
  if (progress.is_none()) return {};
  using clock = std::chrono::steady_clock;
  const auto every = std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(interval));
  return [&progress, every, last = clock::now()](std::size_t batches_done) mutable {
    const auto now = clock::now();
    if (now - last < every) return;
    last = now;
    py::gil_scoped_acquire gil;
    progress(batches_done);
  };
}

class TrainingWorkspace {
 public:
  TrainingWorkspace(const py::sequence& sizes, const py::sequence& hidden,
                    const std::string& output, const std::string& loss, const py::object& dtype,
                    long long max_batch, const std::vector<double>& dropout,
                    const std::vector<bool>& batch_norm) {
    std::vector<HiddenLayer> layers;
    for (std::size_t l = 0; l < hidden.size(); ++l) layers.push_back(hidden_layer(hidden[l], l));
    if (!dropout.empty()) {
      if (dropout.size() != layers.size())
        throw py::value_error("dropout: expected one rate per hidden layer (" +
                              std::to_string(layers.size()) + "), got " + std::to_string(dropout.size()));
      for (std::size_t l = 0; l < layers.size(); ++l) layers[l].dropout = dropout[l];  // checked by make_network
    }
    if (!batch_norm.empty()) {
      if (batch_norm.size() != layers.size())
        throw py::value_error("batch_norm: expected one flag per hidden layer (" +
                              std::to_string(layers.size()) + "), got " + std::to_string(batch_norm.size()));
      for (std::size_t l = 0; l < layers.size(); ++l) layers[l].batch_norm = batch_norm[l];
    }
    const Network net = make_network(widths(sizes), std::move(layers), output, loss, max_batch);
    const auto batch = static_cast<std::size_t>(max_batch);
    py::dtype dt = py::dtype::from_args(dtype);
    if (dt.equal(py::dtype::of<float>())) f32_ = std::make_unique<Typed<float>>(net, batch);
    else if (dt.equal(py::dtype::of<double>())) f64_ = std::make_unique<Typed<double>>(net, batch);
    else throw py::type_error("dtype: expected float32 or float64, got " + std::string(py::str(dt)));
  }

  std::size_t max_batch() const { return f32_ ? f32_->trainer.max_batch() : f64_->trainer.max_batch(); }
  py::dtype dtype() const { return f32_ ? py::dtype::of<float>() : py::dtype::of<double>(); }

  py::tuple step(const py::object& weights, const py::object& biases, const py::object& x,
                 const py::object& y, double lr, double weight_decay, const std::string& rule,
                 const py::object& penalty, double momentum, bool nesterov, const py::object& betas,
                 double eps, bool sklearn_eps, bool decoupled, long long step, const py::object& state,
                 bool decay_per_sample, const py::object& sample_weight, std::uint64_t mask_seed,
                 const py::object& gammas, const py::object& betas_,
                 const py::object& running_means, const py::object& running_vars) {
    const UpdateArgs up = update_args(lr, weight_decay, rule, penalty, momentum, nesterov, betas,
                                      eps, sklearn_eps, decoupled, step, state, decay_per_sample,
                                      mask_seed);
    const NormArgs norms{gammas, betas_, running_means, running_vars};
    if (f32_) return step_as(*f32_, weights, biases, x, y, sample_weight, up, norms);
    return step_as(*f64_, weights, biases, x, y, sample_weight, up, norms);
  }

  py::tuple epoch(const py::object& weights, const py::object& biases, const py::object& x,
                  const py::object& y, const py::object& order, long long batch_size, double lr,
                  double weight_decay, const std::string& rule, const py::object& penalty,
                  double momentum, bool nesterov, const py::object& betas, double eps,
                  bool sklearn_eps, bool decoupled, long long step, const py::object& state,
                  bool decay_per_sample, const py::object& sample_weight, std::uint64_t mask_seed,
                  const py::object& gammas, const py::object& betas_,
                  const py::object& running_means, const py::object& running_vars,
                  const py::object& progress, double progress_interval) {
    const UpdateArgs up = update_args(lr, weight_decay, rule, penalty, momentum, nesterov, betas,
                                      eps, sklearn_eps, decoupled, step, state, decay_per_sample,
                                      mask_seed);
    const NormArgs norms{gammas, betas_, running_means, running_vars};
    if (!progress.is_none() && !PyCallable_Check(progress.ptr()))
      throw py::type_error("progress: expected a callable or None");
    if (!(progress_interval >= 0.0 && progress_interval <= 3600.0))
      throw py::value_error("progress_interval: expected seconds in [0, 3600]");
    const BatchDone batch_done = throttled(progress, progress_interval);
    if (f32_)
      return epoch_as(*f32_, weights, biases, x, y, sample_weight, order, batch_size, up, norms,
                      batch_done);
    return epoch_as(*f64_, weights, biases, x, y, sample_weight, order, batch_size, up, norms,
                    batch_done);
  }

  py::tuple gradients(const py::object& dws, const py::object& dbs, const py::object& weights,
                      const py::object& biases, const py::object& x, const py::object& y,
                      const py::object& rows, double scale, double weight_decay,
                      const py::object& sample_weight, std::uint64_t mask_seed, long long mask_step,
                      long long row_offset, const py::object& gammas, const py::object& betas,
                      const py::object& dgammas, const py::object& dbetas) {
    if (row_offset < 0)
      throw py::value_error("row_offset: expected an integer >= 0, got " + std::to_string(row_offset));
    const MaskSource masks{mask_seed, mask_step, static_cast<std::size_t>(row_offset)};
    const NormArgs norms{gammas, betas, py::none(), py::none()};
    if (f32_)
      return gradients_as(*f32_, dws, dbs, weights, biases, x, y, sample_weight, rows, scale,
                          weight_decay, masks, norms, dgammas, dbetas);
    return gradients_as(*f64_, dws, dbs, weights, biases, x, y, sample_weight, rows, scale,
                        weight_decay, masks, norms, dgammas, dbetas);
  }

 private:
  // One dtype's Trainer, and the slots of a call's weights and biases, their gradients, and
  // the optimizer's buffers (at most two per array: Adam's m and v).
  template <class T>
  struct Typed {
    Typed(const Network& net, std::size_t max_batch)
        : trainer(net, max_batch), slots(net.n_layers()), grad_slots(net.n_layers()),
          state_slots{ParamSlots<T>(net.n_layers()), ParamSlots<T>(net.n_layers())},
          norm_slots(kNormSlots, NormSlots<T>(net.n_layers())) {}
    Trainer<T> trainer;
    ParamSlots<T> slots, grad_slots;
    ParamSlots<T> state_slots[2];
    // batch norm: gamma, beta, running mean, running var, dgamma, dbeta, then the rule's
    // buffers of gamma and beta in Update::norm_state's order
    static constexpr std::size_t kGamma = 0, kBeta = 1, kMean = 2, kVar = 3, kDGamma = 4, kDBeta = 5,
                                 kState = 6, kNormSlots = 10;
    std::vector<NormSlots<T>> norm_slots;
  };

  // The call's batch-norm arrays into t.norm_slots (`running`: with the running statistics,
  // which a training step updates); the caller holds ReleaseNorms for them.
  template <class T>
  static BatchNorms<T> typed_norms(Typed<T>& t, const NormArgs& args, bool running) {
    const Network& net = t.trainer.net();
    auto& n = t.norm_slots;
    n[Typed<T>::kGamma].fill(net, args.gammas, "gammas");
    n[Typed<T>::kBeta].fill(net, args.betas, "betas");
    BatchNorms<T> norms{n[Typed<T>::kGamma].data(), n[Typed<T>::kBeta].data(), nullptr, nullptr};
    if (running) {
      n[Typed<T>::kMean].fill(net, args.running_means, "running_means");
      n[Typed<T>::kVar].fill(net, args.running_vars, "running_vars");
      norms.running_mean = n[Typed<T>::kMean].data();
      norms.running_var = n[Typed<T>::kVar].data();
    }
    for (std::size_t l : normalised_layers(net))
      if (norms.gamma[l] == norms.beta[l])
        throw py::value_error("betas: expected arrays of their own, got the gammas'");
    return norms;
  }

  // up as Update<T>, its buffers checked like the weights (and not the weights themselves)
  // into t.state_slots; the caller holds ReleaseParams for them.
  template <class T>
  static Update<T> typed_update(Typed<T>& t, const UpdateArgs& args) {
    Update<T> up;
    static_cast<UpdateRule&>(up) = args.settings;
    const std::size_t buffers = up.rule == Rule::sgd ? 0 : up.rule == Rule::momentum ? 1 : 2;
    if (!py::isinstance<py::sequence>(args.state) || py::len(args.state) != buffers)
      throw py::value_error("state: expected " + std::to_string(buffers) +
                            " (weights, biases) pair(s) of buffers for this rule");
    const Network& net = t.trainer.net();
    const bool normalised = !normalised_layers(net).empty();
    // per buffer: (weights', biases'), and with batch norm (..., gammas', betas')
    const std::size_t lists = normalised ? 4 : 2;
    for (std::size_t i = 0; i < buffers; ++i) {
      auto pair = py::reinterpret_borrow<py::sequence>(args.state[py::int_(i)]);
      if (!py::isinstance<py::sequence>(pair) || pair.size() != lists)
        throw py::type_error(normalised ? "state: expected (weights', biases', gammas', betas' buffers) "
                                          "tuples for a batch-normalised net"
                                        : "state: expected (weights' buffers, biases' buffers) pairs");
      if (normalised) {
        for (std::size_t k = 0; k < 2; ++k) {
          NormSlots<T>& slot = t.norm_slots[Typed<T>::kState + 2 * i + k];
          slot.fill(net, pair[2 + k], k ? "state betas" : "state gammas");
          for (std::size_t l : normalised_layers(net))
            for (std::size_t other = 0; other < Typed<T>::kState + 2 * i + k; ++other)
              if (slot.at[l] == t.norm_slots[other].at[l])
                throw py::value_error("state: expected arrays of their own, got a parameter's or "
                                      "another buffer's");
          up.norm_state[2 * i + k] = slot.data();
        }
      }
      ParamSlots<T>& slots = t.state_slots[i];
      params(slots, net, pair[0], pair[1], "state weights", "state biases");
      for (std::size_t l = 0; l < net.n_layers(); ++l)
        for (T* p : {slots.w[l], slots.b[l]})
          if (p == t.slots.w[l] || p == t.slots.b[l] || (i == 1 && (p == t.state_slots[0].w[l] ||
                                                                      p == t.state_slots[0].b[l])))
            throw py::value_error("state: expected arrays of their own, got a parameter's or "
                                  "another buffer's");
      up.state[2 * i] = slots.w.data();      // Update's layout: buffer i of the weights,
      up.state[2 * i + 1] = slots.b.data();  // then of the biases
    }
    return up;
  }

  // Each call holds the Trainer's Claim from its start: the slots are shared between calls.
  template <class T>
  static py::tuple step_as(Typed<T>& t, const py::object& weights, const py::object& biases,
                           const py::object& x, const py::object& y, const py::object& sample_weight,
                           const UpdateArgs& args, const NormArgs& norm_args) {
    const typename Trainer<T>::Claim claim(t.trainer);
    ReleaseParams<T> release(t.slots), release_m(t.state_slots[0]), release_v(t.state_slots[1]);
    ReleaseNorms<T> release_norms(t.norm_slots);
    params(t.slots, t.trainer.net(), weights, biases);
    const BatchNorms<T> norms = typed_norms(t, norm_args, true);
    const Update<T> up = typed_update(t, args);
    CheckedBatch<T> bt = batch<T>(t.trainer.net(), x, y, sample_weight);
    StepResult r;
    {
      py::gil_scoped_release nogil;
      r = t.trainer.step(claim, t.slots.w.data(), t.slots.b.data(), norms, bt.x.data(), bt.targets, bt.n,
                         up);
    }
    py::tuple loss_score = result(t.trainer.net(), r);
    return py::make_tuple(loss_score[0], loss_score[1], r.finite);
  }

  template <class T>
  static py::tuple epoch_as(Typed<T>& t, const py::object& weights, const py::object& biases,
                            const py::object& x, const py::object& y, const py::object& sample_weight,
                            const py::object& order_obj, long long batch_size, const UpdateArgs& args,
                            const NormArgs& norm_args, const BatchDone& batch_done) {
    const typename Trainer<T>::Claim claim(t.trainer);
    ReleaseParams<T> release(t.slots), release_m(t.state_slots[0]), release_v(t.state_slots[1]);
    ReleaseNorms<T> release_norms(t.norm_slots);
    params(t.slots, t.trainer.net(), weights, biases);
    const BatchNorms<T> norms = typed_norms(t, norm_args, true);
    const Update<T> up = typed_update(t, args);
    CheckedBatch<T> bt = batch<T>(t.trainer.net(), x, y, sample_weight);
    CArray<std::int64_t> order;
    if (!order_obj.is_none()) {
      py::array o = require_ndarray(order_obj, "order");
      if (o.ndim() != 1 || std::size_t(o.shape(0)) != bt.n)
        throw py::value_error("order: expected a permutation of shape (" + std::to_string(bt.n) +
                              ",), got shape " + shape_str(o));
      order = require_indices(o, "order", static_cast<std::int64_t>(bt.n), "row indices < n");
    }
    const std::int64_t* order_data = order_obj.is_none() ? nullptr : order.data();
    StepResult r;
    {
      py::gil_scoped_release nogil;
      r = t.trainer.epoch(claim, t.slots.w.data(), t.slots.b.data(), norms, bt.x.data(), bt.targets,
                          bt.n, order_data, batch_size, up, batch_done);
    }
    return result(t.trainer.net(), r);
  }

  template <class T>
  static py::tuple gradients_as(Typed<T>& t, const py::object& dws, const py::object& dbs,
                                const py::object& weights, const py::object& biases,
                                const py::object& x, const py::object& y,
                                const py::object& sample_weight, const py::object& rows_obj,
                                double scale, double weight_decay, const MaskSource& masks,
                                const NormArgs& norm_args, const py::object& dgammas,
                                const py::object& dbetas) {
    const typename Trainer<T>::Claim claim(t.trainer);
    ReleaseParams<T> release(t.slots), release_grads(t.grad_slots);
    ReleaseNorms<T> release_norms(t.norm_slots);
    params(t.slots, t.trainer.net(), weights, biases);
    params(t.grad_slots, t.trainer.net(), dws, dbs, "dws", "dbs");
    const BatchNorms<T> norms = typed_norms(t, norm_args, false);
    const Network& net = t.trainer.net();
    t.norm_slots[Typed<T>::kDGamma].fill(net, dgammas, "dgammas");
    t.norm_slots[Typed<T>::kDBeta].fill(net, dbetas, "dbetas");
    for (std::size_t l : normalised_layers(net))
      for (std::size_t k : {Typed<T>::kDGamma, Typed<T>::kDBeta})
        if (t.norm_slots[k].at[l] == norms.gamma[l] || t.norm_slots[k].at[l] == norms.beta[l] ||
            t.norm_slots[Typed<T>::kDGamma].at[l] == t.norm_slots[Typed<T>::kDBeta].at[l])
          throw py::value_error("dgammas, dbetas: expected arrays of their own");
    CheckedBatch<T> bt = batch<T>(t.trainer.net(), x, y, sample_weight);
    CArray<std::int64_t> rows;
    std::size_t n = bt.n;
    if (!rows_obj.is_none()) {
      py::array r = require_ndarray(rows_obj, "rows");
      if (r.ndim() != 1)
        throw py::value_error("rows: expected a 1-D array of row indices, got shape " + shape_str(r));
      rows = require_indices(r, "rows", static_cast<std::int64_t>(bt.n), "row indices < n");
      n = static_cast<std::size_t>(r.shape(0));
    }
    const std::int64_t* rows_data = rows_obj.is_none() ? nullptr : rows.data();
    StepResult r;
    {
      py::gil_scoped_release nogil;
      r = t.trainer.gradients(claim, t.grad_slots.w.data(), t.grad_slots.b.data(),
                              t.norm_slots[Typed<T>::kDGamma].data(), t.norm_slots[Typed<T>::kDBeta].data(),
                              t.slots.w.data(), t.slots.b.data(), norms, bt.x.data(), bt.targets,
                              rows_data, n, scale, weight_decay, masks);
    }
    return result(t.trainer.net(), r);
  }

  std::unique_ptr<Typed<float>> f32_;
  std::unique_ptr<Typed<double>> f64_;
};

}  // namespace

void bind_training(py::module_& m) {
  py::register_exception<NonFiniteInput>(m, "NonFiniteInputError", PyExc_ValueError);
  py::class_<TrainingWorkspace>(m, "TrainingWorkspace",
                                "Buffers for training one network on batches of up to max_batch rows.")
      .def(py::init<const py::sequence&, const py::sequence&, const std::string&,
                    const std::string&, const py::object&, long long, const std::vector<double>&,
                    const std::vector<bool>&>(),
           py::arg("sizes"), py::arg("hidden"), py::arg("output"), py::arg("loss"), py::arg("dtype"),
           py::arg("max_batch"), py::arg("dropout") = std::vector<double>(),
           py::arg("batch_norm") = std::vector<bool>(),
           "sizes [s_1, ..., s_L]; hidden: one (name, param) per hidden layer, ('maxout', k) "
           "for maxout; output 'softmax' | 'sigmoid' | 'identity' | 'exp'; loss 'cross_entropy' | "
           "'binary_cross_entropy' | 'quadratic' | 'poisson'; dtype float32 | float64; dropout: "
           "one rate in [0, 1) per hidden layer (empty: none); batch_norm: one flag per hidden "
           "layer (empty: none).")
      .def_property_readonly("max_batch", &TrainingWorkspace::max_batch)
      .def_property_readonly("dtype", &TrainingWorkspace::dtype)
      .def("step", &TrainingWorkspace::step, py::arg("weights"), py::arg("biases"), py::arg("x"),
           py::arg("y"), py::arg("lr"), py::arg("weight_decay"), py::kw_only(),
           py::arg("rule") = "sgd", py::arg("penalty") = py::none(), py::arg("momentum") = 0.0,
           py::arg("nesterov") = false, py::arg("betas") = py::make_tuple(0.9, 0.999),
           py::arg("eps") = 1e-8, py::arg("sklearn_eps") = false, py::arg("decoupled") = false, py::arg("step") = 0,
           py::arg("state") = py::tuple(), py::arg("decay_per_sample") = false,
           py::arg("sample_weight") = py::none(), py::arg("mask_seed") = 0, py::arg("gammas") = py::tuple(),
           py::arg("betas_") = py::tuple(), py::arg("running_means") = py::tuple(),
           py::arg("running_vars") = py::tuple(),
           "One update of the weights and biases, in place, on the batch (x, y) -> (J before "
           "the update with the L2 penalty, score_sum, whether J and the new weights and "
           "biases are all finite). NonFiniteInputError, and no change, if a row of x is not "
           "finite. rule 'sgd' (plain), 'momentum' (momentum, nesterov) or 'adam' (betas, eps, "
           "decoupled: AdamW); penalty: the weight decay in J (default weight_decay); step: "
           "updates applied before; state: per buffer of the rule (momentum: velocity; adam: m, "
           "v) a pair (arrays like the weights, arrays like the biases), updated in place; "
           "decay_per_sample: weight_decay and penalty are divided by the batch's sum of "
           "sample weights (scikit-learn's alpha); sample_weight: None or one weight >= 0 per "
           "row, J then being the weighted mean loss. "
           "mask_seed: the dropout masks' generator (this update's masks are those of update "
           "number step + 1); gammas, betas_, running_means, running_vars: one array per "
           "batch-normalised layer (betas_: betas is Adam's), updated in place; with batch "
           "norm, state holds (weights', biases', gammas', betas' buffers) per buffer.")
      .def("epoch", &TrainingWorkspace::epoch, py::arg("weights"), py::arg("biases"), py::arg("x"),
           py::arg("y"), py::arg("order"), py::arg("batch_size"), py::arg("lr"),
           py::arg("weight_decay"), py::kw_only(), py::arg("rule") = "sgd",
           py::arg("penalty") = py::none(), py::arg("momentum") = 0.0, py::arg("nesterov") = false,
           py::arg("betas") = py::make_tuple(0.9, 0.999), py::arg("eps") = 1e-8,
           py::arg("sklearn_eps") = false, py::arg("decoupled") = false, py::arg("step") = 0, py::arg("state") = py::tuple(),
           py::arg("decay_per_sample") = false, py::arg("sample_weight") = py::none(),
           py::arg("mask_seed") = 0, py::arg("gammas") = py::tuple(), py::arg("betas_") = py::tuple(),
           py::arg("running_means") = py::tuple(), py::arg("running_vars") = py::tuple(),
           py::arg("progress") = py::none(), py::arg("progress_interval") = 0.1,
           "One epoch: batches of batch_size rows of x[order] (order None: row order), one "
           "update each, as step -> (sum of J_batch * rows_batch, total score_sum). "
           "NonFiniteInputError at the first batch with a row of x that is not finite (the "
           "batches before it are applied). progress: None, or called with the number of "
           "batches done, at most every progress_interval seconds; an exception it raises "
           "stops the epoch (the batches before it are applied).")
      .def("gradients", &TrainingWorkspace::gradients, py::arg("dws"), py::arg("dbs"),
           py::arg("weights"), py::arg("biases"), py::arg("x"), py::arg("y"), py::arg("rows"),
           py::arg("scale"), py::arg("weight_decay"), py::kw_only(),
           py::arg("sample_weight") = py::none(), py::arg("mask_seed") = 0,
           py::arg("mask_step") = -1, py::arg("row_offset") = 0, py::arg("gammas") = py::tuple(),
           py::arg("betas") = py::tuple(), py::arg("dgammas") = py::tuple(), py::arg("dbetas") = py::tuple(),
           "Gradients of J on the batch x[rows] (rows None: all of x), times scale, written into "
           "dws and dbs (arrays shaped like the weights and biases); the weights are not changed "
           "and weight decay is left to the update -> (J of the batch with the weight-decay "
           "penalty, score_sum). mask_step >= 0: with the dropout masks of that update number "
           "(generator mask_seed), row i of the batch being row row_offset + i of the masks. "
           "Batch norm: gammas, betas, and dgammas, dbetas written, one array per "
           "batch-normalised layer (the batch's statistics; the running ones are not read).");
}

}  // namespace fastmlp::bindings
