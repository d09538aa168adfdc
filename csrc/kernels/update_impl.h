// Bodies of the kernels over a layer's parameters (update.h), instantiated once per ISA
// (eltwise_isa.h): the weights usually sit in L2, where wider vectors pay (measurements:
// docs/performance-notes.md, "Kernel benchmarks").
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>

#include "kernels/eltwise_isa.h"

namespace fastmlp {

// A decay of 0 skips its term, as the twin (and torch.optim.SGD) do: dw + 0 · w is dw for
// every finite w, signed zeros included, and an infinite w stays infinite instead of
// turning NaN through 0 · inf.
template <class T, Isa isa>
void sgd_update_isa(T* w, const T* dw, std::size_t n, T lr, T weight_decay) {
  if (weight_decay == T(0)) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) w[i] -= lr * dw[i];
    return;
  }
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) w[i] -= lr * (dw[i] + weight_decay * w[i]);
}

namespace {  // internal linkage: each ISA's file keeps its own copy

// Calls f(std::true_type{}) or f(std::false_type{}): a loop of its own for each value of a
// flag, instead of a branch inside the loop.
template <class F>
void with_flag(bool flag, F&& f) {
  if (flag) f(std::true_type{});
  else f(std::false_type{});
}

}  // namespace

// The operations of reference/update.py's momentum_update, in its order.
template <class T, Isa isa>
void momentum_update_isa(T* w, T* velocity, const T* dw, std::size_t n, T lr, T momentum,
                         bool nesterov, T weight_decay) {
  with_flag(nesterov, [&](auto nesterov_flag) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) {
      const T g = dw[i] + weight_decay * w[i];
      const T vel = momentum * velocity[i] + g;
      velocity[i] = vel;
      if constexpr (decltype(nesterov_flag)::value) w[i] -= lr * (g + momentum * vel);
      else w[i] -= lr * vel;
    }
  });
}

// The operations of reference/update.py's adam_update, in its order; sqrt and the division
// are correctly rounded, as NumPy's.
template <class T, Isa isa>
void adam_update_isa(T* w, T* m, T* v, const T* dw, std::size_t n, const AdamCoefficients<T>& k) {
  const AdamCoefficients<T> c = k;  // local copy: no load through a reference the stores might alias
  with_flag(c.decoupled, [&](auto decoupled) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) {
      T wi = w[i], g;
      if constexpr (decltype(decoupled)::value) {
        wi = c.decay * wi;
        g = dw[i];
      } else {
        g = dw[i] + c.weight_decay * wi;
      }
      const T mi = c.beta1 * m[i] + c.one_minus_beta1 * g;
      const T vi = c.beta2 * v[i] + c.one_minus_beta2 * (g * g);
      m[i] = mi;
      v[i] = vi;
      w[i] = wi - c.step_size * (mi / (std::sqrt(vi) * c.inv_bc2_sqrt + c.eps));
    }
  });
}

namespace {

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
