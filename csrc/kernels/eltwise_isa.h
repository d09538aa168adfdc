// The element-wise and loss kernels as compiled for one ISA. Their bodies
// (activation_impl.h, loss_impl.h) are instantiated once per ISA, in eltwise_<isa>.cpp,
// with that ISA's flags; the public entry points (activation.cpp, loss.cpp) see only these
// declarations and pick an instantiation with with_active_isa().
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "kernels/activation.h"
#include "kernels/cpu.h"

namespace fastmlp {

template <class T, Isa isa>
void activation_forward_isa(T* a, const T* z, std::size_t n, Act act, T param);
template <class T, Isa isa>
void activation_derivative_isa(T* d, const T* z, const T* a, std::size_t n, Act act, T param);
template <class T, Isa isa>
void activation_backward_isa(T* delta, const T* z, const T* a, std::size_t n, Act act, T param);

template <class T, Isa isa>
void activation_backward_masked_isa(T* delta, const T* z, const T* a, const T* mask, std::size_t n,
                                    Act act, T param);
template <class T, Isa isa>
void dropout_row_isa(T* out, T* mask, const T* a, std::size_t count, std::uint32_t row_key,
                     std::uint32_t first_unit, std::uint32_t threshold, T scale);

template <class T, Isa isa>
void batch_norm_forward_isa(T* y, T* xhat, T* mean, T* var, T* inv_std, const T* z, const T* gamma,
                            const T* beta, std::size_t n, std::size_t m, T eps);
template <class T, Isa isa>
void batch_norm_backward_isa(T* dz, T* dgamma, T* dbeta, const T* dy, const T* xhat, const T* gamma,
                             const T* inv_std, std::size_t n, std::size_t m);

template <class T, Isa isa>
void sgd_update_isa(T* w, const T* dw, std::size_t n, T lr, T weight_decay);
template <class T, Isa isa>
void momentum_update_isa(T* w, T* velocity, const T* dw, std::size_t n, T lr, T momentum,
                         bool nesterov, T weight_decay);

// adam_update's constants in T (update.cpp computes them once per call, update.h's formulas):
// `decay` = 1 − lr · weight_decay multiplies w when decoupled, else g gets weight_decay · w.
template <class T>
struct AdamCoefficients {
  T step_size, inv_bc2_sqrt, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay;
  bool decoupled;
};
template <class T, Isa isa>
void adam_update_isa(T* w, T* m, T* v, const T* dw, std::size_t n, const AdamCoefficients<T>& k);
template <class T, Isa isa>
bool all_finite_isa(const T* v, std::size_t n);
template <class T, Isa isa>
double sum_of_squares_isa(const T* v, std::size_t n);

template <class T, Isa isa>
void softmax_isa(T* p, const T* z, std::size_t n, std::size_t k);
template <class T, Isa isa>
double softmax_cross_entropy_labels_isa(T* dz, const T* z, const std::int64_t* labels,
                                        std::size_t n, std::size_t k, const T* weights);
template <class T, Isa isa>
double softmax_cross_entropy_targets_isa(T* dz, const T* z, const T* y, std::size_t n,
                                         std::size_t k, const T* weights);
template <class T, Isa isa>
double sigmoid_binary_cross_entropy_isa(T* dz, const T* z, const T* y, std::size_t n,
                                        std::size_t k, const T* weights);
template <class T, Isa isa>
double quadratic_loss_isa(T* da, const T* a, const T* y, std::size_t n, std::size_t k,
                          const T* weights);
template <class T, Isa isa>
double poisson_loss_isa(T* dz, const T* z, const T* y, std::size_t n, std::size_t k,
                        const T* weights);

// Calls f(std::integral_constant<Isa, active_isa()>{}).
template <class F>
decltype(auto) with_active_isa(F&& f) {
  switch (active_isa()) {
#ifdef FASTMLP_X86
    case Isa::avx512: return f(std::integral_constant<Isa, Isa::avx512>{});
    case Isa::avx2: return f(std::integral_constant<Isa, Isa::avx2>{});
#endif
    default: return f(std::integral_constant<Isa, Isa::generic>{});
  }
}

// Used by eltwise_<isa>.cpp only; the dtype list lives here so all ISAs get the same set.
#define FASTMLP_INSTANTIATE_ELTWISE_FOR(T, ISA)                                                \
  template void activation_forward_isa<T, ISA>(T*, const T*, std::size_t, Act, T);             \
  template void activation_derivative_isa<T, ISA>(T*, const T*, const T*, std::size_t, Act, T); \
  template void activation_backward_isa<T, ISA>(T*, const T*, const T*, std::size_t, Act, T);   \
  template void activation_backward_masked_isa<T, ISA>(T*, const T*, const T*, const T*,       \
                                                       std::size_t, Act, T);                   \
  template void dropout_row_isa<T, ISA>(T*, T*, const T*, std::size_t, std::uint32_t,           \
                                        std::uint32_t, std::uint32_t, T);                       \
  template void batch_norm_forward_isa<T, ISA>(T*, T*, T*, T*, T*, const T*, const T*, const T*, \
                                               std::size_t, std::size_t, T);                    \
  template void batch_norm_backward_isa<T, ISA>(T*, T*, T*, const T*, const T*, const T*,         \
                                                const T*, std::size_t, std::size_t);             \
  template void sgd_update_isa<T, ISA>(T*, const T*, std::size_t, T, T);                       \
  template void momentum_update_isa<T, ISA>(T*, T*, const T*, std::size_t, T, T, bool, T);     \
  template void adam_update_isa<T, ISA>(T*, T*, T*, const T*, std::size_t,                     \
                                        const AdamCoefficients<T>&);                           \
  template bool all_finite_isa<T, ISA>(const T*, std::size_t);                                 \
  template double sum_of_squares_isa<T, ISA>(const T*, std::size_t);                           \
  template void softmax_isa<T, ISA>(T*, const T*, std::size_t, std::size_t);                   \
  template double softmax_cross_entropy_labels_isa<T, ISA>(T*, const T*, const std::int64_t*,  \
                                                           std::size_t, std::size_t, const T*); \
  template double softmax_cross_entropy_targets_isa<T, ISA>(T*, const T*, const T*,            \
                                                            std::size_t, std::size_t, const T*); \
  template double sigmoid_binary_cross_entropy_isa<T, ISA>(T*, const T*, const T*,             \
                                                           std::size_t, std::size_t, const T*); \
  template double quadratic_loss_isa<T, ISA>(T*, const T*, const T*, std::size_t, std::size_t, \
                                             const T*);                                        \
  template double poisson_loss_isa<T, ISA>(T*, const T*, const T*, std::size_t, std::size_t,   \
                                           const T*);
#define FASTMLP_INSTANTIATE_ELTWISE(ISA)    \
  FASTMLP_INSTANTIATE_ELTWISE_FOR(float, ISA) \
  FASTMLP_INSTANTIATE_ELTWISE_FOR(double, ISA)

}  // namespace fastmlp
