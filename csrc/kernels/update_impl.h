// Bodies of the kernels over a layer's parameters (update.h), instantiated once per ISA
// (eltwise_isa.h): the weights usually sit in L2, where wider vectors pay (measurements:
// docs/performance-notes.md, "Kernel benchmarks").
#pragma once

#include <cstddef>

#include "kernels/eltwise_isa.h"

namespace fastmlp {

template <class T, Isa isa>
void sgd_update_isa(T* w, const T* dw, std::size_t n, T lr, T weight_decay) {
  // Same expression as the twin even when weight_decay == 0 (0 · inf is NaN there too).
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) w[i] -= lr * (dw[i] + weight_decay * w[i]);
}

namespace {  // internal linkage: each ISA's file keeps its own copy

// Σ term(v[i]) in kSums independent running sums, added together in a fixed order at the
// end: the adders stay busy instead of waiting on each addition of one running sum, and
// every ISA adds the same numbers in the same order.
template <class S, std::size_t kSums, class T, class Term>
S sum_in_chains(const T* v, std::size_t n, Term term) {
  S sums[kSums] = {};
  std::size_t i = 0;
  for (; i + kSums <= n; i += kSums)
#pragma omp simd
    for (std::size_t s = 0; s < kSums; ++s) sums[s] += term(v[i + s]);
  S total = 0;
  for (; i < n; ++i) total += term(v[i]);
  for (std::size_t s = 0; s < kSums; ++s) total += sums[s];
  return total;
}

}  // namespace

template <class T, Isa isa>
bool all_finite_isa(const T* v, std::size_t n) {
  // x − x is 0 for a finite x and NaN for NaN or ±inf. Two AVX-512 vectors' worth of
  // chains (128 bytes).
  return sum_in_chains<T, 128 / sizeof(T)>(v, n, [](T x) { return x - x; }) == T(0);
}

template <class T, Isa isa>
double sum_of_squares_isa(const T* v, std::size_t n) {
  // Sixteen chains whatever the ISA, so the penalty is the same on each.
  return sum_in_chains<double, 16>(v, n, [](T x) { return static_cast<double>(x) * x; });
}

}  // namespace fastmlp
