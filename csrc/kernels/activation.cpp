#include "kernels/activation.h"

#include <cstring>

#include "kernels/dropout.h"
#include "kernels/eltwise_isa.h"

namespace fastmlp {

bool parse_activation(const char* name, Act* out) {
  static const struct { const char* name; Act act; } table[] = {
      {"sigmoid", Act::sigmoid}, {"tanh", Act::tanh},         {"relu", Act::relu},
      {"leaky_relu", Act::leaky_relu}, {"elu", Act::elu},      {"identity", Act::identity}};
  for (const auto& e : table) {
    if (std::strcmp(name, e.name) == 0) {
      *out = e.act;
      return true;
    }
  }
  return false;
}

// The element-wise kernels run the instantiation of the active ISA (eltwise_isa.h).
template <class T>
void activation_forward(T* a, const T* z, std::size_t n, Act act, T param) {
  with_active_isa([&](auto isa) { activation_forward_isa<T, isa.value>(a, z, n, act, param); });
}

template <class T>
void activation_derivative(T* d, const T* z, const T* a, std::size_t n, Act act, T param) {
  with_active_isa(
      [&](auto isa) { activation_derivative_isa<T, isa.value>(d, z, a, n, act, param); });
}

template <class T>
void activation_backward(T* delta, const T* z, const T* a, std::size_t n, Act act, T param) {
  with_active_isa(
      [&](auto isa) { activation_backward_isa<T, isa.value>(delta, z, a, n, act, param); });
}

template <class T>
void activation_backward_masked(T* delta, const T* z, const T* a, const T* mask, std::size_t n,
                                Act act, T param) {
  with_active_isa([&](auto isa) {
    activation_backward_masked_isa<T, isa.value>(delta, z, a, mask, n, act, param);
  });
}

template <class T>
void dropout_forward(const DropoutPass<T>& pass, const T* a, std::size_t i0, std::size_t i1,
                     std::size_t j0, std::size_t j1, std::size_t ld) {
  with_active_isa([&](auto isa) {
    for (std::size_t i = i0; i < i1; ++i) {
      const std::size_t at = i * ld + j0;
      dropout_row_isa<T, isa.value>(pass.out + at, pass.mask + at, a + at, j1 - j0,
                                    dropout_row_key(pass.key, pass.row_offset + i),
                                    static_cast<std::uint32_t>(j0), pass.threshold, pass.scale);
    }
  });
}

template <class T>
void batch_norm_forward(T* y, T* xhat, T* mean, T* var, T* inv_std, const T* z, const T* gamma,
                        const T* beta, std::size_t n, std::size_t m, T eps) {
  with_active_isa([&](auto isa) {
    batch_norm_forward_isa<T, isa.value>(y, xhat, mean, var, inv_std, z, gamma, beta, n, m, eps);
  });
}

template <class T>
void batch_norm_backward(T* dz, T* dgamma, T* dbeta, const T* dy, const T* xhat, const T* gamma,
                         const T* inv_std, std::size_t n, std::size_t m) {
  with_active_isa([&](auto isa) {
    batch_norm_backward_isa<T, isa.value>(dz, dgamma, dbeta, dy, xhat, gamma, inv_std, n, m);
  });
}

template <class T>
void maxout_forward(T* a, std::int64_t* argmax, const T* z, std::size_t n, std::size_t m,
                    std::size_t k) {
  for (std::size_t i = 0; i < n * m; ++i) {
    const T* pieces = z + i * k;
    std::size_t best = 0;
    for (std::size_t p = 1; p < k; ++p) {
      // Like numpy.argmax: the first NaN beats every number.
      bool nan_beats_number = pieces[p] != pieces[p] && pieces[best] == pieces[best];
      if (pieces[p] > pieces[best] || nan_beats_number) best = p;
    }
    a[i] = pieces[best];
    argmax[i] = static_cast<std::int64_t>(best);
  }
}

template <class T>
void maxout_backward(T* dz, const T* da, const std::int64_t* argmax, std::size_t n,
                     std::size_t m, std::size_t k) {
  std::memset(dz, 0, n * m * k * sizeof(T));
  for (std::size_t i = 0; i < n * m; ++i) dz[i * k + static_cast<std::size_t>(argmax[i])] = da[i];
}

#define FASTMLP_INSTANTIATE(T)                                                              \
  template void activation_forward<T>(T*, const T*, std::size_t, Act, T);                  \
  template void activation_derivative<T>(T*, const T*, const T*, std::size_t, Act, T);     \
  template void activation_backward<T>(T*, const T*, const T*, std::size_t, Act, T);       \
  template void activation_backward_masked<T>(T*, const T*, const T*, const T*, std::size_t, \
                                              Act, T);                                     \
  template void dropout_forward<T>(const DropoutPass<T>&, const T*, std::size_t, std::size_t, \
                                   std::size_t, std::size_t, std::size_t);                  \
  template void batch_norm_forward<T>(T*, T*, T*, T*, T*, const T*, const T*, const T*,       \
                                      std::size_t, std::size_t, T);                          \
  template void batch_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,    \
                                       std::size_t, std::size_t);                             \
  template void maxout_forward<T>(T*, std::int64_t*, const T*, std::size_t, std::size_t,   \
                                  std::size_t);                                            \
  template void maxout_backward<T>(T*, const T*, const std::int64_t*, std::size_t,         \
                                   std::size_t, std::size_t);
FASTMLP_INSTANTIATE(float)
FASTMLP_INSTANTIATE(double)
#undef FASTMLP_INSTANTIATE

}  // namespace fastmlp
