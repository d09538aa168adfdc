// AVX-512 micro-kernels (this file alone is compiled with -mavx512f ...; see gemm.h).
#include <immintrin.h>

#include "kernels/gemm.h"

namespace fastmlp {
namespace {  // internal linkage for everything built with AVX-512 flags

struct F32x16 {
  using T = float;
  using R = __m512;
  static constexpr std::size_t width = 16;
  static R zero() { return _mm512_setzero_ps(); }
  static R load(const T* p) { return _mm512_load_ps(p); }
  static R loadu(const T* p) { return _mm512_loadu_ps(p); }
  static void storeu(T* p, R r) { _mm512_storeu_ps(p, r); }
  static R broadcast(const T* p) { return _mm512_set1_ps(*p); }
  static R fmadd(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
};

struct F64x8 {
  using T = double;
  using R = __m512d;
  static constexpr std::size_t width = 8;
  static R zero() { return _mm512_setzero_pd(); }
  static R load(const T* p) { return _mm512_load_pd(p); }
  static R loadu(const T* p) { return _mm512_loadu_pd(p); }
  static void storeu(T* p, R r) { _mm512_storeu_pd(p, r); }
  static R broadcast(const T* p) { return _mm512_set1_pd(*p); }
  static R fmadd(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
  static R add(R a, R b) { return _mm512_add_pd(a, b); }
};

#include "kernels/gemm_micro_kernel.h"

}  // namespace

namespace isa_kernels {
// 14 x 2 registers of accumulators + 2 of B + 1 broadcast fill the 32 zmm registers.
const GemmKernel<float> avx512_f32{&simd_micro_kernel<F32x16, 14, 2>, 14, 32, 384, 1024};
const GemmKernel<double> avx512_f64{&simd_micro_kernel<F64x8, 14, 2>, 14, 16, 256, 512};
}  // namespace isa_kernels

}  // namespace fastmlp
