// AVX2 + FMA micro-kernels (this file alone is compiled with -mavx2 -mfma; see gemm.h).
#include <immintrin.h>

#include "kernels/gemm.h"

namespace fastmlp {
namespace {  // internal linkage for everything built with AVX2 flags

struct F32x8 {
  using T = float;
  using R = __m256;
  static constexpr std::size_t width = 8;
  static R zero() { return _mm256_setzero_ps(); }
  static R load(const T* p) { return _mm256_load_ps(p); }
  static R loadu(const T* p) { return _mm256_loadu_ps(p); }
  static void storeu(T* p, R r) { _mm256_storeu_ps(p, r); }
  static R broadcast(const T* p) { return _mm256_broadcast_ss(p); }
  static R fmadd(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
};

struct F64x4 {
  using T = double;
  using R = __m256d;
  static constexpr std::size_t width = 4;
  static R zero() { return _mm256_setzero_pd(); }
  static R load(const T* p) { return _mm256_load_pd(p); }
  static R loadu(const T* p) { return _mm256_loadu_pd(p); }
  static void storeu(T* p, R r) { _mm256_storeu_pd(p, r); }
  static R broadcast(const T* p) { return _mm256_broadcast_sd(p); }
  static R fmadd(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
  static R add(R a, R b) { return _mm256_add_pd(a, b); }
};

#include "kernels/gemm_micro_kernel.h"

}  // namespace

namespace isa_kernels {
// 6 x 2 registers of accumulators + 2 of B + 1 broadcast: 15 of the 16 ymm registers.
const GemmKernel<float> avx2_f32{&simd_micro_kernel<F32x8, 6, 2>, 6, 16, 256, 1024};
const GemmKernel<double> avx2_f64{&simd_micro_kernel<F64x4, 6, 2>, 6, 8, 256, 512};
}  // namespace isa_kernels

}  // namespace fastmlp
