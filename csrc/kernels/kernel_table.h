// Every kernel for one dtype as a plain function pointer. fastmlp._core hands a
// KernelTable to the Cython API (python/fastmlp/cython_kernels.pyx) in a PyCapsule, so
// compiled downstream code runs the kernels of _core itself: one copy of the machine code,
// one ISA cap (FASTMLP_ISA, fastmlp.set_isa) and one thread count.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/activation.h"
#include "kernels/gemm.h"
#include "kernels/loss.h"
#include "kernels/update.h"

namespace fastmlp {

template <class T>
struct KernelsFor {
  decltype(&fastmlp::gemm<T>) gemm;
  decltype(&fastmlp::linear_forward<T>) linear_forward;
  decltype(&fastmlp::linear_backward<T>) linear_backward;
  decltype(&fastmlp::activation_forward<T>) activation_forward;
  decltype(&fastmlp::activation_derivative<T>) activation_derivative;
  decltype(&fastmlp::activation_backward<T>) activation_backward;
  decltype(&fastmlp::maxout_forward<T>) maxout_forward;
  decltype(&fastmlp::maxout_backward<T>) maxout_backward;
  decltype(&fastmlp::softmax<T>) softmax;
  // The losses without sample weights (the Cython API's signatures; unweighted<> below).
  // The two overloads of softmax_cross_entropy: integer labels or a target matrix.
  double (*softmax_cross_entropy_labels)(T*, const T*, const std::int64_t*, std::size_t,
                                         std::size_t);
  double (*softmax_cross_entropy_targets)(T*, const T*, const T*, std::size_t, std::size_t);
  double (*sigmoid_binary_cross_entropy)(T*, const T*, const T*, std::size_t, std::size_t);
  double (*quadratic_loss)(T*, const T*, const T*, std::size_t, std::size_t);
  decltype(&fastmlp::sgd_update<T>) sgd_update;
  // Added later: new entries go last, after every earlier one.
  decltype(&fastmlp::momentum_update<T>) momentum_update;
  decltype(&fastmlp::adam_update<T>) adam_update;
};

// A loss kernel as the table holds it: without sample weights.
template <class T, class Y, double (*loss)(T*, const T*, const Y*, std::size_t, std::size_t, const T*)>
double unweighted(T* grad, const T* in, const Y* y, std::size_t n, std::size_t k) {
  return loss(grad, in, y, n, k, nullptr);
}

template <class T>
constexpr KernelsFor<T> kernels_for() {
  return {&fastmlp::gemm<T>,
          &fastmlp::linear_forward<T>,
          &fastmlp::linear_backward<T>,
          &fastmlp::activation_forward<T>,
          &fastmlp::activation_derivative<T>,
          &fastmlp::activation_backward<T>,
          &fastmlp::maxout_forward<T>,
          &fastmlp::maxout_backward<T>,
          &fastmlp::softmax<T>,
          &unweighted<T, std::int64_t, &fastmlp::softmax_cross_entropy<T>>,
          &unweighted<T, T, &fastmlp::softmax_cross_entropy<T>>,
          &unweighted<T, T, &fastmlp::sigmoid_binary_cross_entropy<T>>,
          &unweighted<T, T, &fastmlp::quadratic_loss<T>>,
          &fastmlp::sgd_update<T>,
          &fastmlp::momentum_update<T>,
          &fastmlp::adam_update<T>};
}

struct KernelTable {
  KernelsFor<float> f32;
  KernelsFor<double> f64;
};

// T's half of the table; the unused pointer only names T (Cython deduces it from there).
template <class T>
const KernelsFor<T>& kernels_of(const KernelTable& table, const T*) {
  if constexpr (sizeof(T) == sizeof(float)) return table.f32;
  else return table.f64;
}

// The capsule's name: PyCapsule_GetPointer checks it, so a foreign capsule is refused.
constexpr const char* kKernelTableCapsule = "fastmlp._core.KernelTable";

}  // namespace fastmlp
