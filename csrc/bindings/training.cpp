// The training bindings: TrainingWorkspace, a thin wrapper of Trainer<T> (csrc/mlp.h). It
// converts and checks the Python arguments, releases the GIL around the Trainer's call and
// converts its result; the network's rules and the call's own checks are the Trainer's.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

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

// weights[l] (rows(l), s_l) and biases[l] (rows(l),): exactly dtype T, C-contiguous,
// aligned and writable, since they are updated in place (never a silent copy).
template <class T>
void params(ParamSlots<T>& out, const Network& net, const py::object& weights,
            const py::object& biases, const char* weights_name = "weights",
            const char* biases_name = "biases") {
  for (auto [obj, name, is_weight] : {std::tuple{&weights, weights_name, true}, std::tuple{&biases, biases_name, false}}) {
    if (!py::isinstance<py::sequence>(*obj) || py::isinstance<py::str>(*obj))
      throw py::type_error(std::string(name) + ": expected a list of numpy arrays");
    auto list = py::reinterpret_borrow<py::sequence>(*obj);
    if (list.size() != net.n_layers())
      throw py::value_error(std::string(name) + ": expected " + std::to_string(net.n_layers()) +
                            " arrays, got " + std::to_string(list.size()));
    for (std::size_t l = 0; l < net.n_layers(); ++l) {
      const std::string arg = std::string(name) + "[" + std::to_string(l) + "]";
      py::object item = list[l];
      py::array arr = require_ndarray(item, arg.c_str());
      if (!arr.dtype().equal(py::dtype::of<T>()))
        throw py::type_error(arg + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                             ", got " + std::string(py::str(arr.dtype())));
      const py::ssize_t expected[2] = {py::ssize_t(net.rows(l)), py::ssize_t(net.sizes[l])};
      const py::ssize_t ndim = is_weight ? 2 : 1;
      bool same = arr.ndim() == ndim;
      for (py::ssize_t d = 0; same && d < ndim; ++d) same = arr.shape(d) == expected[d];
      if (!same)
        throw py::value_error(arg + ": expected shape (" + std::to_string(expected[0]) +
                              (is_weight ? ", " + std::to_string(expected[1]) + ")" : ",)") +
                              ", got " + shape_str(arr));
      if (!py::isinstance<py::array_t<T, py::array::c_style>>(arr) ||
          reinterpret_cast<std::uintptr_t>(arr.data()) % alignof(T) != 0)
        throw py::value_error(arg + ": expected a C-contiguous, aligned array (it is updated in place)");
      if (!arr.writeable()) throw py::value_error(arg + ": expected a writable array, got a read-only one");
      (is_weight ? out.w : out.b)[l] = static_cast<T*>(arr.mutable_data());
      out.keep[(is_weight ? 0 : net.n_layers()) + l] = arr;
    }
  }
}

template <class T>
struct CheckedBatch {
  CArray<T> x;
  CArray<std::int64_t> labels;
  CArray<T> values;
  Targets<T> targets;
  std::size_t n;
};

// x (n, s_1) of dtype T; y integer labels (n,) for a softmax output, or (n, K) of dtype T.
template <class T>
CheckedBatch<T> batch(const Network& net, const py::object& x_obj, const py::object& y_obj) {
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

// Hits count rows for classification (an int in Python) and are a sum of squares for identity.
py::tuple result(const Network& net, StepResult r) {
  if (!r.x_finite) throw NonFiniteInput("x: a row contains NaN or infinity");
  py::object score_sum = net.output == Output::identity
                             ? py::object(py::float_(r.score_sum))
                             : py::object(py::int_(static_cast<long long>(r.score_sum)));
  return py::make_tuple(r.loss, score_sum);
}

// The update rule of a step or epoch, as Python gives it (python/fastmlp/native_training.py
// builds it from a fastmlp.optim optimizer): before the dtype is known.
struct UpdateArgs {
  UpdateRule settings;
  py::object state;  // one (per-weight arrays, per-bias arrays) pair per buffer of the rule
};

UpdateArgs update_args(double lr, double weight_decay, const std::string& rule,
                       const py::object& penalty, double momentum, bool nesterov,
                       const py::object& betas, double eps, bool decoupled, long long step,
                       const py::object& state, std::uint64_t mask_seed) {
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
  up.decoupled = decoupled;
  up.step = step;
  up.mask_seed = mask_seed;
  args.state = state;
  return args;
}

class TrainingWorkspace {
 public:
  TrainingWorkspace(const py::sequence& sizes, const py::sequence& hidden,
                    const std::string& output, const std::string& loss, const py::object& dtype,
                    long long max_batch, const std::vector<double>& dropout) {
    std::vector<HiddenLayer> layers;
    for (std::size_t l = 0; l < hidden.size(); ++l) layers.push_back(hidden_layer(hidden[l], l));
    if (!dropout.empty()) {
      if (dropout.size() != layers.size())
        throw py::value_error("dropout: expected one rate per hidden layer (" +
                              std::to_string(layers.size()) + "), got " + std::to_string(dropout.size()));
      for (std::size_t l = 0; l < layers.size(); ++l) layers[l].dropout = dropout[l];  // checked by make_network
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
                 double eps, bool decoupled, long long step, const py::object& state,
                 std::uint64_t mask_seed) {
    const UpdateArgs up = update_args(lr, weight_decay, rule, penalty, momentum, nesterov, betas,
                                      eps, decoupled, step, state, mask_seed);
    if (f32_) return step_as(*f32_, weights, biases, x, y, up);
    return step_as(*f64_, weights, biases, x, y, up);
  }

  py::tuple epoch(const py::object& weights, const py::object& biases, const py::object& x,
                  const py::object& y, const py::object& order, long long batch_size, double lr,
                  double weight_decay, const std::string& rule, const py::object& penalty,
                  double momentum, bool nesterov, const py::object& betas, double eps,
                  bool decoupled, long long step, const py::object& state,
                  std::uint64_t mask_seed) {
    const UpdateArgs up = update_args(lr, weight_decay, rule, penalty, momentum, nesterov, betas,
                                      eps, decoupled, step, state, mask_seed);
    if (f32_) return epoch_as(*f32_, weights, biases, x, y, order, batch_size, up);
    return epoch_as(*f64_, weights, biases, x, y, order, batch_size, up);
  }

  py::tuple gradients(const py::object& dws, const py::object& dbs, const py::object& weights,
                      const py::object& biases, const py::object& x, const py::object& y,
                      const py::object& rows, double scale, double weight_decay,
                      std::uint64_t mask_seed, long long mask_step, long long row_offset) {
    if (row_offset < 0)
      throw py::value_error("row_offset: expected an integer >= 0, got " + std::to_string(row_offset));
    const MaskSource masks{mask_seed, mask_step, static_cast<std::size_t>(row_offset)};
    if (f32_) return gradients_as(*f32_, dws, dbs, weights, biases, x, y, rows, scale, weight_decay, masks);
    return gradients_as(*f64_, dws, dbs, weights, biases, x, y, rows, scale, weight_decay, masks);
  }

 private:
  // One dtype's Trainer, and the slots of a call's weights and biases, their gradients, and
  // the optimizer's buffers (at most two per array: Adam's m and v).
  template <class T>
  struct Typed {
    Typed(const Network& net, std::size_t max_batch)
        : trainer(net, max_batch), slots(net.n_layers()), grad_slots(net.n_layers()),
          state_slots{ParamSlots<T>(net.n_layers()), ParamSlots<T>(net.n_layers())} {}
    Trainer<T> trainer;
    ParamSlots<T> slots, grad_slots;
    ParamSlots<T> state_slots[2];
  };

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
    for (std::size_t i = 0; i < buffers; ++i) {
      auto pair = py::reinterpret_borrow<py::sequence>(args.state[py::int_(i)]);
      if (!py::isinstance<py::sequence>(pair) || pair.size() != 2)
        throw py::type_error("state: expected (weights' buffers, biases' buffers) pairs");
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
                           const py::object& x, const py::object& y, const UpdateArgs& args) {
    const typename Trainer<T>::Claim claim(t.trainer);
    ReleaseParams<T> release(t.slots), release_m(t.state_slots[0]), release_v(t.state_slots[1]);
    params(t.slots, t.trainer.net(), weights, biases);
    const Update<T> up = typed_update(t, args);
    CheckedBatch<T> bt = batch<T>(t.trainer.net(), x, y);
    StepResult r;
    {
      py::gil_scoped_release nogil;
      r = t.trainer.step(claim, t.slots.w.data(), t.slots.b.data(), bt.x.data(), bt.targets, bt.n, up);
    }
    py::tuple loss_score = result(t.trainer.net(), r);
    return py::make_tuple(loss_score[0], loss_score[1], r.finite);
  }

  template <class T>
  static py::tuple epoch_as(Typed<T>& t, const py::object& weights, const py::object& biases,
                            const py::object& x, const py::object& y, const py::object& order_obj,
                            long long batch_size, const UpdateArgs& args) {
    const typename Trainer<T>::Claim claim(t.trainer);
    ReleaseParams<T> release(t.slots), release_m(t.state_slots[0]), release_v(t.state_slots[1]);
    params(t.slots, t.trainer.net(), weights, biases);
    const Update<T> up = typed_update(t, args);
    CheckedBatch<T> bt = batch<T>(t.trainer.net(), x, y);
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
      r = t.trainer.epoch(claim, t.slots.w.data(), t.slots.b.data(), bt.x.data(), bt.targets, bt.n,
                          order_data, batch_size, up);
    }
    return result(t.trainer.net(), r);
  }

  template <class T>
  static py::tuple gradients_as(Typed<T>& t, const py::object& dws, const py::object& dbs,
                                const py::object& weights, const py::object& biases,
                                const py::object& x, const py::object& y, const py::object& rows_obj,
                                double scale, double weight_decay, const MaskSource& masks) {
    const typename Trainer<T>::Claim claim(t.trainer);
    ReleaseParams<T> release(t.slots), release_grads(t.grad_slots);
    params(t.slots, t.trainer.net(), weights, biases);
    params(t.grad_slots, t.trainer.net(), dws, dbs, "dws", "dbs");
    CheckedBatch<T> bt = batch<T>(t.trainer.net(), x, y);
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
      r = t.trainer.gradients(claim, t.grad_slots.w.data(), t.grad_slots.b.data(), t.slots.w.data(),
                              t.slots.b.data(), bt.x.data(), bt.targets, rows_data, n, scale,
                              weight_decay, masks);
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
                    const std::string&, const py::object&, long long, const std::vector<double>&>(),
           py::arg("sizes"), py::arg("hidden"), py::arg("output"), py::arg("loss"), py::arg("dtype"),
           py::arg("max_batch"), py::arg("dropout") = std::vector<double>(),
           "sizes [s_1, ..., s_L]; hidden: one (name, param) per hidden layer, ('maxout', k) "
           "for maxout; output 'softmax' | 'sigmoid' | 'identity'; loss 'cross_entropy' | "
           "'binary_cross_entropy' | 'quadratic'; dtype float32 | float64; dropout: one rate "
           "in [0, 1) per hidden layer (empty: none).")
      .def_property_readonly("max_batch", &TrainingWorkspace::max_batch)
      .def_property_readonly("dtype", &TrainingWorkspace::dtype)
      .def("step", &TrainingWorkspace::step, py::arg("weights"), py::arg("biases"), py::arg("x"),
           py::arg("y"), py::arg("lr"), py::arg("weight_decay"), py::kw_only(),
           py::arg("rule") = "sgd", py::arg("penalty") = py::none(), py::arg("momentum") = 0.0,
           py::arg("nesterov") = false, py::arg("betas") = py::make_tuple(0.9, 0.999),
           py::arg("eps") = 1e-8, py::arg("decoupled") = false, py::arg("step") = 0,
           py::arg("state") = py::tuple(), py::arg("mask_seed") = 0,
           "One update of the weights and biases, in place, on the batch (x, y) -> (J before "
           "the update with the L2 penalty, score_sum, whether J and the new weights and "
           "biases are all finite). NonFiniteInputError, and no change, if a row of x is not "
           "finite. rule 'sgd' (plain), 'momentum' (momentum, nesterov) or 'adam' (betas, eps, "
           "decoupled: AdamW); penalty: the weight decay in J (default weight_decay); step: "
           "updates applied before; state: per buffer of the rule (momentum: velocity; adam: m, "
           "v) a pair (arrays like the weights, arrays like the biases), updated in place; "
           "mask_seed: the dropout masks' generator (this update's masks are those of update "
           "number step + 1).")
      .def("epoch", &TrainingWorkspace::epoch, py::arg("weights"), py::arg("biases"), py::arg("x"),
           py::arg("y"), py::arg("order"), py::arg("batch_size"), py::arg("lr"),
           py::arg("weight_decay"), py::kw_only(), py::arg("rule") = "sgd",
           py::arg("penalty") = py::none(), py::arg("momentum") = 0.0, py::arg("nesterov") = false,
           py::arg("betas") = py::make_tuple(0.9, 0.999), py::arg("eps") = 1e-8,
           py::arg("decoupled") = false, py::arg("step") = 0, py::arg("state") = py::tuple(),
           py::arg("mask_seed") = 0,
           "One epoch: batches of batch_size rows of x[order] (order None: row order), one "
           "update each, as step -> (sum of J_batch * rows_batch, total score_sum). "
           "NonFiniteInputError at the first batch with a row of x that is not finite (the "
           "batches before it are applied).")
      .def("gradients", &TrainingWorkspace::gradients, py::arg("dws"), py::arg("dbs"),
           py::arg("weights"), py::arg("biases"), py::arg("x"), py::arg("y"), py::arg("rows"),
           py::arg("scale"), py::arg("weight_decay"), py::kw_only(), py::arg("mask_seed") = 0,
           py::arg("mask_step") = -1, py::arg("row_offset") = 0,
           "Gradients of J on the batch x[rows] (rows None: all of x), times scale, written into "
           "dws and dbs (arrays shaped like the weights and biases); the weights are not changed "
           "and weight decay is left to the update -> (J of the batch with the weight-decay "
           "penalty, score_sum). mask_step >= 0: with the dropout masks of that update number "
           "(generator mask_seed), row i of the batch being row row_offset + i of the masks.");
}

}  // namespace fastmlp::bindings
