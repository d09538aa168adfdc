// Bodies of the softmax and loss kernels, instantiated once per ISA (eltwise_isa.h).
// Same formulas as python/fastmlp/reference/loss.py, except that p = e / Σe is computed
// from the exponentials once (the twin's exp(log p) rounds its argument first: both agree
// to ~eps/n in absolute terms for the gradient, which is what the parity test allows).
#pragma once

#include <cmath>

#include "kernels/eltwise_isa.h"
#include "kernels/vec_math.h"

namespace fastmlp {
namespace {

// Rows go through the exponential a block at a time: e^(z − row max) of a whole block is one
// flat loop, so short rows (10 classes) vectorise as well as long ones, and the block is
// still in L1 cache for the pass over each row that follows.
constexpr std::size_t kBlockElements = 1024;

// z (rows, k) -> e (rows, k) = e^(z − max_j z), shift (rows) = max_j z. `e` may alias `z`.
template <class T>
void exp_minus_row_max(T* e, T* shift, const T* z, std::size_t rows, std::size_t k) {
  for (std::size_t i = 0; i < rows; ++i) {
    T m = row_max(z + i * k, k);
    shift[i] = m;
    for (std::size_t j = 0; j < k; ++j) e[i * k + j] = z[i * k + j] - m;
  }
#pragma omp simd
  for (std::size_t i = 0; i < rows * k; ++i) e[i] = exp_vectorizable(e[i]);
}

// z (n, k) -> e (n, k) = e^(z − max_j z) block by block; after each row's e is written,
// calls finish_row(i, max_j z_ij, Σ_j e_ij), which may rewrite row i of e.
// Returns Σ_i finish_row(...), added in row order.
template <class T, class FinishRow>
double softmax_rows(T* e, const T* z, std::size_t n, std::size_t k, FinishRow finish_row) {
  if (n == 0 || k == 0) return 0.0;  // k == 0 only with n == 0: the bindings refuse the rest
  const std::size_t block_rows = k >= kBlockElements ? 1 : kBlockElements / k;
  T shift[kBlockElements];
  double total = 0.0;
  for (std::size_t first = 0; first < n; first += block_rows) {
    const std::size_t rows = n - first < block_rows ? n - first : block_rows;
    exp_minus_row_max(e + first * k, shift, z + first * k, rows, k);
    for (std::size_t r = 0; r < rows; ++r) {
      const T* er = e + (first + r) * k;
      T sum = lane_sum<T>(k, [&](std::size_t j) { return er[j]; });
      total += finish_row(first + r, shift[r], sum);
    }
  }
  return total;
}

// How a loss kernel weighs its rows. Without sample weights (w null) J is the mean of the
// row losses and each row's gradient is divided by n, as the lecture's batch mean has it.
// With them, J = Σ_i w_i loss_i / Σ_i w_i and row i's gradient is scaled by w_i / Σ w (in
// double, then rounded to T; every factor is then at most 1, and all are 0 when Σ w is 0).
template <class T>
struct RowWeights {
  RowWeights(const T* weights, std::size_t n) : w(weights), inv_n(T(1) / static_cast<T>(n)) {
    total = 0.0;
    if (w != nullptr)
      for (std::size_t i = 0; i < n; ++i) total += static_cast<double>(w[i]);
    else
      total = static_cast<double>(n);
  }
  // row i's share of the batch: its gradient's factor
  T factor(std::size_t i) const {
    return w == nullptr ? inv_n : total > 0 ? static_cast<T>(static_cast<double>(w[i]) / total) : T(0);
  }
  double loss_weight(std::size_t i) const { return w == nullptr ? 1.0 : static_cast<double>(w[i]); }
  // J from Σ_i loss_weight(i) · loss_i
  double mean(double sum) const { return total > 0 ? sum / total : 0.0; }

  const T* w;
  T inv_n;
  double total;
};

// The element-wise losses: z (n,k), y (n,k) -> dz (n,k), where term(z_ij, y_ij, g_ij)
// writes the element's gradient g_ij (before the batch mean) and returns its loss. Returns
// J = mean over rows of row_scale · Σ_j term(...), each row summed by lane_sum in double and
// the rows added in row order, so J does not depend on the ISA. Each row's gradient is then
// divided by n (no weights: as (a − y) / n always was) or scaled by its factor.
template <class T, class Term>
double mean_row_loss(T* dz, const T* z, const T* y, const T* weights, std::size_t n,
                     std::size_t k, double row_scale, Term term) {
  const RowWeights<T> rows(weights, n);
  const T n_t = static_cast<T>(n);
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const T* zi = z + i * k;
    const T* yi = y + i * k;
    T* di = dz + i * k;
    total += rows.loss_weight(i) * row_scale *
             lane_sum<double>(k, [&](std::size_t j) { return term(zi[j], yi[j], di[j]); });
    if (weights == nullptr) {
#pragma omp simd
      for (std::size_t j = 0; j < k; ++j) di[j] = di[j] / n_t;
    } else {
      const T factor = rows.factor(i);
#pragma omp simd
      for (std::size_t j = 0; j < k; ++j) di[j] = di[j] * factor;
    }
  }
  return rows.mean(total);
}

}  // namespace

template <class T, Isa isa>
void softmax_isa(T* p, const T* z, std::size_t n, std::size_t k) {
  softmax_rows(p, z, n, k, [&](std::size_t i, T, T sum) {
    T* pi = p + i * k;
#pragma omp simd
    for (std::size_t j = 0; j < k; ++j) pi[j] = pi[j] / sum;
    return 0.0;
  });
}

// dz = (p − y)/n is computed as e · (1/Σe) · (1/n): multiplies instead of two divisions per
// element, for at most ~1 ulp more rounding.
template <class T, Isa isa>
double softmax_cross_entropy_labels_isa(T* dz, const T* z, const std::int64_t* labels,
                                        std::size_t n, std::size_t k, const T* weights) {
  const RowWeights<T> rows(weights, n);
  double total = softmax_rows(dz, z, n, k, [&](std::size_t i, T shift, T sum) {
    T* di = dz + i * k;
    const auto label = static_cast<std::size_t>(labels[i]);
    const T factor = rows.factor(i);
    const T inv_sum = T(1) / sum, scale = inv_sum * factor;
    const T p_label = di[label] * inv_sum;
#pragma omp simd
    for (std::size_t j = 0; j < k; ++j) di[j] = di[j] * scale;
    di[label] = (p_label - T(1)) * factor;
    // −log p_label
    return -rows.loss_weight(i) * static_cast<double>((z[i * k + label] - shift) - std::log(sum));
  });
  return rows.mean(total);
}

template <class T, Isa isa>
double softmax_cross_entropy_targets_isa(T* dz, const T* z, const T* y, std::size_t n,
                                         std::size_t k, const T* weights) {
  const RowWeights<T> rows(weights, n);
  double total = softmax_rows(dz, z, n, k, [&](std::size_t i, T shift, T sum) {
    const T* zi = z + i * k;
    const T* yi = y + i * k;
    T* di = dz + i * k;
    const T inv_sum = T(1) / sum, log_sum = std::log(sum), factor = rows.factor(i);
    return -rows.loss_weight(i) * lane_sum<double>(k, [&](std::size_t j) {
      T log_p = (zi[j] - shift) - log_sum;
      di[j] = (di[j] * inv_sum - yi[j]) * factor;
      return static_cast<double>(yi[j] * log_p);
    });
  });
  return rows.mean(total);
}

template <class T, Isa isa>
double sigmoid_binary_cross_entropy_isa(T* dz, const T* z, const T* y, std::size_t n,
                                        std::size_t k, const T* weights) {
  return mean_row_loss(dz, z, y, weights, n, k, 1.0, [&](T zj, T yj, T& gj) {
    T e = exp_minus_abs(zj);
    gj = sigmoid_from_exp_minus_abs(zj, e) - yj;
    return static_cast<double>((zj > T(0) ? zj : T(0)) - yj * zj + std::log1p(e));
  });
}

// The ½ is applied to each row's sum, before the rows are added.
template <class T, Isa isa>
double quadratic_loss_isa(T* da, const T* a, const T* y, std::size_t n, std::size_t k,
                          const T* weights) {
  return mean_row_loss(da, a, y, weights, n, k, 0.5, [&](T aj, T yj, T& gj) {
    T diff = aj - yj;
    gj = diff;
    return static_cast<double>(diff * diff);
  });
}

// The half Poisson deviance of the prediction e^z, scikit-learn's: y log(y / e^z) − y + e^z
// = xlogy(y, y) − y z − y + e^z, with gradient e^z − y. z is the log of the prediction.
template <class T, Isa isa>
double poisson_loss_isa(T* dz, const T* z, const T* y, std::size_t n, std::size_t k,
                        const T* weights) {
  return mean_row_loss(dz, z, y, weights, n, k, 1.0, [&](T zj, T yj, T& gj) {
    T e = std::exp(zj);
    gj = e - yj;
    T ylogy = yj > T(0) ? yj * std::log(yj) : T(0);
    return static_cast<double>(ylogy - yj * zj - yj + e);
  });
}

}  // namespace fastmlp
