// AVX2 + FMA micro-kernels (this file alone is compiled with -mavx2 -mfma; see gemm.h).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "kernels/gemm.h"

namespace fastmlp {
namespace {  // internal linkage for everything built with AVX2 flags

// AVX2 has no cheap masked load / store of the first n lanes: go through a buffer.
template <class V>
typename V::R load_first(const typename V::T* p, std::size_t n) {
  alignas(32) typename V::T t[V::width] = {};
  for (std::size_t i = 0; i < n; ++i) t[i] = p[i];
  return V::load(t);
}

template <class V>
void store_first(typename V::T* p, std::size_t n, typename V::R r) {
  alignas(32) typename V::T t[V::width];
  V::storeu(t, r);
  for (std::size_t i = 0; i < n; ++i) p[i] = t[i];
}

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
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static T reduce_add(R r) {  // (lane i + lane i+4), then pairs, then the last two
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
  }
  static R load_partial(const T* p, std::size_t n) { return load_first<F32x8>(p, n); }
  static void store_partial(T* p, std::size_t n, R r) { store_first<F32x8>(p, n, r); }
  static void transpose(R (&r)[8]) {
    R t[8], u[8];
    for (int i = 0; i < 8; i += 2) {  // interleave pairs of rows
      t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {  // u[i + q]: column q of each 128-bit lane, rows i..i+3
      for (int h = 0; h < 2; ++h) {
        __m256d x = _mm256_castps_pd(t[i + h]), y = _mm256_castps_pd(t[i + h + 2]);
        u[i + 2 * h] = _mm256_castpd_ps(_mm256_unpacklo_pd(x, y));
        u[i + 2 * h + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(x, y));
      }
    }
    for (int q = 0; q < 4; ++q) {  // column 4L + q: lane L of rows 0..3, then of rows 4..7
      r[q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x20);
      r[4 + q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x31);
    }
  }
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
  static R sub(R a, R b) { return _mm256_sub_pd(a, b); }
  static R mul(R a, R b) { return _mm256_mul_pd(a, b); }
  static T reduce_add(R r) {  // (lane i + lane i+2), then the last two
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(r), _mm256_extractf128_pd(r, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
  static R load_partial(const T* p, std::size_t n) { return load_first<F64x4>(p, n); }
  static void store_partial(T* p, std::size_t n, R r) { store_first<F64x4>(p, n, r); }
  static void transpose(R (&r)[4]) {
    R t[4];
    for (int i = 0; i < 4; i += 2) {  // t[i + q]: column q of each 128-bit lane, rows i, i+1
      t[i] = _mm256_unpacklo_pd(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_pd(r[i], r[i + 1]);
    }
    for (int q = 0; q < 2; ++q) {  // column 2L + q: lane L of rows 0, 1, then of rows 2, 3
      r[q] = _mm256_permute2f128_pd(t[q], t[2 + q], 0x20);
      r[2 + q] = _mm256_permute2f128_pd(t[q], t[2 + q], 0x31);
    }
  }
};

#include "kernels/gemm_micro_kernel.h"

}  // namespace

namespace isa_kernels {
// 6 x 2 registers of accumulators + 2 of B + 1 broadcast: 15 of the 16 ymm registers;
// the dot kernel: 3 x 4 accumulators + 3 rows of A + 1 of B.
const GemmKernel<float> avx2_f32 = make_gemm_kernel<F32x8, 2, 4>(std::make_index_sequence<6>(), std::make_index_sequence<3>(), 256, 1024);
const GemmKernel<double> avx2_f64 = make_gemm_kernel<F64x4, 2, 4>(std::make_index_sequence<6>(), std::make_index_sequence<3>(), 256, 512);
}  // namespace isa_kernels

}  // namespace fastmlp
