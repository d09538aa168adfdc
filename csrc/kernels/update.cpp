#include "kernels/update.h"

#include "kernels/eltwise_isa.h"

namespace fastmlp {

// Runs the instantiation of the active ISA (update_impl.h); every ISA computes the same
// two roundings per element (no contraction), so the result does not depend on it.
template <class T>
void sgd_update(T* w, const T* dw, std::size_t n, T lr, T weight_decay) {
  with_active_isa([&](auto isa) { sgd_update_isa<T, isa.value>(w, dw, n, lr, weight_decay); });
}

template <class T>
bool all_finite(const T* v, std::size_t n) {
  return with_active_isa([&](auto isa) { return all_finite_isa<T, isa.value>(v, n); });
}

template <class T>
double sum_of_squares(const T* v, std::size_t n) {
  return with_active_isa([&](auto isa) { return sum_of_squares_isa<T, isa.value>(v, n); });
}

template void sgd_update<float>(float*, const float*, std::size_t, float, float);
template void sgd_update<double>(double*, const double*, std::size_t, double, double);
template bool all_finite<float>(const float*, std::size_t);
template bool all_finite<double>(const double*, std::size_t);
template double sum_of_squares<float>(const float*, std::size_t);
template double sum_of_squares<double>(const double*, std::size_t);

}  // namespace fastmlp
