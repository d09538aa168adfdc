// The kernel bindings: GEMM, the fused layer kernels, activations, maxout, losses and the
// SGD, momentum and Adam updates. Arrays of any strides are read through views or copied to C
// order (only if needed); outputs are fresh C-contiguous arrays, but for the updates, which
// write in place; the GIL is released around the kernels.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "bindings/args.h"
#include "kernels/activation.h"
#include "kernels/dropout.h"
#include "kernels/gemm.h"
#include "kernels/loss.h"
#include "kernels/update.h"

namespace fastmlp::bindings {

namespace {

// ---- GEMM and the fused layer kernels ----

template <class T>
py::array matmul_as(const py::array& a_arr, const py::array& b_arr) {
  View<T> a = view<T>(a_arr), b = view<T>(b_arr);
  py::array_t<T> c({a.n0, b.n1});
  T* out = c.mutable_data();
  {
    py::gil_scoped_release release;
    gemm(out, std::ptrdiff_t(b.n1), a.data, a.s0, a.s1, b.data, b.s0, b.s1, a.n0, b.n1, a.n1, false);
  }
  return c;
}

// keep_z false: A is computed over Z in place and (None, A) returned: one array per layer
// where evaluation has no use for Z.
template <class T>
py::tuple linear_forward_as(const py::array& x_arr, const py::array& w_arr, const py::array& b_arr,
                            Act act, T param, bool keep_z) {
  View<T> x = view<T>(x_arr), w = view<T>(w_arr), b = view<T>(b_arr);
  std::size_t n = x.n0, k = x.n1, m = w.n0;
  py::array_t<T> z({n, m});
  py::array_t<T> a = keep_z ? py::array_t<T>({n, m}) : z;
  T *zp = z.mutable_data(), *ap = a.mutable_data();
  {
    py::gil_scoped_release release;
    fastmlp::linear_forward(zp, ap, x.data, x.s0, x.s1, w.data, w.s0, w.s1, b.data, b.s0, n, k,
                            m, act, param);
  }
  if (!keep_z) return py::make_tuple(py::none(), a);
  return py::make_tuple(z, a);
}

template <class T>
py::tuple linear_backward_as(const py::array& d_arr, const py::array& x_arr, const py::array& w_arr,
                             const py::object& z_obj, const py::object& a_obj, bool has_prev,
                             Act act, T param) {
  View<T> d = view<T>(d_arr), x = view<T>(x_arr), w = view<T>(w_arr);
  std::size_t n = d.n0, m = d.n1, k = x.n1;
  py::array_t<T> dw({m, k}), db(std::vector<py::ssize_t>{py::ssize_t(m)});
  py::object dp_obj = py::none();
  T* dp = nullptr;
  const T *zp = nullptr, *ap = nullptr;
  CArray<T> z_prev, a_prev;
  if (has_prev) {
    py::array_t<T> dp_arr({n, k});
    dp = dp_arr.mutable_data();
    dp_obj = dp_arr;
    if (act != Act::identity) {
      zp = (z_prev = CArray<T>::ensure(z_obj)).data();
      ap = (a_prev = CArray<T>::ensure(a_obj)).data();
    }
  }
  T *dwp = dw.mutable_data(), *dbp = db.mutable_data();
  {
    py::gil_scoped_release release;
    fastmlp::linear_backward(dwp, dbp, dp, d.data, d.s0, d.s1, x.data, x.s0, x.s1, w.data, w.s0,
                             w.s1, zp, ap, n, k, m, act, param, false);
  }
  return py::make_tuple(dw, db, dp_obj);
}

void bind_gemm(py::module_& m) {
  m.def(
      "matmul",
      [](py::object a_obj, py::object b_obj) {
        py::array a = require_float_array(a_obj, "a", 2, "(n, k)"),
                  b = require_float_array(b_obj, "b", 2, "(k, m)");
        FloatType ft = require_float_dtype(a, "a");
        require_same_float_dtype(b, "b", ft, a, "a");
        require_dim(b, "b", 0, a.shape(1),
                    "b.shape[0] must equal a.shape[1] = " + std::to_string(a.shape(1)));
        return with_float_type(ft, [&](auto tag) { return matmul_as<decltype(tag)>(a, b); });
      },
      py::arg("a"), py::arg("b"), "C = A B for 2-D float32/float64 arrays of any strides.");
  m.def(
      "linear_forward",
      [](py::object x_obj, py::object w_obj, py::object b_obj, py::object name, py::object param,
         bool keep_z) {
        py::array x = require_float_array(x_obj, "x", 2, "(n, s_l)"),
                  w = require_float_array(w_obj, "w", 2, "(s_(l+1), s_l)"),
                  b = require_float_array(b_obj, "b", 1, "(s_(l+1),)");
        FloatType ft = require_float_dtype(x, "x");
        require_same_float_dtype(w, "w", ft, x, "x");
        require_same_float_dtype(b, "b", ft, x, "x");
        require_dim(w, "w", 1, x.shape(1),
                    "w.shape[1] must equal x.shape[1] = " + std::to_string(x.shape(1)));
        require_dim(b, "b", 0, w.shape(0),
                    "b.shape[0] must equal w.shape[0] = " + std::to_string(w.shape(0)));
        Act act = require_activation(name, "name");
        return with_float_type(ft, [&](auto tag) {
          using T = decltype(tag);
          return linear_forward_as<T>(x, w, b, act, require_activation_param<T>(param, "param", act),
                                      keep_z);
        });
      },
      py::arg("x"), py::arg("w"), py::arg("b"), py::arg("name"), py::arg("param"),
      py::arg("keep_z") = true,
      "X (n, s_l), W (s_(l+1), s_l), b (s_(l+1),) -> (Z = X Wᵀ + b, A = f(Z)); keep_z=False: "
      "(None, A), A computed over Z in place (evaluation: one array per layer).");
  m.def(
      "linear_backward",
      [](py::object d_obj, py::object x_obj, py::object w_obj, py::object z_obj, py::object a_obj,
         py::object name_prev, py::object param_prev) {
        py::array d = require_float_array(d_obj, "delta", 2, "(n, s_(l+1))"),
                  x = require_float_array(x_obj, "x", 2, "(n, s_l)"),
                  w = require_float_array(w_obj, "w", 2, "(s_(l+1), s_l)");
        FloatType ft = require_float_dtype(d, "delta");
        require_same_float_dtype(x, "x", ft, d, "delta");
        require_same_float_dtype(w, "w", ft, d, "delta");
        require_dim(x, "x", 0, d.shape(0),
                    "x.shape[0] must equal delta.shape[0] = " + std::to_string(d.shape(0)));
        require_dim(w, "w", 0, d.shape(1),
                    "w.shape[0] must equal delta.shape[1] = " + std::to_string(d.shape(1)));
        require_dim(w, "w", 1, x.shape(1),
                    "w.shape[1] must equal x.shape[1] = " + std::to_string(x.shape(1)));
        bool has_prev = !name_prev.is_none();
        Act act = has_prev ? require_activation(name_prev, "name_prev") : Act::identity;
        // z_prev / a_prev are read for every activation but identity, which (like the
        // reference) ignores them: a maxout layer passes its pieces there.
        if (has_prev && act != Act::identity)
          for (auto [obj, arg] : {std::pair{&z_obj, "z_prev"}, std::pair{&a_obj, "a_prev"}}) {
            py::array arr = require_float_array(*obj, arg, 2, "(n, s_l)");
            require_same_float_dtype(arr, arg, ft, d, "delta");
            require_same_shape(arr, arg, x, "x");
          }
        return with_float_type(ft, [&](auto tag) {
          using T = decltype(tag);
          T p = has_prev ? require_activation_param<T>(param_prev, "param_prev", act) : T(0);
          return linear_backward_as<T>(d, x, w, z_obj, a_obj, has_prev, act, p);
        });
      },
      py::arg("delta"), py::arg("x"), py::arg("w"), py::arg("z_prev"), py::arg("a_prev"),
      py::arg("name_prev"), py::arg("param_prev"),
      "Backprop through one layer -> (dW = deltaᵀ X, db = Σ_rows delta, "
      "delta_prev = (delta W) * f'(z_prev) or None when name_prev is None).");
}

// ---- element-wise, loss and update ops ----

template <class T>
py::array_t<T> new_array(py::ssize_t rows, py::ssize_t cols) {
  return py::array_t<T>({rows, cols});
}

template <class T>
py::array_t<T> new_array_like(const py::array& a) {
  return py::array_t<T>(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
}

// Loss kernels share one shape: (z or a, y) float (n, K), optional sample weights (n) ->
// (J, gradient (n, K)).
template <class Kernel>
py::tuple bind_float_target_loss(const py::object& z_obj, const py::object& y_obj,
                                 const py::object& sample_weight, const char* z_arg, Kernel kernel) {
  py::array z = require_ndarray(z_obj, z_arg), y = require_ndarray(y_obj, "y");
  FloatType ft = require_float_dtype(z, z_arg);
  require_ndim(z, z_arg, 2, "(n, K)");
  require_same_float_dtype(y, "y", ft, z, z_arg);
  require_same_shape(y, "y", z, z_arg);
  return with_float_type(ft, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    auto zc = CArray<T>::ensure(z), yc = CArray<T>::ensure(y);
    auto sw = require_sample_weight<T>(sample_weight, z.shape(0), z, z_arg);
    auto grad = new_array<T>(z.shape(0), z.shape(1));
    double loss;
    {
      py::gil_scoped_release nogil;
      loss = kernel(grad.mutable_data(), zc.data(), yc.data(), static_cast<std::size_t>(z.shape(0)),
                    static_cast<std::size_t>(z.shape(1)), weights(sw));
    }
    return py::make_tuple(loss, grad);
  });
}

// ---- in-place updates ----

// The arrays of an in-place update: w and the optimizer's state (velocity; m and v) are
// written, so each must be the C-contiguous buffer itself (never a silent copy), writable, and
// share no memory with the others; dw is only read. All of w's dtype and shape.
class UpdateArrays {
 public:
  using Named = std::pair<const py::object*, const char*>;

  UpdateArrays(const py::object& w_obj, const py::object& dw_obj, std::initializer_list<Named> state)
      : w_(require_ndarray(w_obj, "w")), dw_(require_ndarray(dw_obj, "dw")) {
    written_.push_back({w_, "w"});
    for (const auto& [obj, arg] : state) written_.push_back({require_ndarray(*obj, arg), arg});
    ft_ = require_float_dtype(w_, "w");
    require_same_float_dtype(dw_, "dw", ft_, w_, "w");
    for (std::size_t i = 1; i < written_.size(); ++i)
      require_same_float_dtype(written_[i].first, written_[i].second, ft_, w_, "w");
    require_same_shape(dw_, "dw", w_, "w");
    for (std::size_t i = 1; i < written_.size(); ++i)
      require_same_shape(written_[i].first, written_[i].second, w_, "w");
  }

  template <class F>
  void with_type(F&& f) const { with_float_type(ft_, std::forward<F>(f)); }

  std::size_t size() const { return static_cast<std::size_t>(w_.size()); }

  // The written arrays' buffers (w first, then the state in order) and dw as a C array of T.
  template <class T>
  std::pair<std::vector<T*>, CArray<T>> checked() const {
    std::vector<T*> out;
    for (std::size_t i = 0; i < written_.size(); ++i) {
      const auto& [a, arg] = written_[i];
      const bool misaligned = reinterpret_cast<std::uintptr_t>(a.data()) % alignof(T) != 0;
      if (!py::isinstance<py::array_t<T, py::array::c_style>>(a) || misaligned)
        throw py::value_error(std::string(arg) + ": expected a C-contiguous array at an aligned "
                              "address (it is updated in place), got strides " +
                              std::string(py::str(py::tuple(a.attr("strides")))) +
                              (misaligned ? " at a misaligned address" : ""));
      if (!a.writeable())
        throw py::value_error(std::string(arg) + ": expected a writable array, got a read-only one");
      for (std::size_t j = 0; j < i; ++j)
        if (overlap(a, written_[j].first))
          throw py::value_error(std::string(arg) + ": expected an array that shares no memory with " +
                                written_[j].second + " (both are updated in place)");
      out.push_back(static_cast<T*>(py::reinterpret_borrow<py::array>(a).mutable_data()));
    }
    return {out, CArray<T>::ensure(dw_)};
  }

  // dw, from a copy if it shares memory with an array the kernel writes: the kernel reads
  // dw[i] after writing elements before i (NumPy evaluates dw's expression first too).
  template <class T>
  CArray<T> gradient_apart(const CArray<T>& dw) const {
    for (const auto& [a, arg] : written_)
      if (overlap(dw, a)) return CArray<T>::ensure(dw.attr("copy")());
    return dw;
  }

 private:
  static bool overlap(const py::array& a, const py::array& b) {
    const char* a_begin = static_cast<const char*>(a.data());
    const char* b_begin = static_cast<const char*>(b.data());
    return a.nbytes() > 0 && b.nbytes() > 0 && a_begin < b_begin + b.nbytes() &&
           b_begin < a_begin + a.nbytes();
  }

  py::array w_, dw_;
  std::vector<std::pair<py::array, const char*>> written_;
  FloatType ft_;
};

// The admissible values of a hyperparameter: [min, max), or (min, max) when min_open.
struct Interval {
  double min, max;
  bool min_open;
  const char* text;  // for the message, e.g. "a number in [0, 1)"
};
constexpr Interval kAtLeastZero{0.0, HUGE_VAL, false, "a number >= 0"};
constexpr Interval kAboveZero{0.0, HUGE_VAL, true, "a number > 0"};
constexpr Interval kZeroToOne{0.0, 1.0, false, "a number in [0, 1)"};

// A hyperparameter: a number, finite in double and in T, within `range`; as a double (the
// kernels round it to T themselves, after computing in double what they derive from it).
template <class T>
double require_hyperparameter(const py::handle& obj, const char* arg, const Interval& range) {
  require_finite_number<T>(obj, arg);
  const double value = py::cast<double>(obj);
  if (value < range.min || (range.min_open && value == range.min) || !(value < range.max))
    throw py::value_error(std::string(arg) + ": expected " + range.text + ", got " +
                          std::string(py::str(py::float_(value))));
  return value;
}

// True or False (Python's or NumPy's bool); not an int or anything else that has a truth value.
inline bool require_bool(const py::handle& obj, const char* arg) {
  if (PyBool_Check(obj.ptr())) return obj.ptr() == Py_True;
  if (py::isinstance(obj, py::module_::import("numpy").attr("bool_"))) return PyObject_IsTrue(obj.ptr()) == 1;
  throw py::type_error(std::string(arg) + ": expected True or False, got " + type_name(obj));
}

void bind_elementwise(py::module_& m) {
  m.def(
      "activation_forward",
      [](const py::object& z_obj, const py::object& name, const py::object& param) {
        py::array z = require_ndarray(z_obj, "z");
        FloatType ft = require_float_dtype(z, "z");
        Act act = require_activation(name, "name");
        return with_float_type(ft, [&](auto tag) -> py::object {
          using T = decltype(tag);
          T p = require_activation_param<T>(param, "param", act);
          auto zc = CArray<T>::ensure(z);
          auto a = new_array_like<T>(z);
          py::gil_scoped_release nogil;
          activation_forward<T>(a.mutable_data(), zc.data(), static_cast<std::size_t>(zc.size()), act, p);
          return a;
        });
      },
      py::arg("z"), py::arg("name"), py::arg("param"), "a = f(z), element-wise; any shape.");

  m.def(
      "activation_derivative",
      [](const py::object& z_obj, const py::object& a_obj, const py::object& name, const py::object& param) {
        py::array z = require_ndarray(z_obj, "z"), a = require_ndarray(a_obj, "a");
        FloatType ft = require_float_dtype(z, "z");
        require_same_float_dtype(a, "a", ft, z, "z");
        require_same_shape(a, "a", z, "z");
        Act act = require_activation(name, "name");
        return with_float_type(ft, [&](auto tag) -> py::object {
          using T = decltype(tag);
          T p = require_activation_param<T>(param, "param", act);
          auto zc = CArray<T>::ensure(z), ac = CArray<T>::ensure(a);
          auto d = new_array_like<T>(z);
          py::gil_scoped_release nogil;
          activation_derivative<T>(d.mutable_data(), zc.data(), ac.data(),
                                   static_cast<std::size_t>(zc.size()), act, p);
          return d;
        });
      },
      py::arg("z"), py::arg("a"), py::arg("name"), py::arg("param"),
      "f'(z), given z and a = f(z), element-wise.");

  m.def(
      "activation_backward",
      [](const py::object& delta_obj, const py::object& z_obj, const py::object& a_obj,
         const py::object& name, const py::object& param) {
        py::array delta = require_ndarray(delta_obj, "delta"), z = require_ndarray(z_obj, "z"),
                  a = require_ndarray(a_obj, "a");
        FloatType ft = require_float_dtype(delta, "delta");
        require_same_float_dtype(z, "z", ft, delta, "delta");
        require_same_float_dtype(a, "a", ft, delta, "delta");
        require_same_shape(z, "z", delta, "delta");
        require_same_shape(a, "a", delta, "delta");
        Act act = require_activation(name, "name");
        return with_float_type(ft, [&](auto tag) -> py::object {
          using T = decltype(tag);
          T p = require_activation_param<T>(param, "param", act);
          auto zc = CArray<T>::ensure(z), ac = CArray<T>::ensure(a), dc = CArray<T>::ensure(delta);
          auto out = new_array_like<T>(delta);
          py::gil_scoped_release nogil;
          std::copy(dc.data(), dc.data() + dc.size(), out.mutable_data());
          activation_backward<T>(out.mutable_data(), zc.data(), ac.data(),
                                 static_cast<std::size_t>(dc.size()), act, p);
          return out;
        });
      },
      py::arg("delta"), py::arg("z"), py::arg("a"), py::arg("name"), py::arg("param"),
      "delta * f'(z), given z and a = f(z), element-wise: a layer's backward epilogue.");

  m.def(
      "maxout_forward",
      [](const py::object& z_obj, const py::object& k_arg) {
        py::array z = require_ndarray(z_obj, "z");
        FloatType ft = require_float_dtype(z, "z");
        require_ndim(z, "z", 2, "(n, m*k)");
        const auto k = static_cast<std::size_t>(require_int(k_arg, "k", 1));
        if (static_cast<std::size_t>(z.shape(1)) % k != 0)
          throw py::value_error("k: expected a divisor of z's column count " +
                                std::to_string(z.shape(1)) + ", got " + std::to_string(k));
        const py::ssize_t n = z.shape(0), m_units = z.shape(1) / static_cast<py::ssize_t>(k);
        return with_float_type(ft, [&](auto tag) -> py::tuple {
          using T = decltype(tag);
          auto zc = CArray<T>::ensure(z);
          auto a = new_array<T>(n, m_units);
          auto argmax = new_array<std::int64_t>(n, m_units);
          {
            py::gil_scoped_release nogil;
            maxout_forward<T>(a.mutable_data(), argmax.mutable_data(), zc.data(),
                              static_cast<std::size_t>(n), static_cast<std::size_t>(m_units), k);
          }
          return py::make_tuple(a, argmax);
        });
      },
      py::arg("z"), py::arg("k"), "z (n, m*k) -> a (n, m), argmax (n, m) int64.");

  m.def(
      "maxout_backward",
      [](const py::object& da_obj, const py::object& argmax_obj, const py::object& k_arg) {
        py::array da = require_ndarray(da_obj, "da"), argmax = require_ndarray(argmax_obj, "argmax");
        FloatType ft = require_float_dtype(da, "da");
        require_ndim(da, "da", 2, "(n, m)");
        const auto k = static_cast<std::size_t>(require_int(k_arg, "k", 1));
        require_same_shape(argmax, "argmax", da, "da");
        const py::ssize_t n = da.shape(0), m_units = da.shape(1);
        if (m_units != 0 && k > static_cast<std::size_t>(PY_SSIZE_T_MAX / m_units))
          throw py::value_error("k: too large, m*k overflows (m = " + std::to_string(m_units) + ")");
        auto idx = require_indices(argmax, "argmax", static_cast<std::int64_t>(k), "piece indices < k");
        return with_float_type(ft, [&](auto tag) -> py::object {
          using T = decltype(tag);
          auto dac = CArray<T>::ensure(da);
          auto dz = new_array<T>(n, m_units * static_cast<py::ssize_t>(k));
          py::gil_scoped_release nogil;
          maxout_backward<T>(dz.mutable_data(), dac.data(), idx.data(), static_cast<std::size_t>(n),
                             static_cast<std::size_t>(m_units), k);
          return dz;
        });
      },
      py::arg("da"), py::arg("argmax"), py::arg("k"), "da (n, m) -> dz (n, m*k).");

  m.def(
      "softmax",
      [](const py::object& z_obj) {
        py::array z = require_ndarray(z_obj, "z");
        FloatType ft = require_float_dtype(z, "z");
        require_ndim(z, "z", 2, "(n, K)");
        require_classes(z, "z");
        return with_float_type(ft, [&](auto tag) -> py::object {
          using T = decltype(tag);
          auto zc = CArray<T>::ensure(z);
          auto p = new_array<T>(z.shape(0), z.shape(1));
          py::gil_scoped_release nogil;
          softmax<T>(p.mutable_data(), zc.data(), static_cast<std::size_t>(z.shape(0)),
                     static_cast<std::size_t>(z.shape(1)));
          return p;
        });
      },
      py::arg("z"), "Row-wise softmax of z (n, K).");

  m.def(
      "softmax_cross_entropy",
      [](const py::object& z_obj, const py::object& y_obj, const py::object& sample_weight) {
        py::array z = require_ndarray(z_obj, "z"), y = require_ndarray(y_obj, "y");
        FloatType ft = require_float_dtype(z, "z");
        require_ndim(z, "z", 2, "(n, K)");
        require_classes(z, "z");
        const py::ssize_t n = z.shape(0), k = z.shape(1);
        const char kind = y.dtype().kind();
        if (kind == 'i' || kind == 'u') {
          if (y.ndim() != 1 || y.shape(0) != n)
            throw py::value_error("y: expected integer labels of shape (" + std::to_string(n) +
                                  ",), got shape " + shape_str(y));
          auto labels = require_indices(y, "y", k, "class labels < K");
          return with_float_type(ft, [&](auto tag) -> py::tuple {
            using T = decltype(tag);
            auto zc = CArray<T>::ensure(z);
            auto sw = require_sample_weight<T>(sample_weight, n, z, "z");
            auto dz = new_array<T>(n, k);
            double loss;
            {
              py::gil_scoped_release nogil;
              loss = softmax_cross_entropy<T>(dz.mutable_data(), zc.data(), labels.data(),
                                              static_cast<std::size_t>(n), static_cast<std::size_t>(k),
                                              weights(sw));
            }
            return py::make_tuple(loss, dz);
          });
        }
        if (kind != 'f')
          throw py::type_error("y: expected integer labels (n,) or float targets (n, K), got dtype " +
                               std::string(py::str(y.dtype())));
        return bind_float_target_loss(z, y, sample_weight, "z", [](auto* dz, const auto* zp, const auto* yp,
                                                                   std::size_t rows, std::size_t cols,
                                                                   const auto* w) {
          return softmax_cross_entropy(dz, zp, yp, rows, cols, w);
        });
      },
      py::arg("z"), py::arg("y"), py::arg("sample_weight") = py::none(),
      "(J, dJ/dz) of softmax + cross-entropy; y integer labels (n,) or targets (n, K).");

  m.def(
      "sigmoid_binary_cross_entropy",
      [](const py::object& z, const py::object& y, const py::object& sample_weight) {
        return bind_float_target_loss(z, y, sample_weight, "z",
                                      [](auto* dz, const auto* zp, const auto* yp, std::size_t rows,
                                         std::size_t cols, const auto* w) {
                                        return sigmoid_binary_cross_entropy(dz, zp, yp, rows, cols, w);
                                      });
      },
      py::arg("z"), py::arg("y"), py::arg("sample_weight") = py::none(), "(J, dJ/dz) of sigmoid + binary cross-entropy; y (n, K).");

  m.def(
      "quadratic_loss",
      [](const py::object& a, const py::object& y, const py::object& sample_weight) {
        return bind_float_target_loss(a, y, sample_weight, "a",
                                      [](auto* da, const auto* ap, const auto* yp, std::size_t rows,
                                         std::size_t cols, const auto* w) {
                                        return quadratic_loss(da, ap, yp, rows, cols, w);
                                      });
      },
      py::arg("a"), py::arg("y"), py::arg("sample_weight") = py::none(), "(J, dJ/da) of the quadratic loss; y (n, K).");

  m.def(
      "poisson_loss",
      [](const py::object& z, const py::object& y, const py::object& sample_weight) {
        return bind_float_target_loss(z, y, sample_weight, "z",
                                      [](auto* dz, const auto* zp, const auto* yp, std::size_t rows,
                                         std::size_t cols, const auto* w) {
                                        return poisson_loss(dz, zp, yp, rows, cols, w);
                                      });
      },
      py::arg("z"), py::arg("y"), py::arg("sample_weight") = py::none(),
      "(J, dJ/dz) of the half Poisson deviance of the prediction e^z; y (n, K) >= 0.");

  m.def(
      "sgd_update",
      [](const py::object& w_obj, const py::object& dw_obj, const py::object& lr, const py::object& weight_decay) {
        const UpdateArrays arrays(w_obj, dw_obj, {});
        arrays.with_type([&](auto tag) {
          using T = decltype(tag);
          const auto [out, dw] = arrays.checked<T>();
          T lr_t = require_finite_number<T>(lr, "lr"), wd_t = require_finite_number<T>(weight_decay, "weight_decay");
          const CArray<T> dwc = arrays.gradient_apart<T>(dw);
          py::gil_scoped_release nogil;
          sgd_update<T>(out[0], dwc.data(), arrays.size(), lr_t, wd_t);
        });
      },
      py::arg("w"), py::arg("dw"), py::arg("lr"), py::arg("weight_decay"),
      "In place: w -= lr * (dw + weight_decay * w). Returns None.");

  m.def(
      "momentum_update",
      [](const py::object& w_obj, const py::object& dw_obj, const py::object& velocity_obj,
         const py::object& lr, const py::object& momentum, const py::object& nesterov,
         const py::object& weight_decay) {
        const UpdateArrays arrays(w_obj, dw_obj, {{&velocity_obj, "velocity"}});
        arrays.with_type([&](auto tag) {
          using T = decltype(tag);
          const auto [out, dw] = arrays.checked<T>();
          const double lr_d = require_hyperparameter<T>(lr, "lr", kAtLeastZero),
                       momentum_d = require_hyperparameter<T>(momentum, "momentum", kZeroToOne);
          const bool nesterov_b = require_bool(nesterov, "nesterov");
          const double wd_d = require_hyperparameter<T>(weight_decay, "weight_decay", kAtLeastZero);
          const CArray<T> dwc = arrays.gradient_apart<T>(dw);
          py::gil_scoped_release nogil;
          momentum_update<T>(out[0], out[1], dwc.data(), arrays.size(), lr_d, momentum_d, nesterov_b, wd_d);
        });
      },
      py::arg("w"), py::arg("dw"), py::arg("velocity"), py::arg("lr"), py::arg("momentum"),
      py::arg("nesterov"), py::arg("weight_decay"),
      "In place, torch.optim.SGD's step with momentum (dampening 0): g = dw + weight_decay * w; "
      "velocity = momentum * velocity + g; w -= lr * (g + momentum * velocity if nesterov else "
      "velocity). Returns None.");

  m.def(
      "adam_update",
      [](const py::object& w_obj, const py::object& dw_obj, const py::object& m_obj,
         const py::object& v_obj, const py::object& lr, const py::object& beta1,
         const py::object& beta2, const py::object& eps, const py::object& weight_decay,
         const py::object& decoupled, const py::object& step) {
        const UpdateArrays arrays(w_obj, dw_obj, {{&m_obj, "m"}, {&v_obj, "v"}});
        arrays.with_type([&](auto tag) {
          using T = decltype(tag);
          const auto [out, dw] = arrays.checked<T>();
          const double lr_d = require_hyperparameter<T>(lr, "lr", kAtLeastZero),
                       beta1_d = require_hyperparameter<T>(beta1, "beta1", kZeroToOne),
                       beta2_d = require_hyperparameter<T>(beta2, "beta2", kZeroToOne),
                       eps_d = require_hyperparameter<T>(eps, "eps", kAboveZero),
                       wd_d = require_hyperparameter<T>(weight_decay, "weight_decay", kAtLeastZero);
          const bool decoupled_b = require_bool(decoupled, "decoupled");
          const long long step_n = require_int(step, "step", 1);
          const CArray<T> dwc = arrays.gradient_apart<T>(dw);
          py::gil_scoped_release nogil;
          adam_update<T>(out[0], out[1], out[2], dwc.data(), arrays.size(), lr_d, beta1_d, beta2_d, eps_d,
                         wd_d, decoupled_b, step_n);
        });
      },
      py::arg("w"), py::arg("dw"), py::arg("m"), py::arg("v"), py::arg("lr"), py::arg("beta1"),
      py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("decoupled"),
      py::arg("step"),
      "In place, torch.optim.Adam's step (AdamW's when decoupled); step >= 1 counts this one: "
      "g = dw (+ weight_decay * w unless decoupled, which scales w by 1 - lr * weight_decay); "
      "m = beta1 * m + (1 - beta1) * g; v = beta2 * v + (1 - beta2) * g * g; "
      "w -= lr / (1 - beta1**step) * m / (sqrt(v) / sqrt(1 - beta2**step) + eps). Returns None.");

  m.def(
      "dropout_forward",
      [](const py::object& a_obj, const py::object& key_obj, const py::object& row_offset_obj,
         const py::object& p_obj) {
        py::array a = require_float_array(a_obj, "a", 2, "(n, m)");
        FloatType ft = require_float_dtype(a, "a");
        const long long key = require_int(key_obj, "key", 0);
        if (key > 0xFFFFFFFFll)
          throw py::value_error("key: expected an integer < 2**32, got " + std::to_string(key));
        const auto row_offset = static_cast<std::size_t>(require_int(row_offset_obj, "row_offset", 0));
        const double p = require_finite_number<double>(p_obj, "p");
        if (!(p >= 0.0 && p < 1.0))
          throw py::value_error("p: expected a rate in [0, 1), got " + std::string(py::str(p_obj)));
        return with_float_type(ft, [&](auto tag) -> py::object {
          using T = decltype(tag);
          auto ac = CArray<T>::ensure(a);
          const auto n = static_cast<std::size_t>(a.shape(0)), cols = static_cast<std::size_t>(a.shape(1));
          py::array_t<T> out({n, cols}), mask({n, cols});
          const DropoutPass<T> pass = dropout_pass(out.mutable_data(), mask.mutable_data(),
                                                   static_cast<std::uint32_t>(key), p, row_offset);
          {
            py::gil_scoped_release nogil;
            dropout_forward(pass, ac.data(), 0, n, 0, cols, cols);
          }
          return py::make_tuple(out, mask);
        });
      },
      py::arg("a"), py::arg("key"), py::arg("row_offset"), py::arg("p"),
      "a (n, m) -> (a * mask, mask): the dropout masks of key (fastmlp.reference.dropout), "
      "row i being row row_offset + i; mask 1/(1 - p) where a unit is kept, else 0.");

  m.def(
      "batch_norm_forward",
      [](const py::object& z_obj, const py::object& gamma_obj, const py::object& beta_obj,
         const py::object& eps_obj) {
        py::array z = require_float_array(z_obj, "z", 2, "(n, m)"),
                  gamma = require_float_array(gamma_obj, "gamma", 1, "(m,)"),
                  beta = require_float_array(beta_obj, "beta", 1, "(m,)");
        FloatType ft = require_float_dtype(z, "z");
        require_same_float_dtype(gamma, "gamma", ft, z, "z");
        require_same_float_dtype(beta, "beta", ft, z, "z");
        require_dim(gamma, "gamma", 0, z.shape(1), "gamma.shape[0] must equal z.shape[1] = " + std::to_string(z.shape(1)));
        require_dim(beta, "beta", 0, z.shape(1), "beta.shape[0] must equal z.shape[1] = " + std::to_string(z.shape(1)));
        if (z.shape(0) < 1) throw py::value_error("z: expected at least one row, got shape " + shape_str(z));
        return with_float_type(ft, [&](auto tag) -> py::object {
          using T = decltype(tag);
          const T eps = require_finite_number<T>(eps_obj, "eps");
          if (!(eps > T(0))) throw py::value_error("eps: expected a number > 0");
          auto zc = CArray<T>::ensure(z), gc = CArray<T>::ensure(gamma), bc = CArray<T>::ensure(beta);
          const auto n = static_cast<std::size_t>(z.shape(0)), cols = static_cast<std::size_t>(z.shape(1));
          py::array_t<T> y({n, cols}), xhat({n, cols}), mean(cols), var(cols), inv_std(cols);
          {
            py::gil_scoped_release nogil;
            batch_norm_forward(y.mutable_data(), xhat.mutable_data(), mean.mutable_data(), var.mutable_data(),
                               inv_std.mutable_data(), zc.data(), gc.data(), bc.data(), n, cols, eps);
          }
          return py::make_tuple(y, xhat, mean, var, inv_std);
        });
      },
      py::arg("z"), py::arg("gamma"), py::arg("beta"), py::arg("eps"),
      "Batch normalization of z (n, m) over its rows -> (y = gamma x̂ + beta, x̂, mean, var "
      "(biased), 1/sqrt(var + eps)).");

  m.def(
      "batch_norm_backward",
      [](const py::object& dy_obj, const py::object& xhat_obj, const py::object& gamma_obj,
         const py::object& inv_std_obj) {
        py::array dy = require_float_array(dy_obj, "dy", 2, "(n, m)"),
                  xhat = require_float_array(xhat_obj, "xhat", 2, "(n, m)"),
                  gamma = require_float_array(gamma_obj, "gamma", 1, "(m,)"),
                  inv_std = require_float_array(inv_std_obj, "inv_std", 1, "(m,)");
        FloatType ft = require_float_dtype(dy, "dy");
        require_same_float_dtype(xhat, "xhat", ft, dy, "dy");
        require_same_float_dtype(gamma, "gamma", ft, dy, "dy");
        require_same_float_dtype(inv_std, "inv_std", ft, dy, "dy");
        require_same_shape(xhat, "xhat", dy, "dy");
        require_dim(gamma, "gamma", 0, dy.shape(1), "gamma.shape[0] must equal dy.shape[1] = " + std::to_string(dy.shape(1)));
        require_dim(inv_std, "inv_std", 0, dy.shape(1), "inv_std.shape[0] must equal dy.shape[1] = " + std::to_string(dy.shape(1)));
        return with_float_type(ft, [&](auto tag) -> py::object {
          using T = decltype(tag);
          auto dc = CArray<T>::ensure(dy), xc = CArray<T>::ensure(xhat), gc = CArray<T>::ensure(gamma),
               ic = CArray<T>::ensure(inv_std);
          const auto n = static_cast<std::size_t>(dy.shape(0)), cols = static_cast<std::size_t>(dy.shape(1));
          py::array_t<T> dz({n, cols}), dgamma(cols), dbeta(cols);
          {
            py::gil_scoped_release nogil;
            batch_norm_backward(dz.mutable_data(), dgamma.mutable_data(), dbeta.mutable_data(), dc.data(),
                                xc.data(), gc.data(), ic.data(), n, cols);
          }
          return py::make_tuple(dz, dgamma, dbeta);
        });
      },
      py::arg("dy"), py::arg("xhat"), py::arg("gamma"), py::arg("inv_std"),
      "Backward of batch_norm_forward: dy = dJ/dy (n, m), its x̂ and 1/sqrt(var + eps) -> "
      "(dJ/dz, dJ/dgamma, dJ/dbeta).");
}

}  // namespace

void bind_kernels(py::module_& m) {
  bind_gemm(m);
  bind_elementwise(m);
}

}  // namespace fastmlp::bindings
