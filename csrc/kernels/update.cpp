#include "kernels/update.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu.h"
#include "kernels/eltwise_isa.h"
#include "kernels/parallel.h"

namespace fastmlp {

namespace {

// update(lo, count) over [0, n) in blocks spread over the kernels' threads. Each element's
// operations are the same however the range is split, so the result does not depend on the
// thread count. A momentum or Adam update of mid's 200k weights runs between two products,
// when the pool would otherwise idle; small arrays stay on the calling thread.
template <class Update>
void over_blocks(std::size_t n, const Update& update) {
  constexpr std::size_t kBlock = 16384;  // 64 KiB of float32 per array: in L2 with its peers
  const std::size_t blocks = (n + kBlock - 1) / kBlock;
  if (blocks <= 1) {
    update(std::size_t(0), n);
    return;
  }
  parallel_blocks(blocks, static_cast<std::size_t>(num_threads()), [&](std::size_t b, std::size_t) {
    const std::size_t lo = b * kBlock;
    update(lo, std::min(n, lo + kBlock) - lo);
  });
}

}  // namespace

// Runs the instantiation of the active ISA (update_impl.h); every ISA computes the same
// two roundings per element (no contraction), so the result does not depend on it.
template <class T>
void sgd_update(T* w, const T* dw, std::size_t n, T lr, T weight_decay) {
  with_active_isa([&](auto isa) { sgd_update_isa<T, isa.value>(w, dw, n, lr, weight_decay); });
}

namespace {

// Each update's constants, rounded to T once per call from double, as the twin's t(...).
template <class T>
struct MomentumCoefficients {
  T lr, momentum, weight_decay;
  bool nesterov;
};

template <class T>
MomentumCoefficients<T> momentum_coefficients(double lr, double momentum, bool nesterov,
                                              double weight_decay) {
  return {static_cast<T>(lr), static_cast<T>(momentum), static_cast<T>(weight_decay), nesterov};
}

// Every constant in double first, then rounded to T once: the twin's expressions, in Python
// floats (std::pow and std::sqrt are the C library's pow and sqrt that Python calls).
template <class T>
AdamCoefficients<T> adam_coefficients(double lr, double beta1, double beta2, double eps,
                                      double weight_decay, bool decoupled, long long step) {
  const double t = static_cast<double>(step);
  return {static_cast<T>(lr / (1.0 - std::pow(beta1, t))),
          static_cast<T>(1.0 / std::sqrt(1.0 - std::pow(beta2, t))),
          static_cast<T>(beta1),
          static_cast<T>(1.0 - beta1),
          static_cast<T>(beta2),
          static_cast<T>(1.0 - beta2),
          static_cast<T>(eps),
          static_cast<T>(weight_decay),
          static_cast<T>(1.0 - lr * weight_decay),
          decoupled};
}

// The ISA kernels over a run of `count` elements from offset `at` of each array.
template <class T, Isa isa>
void momentum_run(T* w, T* velocity, const T* dw, std::size_t at, std::size_t count,
                  const MomentumCoefficients<T>& k) {
  momentum_update_isa<T, isa>(w + at, velocity + at, dw + at, count, k.lr, k.momentum,
                              k.nesterov, k.weight_decay);
}

template <class T, Isa isa>
void adam_run(T* w, T* m, T* v, const T* dw, std::size_t at, std::size_t count,
              const AdamCoefficients<T>& k) {
  adam_update_isa<T, isa>(w + at, m + at, v + at, dw + at, count, k);
}

}  // namespace

template <class T>
void momentum_update(T* w, T* velocity, const T* dw, std::size_t n, double lr, double momentum,
                     bool nesterov, double weight_decay) {
  const auto k = momentum_coefficients<T>(lr, momentum, nesterov, weight_decay);
  with_active_isa([&](auto isa) {
    over_blocks(n, [&](std::size_t lo, std::size_t count) {
      momentum_run<T, isa.value>(w, velocity, dw, lo, count, k);
    });
  });
}

template <class T>
void momentum_update_block(T* w, T* velocity, const T* dw, std::size_t rows, std::size_t cols,
                           std::size_t ld, double lr, double momentum, bool nesterov,
                           double weight_decay) {
  const auto k = momentum_coefficients<T>(lr, momentum, nesterov, weight_decay);
  with_active_isa([&](auto isa) {
    for (std::size_t r = 0; r < rows; ++r) momentum_run<T, isa.value>(w, velocity, dw, r * ld, cols, k);
  });
}

template <class T>
void adam_update(T* w, T* m, T* v, const T* dw, std::size_t n, double lr, double beta1,
                 double beta2, double eps, double weight_decay, bool decoupled, long long step) {
  const auto k = adam_coefficients<T>(lr, beta1, beta2, eps, weight_decay, decoupled, step);
  with_active_isa([&](auto isa) {
    over_blocks(n, [&](std::size_t lo, std::size_t count) {
      adam_run<T, isa.value>(w, m, v, dw, lo, count, k);
    });
  });
}

template <class T>
void adam_update_block(T* w, T* m, T* v, const T* dw, std::size_t rows, std::size_t cols,
                       std::size_t ld, double lr, double beta1, double beta2, double eps,
                       double weight_decay, bool decoupled, long long step) {
  const auto k = adam_coefficients<T>(lr, beta1, beta2, eps, weight_decay, decoupled, step);
  with_active_isa([&](auto isa) {
    for (std::size_t r = 0; r < rows; ++r) adam_run<T, isa.value>(w, m, v, dw, r * ld, cols, k);
  });
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
template void momentum_update_block<float>(float*, float*, const float*, std::size_t,
                                           std::size_t, std::size_t, double, double, bool, double);
template void momentum_update_block<double>(double*, double*, const double*, std::size_t,
                                            std::size_t, std::size_t, double, double, bool,
                                            double);
template void adam_update_block<float>(float*, float*, float*, const float*, std::size_t,
                                       std::size_t, std::size_t, double, double, double, double,
                                       double, bool, long long);
template void adam_update_block<double>(double*, double*, double*, const double*, std::size_t,
                                        std::size_t, std::size_t, double, double, double, double,
                                        double, bool, long long);
template void momentum_update<float>(float*, float*, const float*, std::size_t, double, double,
                                     bool, double);
template void momentum_update<double>(double*, double*, const double*, std::size_t, double,
                                      double, bool, double);
template void adam_update<float>(float*, float*, float*, const float*, std::size_t, double,
                                 double, double, double, double, bool, long long);
template void adam_update<double>(double*, double*, double*, const double*, std::size_t, double,
                                  double, double, double, double, bool, long long);
template bool all_finite<float>(const float*, std::size_t);
template bool all_finite<double>(const double*, std::size_t);
template double sum_of_squares<float>(const float*, std::size_t);
template double sum_of_squares<double>(const double*, std::size_t);

}  // namespace fastmlp
