// Argument checks and array conversion shared by the bindings (csrc/bindings/*.cpp).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/activation.h"
#include "mlp.h"

namespace fastmlp::bindings {

namespace py = pybind11;

// Every argument is checked before any work. A wrong kind of object or dtype is a
// TypeError, a wrong shape or value a ValueError; each message starts with the argument's
// name ("x: ...") and says what was expected and what was given.

// A C-contiguous, aligned array of T: a copy if the argument is not one already (NumPy's
// C-contiguous flag alone lets data at an odd address through, and the kernels' scalar
// loads of it are undefined behaviour).
template <class T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast |
                                  py::detail::npy_api::NPY_ARRAY_ALIGNED_>;

enum class FloatType { f32, f64 };

inline std::string type_name(const py::handle& obj) { return Py_TYPE(obj.ptr())->tp_name; }

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

inline py::array require_ndarray(const py::handle& obj, const char* arg) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(arg) + ": expected a numpy.ndarray, got " + type_name(obj));
  return py::reinterpret_borrow<py::array>(obj);
}

// float32 or float64; everything else (ints, bool, float16, longdouble, complex, object) refused.
inline FloatType require_float_dtype(const py::array& a, const char* arg) {
  const py::dtype dt = a.dtype();
  // The kernels read the bytes as this machine's floats: a swapped byte order would be
  // read as other numbers, silently. (NumPy reports this machine's order as '=', so '<'
  // or '>' is the other one.)
  if (dt.kind() == 'f' && (dt.byteorder() == '<' || dt.byteorder() == '>'))
    throw py::type_error(std::string(arg) + ": expected this machine's byte order, got dtype " +
                         std::string(py::str(dt)) + " (convert with " + arg +
                         ".astype(" + arg + ".dtype.newbyteorder('=')))");
  if (dt.kind() == 'f' && dt.itemsize() == 4) return FloatType::f32;
  if (dt.kind() == 'f' && dt.itemsize() == 8) return FloatType::f64;
  throw py::type_error(std::string(arg) + ": expected a float32 or float64 array, got dtype " +
                       std::string(py::str(dt)));
}

// A float argument that must share the dtype of another one (`ref_arg`).
inline void require_same_float_dtype(const py::array& a, const char* arg, FloatType expected,
                                     const py::array& ref, const char* ref_arg) {
  if (require_float_dtype(a, arg) != expected)
    throw py::type_error(std::string(arg) + ": expected the dtype of " + ref_arg + " (" +
                         std::string(py::str(ref.dtype())) + "), got " +
                         std::string(py::str(a.dtype())));
}

// `meaning` names the axes, e.g. "(n, K)".
inline void require_ndim(const py::array& a, const char* arg, py::ssize_t ndim, const char* meaning) {
  if (a.ndim() != ndim)
    throw py::value_error(std::string(arg) + ": expected a " + std::to_string(ndim) + "-D array " +
                          meaning + ", got shape " + shape_str(a));
}

// An ndarray of float32/float64 with `ndim` dimensions.
inline py::array require_float_array(const py::handle& obj, const char* arg, py::ssize_t ndim,
                                     const char* meaning) {
  py::array a = require_ndarray(obj, arg);
  require_float_dtype(a, arg);
  require_ndim(a, arg, ndim, meaning);
  return a;
}

// One axis that must match another argument's; `why` says which, e.g. "w.shape[1] must equal ...".
inline void require_dim(const py::array& a, const char* arg, py::ssize_t axis, py::ssize_t expected,
                        const std::string& why) {
  if (a.shape(axis) != expected)
    throw py::value_error(std::string(arg) + ": shape " + shape_str(a) + " does not match: " + why);
}

inline void require_same_shape(const py::array& a, const char* arg, const py::array& ref,
                               const char* ref_arg) {
  bool same = a.ndim() == ref.ndim();
  for (py::ssize_t d = 0; same && d < a.ndim(); ++d) same = a.shape(d) == ref.shape(d);
  if (!same)
    throw py::value_error(std::string(arg) + ": expected the shape of " + ref_arg + " " +
                          shape_str(ref) + ", got " + shape_str(a));
}

// Softmax needs a class to normalise over (NumPy's max over an empty row raises too).
inline void require_classes(const py::array& z, const char* arg) {
  if (z.shape(1) == 0 && z.shape(0) != 0)
    throw py::value_error(std::string(arg) + ": expected at least one column (class), got shape " +
                          shape_str(z));
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
  return require_finite<T>(value, arg);  // mlp.h
}

// An integer (Python int or NumPy integer; not bool or float) >= `min`.
inline long long require_int(const py::handle& obj, const char* arg, long long min) {
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

inline Act require_activation(const py::handle& obj, const char* arg) {
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
inline CArray<std::int64_t> require_indices(const py::array& idx, const char* arg, std::int64_t bound,
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

// sample_weight: None (every row counts once), or one finite weight >= 0 per row of the
// batch: a 1-D array of n numbers in the dtype of `ref`. Returns it as a C array of T (empty
// for None); `weights(...)` gives the kernels' pointer (null for None).
template <class T>
CArray<T> require_sample_weight(const py::object& obj, py::ssize_t n, const py::array& ref,
                                const char* ref_arg) {
  if (obj.is_none()) return CArray<T>();
  py::array w = require_ndarray(obj, "sample_weight");
  require_same_float_dtype(w, "sample_weight", require_float_dtype(ref, ref_arg), ref, ref_arg);
  if (w.ndim() != 1 || w.shape(0) != n)
    throw py::value_error("sample_weight: expected one weight per row, shape (" + std::to_string(n) +
                          ",), got shape " + shape_str(w));
  auto c = CArray<T>::ensure(w);
  const T* v = c.data();
  for (py::ssize_t i = 0; i < n; ++i)
    if (!(v[i] >= T(0)) || !std::isfinite(v[i]))
      throw py::value_error("sample_weight: expected finite weights >= 0, got " +
                            std::string(py::str(py::float_(static_cast<double>(v[i])))) + " at row " +
                            std::to_string(i));
  return c;
}

template <class T>
const T* weights(const CArray<T>& sample_weight) {
  return sample_weight.size() == 0 ? nullptr : sample_weight.data();  // None, or no rows
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

}  // namespace fastmlp::bindings
