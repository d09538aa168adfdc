// Kernels over a layer's parameters: the SGD update (twin: python/fastmlp/reference/update.py),
// the finiteness check that tells a diverged step, and the weight-decay penalty's Σ W².
#pragma once

#include <cstddef>

namespace fastmlp {

// In place: w (n) ← w − lr (dw + weight_decay · w), dw (n). Biases pass weight_decay = 0.
template <class T>
void sgd_update(T* w, const T* dw, std::size_t n, T lr, T weight_decay);

// Whether every v[i] (n of them) is finite: neither NaN nor ±inf.
template <class T>
bool all_finite(const T* v, std::size_t n);

// Σ v[i]², accumulated in double (the weight-decay penalty's sum). The same operations in
// the same order on every ISA.
template <class T>
double sum_of_squares(const T* v, std::size_t n);

}  // namespace fastmlp
