// Bodies of the softmax and cross-entropy kernels, instantiated once per ISA (eltwise_isa.h).
// Same formulas as python/fastmlp/reference/loss.py, except that p = e / Σe is computed
// from the exponentials once (the twin's exp(log p) rounds its argument first: both agree
// to ~eps in absolute terms, which is what the parity test allows for gradients).
#pragma once

#include <cmath>

#include "kernels/eltwise_isa.h"
#include "kernels/vec_math.h"

namespace fastmlp {
namespace {

// One row of softmax: e (k) = e^(z − max z). Returns Σ e; *shift = max z.
template <class T>
inline T exp_minus_max(T* e, const T* z, std::size_t k, T* shift) {
  T m = row_max(z, k);
  *shift = m;
  return lane_sum<T>(k, [&](std::size_t j) { return e[j] = exp_vectorizable(z[j] - m); });
}

}  // namespace

template <class T, Isa isa>
void softmax_isa(T* p, const T* z, std::size_t n, std::size_t k) {
  for (std::size_t i = 0; i < n; ++i) {
    T* pi = p + i * k;
    T shift;
    T sum = exp_minus_max(pi, z + i * k, k, &shift);
#pragma omp simd
    for (std::size_t j = 0; j < k; ++j) pi[j] = pi[j] / sum;
  }
}

template <class T, Isa isa>
double softmax_cross_entropy_labels_isa(T* dz, const T* z, const std::int64_t* labels,
                                        std::size_t n, std::size_t k) {
  const T n_t = static_cast<T>(n);
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const T* zi = z + i * k;
    T* di = dz + i * k;
    const auto label = static_cast<std::size_t>(labels[i]);
    T shift;
    T sum = exp_minus_max(di, zi, k, &shift);
    T log_sum = std::log(sum);
    T e_label = di[label];
#pragma omp simd
    for (std::size_t j = 0; j < k; ++j) di[j] = di[j] / sum / n_t;
    di[label] = (e_label / sum - T(1)) / n_t;
    total -= static_cast<double>((zi[label] - shift) - log_sum);  // −log p_label
  }
  return n == 0 ? 0.0 : total / static_cast<double>(n);
}

template <class T, Isa isa>
double softmax_cross_entropy_targets_isa(T* dz, const T* z, const T* y, std::size_t n,
                                         std::size_t k) {
  const T n_t = static_cast<T>(n);
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const T* zi = z + i * k;
    const T* yi = y + i * k;
    T* di = dz + i * k;
    T shift;
    T sum = exp_minus_max(di, zi, k, &shift);
    T log_sum = std::log(sum);
    total -= lane_sum<double>(k, [&](std::size_t j) {
      T log_p = (zi[j] - shift) - log_sum;
      di[j] = (di[j] / sum - yi[j]) / n_t;
      return static_cast<double>(yi[j] * log_p);
    });
  }
  return n == 0 ? 0.0 : total / static_cast<double>(n);
}

template <class T, Isa isa>
double sigmoid_binary_cross_entropy_isa(T* dz, const T* z, const T* y, std::size_t n,
                                        std::size_t k) {
  const T n_t = static_cast<T>(n);
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const T* zi = z + i * k;
    const T* yi = y + i * k;
    T* di = dz + i * k;
    total += lane_sum<double>(k, [&](std::size_t j) {
      T zj = zi[j], yj = yi[j];
      T e = exp_minus_abs(zj);
      di[j] = (sigmoid_from_exp_minus_abs(zj, e) - yj) / n_t;
      return static_cast<double>((zj > T(0) ? zj : T(0)) - yj * zj + std::log1p(e));
    });
  }
  return n == 0 ? 0.0 : total / static_cast<double>(n);
}

}  // namespace fastmlp
