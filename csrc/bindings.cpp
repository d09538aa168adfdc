// fastmlp._core: the only file that sees Python. Argument checks, array conversion and
// GIL release live here; the math lives in kernels/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/activation.h"
#include "kernels/cpu.h"
#include "kernels/gemm.h"
#include "kernels/kernel_table.h"
#include "kernels/loss.h"
#include "kernels/update.h"
#include "mlp.h"

namespace py = pybind11;
using namespace fastmlp;

#ifndef FASTMLP_VERSION
#define FASTMLP_VERSION "dev"
#endif

namespace {

Isa isa_from_name(const std::string& name, const char* arg) {
  Isa isa;
  if (!parse_isa(name.c_str(), &isa))
    throw py::value_error(std::string(arg) + ": expected one of 'generic', 'avx2', 'avx512', got '" +
                          name + "'");
  return isa;
}

py::dict build_info() {
  py::dict info;
  info["version"] = FASTMLP_VERSION;
  info["isa"] = isa_name(active_isa());
  info["cpu_isa"] = isa_name(detected_isa());
#ifdef FASTMLP_X86
  info["compiled_isas"] = py::make_tuple("generic", "avx2", "avx512");
#else
  info["compiled_isas"] = py::make_tuple("generic");
#endif
  info["num_threads"] = num_threads();
  return info;
}

}  // namespace

// ---- argument checks, shared by every binding ------------------------------------------
// Every argument is checked before any work. A wrong kind of object or dtype is a
// TypeError, a wrong shape or value a ValueError; each message starts with the argument's
// name ("x: ...") and says what was expected and what was given.
namespace {

// A C-contiguous, aligned array of T: a copy if the argument is not one already (NumPy's
// C-contiguous flag alone lets data at an odd address through, and the kernels' scalar
// loads of it are undefined behaviour).
template <class T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast |
                                  py::detail::npy_api::NPY_ARRAY_ALIGNED_>;

enum class FloatType { f32, f64 };

std::string type_name(const py::handle& obj) { return Py_TYPE(obj.ptr())->tp_name; }

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

py::array require_ndarray(const py::handle& obj, const char* arg) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(arg) + ": expected a numpy.ndarray, got " + type_name(obj));
  return py::reinterpret_borrow<py::array>(obj);
}

// float32 or float64; everything else (ints, bool, float16, longdouble, complex, object) refused.
FloatType require_float_dtype(const py::array& a, const char* arg) {
  const py::dtype dt = a.dtype();
  if (dt.kind() == 'f' && dt.itemsize() == 4) return FloatType::f32;
  if (dt.kind() == 'f' && dt.itemsize() == 8) return FloatType::f64;
  throw py::type_error(std::string(arg) + ": expected a float32 or float64 array, got dtype " +
                       std::string(py::str(dt)));
}

// A float argument that must share the dtype of another one (`ref_arg`).
void require_same_float_dtype(const py::array& a, const char* arg, FloatType expected,
                              const py::array& ref, const char* ref_arg) {
  if (require_float_dtype(a, arg) != expected)
    throw py::type_error(std::string(arg) + ": expected the dtype of " + ref_arg + " (" +
                         std::string(py::str(ref.dtype())) + "), got " +
                         std::string(py::str(a.dtype())));
}

// `meaning` names the axes, e.g. "(n, K)".
void require_ndim(const py::array& a, const char* arg, py::ssize_t ndim, const char* meaning) {
  if (a.ndim() != ndim)
    throw py::value_error(std::string(arg) + ": expected a " + std::to_string(ndim) + "-D array " +
                          meaning + ", got shape " + shape_str(a));
}

// An ndarray of float32/float64 with `ndim` dimensions.
py::array require_float_array(const py::handle& obj, const char* arg, py::ssize_t ndim,
                              const char* meaning) {
  py::array a = require_ndarray(obj, arg);
  require_float_dtype(a, arg);
  require_ndim(a, arg, ndim, meaning);
  return a;
}

// One axis that must match another argument's; `why` says which, e.g. "w.shape[1] must equal ...".
void require_dim(const py::array& a, const char* arg, py::ssize_t axis, py::ssize_t expected,
                 const std::string& why) {
  if (a.shape(axis) != expected)
    throw py::value_error(std::string(arg) + ": shape " + shape_str(a) + " does not match: " + why);
}

void require_same_shape(const py::array& a, const char* arg, const py::array& ref,
                        const char* ref_arg) {
  bool same = a.ndim() == ref.ndim();
  for (py::ssize_t d = 0; same && d < a.ndim(); ++d) same = a.shape(d) == ref.shape(d);
  if (!same)
    throw py::value_error(std::string(arg) + ": expected the shape of " + ref_arg + " " +
                          shape_str(ref) + ", got " + shape_str(a));
}

// Softmax needs a class to normalise over (NumPy's max over an empty row raises too).
void require_classes(const py::array& z, const char* arg) {
  if (z.shape(1) == 0 && z.shape(0) != 0)
    throw py::value_error(std::string(arg) + ": expected at least one column (class), got shape " +
                          shape_str(z));
}

// A Python float that the kernel will use in dtype T: it must be finite there.
template <class T>
T require_finite(double value, const char* arg) {
  if (!std::isfinite(value) || !std::isfinite(static_cast<T>(value))) {
    char text[32];
    std::snprintf(text, sizeof text, "%.17g", value);
    throw py::value_error(std::string(arg) + ": expected a finite number" +
                          (std::isfinite(value) ? " in the array's dtype" : "") + ", got " + text);
  }
  return static_cast<T>(value);
}

// A real number (int, float, NumPy scalar; not str, None or bool), finite in dtype T.
template <class T>
T require_finite_number(const py::handle& obj, const char* arg) {
  if (PyBool_Check(obj.ptr()) || PyComplex_Check(obj.ptr()) || !PyNumber_Check(obj.ptr()))
    throw py::type_error(std::string(arg) + ": expected a number, got " + type_name(obj));
  double value;
  try {
    value = py::cast<double>(obj);
  } catch (const py::cast_error&) {
    throw py::type_error(std::string(arg) + ": expected a number, got " + type_name(obj));
  }
  return require_finite<T>(value, arg);
}

// An integer (Python int or NumPy integer; not bool or float) >= `min`.
long long require_int(const py::handle& obj, const char* arg, long long min) {
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
    throw py::type_error(std::string(arg) + ": expected an integer, got " + type_name(obj));
  long long value;
  try {
    value = py::cast<long long>(obj);
  } catch (const py::cast_error&) {
    throw py::value_error(std::string(arg) + ": expected an integer >= " + std::to_string(min) +
                          ", got " + std::string(py::str(obj)));
  }
  if (value < min)
    throw py::value_error(std::string(arg) + ": expected an integer >= " + std::to_string(min) +
                          ", got " + std::to_string(value));
  return value;
}

Act require_activation(const py::handle& obj, const char* arg) {
  if (!py::isinstance<py::str>(obj))
    throw py::type_error(std::string(arg) + ": expected an activation name (str), got " + type_name(obj));
  const std::string name = py::cast<std::string>(obj);
  Act act;
  if (!parse_activation(name.c_str(), &act))
    throw py::value_error(std::string(arg) + ": unknown activation '" + name +
                          "'; expected one of 'sigmoid', 'tanh', 'relu', 'leaky_relu', 'elu', "
                          "'identity' (maxout has its own kernels: maxout_forward, maxout_backward)");
  return act;
}

// The activation's parameter (leaky-ReLU slope, ELU alpha), finite in dtype T; None is
// accepted by the activations that ignore it, as in the reference.
template <class T>
T require_activation_param(const py::handle& obj, const char* arg, Act act) {
  if (obj.is_none() && act != Act::leaky_relu && act != Act::elu) return T(0);
  return require_finite_number<T>(obj, arg);
}

// Integer array (any integer dtype) -> C-contiguous int64 whose values all lie in [0, bound).
CArray<std::int64_t> require_indices(const py::array& idx, const char* arg, std::int64_t bound,
                                     const char* bound_meaning) {
  const char kind = idx.dtype().kind();
  if (kind != 'i' && kind != 'u')
    throw py::type_error(std::string(arg) + ": expected an integer array, got dtype " +
                         std::string(py::str(idx.dtype())));
  // uint64 values past 2^63 wrap to negatives here, and so fail the range check below.
  auto out = CArray<std::int64_t>::ensure(idx);
  const std::int64_t* v = out.data();
  for (py::ssize_t i = 0; i < out.size(); ++i)
    if (v[i] < 0 || v[i] >= bound)
      throw py::value_error(std::string(arg) + ": expected values in [0, " + std::to_string(bound) +
                            ") (" + bound_meaning + "), got " + std::to_string(v[i]) +
                            " at flat index " + std::to_string(i));
  return out;
}

template <class F>
decltype(auto) with_float_type(FloatType ft, F&& f) {
  if (ft == FloatType::f32) return f(float{});
  return f(double{});
}

}  // namespace

// ---- GEMM and the fused layer kernels ----

namespace {

// A read-only view of a float array through element strides. Byte strides that are not
// a whole number of elements (or misaligned data) cannot be expressed that way: copy.
template <class T>
struct View {
  py::array keep;
  const T* data;
  std::ptrdiff_t s0, s1;
  std::size_t n0, n1;
};

template <class T>
View<T> view(py::array arr) {
  bool whole = reinterpret_cast<std::uintptr_t>(arr.data()) % alignof(T) == 0;
  for (py::ssize_t d = 0; d < arr.ndim(); ++d) whole = whole && arr.strides(d) % py::ssize_t(sizeof(T)) == 0;
  if (!whole) arr = CArray<T>::ensure(arr);
  View<T> v{arr, static_cast<const T*>(arr.data()), 0, 0, 1, 1};
  v.n0 = static_cast<std::size_t>(arr.shape(0));
  v.s0 = arr.strides(0) / py::ssize_t(sizeof(T));
  if (arr.ndim() == 2) {
    v.n1 = static_cast<std::size_t>(arr.shape(1));
    v.s1 = arr.strides(1) / py::ssize_t(sizeof(T));
  }
  return v;
}

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

template <class T>
py::tuple linear_forward_as(const py::array& x_arr, const py::array& w_arr, const py::array& b_arr,
                            Act act, T param) {
  View<T> x = view<T>(x_arr), w = view<T>(w_arr), b = view<T>(b_arr);
  std::size_t n = x.n0, k = x.n1, m = w.n0;
  py::array_t<T> z({n, m}), a({n, m});
  T *zp = z.mutable_data(), *ap = a.mutable_data();
  {
    py::gil_scoped_release release;
    fastmlp::linear_forward(zp, ap, x.data, x.s0, x.s1, w.data, w.s0, w.s1, b.data, b.s0, n, k,
                            m, act, param);
  }
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
      [](py::object x_obj, py::object w_obj, py::object b_obj, py::object name, py::object param) {
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
          return linear_forward_as<T>(x, w, b, act, require_activation_param<T>(param, "param", act));
        });
      },
      py::arg("x"), py::arg("w"), py::arg("b"), py::arg("name"), py::arg("param"),
      "X (n, s_l), W (s_(l+1), s_l), b (s_(l+1),) -> (Z = X Wᵀ + b, A = f(Z)).");
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

}  // namespace

// ---- element-wise, loss and update ops -------------------------------------------------
// Inputs of any strides are copied to C order (only if needed); outputs are fresh
// C-contiguous arrays; the GIL is released around the kernels.
namespace {

template <class T>
py::array_t<T> new_array(py::ssize_t rows, py::ssize_t cols) {
  return py::array_t<T>({rows, cols});
}

template <class T>
py::array_t<T> new_array_like(const py::array& a) {
  return py::array_t<T>(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
}

// Loss kernels share one shape: (z or a, y) float (n, K) -> (J, gradient (n, K)).
template <class Kernel>
py::tuple bind_float_target_loss(const py::object& z_obj, const py::object& y_obj,
                                 const char* z_arg, Kernel kernel) {
  py::array z = require_ndarray(z_obj, z_arg), y = require_ndarray(y_obj, "y");
  FloatType ft = require_float_dtype(z, z_arg);
  require_ndim(z, z_arg, 2, "(n, K)");
  require_same_float_dtype(y, "y", ft, z, z_arg);
  require_same_shape(y, "y", z, z_arg);
  return with_float_type(ft, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    auto zc = CArray<T>::ensure(z), yc = CArray<T>::ensure(y);
    auto grad = new_array<T>(z.shape(0), z.shape(1));
    double loss;
    {
      py::gil_scoped_release nogil;
      loss = kernel(grad.mutable_data(), zc.data(), yc.data(), static_cast<std::size_t>(z.shape(0)),
                    static_cast<std::size_t>(z.shape(1)));
    }
    return py::make_tuple(loss, grad);
  });
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
      [](const py::object& z_obj, const py::object& y_obj) {
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
            auto dz = new_array<T>(n, k);
            double loss;
            {
              py::gil_scoped_release nogil;
              loss = softmax_cross_entropy<T>(dz.mutable_data(), zc.data(), labels.data(),
                                              static_cast<std::size_t>(n), static_cast<std::size_t>(k));
            }
            return py::make_tuple(loss, dz);
          });
        }
        if (kind != 'f')
          throw py::type_error("y: expected integer labels (n,) or float targets (n, K), got dtype " +
                               std::string(py::str(y.dtype())));
        return bind_float_target_loss(z, y, "z", [](auto* dz, const auto* zp, const auto* yp,
                                                    std::size_t rows, std::size_t cols) {
          return softmax_cross_entropy(dz, zp, yp, rows, cols);
        });
      },
      py::arg("z"), py::arg("y"),
      "(J, dJ/dz) of softmax + cross-entropy; y integer labels (n,) or targets (n, K).");

  m.def(
      "sigmoid_binary_cross_entropy",
      [](const py::object& z, const py::object& y) {
        return bind_float_target_loss(z, y, "z", [](auto* dz, const auto* zp, const auto* yp,
                                                    std::size_t rows, std::size_t cols) {
          return sigmoid_binary_cross_entropy(dz, zp, yp, rows, cols);
        });
      },
      py::arg("z"), py::arg("y"), "(J, dJ/dz) of sigmoid + binary cross-entropy; y (n, K).");

  m.def(
      "quadratic_loss",
      [](const py::object& a, const py::object& y) {
        return bind_float_target_loss(a, y, "a", [](auto* da, const auto* ap, const auto* yp,
                                                    std::size_t rows, std::size_t cols) {
          return quadratic_loss(da, ap, yp, rows, cols);
        });
      },
      py::arg("a"), py::arg("y"), "(J, dJ/da) of the quadratic loss; y (n, K).");

  m.def(
      "sgd_update",
      [](const py::object& w_obj, const py::object& dw_obj, const py::object& lr, const py::object& weight_decay) {
        py::array w = require_ndarray(w_obj, "w"), dw = require_ndarray(dw_obj, "dw");
        FloatType ft = require_float_dtype(w, "w");
        require_same_float_dtype(dw, "dw", ft, w, "w");
        require_same_shape(dw, "dw", w, "w");
        with_float_type(ft, [&](auto tag) {
          using T = decltype(tag);
          // Updated in place, so w itself must be the buffer: never a silent copy.
          if (!py::isinstance<py::array_t<T, py::array::c_style>>(w) ||
              reinterpret_cast<std::uintptr_t>(w.data()) % alignof(T) != 0)
            throw py::value_error("w: expected a C-contiguous array in native byte order at an "
                                  "aligned address (it is updated in place), got strides " +
                                  std::string(py::str(py::tuple(w.attr("strides")))) +
                                  (reinterpret_cast<std::uintptr_t>(w.data()) % alignof(T) != 0
                                       ? " at a misaligned address" : ""));
          if (!w.writeable()) throw py::value_error("w: expected a writable array, got a read-only one");
          T lr_t = require_finite_number<T>(lr, "lr"), wd_t = require_finite_number<T>(weight_decay, "weight_decay");
          auto wc = py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(w);
          auto dwc = CArray<T>::ensure(dw);
          // The kernel reads dw[i] after writing w[i-1]: a dw that overlaps w elsewhere than
          // element for element must be read from a copy (NumPy does the same).
          const char* w_begin = reinterpret_cast<const char*>(wc.data());
          const char* dw_begin = reinterpret_cast<const char*>(dwc.data());
          const auto bytes = static_cast<std::ptrdiff_t>(wc.nbytes());
          if (dw_begin != w_begin && dw_begin < w_begin + bytes && w_begin < dw_begin + bytes)
            dwc = CArray<T>::ensure(dwc.attr("copy")());
          py::gil_scoped_release nogil;
          sgd_update<T>(wc.mutable_data(), dwc.data(), static_cast<std::size_t>(wc.size()), lr_t, wd_t);
        });
      },
      py::arg("w"), py::arg("dw"), py::arg("lr"), py::arg("weight_decay"),
      "In place: w -= lr * (dw + weight_decay * w). Returns None.");
}

}  // namespace

// ---- whole training steps and epochs (csrc/mlp.h) --------------------------------------
// A TrainingWorkspace holds one network's buffers for batches of up to max_batch rows; the
// MLP keeps it across steps and epochs, so a steady-state step allocates nothing. The
// weights stay Python's ndarrays: they are passed to every call and updated in place.
namespace training_args {

Output output_kind(const std::string& name) {
  if (name == "softmax") return Output::softmax;
  if (name == "sigmoid") return Output::sigmoid;
  if (name == "identity") return Output::identity;
  throw py::value_error("output: expected 'softmax', 'sigmoid' or 'identity', got '" + name + "'");
}

Loss loss_kind(const std::string& name, Output output) {
  Loss loss;
  if (name == "cross_entropy") loss = Loss::cross_entropy;
  else if (name == "binary_cross_entropy") loss = Loss::binary_cross_entropy;
  else if (name == "quadratic") loss = Loss::quadratic;
  else
    throw py::value_error("loss: expected 'cross_entropy', 'binary_cross_entropy' or 'quadratic', got '" +
                          name + "'");
  bool fits = (output == Output::softmax && loss == Loss::cross_entropy) ||
              (output == Output::sigmoid && loss != Loss::cross_entropy) ||
              (output == Output::identity && loss == Loss::quadratic);
  if (!fits) throw py::value_error("loss: '" + name + "' does not go with this output layer");
  return loss;
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
  layer.param = py::cast<double>(param);
  if (!std::isfinite(layer.param)) throw py::value_error(arg + ": expected a finite parameter");
  return layer;
}

// Buffer sizes are products of the widths and the batch size: refuse ones that overflow.
constexpr std::size_t kMaxElements = std::size_t(1) << 40;

void check_product(std::size_t a, std::size_t b, const char* what) {
  if (a != 0 && b > kMaxElements / a)
    throw py::value_error(std::string(what) + ": the workspace would be too large (" +
                          std::to_string(a) + " x " + std::to_string(b) + " elements)");
}

Network network(const py::sequence& sizes, const py::sequence& hidden,
                const std::string& output, const std::string& loss, std::size_t max_batch) {
  if (sizes.size() < 2) throw py::value_error("sizes: expected at least two layer widths");
  Network net;
  for (py::handle item : sizes) {
    if (!py::isinstance<py::int_>(item)) throw py::type_error("sizes: expected integer widths");
    long long s = py::cast<long long>(item);
    if (s < 1) throw py::value_error("sizes: expected widths >= 1, got " + std::to_string(s));
    net.sizes.push_back(static_cast<std::size_t>(s));
  }
  if (hidden.size() != sizes.size() - 2)
    throw py::value_error("hidden: expected one (name, param) per hidden layer (" +
                          std::to_string(sizes.size() - 2) + "), got " + std::to_string(hidden.size()));
  for (std::size_t l = 0; l < hidden.size(); ++l) net.hidden.push_back(hidden_layer(hidden[l], l));
  net.output = output_kind(output);
  net.loss = loss_kind(loss, net.output);
  if (net.output == Output::softmax && net.sizes.back() < 2)
    throw py::value_error("sizes: a softmax output needs at least 2 units");
  for (std::size_t l = 0; l < net.n_layers(); ++l) {
    check_product(net.sizes[l + 1], l < net.hidden.size() ? std::max<std::size_t>(net.hidden[l].maxout_pieces, 1) : 1, "sizes");
    check_product(net.rows(l), net.sizes[l], "sizes");
    check_product(net.rows(l), max_batch, "max_batch");
  }
  check_product(net.sizes.front(), max_batch, "max_batch");
  return net;
}

// One call at a time per workspace: the GIL is released while it runs.
class BusyGuard {
 public:
  explicit BusyGuard(std::atomic<bool>& busy) : busy_(busy) {
    if (busy_.exchange(true))
      throw py::value_error("workspace: already in use by another thread; give each thread its own model");
  }
  ~BusyGuard() { busy_ = false; }
  BusyGuard(const BusyGuard&) = delete;
  BusyGuard& operator=(const BusyGuard&) = delete;

 private:
  std::atomic<bool>& busy_;
};

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
  py::object hits = net.output == Output::identity ? py::object(py::float_(r.hits))
                                                   : py::object(py::int_(static_cast<long long>(r.hits)));
  return py::make_tuple(r.loss, hits);
}

class TrainingWorkspace {
 public:
  TrainingWorkspace(const py::sequence& sizes, const py::sequence& hidden,
                    const std::string& output, const std::string& loss, const py::object& dtype,
                    long long max_batch) {
    if (max_batch < 1)
      throw py::value_error("max_batch: expected an integer >= 1, got " + std::to_string(max_batch));
    const auto batch = static_cast<std::size_t>(max_batch);
    Network net = network(sizes, hidden, output, loss, batch);
    py::dtype dt = py::dtype::from_args(dtype);
    if (dt.equal(py::dtype::of<float>())) f32_ = std::make_unique<Trainer<float>>(net, batch);
    else if (dt.equal(py::dtype::of<double>())) f64_ = std::make_unique<Trainer<double>>(net, batch);
    else throw py::type_error("dtype: expected float32 or float64, got " + std::string(py::str(dt)));
  }

  std::size_t max_batch() const { return f32_ ? f32_->ws.max_batch : f64_->ws.max_batch; }
  py::dtype dtype() const { return f32_ ? py::dtype::of<float>() : py::dtype::of<double>(); }

  py::tuple step(const py::object& weights, const py::object& biases, const py::object& x,
                 const py::object& y, double lr, double weight_decay) {
    BusyGuard guard(busy_);
    if (f32_) return step_as(*f32_, weights, biases, x, y, lr, weight_decay);
    return step_as(*f64_, weights, biases, x, y, lr, weight_decay);
  }

  py::tuple epoch(const py::object& weights, const py::object& biases, const py::object& x,
                  const py::object& y, const py::object& order, long long batch_size, double lr,
                  double weight_decay) {
    BusyGuard guard(busy_);
    if (f32_) return epoch_as(*f32_, weights, biases, x, y, order, batch_size, lr, weight_decay);
    return epoch_as(*f64_, weights, biases, x, y, order, batch_size, lr, weight_decay);
  }

  py::tuple gradients(const py::object& dws, const py::object& dbs, const py::object& weights,
                      const py::object& biases, const py::object& x, const py::object& y,
                      const py::object& rows, double scale, double weight_decay) {
    BusyGuard guard(busy_);
    if (f32_) return gradients_as(*f32_, dws, dbs, weights, biases, x, y, rows, scale, weight_decay);
    return gradients_as(*f64_, dws, dbs, weights, biases, x, y, rows, scale, weight_decay);
  }

 private:
  template <class T>
  struct Trainer {
    Trainer(const Network& net, std::size_t max_batch)
        : ws(net, max_batch), slots(net.n_layers()), grad_slots(net.n_layers()) {}
    Workspace<T> ws;
    ParamSlots<T> slots, grad_slots;  // weights and biases; their gradients
  };

  template <class T>
  static py::tuple step_as(Trainer<T>& t, const py::object& weights, const py::object& biases,
                           const py::object& x, const py::object& y, double lr, double weight_decay) {
    Workspace<T>& ws = t.ws;
    ReleaseParams<T> release(t.slots);
    params(t.slots, ws.net, weights, biases);
    CheckedBatch<T> bt = batch<T>(ws.net, x, y);
    if (bt.n > ws.max_batch)
      throw py::value_error("x: " + std::to_string(bt.n) + " rows exceed the workspace's max_batch " +
                            std::to_string(ws.max_batch));
    const T lr_t = require_finite<T>(lr, "lr"), wd_t = require_finite<T>(weight_decay, "weight_decay");
    StepResult r;
    {
      py::gil_scoped_release nogil;
      r = train_step(t.slots.w.data(), t.slots.b.data(), ws, bt.x.data(), bt.targets, bt.n, lr_t, wd_t);
    }
    py::tuple loss_hits = result(ws.net, r);
    return py::make_tuple(loss_hits[0], loss_hits[1], r.finite);
  }

  template <class T>
  static py::tuple epoch_as(Trainer<T>& t, const py::object& weights, const py::object& biases,
                            const py::object& x, const py::object& y, const py::object& order_obj,
                            long long batch_size, double lr, double weight_decay) {
    Workspace<T>& ws = t.ws;
    ReleaseParams<T> release(t.slots);
    params(t.slots, ws.net, weights, biases);
    CheckedBatch<T> bt = batch<T>(ws.net, x, y);
    if (batch_size < 1 || static_cast<std::size_t>(batch_size) > ws.max_batch)
      throw py::value_error("batch_size: expected 1 .. max_batch (" + std::to_string(ws.max_batch) +
                            "), got " + std::to_string(batch_size));
    const T lr_t = require_finite<T>(lr, "lr"), wd_t = require_finite<T>(weight_decay, "weight_decay");
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
      r = train_epoch(t.slots.w.data(), t.slots.b.data(), ws, bt.x.data(), bt.targets, bt.n, order_data,
                      static_cast<std::size_t>(batch_size), lr_t, wd_t);
    }
    return result(ws.net, r);
  }

  template <class T>
  static py::tuple gradients_as(Trainer<T>& t, const py::object& dws, const py::object& dbs,
                                const py::object& weights, const py::object& biases,
                                const py::object& x, const py::object& y, const py::object& rows_obj,
                                double scale, double weight_decay) {
    Workspace<T>& ws = t.ws;
    ReleaseParams<T> release(t.slots), release_grads(t.grad_slots);
    params(t.slots, ws.net, weights, biases);
    params(t.grad_slots, ws.net, dws, dbs, "dws", "dbs");
    for (std::size_t l = 0; l < ws.net.n_layers(); ++l)
      if (t.grad_slots.w[l] == t.slots.w[l] || t.grad_slots.b[l] == t.slots.b[l])
        throw py::value_error("dws, dbs: expected arrays of their own, got the weights or biases");
    CheckedBatch<T> bt = batch<T>(ws.net, x, y);
    CArray<std::int64_t> rows;
    std::size_t n = bt.n;
    if (!rows_obj.is_none()) {
      py::array r = require_ndarray(rows_obj, "rows");
      if (r.ndim() != 1)
        throw py::value_error("rows: expected a 1-D array of row indices, got shape " + shape_str(r));
      rows = require_indices(r, "rows", static_cast<std::int64_t>(bt.n), "row indices < n");
      n = static_cast<std::size_t>(r.shape(0));
    }
    if (n > ws.max_batch)
      throw py::value_error("rows: " + std::to_string(n) + " rows exceed the workspace's max_batch " +
                            std::to_string(ws.max_batch));
    const T scale_t = require_finite<T>(scale, "scale");
    const T wd_t = require_finite<T>(weight_decay, "weight_decay");
    const std::int64_t* rows_data = rows_obj.is_none() ? nullptr : rows.data();
    StepResult r;
    {
      py::gil_scoped_release nogil;
      r = batch_gradients(t.grad_slots.w.data(), t.grad_slots.b.data(), t.slots.w.data(),
                          t.slots.b.data(), ws, bt.x.data(), bt.targets, rows_data, n, scale_t, wd_t);
    }
    return result(ws.net, r);
  }

  std::unique_ptr<Trainer<float>> f32_;
  std::unique_ptr<Trainer<double>> f64_;
  std::atomic<bool> busy_{false};
};

}  // namespace training_args

void bind_training(py::module_& m) {
  using training_args::TrainingWorkspace;
  py::register_exception<training_args::NonFiniteInput>(m, "NonFiniteInputError", PyExc_ValueError);
  py::class_<TrainingWorkspace>(m, "TrainingWorkspace",
                                "Buffers for training one network on batches of up to max_batch rows.")
      .def(py::init<const py::sequence&, const py::sequence&, const std::string&,
                    const std::string&, const py::object&, long long>(),
           py::arg("sizes"), py::arg("hidden"), py::arg("output"), py::arg("loss"), py::arg("dtype"),
           py::arg("max_batch"),
           "sizes [s_1, ..., s_L]; hidden: one (name, param) per hidden layer, ('maxout', k) "
           "for maxout; output 'softmax' | 'sigmoid' | 'identity'; loss 'cross_entropy' | "
           "'binary_cross_entropy' | 'quadratic'; dtype float32 | float64.")
      .def_property_readonly("max_batch", &TrainingWorkspace::max_batch)
      .def_property_readonly("dtype", &TrainingWorkspace::dtype)
      .def("step", &TrainingWorkspace::step, py::arg("weights"), py::arg("biases"), py::arg("x"),
           py::arg("y"), py::arg("lr"), py::arg("weight_decay"),
           "One SGD step on the batch (x, y), weights and biases updated in place -> (J before "
           "the update with the weight-decay penalty, hits, whether J and the new weights and "
           "biases are all finite). NonFiniteInputError, and no change, if a row of x is not "
           "finite.")
      .def("epoch", &TrainingWorkspace::epoch, py::arg("weights"), py::arg("biases"), py::arg("x"),
           py::arg("y"), py::arg("order"), py::arg("batch_size"), py::arg("lr"),
           py::arg("weight_decay"),
           "One epoch: batches of batch_size rows of x[order] (order None: row order), one step "
           "each -> (sum of J_batch * rows_batch, total hits). NonFiniteInputError at the first "
           "batch with a row of x that is not finite (the batches before it are applied).")
      .def("gradients", &TrainingWorkspace::gradients, py::arg("dws"), py::arg("dbs"),
           py::arg("weights"), py::arg("biases"), py::arg("x"), py::arg("y"), py::arg("rows"),
           py::arg("scale"), py::arg("weight_decay"),
           "Gradients of J on the batch x[rows] (rows None: all of x), times scale, written into "
           "dws and dbs (arrays shaped like the weights and biases); the weights are not changed "
           "and weight decay is left to the update -> (J of the batch with the weight-decay "
           "penalty, hits).");
}

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastmlp's C++ kernels; use them through fastmlp.get_backend('native').";
  if (const char* env = std::getenv("FASTMLP_ISA"); env != nullptr && *env != '\0')
    set_isa_cap(isa_from_name(env, "FASTMLP_ISA"));
  m.attr("__version__") = FASTMLP_VERSION;
  m.def("build_info", &build_info, "Version, active ISA, CPU ISA, compiled ISAs, threads.");
  m.def("set_isa", [](const std::string& name) { return isa_name(set_isa_cap(isa_from_name(name, "name"))); },
        py::arg("name"), "Cap the kernels' ISA; returns the ISA now active.");
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("get_num_threads", &num_threads);
  bind_gemm(m);
  bind_elementwise(m);
  bind_training(m);
  // For fastmlp.cython_kernels, the Cython API: it calls these pointers, never a copy.
  static const KernelTable kernel_table{kernels_for<float>(), kernels_for<double>()};
  m.attr("_kernel_table") = py::capsule(&kernel_table, kKernelTableCapsule);
}
