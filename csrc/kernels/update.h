// Parameter updates. Twin: python/fastmlp/reference/update.py.
#pragma once

#include <cstddef>

namespace fastmlp {

// In place: w (n) ← w − lr (dw + weight_decay · w), dw (n). Biases pass weight_decay = 0.
template <class T>
void sgd_update(T* w, const T* dw, std::size_t n, T lr, T weight_decay);

}  // namespace fastmlp
