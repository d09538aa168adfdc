// Bodies of the element-wise activation kernels, instantiated once per ISA (eltwise_isa.h).
// Same formulas, in the same order of operations, as python/fastmlp/reference/activation.py;
// exp, expm1 and tanh come from vec_math.h (within a few ulps of libm's), so every loop
// but the identity's copy vectorises. The twin
// clamps ELU's exponent with np.minimum(z, 0) only because np.where evaluates both branches;
// here e^z of a large z is computed and discarded (inf, no trap), and a NaN z stays NaN.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels/dropout.h"
#include "kernels/eltwise_isa.h"
#include "kernels/vec_math.h"

namespace fastmlp {

template <class T, Isa isa>
void activation_forward_isa(T* a, const T* z, std::size_t n, Act act, T param) {
  // `omp simd` tells the compiler that a == z (in place) is fine: no iteration reads an
  // element that another one writes, so it may vectorise without an overlap check.
  switch (act) {
    case Act::sigmoid:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) a[i] = sigmoid_vectorizable(z[i]);
      break;
    case Act::tanh:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) a[i] = tanh_vectorizable(z[i]);
      break;
    case Act::relu:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) a[i] = z[i] > T(0) ? z[i] : T(0);
      break;
    case Act::leaky_relu:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) {
        const T scaled = param * z[i];  // unconditional, so the loop needs no branch
        a[i] = z[i] > T(0) ? z[i] : scaled;
      }
      break;
    case Act::elu:  // expm1, not e^z − 1: it keeps its relative accuracy near 0
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) {
        const T negative_part = param * expm1_vectorizable(z[i]);  // unconditional: no branch
        a[i] = z[i] > T(0) ? z[i] : negative_part;
      }
      break;
    case Act::identity:
      if (a != z) std::memmove(a, z, n * sizeof(T));
      break;
  }
}

namespace {

// f'(z), given z and a = f(z): the one formula per activation behind both
// activation_derivative_isa and activation_backward_isa, so that backward gives
// delta * derivative bit for bit.
template <Act act, class T>
inline T derivative(T z, T a, T param) {
  if constexpr (act == Act::sigmoid) return a * (T(1) - a);
  else if constexpr (act == Act::tanh) return T(1) - a * a;
  else if constexpr (act == Act::relu) return z > T(0) ? T(1) : T(0);  // f'(0) = 0
  else if constexpr (act == Act::leaky_relu) return z > T(0) ? T(1) : param;
  else if constexpr (act == Act::elu) {
    const T scaled_exp = param * exp_vectorizable(z);  // unconditional: see sigmoid_vectorizable
    return z > T(0) ? T(1) : scaled_exp;
  }
  else return T(1);  // identity
}

// Calls f(std::integral_constant<Act, act>{}), so that each activation gets a loop of its own
// with derivative<act> inlined, instead of a switch inside the loop.
template <class F>
void with_activation(Act act, F&& f) {
  switch (act) {
    case Act::sigmoid: return f(std::integral_constant<Act, Act::sigmoid>{});
    case Act::tanh: return f(std::integral_constant<Act, Act::tanh>{});
    case Act::relu: return f(std::integral_constant<Act, Act::relu>{});
    case Act::leaky_relu: return f(std::integral_constant<Act, Act::leaky_relu>{});
    case Act::elu: return f(std::integral_constant<Act, Act::elu>{});
    case Act::identity: return f(std::integral_constant<Act, Act::identity>{});
  }
}

}  // namespace

template <class T, Isa isa>
void activation_derivative_isa(T* d, const T* z, const T* a, std::size_t n, Act act, T param) {
  with_activation(act, [&](auto act_c) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) d[i] = derivative<act_c.value>(z[i], a[i], param);
  });
}

template <class T, Isa isa>
void activation_backward_isa(T* delta, const T* z, const T* a, std::size_t n, Act act, T param) {
  if (act == Act::identity) return;  // f' = 1 and delta * 1 == delta: no pass over memory
  // where f' = 0, delta * 0 (not 0) keeps NaN and inf in delta visible.
  with_activation(act, [&](auto act_c) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) delta[i] *= derivative<act_c.value>(z[i], a[i], param);
  });
}

template <class T, Isa isa>
void activation_backward_masked_isa(T* delta, const T* z, const T* a, const T* mask, std::size_t n,
                                    Act act, T param) {
  if (act == Act::identity) {  // z and a may be null
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) delta[i] *= mask[i];
    return;
  }
  // (delta f') mask: the same two roundings as activation_backward followed by a product
  with_activation(act, [&](auto act_c) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i)
      delta[i] = delta[i] * derivative<act_c.value>(z[i], a[i], param) * mask[i];
  });
}

// One row of a dropout pass (dropout.h): units first_unit .. first_unit + count - 1 of a row
// whose key is row_key. The hash is 32-bit integer arithmetic, so the loop vectorises.
template <class T, Isa isa>
void dropout_row_isa(T* out, T* mask, const T* a, std::size_t count, std::uint32_t row_key,
                     std::uint32_t first_unit, std::uint32_t threshold, T scale) {
#pragma omp simd
  for (std::size_t j = 0; j < count; ++j) {
    const std::uint32_t bits =
        hash32(row_key + (first_unit + static_cast<std::uint32_t>(j)) * 0x9E3779B9u);
    const T s = bits >= threshold ? scale : T(0);
    mask[j] = s;
    out[j] = a[j] * s;
  }
}

// The per-unit loops run along a row (contiguous, vectorised), row after row, so each unit's
// sums add the rows in order.
template <class T, Isa isa>
void batch_norm_forward_isa(T* y, T* xhat, T* mean, T* var, T* inv_std, const T* z, const T* gamma,
                            const T* beta, std::size_t n, std::size_t m, T eps) {
  std::fill_n(mean, m, T(0));
  std::fill_n(var, m, T(0));
  for (std::size_t i = 0; i < n; ++i) {
    const T* row = z + i * m;
#pragma omp simd
    for (std::size_t j = 0; j < m; ++j) mean[j] += row[j];
  }
#pragma omp simd
  for (std::size_t j = 0; j < m; ++j) mean[j] = mean[j] / T(n);
  for (std::size_t i = 0; i < n; ++i) {
    const T* row = z + i * m;
#pragma omp simd
    for (std::size_t j = 0; j < m; ++j) {
      const T c = row[j] - mean[j];
      var[j] += c * c;
    }
  }
  for (std::size_t j = 0; j < m; ++j) {
    var[j] = var[j] / T(n);
    inv_std[j] = T(1) / std::sqrt(var[j] + eps);
  }
  for (std::size_t i = 0; i < n; ++i) {
    const T* row = z + i * m;
    T* x_row = xhat + i * m;
    T* y_row = y + i * m;
#pragma omp simd
    for (std::size_t j = 0; j < m; ++j) {
      const T x = (row[j] - mean[j]) * inv_std[j];
      x_row[j] = x;
      y_row[j] = gamma[j] * x + beta[j];
    }
  }
}

template <class T, Isa isa>
void batch_norm_backward_isa(T* dz, T* dgamma, T* dbeta, const T* dy, const T* xhat, const T* gamma,
                             const T* inv_std, std::size_t n, std::size_t m) {
  std::fill_n(dgamma, m, T(0));
  std::fill_n(dbeta, m, T(0));
  for (std::size_t i = 0; i < n; ++i) {
    const T* g = dy + i * m;
    const T* x = xhat + i * m;
#pragma omp simd
    for (std::size_t j = 0; j < m; ++j) {
      dbeta[j] += g[j];
      dgamma[j] += g[j] * x[j];
    }
  }
  const T rows = T(n);
  for (std::size_t i = 0; i < n; ++i) {
    const T* g = dy + i * m;
    const T* x = xhat + i * m;
    T* d = dz + i * m;
#pragma omp simd
    for (std::size_t j = 0; j < m; ++j) {
      const T scale = gamma[j] * inv_std[j] / rows;
      d[j] = scale * (rows * g[j] - dbeta[j] - x[j] * dgamma[j]);
    }
  }
}

}  // namespace fastmlp
