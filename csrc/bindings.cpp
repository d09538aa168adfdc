// fastmlp._core: the only file that sees Python. Argument checks, array conversion and
// GIL release live here; the math lives in kernels/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "kernels/activation.h"
#include "kernels/cpu.h"
#include "kernels/gemm.h"

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

// ---- GEMM and the fused layer kernels ----

namespace gemm_args {

std::string shape_str(const py::array& arr) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < arr.ndim(); ++d) s += (d ? ", " : "") + std::to_string(arr.shape(d));
  return s + (arr.ndim() == 1 ? ",)" : ")");
}

// `obj` as a float32/float64 ndarray with `ndim` dimensions, else a TypeError/ValueError
// naming `arg`.
py::array float_array(py::handle obj, const char* arg, py::ssize_t ndim) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(arg) + ": expected a numpy.ndarray, got " +
                         std::string(Py_TYPE(obj.ptr())->tp_name));
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (arr.ndim() != ndim)
    throw py::value_error(std::string(arg) + ": expected a " + std::to_string(ndim) +
                          "-D array, got shape " + shape_str(arr));
  if (!arr.dtype().equal(py::dtype::of<float>()) && !arr.dtype().equal(py::dtype::of<double>()))
    throw py::type_error(std::string(arg) + ": expected dtype float32 or float64, got " +
                         std::string(py::str(arr.dtype())));
  return arr;
}

void same_dtype(const py::array& arr, const char* arg, const py::array& first, const char* first_arg) {
  if (!arr.dtype().equal(first.dtype()))
    throw py::type_error(std::string(arg) + ": dtype " + std::string(py::str(arr.dtype())) +
                         " differs from " + first_arg + "'s dtype " +
                         std::string(py::str(first.dtype())));
}

void expect_dim(const py::array& arr, const char* arg, py::ssize_t axis, py::ssize_t expected,
                const std::string& why) {
  if (arr.shape(axis) != expected)
    throw py::value_error(std::string(arg) + ": shape " + shape_str(arr) + " does not match: " + why);
}

// The activation's parameter (leaky-ReLU slope, ELU alpha); None is accepted by the
// activations that ignore it, as in the reference.
double finite_param(py::handle obj, const char* arg, Act act) {
  if (obj.is_none() && act != Act::leaky_relu && act != Act::elu) return 0.0;
  double value;
  try {
    value = py::cast<double>(obj);
  } catch (const py::cast_error&) {
    throw py::type_error(std::string(arg) + ": expected a number, got " +
                         std::string(Py_TYPE(obj.ptr())->tp_name));
  }
  if (!std::isfinite(value))
    throw py::value_error(std::string(arg) + ": expected a finite number, got " + std::to_string(value));
  return value;
}

Act activation(py::handle obj, const char* arg) {
  if (!py::isinstance<py::str>(obj))
    throw py::type_error(std::string(arg) + ": expected an activation name (str), got " +
                         std::string(Py_TYPE(obj.ptr())->tp_name));
  std::string name = py::cast<std::string>(obj);
  Act act;
  if (!parse_activation(name.c_str(), &act))
    throw py::value_error(std::string(arg) + ": unknown activation '" + name +
                          "'; expected one of 'sigmoid', 'tanh', 'relu', 'leaky_relu', 'elu', "
                          "'identity' (maxout: apply maxout_forward to z)");
  return act;
}

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
  if (!whole) arr = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(arr);
  View<T> v{arr, static_cast<const T*>(arr.data()), 0, 0, 1, 1};
  v.n0 = static_cast<std::size_t>(arr.shape(0));
  v.s0 = arr.strides(0) / py::ssize_t(sizeof(T));
  if (arr.ndim() == 2) {
    v.n1 = static_cast<std::size_t>(arr.shape(1));
    v.s1 = arr.strides(1) / py::ssize_t(sizeof(T));
  }
  return v;
}

// A C-contiguous (n, k) copy if `arr` is not one already.
template <class T>
py::array_t<T> c_contiguous(const py::array& arr) {
  return py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(arr);
}

template <class T>
py::array matmul(const py::array& a_arr, const py::array& b_arr) {
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
py::tuple linear_forward(const py::array& x_arr, const py::array& w_arr, const py::array& b_arr,
                         Act act, double param) {
  View<T> x = view<T>(x_arr), w = view<T>(w_arr), b = view<T>(b_arr);
  std::size_t n = x.n0, k = x.n1, m = w.n0;
  py::array_t<T> z({n, m}), a({n, m});
  T *zp = z.mutable_data(), *ap = a.mutable_data();
  {
    py::gil_scoped_release release;
    fastmlp::linear_forward(zp, ap, x.data, x.s0, x.s1, w.data, w.s0, w.s1, b.data, b.s0, n, k,
                            m, act, static_cast<T>(param));
  }
  return py::make_tuple(z, a);
}

template <class T>
py::tuple linear_backward(const py::array& d_arr, const py::array& x_arr, const py::array& w_arr,
                          const py::object& z_obj, const py::object& a_obj, bool has_prev,
                          Act act, double param) {
  View<T> d = view<T>(d_arr), x = view<T>(x_arr), w = view<T>(w_arr);
  std::size_t n = d.n0, m = d.n1, k = x.n1;
  py::array_t<T> dw({m, k}), db(std::vector<py::ssize_t>{py::ssize_t(m)});
  py::object dp_obj = py::none();
  T* dp = nullptr;
  const T *zp = nullptr, *ap = nullptr;
  py::array_t<T> z_prev, a_prev;
  if (has_prev) {
    py::array_t<T> dp_arr({n, k});
    dp = dp_arr.mutable_data();
    dp_obj = dp_arr;
    if (!z_obj.is_none()) zp = (z_prev = c_contiguous<T>(z_obj)).data();
    if (!a_obj.is_none()) ap = (a_prev = c_contiguous<T>(a_obj)).data();
  }
  T *dwp = dw.mutable_data(), *dbp = db.mutable_data();
  {
    py::gil_scoped_release release;
    fastmlp::linear_backward(dwp, dbp, dp, d.data, d.s0, d.s1, x.data, x.s0, x.s1, w.data, w.s0,
                             w.s1, zp, ap, n, k, m, act, static_cast<T>(param), false);
  }
  return py::make_tuple(dw, db, dp_obj);
}

}  // namespace gemm_args

void bind_gemm(py::module_& m) {
  namespace ga = gemm_args;
  m.def(
      "matmul",
      [](py::object a_obj, py::object b_obj) {
        py::array a = ga::float_array(a_obj, "a", 2), b = ga::float_array(b_obj, "b", 2);
        ga::same_dtype(b, "b", a, "a");
        ga::expect_dim(b, "b", 0, a.shape(1),
                       "b.shape[0] must equal a.shape[1] = " + std::to_string(a.shape(1)));
        return a.dtype().equal(py::dtype::of<float>()) ? ga::matmul<float>(a, b)
                                                       : ga::matmul<double>(a, b);
      },
      py::arg("a"), py::arg("b"), "C = A B for 2-D float32/float64 arrays of any strides.");
  m.def(
      "linear_forward",
      [](py::object x_obj, py::object w_obj, py::object b_obj, py::object name, py::object param) {
        py::array x = ga::float_array(x_obj, "x", 2), w = ga::float_array(w_obj, "w", 2),
                  b = ga::float_array(b_obj, "b", 1);
        ga::same_dtype(w, "w", x, "x");
        ga::same_dtype(b, "b", x, "x");
        ga::expect_dim(w, "w", 1, x.shape(1),
                       "w.shape[1] must equal x.shape[1] = " + std::to_string(x.shape(1)));
        ga::expect_dim(b, "b", 0, w.shape(0),
                       "b.shape[0] must equal w.shape[0] = " + std::to_string(w.shape(0)));
        Act act = ga::activation(name, "name");
        double p = ga::finite_param(param, "param", act);
        return x.dtype().equal(py::dtype::of<float>()) ? ga::linear_forward<float>(x, w, b, act, p)
                                                       : ga::linear_forward<double>(x, w, b, act, p);
      },
      py::arg("x"), py::arg("w"), py::arg("b"), py::arg("name"), py::arg("param"),
      "X (n, s_l), W (s_(l+1), s_l), b (s_(l+1),) -> (Z = X Wᵀ + b, A = f(Z)).");
  m.def(
      "linear_backward",
      [](py::object d_obj, py::object x_obj, py::object w_obj, py::object z_obj, py::object a_obj,
         py::object name_prev, py::object param_prev) {
        py::array d = ga::float_array(d_obj, "delta", 2), x = ga::float_array(x_obj, "x", 2),
                  w = ga::float_array(w_obj, "w", 2);
        ga::same_dtype(x, "x", d, "delta");
        ga::same_dtype(w, "w", d, "delta");
        ga::expect_dim(x, "x", 0, d.shape(0),
                       "x.shape[0] must equal delta.shape[0] = " + std::to_string(d.shape(0)));
        ga::expect_dim(w, "w", 0, d.shape(1),
                       "w.shape[0] must equal delta.shape[1] = " + std::to_string(d.shape(1)));
        ga::expect_dim(w, "w", 1, x.shape(1),
                       "w.shape[1] must equal x.shape[1] = " + std::to_string(x.shape(1)));
        bool has_prev = !name_prev.is_none();
        Act act = Act::identity;
        double p = 0.0;
        if (has_prev) {
          act = ga::activation(name_prev, "name_prev");
          p = ga::finite_param(param_prev, "param_prev", act);
          // z_prev / a_prev are read for every activation but identity.
          for (auto [obj, arg] : {std::pair{&z_obj, "z_prev"}, std::pair{&a_obj, "a_prev"}}) {
            if (obj->is_none() && act == Act::identity) continue;
            py::array arr = ga::float_array(*obj, arg, 2);
            ga::same_dtype(arr, arg, d, "delta");
            ga::expect_dim(arr, arg, 0, x.shape(0), std::string(arg) + " must have x's shape");
            ga::expect_dim(arr, arg, 1, x.shape(1), std::string(arg) + " must have x's shape");
          }
        }
        return d.dtype().equal(py::dtype::of<float>())
                   ? ga::linear_backward<float>(d, x, w, z_obj, a_obj, has_prev, act, p)
                   : ga::linear_backward<double>(d, x, w, z_obj, a_obj, has_prev, act, p);
      },
      py::arg("delta"), py::arg("x"), py::arg("w"), py::arg("z_prev"), py::arg("a_prev"),
      py::arg("name_prev"), py::arg("param_prev"),
      "Backprop through one layer -> (dW = deltaᵀ X, db = Σ_rows delta, "
      "delta_prev = (delta W) * f'(z_prev) or None when name_prev is None).");
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
}
