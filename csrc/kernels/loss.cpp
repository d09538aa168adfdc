#include "kernels/loss.h"

#include "kernels/eltwise_isa.h"

namespace fastmlp {

// The losses run the instantiation of the active ISA (eltwise_isa.h).
template <class T>
void softmax(T* p, const T* z, std::size_t n, std::size_t k) {
  with_active_isa([&](auto isa) { softmax_isa<T, isa.value>(p, z, n, k); });
}

template <class T>
double softmax_cross_entropy(T* dz, const T* z, const std::int64_t* labels, std::size_t n,
                             std::size_t k, const T* weights) {
  return with_active_isa([&](auto isa) {
    return softmax_cross_entropy_labels_isa<T, isa.value>(dz, z, labels, n, k, weights);
  });
}

template <class T>
double softmax_cross_entropy(T* dz, const T* z, const T* y, std::size_t n, std::size_t k,
                             const T* weights) {
  return with_active_isa([&](auto isa) {
    return softmax_cross_entropy_targets_isa<T, isa.value>(dz, z, y, n, k, weights);
  });
}

template <class T>
double sigmoid_binary_cross_entropy(T* dz, const T* z, const T* y, std::size_t n, std::size_t k,
                                    const T* weights) {
  return with_active_isa([&](auto isa) {
    return sigmoid_binary_cross_entropy_isa<T, isa.value>(dz, z, y, n, k, weights);
  });
}

template <class T>
double quadratic_loss(T* da, const T* a, const T* y, std::size_t n, std::size_t k,
                      const T* weights) {
  return with_active_isa(
      [&](auto isa) { return quadratic_loss_isa<T, isa.value>(da, a, y, n, k, weights); });
}

template <class T>
double poisson_loss(T* dz, const T* z, const T* y, std::size_t n, std::size_t k,
                    const T* weights) {
  return with_active_isa(
      [&](auto isa) { return poisson_loss_isa<T, isa.value>(dz, z, y, n, k, weights); });
}

#define FASTMLP_INSTANTIATE(T)                                                                \
  template void softmax<T>(T*, const T*, std::size_t, std::size_t);                          \
  template double softmax_cross_entropy<T>(T*, const T*, const std::int64_t*, std::size_t,   \
                                           std::size_t, const T*);                           \
  template double softmax_cross_entropy<T>(T*, const T*, const T*, std::size_t, std::size_t, \
                                           const T*);                                        \
  template double sigmoid_binary_cross_entropy<T>(T*, const T*, const T*, std::size_t,       \
                                                  std::size_t, const T*);                    \
  template double quadratic_loss<T>(T*, const T*, const T*, std::size_t, std::size_t,        \
                                    const T*);                                               \
  template double poisson_loss<T>(T*, const T*, const T*, std::size_t, std::size_t, const T*);
FASTMLP_INSTANTIATE(float)
FASTMLP_INSTANTIATE(double)
#undef FASTMLP_INSTANTIATE

}  // namespace fastmlp
