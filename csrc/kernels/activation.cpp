#include "kernels/activation.h"

#include <cmath>
#include <cstring>

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

namespace {

// σ(z) without overflow: e = exp(-|z|) lies in (0, 1].
template <class T>
inline T sigmoid(T z) {
  T e = std::exp(-std::fabs(z));
  return z >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}

}  // namespace

template <class T>
void activation_forward(T* a, const T* z, std::size_t n, Act act, T param) {
  switch (act) {
    case Act::sigmoid:
      for (std::size_t i = 0; i < n; ++i) a[i] = sigmoid(z[i]);
      break;
    case Act::tanh:
      for (std::size_t i = 0; i < n; ++i) a[i] = std::tanh(z[i]);
      break;
    case Act::relu:
      for (std::size_t i = 0; i < n; ++i) a[i] = z[i] > T(0) ? z[i] : T(0);
      break;
    case Act::leaky_relu:
      for (std::size_t i = 0; i < n; ++i) a[i] = z[i] > T(0) ? z[i] : param * z[i];
      break;
    case Act::elu:
      for (std::size_t i = 0; i < n; ++i)
        a[i] = z[i] > T(0) ? z[i] : param * std::expm1(std::fmin(z[i], T(0)));
      break;
    case Act::identity:
      if (a != z) std::memmove(a, z, n * sizeof(T));
      break;
  }
}

template <class T>
void activation_derivative(T* d, const T* z, const T* a, std::size_t n, Act act, T param) {
  switch (act) {
    case Act::sigmoid:
      for (std::size_t i = 0; i < n; ++i) d[i] = a[i] * (T(1) - a[i]);
      break;
    case Act::tanh:
      for (std::size_t i = 0; i < n; ++i) d[i] = T(1) - a[i] * a[i];
      break;
    case Act::relu:  // f'(0) = 0
      for (std::size_t i = 0; i < n; ++i) d[i] = z[i] > T(0) ? T(1) : T(0);
      break;
    case Act::leaky_relu:
      for (std::size_t i = 0; i < n; ++i) d[i] = z[i] > T(0) ? T(1) : param;
      break;
    case Act::elu:
      for (std::size_t i = 0; i < n; ++i)
        d[i] = z[i] > T(0) ? T(1) : param * std::exp(std::fmin(z[i], T(0)));
      break;
    case Act::identity:
      for (std::size_t i = 0; i < n; ++i) d[i] = T(1);
      break;
  }
}

template <class T>
void activation_backward(T* delta, const T* z, const T* a, std::size_t n, Act act, T param) {
  switch (act) {
    case Act::sigmoid:
      for (std::size_t i = 0; i < n; ++i) delta[i] *= a[i] * (T(1) - a[i]);
      break;
    case Act::tanh:
      for (std::size_t i = 0; i < n; ++i) delta[i] *= T(1) - a[i] * a[i];
      break;
    case Act::relu:
      for (std::size_t i = 0; i < n; ++i) delta[i] = z[i] > T(0) ? delta[i] : T(0) * delta[i];
      break;
    case Act::leaky_relu:
      for (std::size_t i = 0; i < n; ++i) delta[i] = z[i] > T(0) ? delta[i] : param * delta[i];
      break;
    case Act::elu:
      for (std::size_t i = 0; i < n; ++i)
        delta[i] = z[i] > T(0) ? delta[i] : delta[i] * (param * std::exp(std::fmin(z[i], T(0))));
      break;
    case Act::identity:
      break;
  }
}

template <class T>
void maxout_forward(T* a, std::int64_t* argmax, const T* z, std::size_t n, std::size_t m,
                    std::size_t k) {
  for (std::size_t i = 0; i < n * m; ++i) {
    const T* pieces = z + i * k;
    std::size_t best = 0;
    for (std::size_t p = 1; p < k; ++p)
      if (pieces[p] > pieces[best]) best = p;
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
  template void maxout_forward<T>(T*, std::int64_t*, const T*, std::size_t, std::size_t,   \
                                  std::size_t);                                            \
  template void maxout_backward<T>(T*, const T*, const std::int64_t*, std::size_t,         \
                                   std::size_t, std::size_t);
FASTMLP_INSTANTIATE(float)
FASTMLP_INSTANTIATE(double)
#undef FASTMLP_INSTANTIATE

}  // namespace fastmlp
