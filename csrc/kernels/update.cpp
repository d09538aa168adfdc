#include "kernels/update.h"

namespace fastmlp {

// Memory-bound and vectorised by the compiler even at the baseline ISA: one version.
template <class T>
void sgd_update(T* w, const T* dw, std::size_t n, T lr, T weight_decay) {
  // Same expression as the twin even when weight_decay == 0 (0 · inf is NaN there too).
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) w[i] -= lr * (dw[i] + weight_decay * w[i]);
}

template void sgd_update<float>(float*, const float*, std::size_t, float, float);
template void sgd_update<double>(double*, const double*, std::size_t, double, double);

}  // namespace fastmlp
