#include "kernels/loss.h"

#include "kernels/eltwise_isa.h"
#include "kernels/vec_math.h"

namespace fastmlp {

// The exp-heavy kernels run the instantiation of the active ISA (eltwise_isa.h).
template <class T>
void softmax(T* p, const T* z, std::size_t n, std::size_t k) {
  with_active_isa([&](auto isa) { softmax_isa<T, isa.value>(p, z, n, k); });
}

template <class T>
double softmax_cross_entropy(T* dz, const T* z, const std::int64_t* labels, std::size_t n,
                             std::size_t k) {
  return with_active_isa([&](auto isa) {
    return softmax_cross_entropy_labels_isa<T, isa.value>(dz, z, labels, n, k);
  });
}

template <class T>
double softmax_cross_entropy(T* dz, const T* z, const T* y, std::size_t n, std::size_t k) {
  return with_active_isa([&](auto isa) {
    return softmax_cross_entropy_targets_isa<T, isa.value>(dz, z, y, n, k);
  });
}

template <class T>
double sigmoid_binary_cross_entropy(T* dz, const T* z, const T* y, std::size_t n, std::size_t k) {
  return with_active_isa([&](auto isa) {
    return sigmoid_binary_cross_entropy_isa<T, isa.value>(dz, z, y, n, k);
  });
}

// Memory-bound: the portable build is as fast as any, so there is one version.
template <class T>
double quadratic_loss(T* da, const T* a, const T* y, std::size_t n, std::size_t k) {
  const T n_t = static_cast<T>(n);
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const T* ai = a + i * k;
    const T* yi = y + i * k;
    T* di = da + i * k;
    total += 0.5 * lane_sum<double>(k, [&](std::size_t j) {
      T diff = ai[j] - yi[j];
      di[j] = diff / n_t;
      return static_cast<double>(diff * diff);
    });
  }
  return n == 0 ? 0.0 : total / static_cast<double>(n);
}

#define FASTMLP_INSTANTIATE(T)                                                                \
  template void softmax<T>(T*, const T*, std::size_t, std::size_t);                          \
  template double softmax_cross_entropy<T>(T*, const T*, const std::int64_t*, std::size_t,   \
                                           std::size_t);                                     \
  template double softmax_cross_entropy<T>(T*, const T*, const T*, std::size_t, std::size_t); \
  template double sigmoid_binary_cross_entropy<T>(T*, const T*, const T*, std::size_t,       \
                                                  std::size_t);                              \
  template double quadratic_loss<T>(T*, const T*, const T*, std::size_t, std::size_t);
FASTMLP_INSTANTIATE(float)
FASTMLP_INSTANTIATE(double)
#undef FASTMLP_INSTANTIATE

}  // namespace fastmlp
