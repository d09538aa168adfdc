// Bodies of the element-wise activation kernels, instantiated once per ISA (eltwise_isa.h).
// Same formulas, in the same order of operations, as python/fastmlp/reference/activation.py;
// sigmoid and the ELU derivative use exp_vectorizable so their loops vectorise. The twin
// clamps ELU's exponent with np.minimum(z, 0) only because np.where evaluates both branches;
// here e^z of a large z is computed and discarded (inf, no trap), and a NaN z stays NaN.
#pragma once

#include <cmath>
#include <cstring>

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
      for (std::size_t i = 0; i < n; ++i) a[i] = std::tanh(z[i]);
      break;
    case Act::relu:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) a[i] = z[i] > T(0) ? z[i] : T(0);
      break;
    case Act::leaky_relu:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) a[i] = z[i] > T(0) ? z[i] : param * z[i];
      break;
    case Act::elu:  // expm1 keeps its relative accuracy near 0, so it stays a libm call
      for (std::size_t i = 0; i < n; ++i)
        a[i] = z[i] > T(0) ? z[i] : param * std::expm1(z[i]);
      break;
    case Act::identity:
      if (a != z) std::memmove(a, z, n * sizeof(T));
      break;
  }
}

template <class T, Isa isa>
void activation_derivative_isa(T* d, const T* z, const T* a, std::size_t n, Act act, T param) {
  switch (act) {
    case Act::sigmoid:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) d[i] = a[i] * (T(1) - a[i]);
      break;
    case Act::tanh:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) d[i] = T(1) - a[i] * a[i];
      break;
    case Act::relu:  // f'(0) = 0
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) d[i] = z[i] > T(0) ? T(1) : T(0);
      break;
    case Act::leaky_relu:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) d[i] = z[i] > T(0) ? T(1) : param;
      break;
    case Act::elu:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i)
        d[i] = z[i] > T(0) ? T(1) : param * exp_vectorizable(z[i]);
      break;
    case Act::identity:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) d[i] = T(1);
      break;
  }
}

template <class T, Isa isa>
void activation_backward_isa(T* delta, const T* z, const T* a, std::size_t n, Act act, T param) {
  // delta * f'(z) with f' as in activation_derivative_isa, so both round the same way;
  // where f' = 0, delta * 0 (not 0) keeps NaN and inf in delta visible.
  switch (act) {
    case Act::sigmoid:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) delta[i] *= a[i] * (T(1) - a[i]);
      break;
    case Act::tanh:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) delta[i] *= T(1) - a[i] * a[i];
      break;
    case Act::relu:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) delta[i] = z[i] > T(0) ? delta[i] : T(0) * delta[i];
      break;
    case Act::leaky_relu:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) delta[i] = z[i] > T(0) ? delta[i] : param * delta[i];
      break;
    case Act::elu:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i)
        delta[i] = z[i] > T(0) ? delta[i]
                               : delta[i] * (param * exp_vectorizable(z[i]));
      break;
    case Act::identity:
      break;
  }
}

}  // namespace fastmlp
