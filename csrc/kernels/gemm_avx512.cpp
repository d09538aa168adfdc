// AVX-512 micro-kernels (this file alone is compiled with -mavx512f ...; see gemm.h).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "kernels/gemm.h"

// GCC 12's unpack/shuffle/reduce intrinsics pass an "undefined" register through, which
// -W(maybe-)uninitialized reports falsely (clang has no -Wmaybe-uninitialized).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"

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
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static T reduce_add(R r) { return _mm512_reduce_add_ps(r); }
  static __mmask16 first(std::size_t n) { return static_cast<__mmask16>((1u << n) - 1); }
  static R load_partial(const T* p, std::size_t n) { return _mm512_maskz_loadu_ps(first(n), p); }
  static void store_partial(T* p, std::size_t n, R r) { _mm512_mask_storeu_ps(p, first(n), r); }
  static void transpose(R (&r)[16]) {
    R t[16], u[16];
    for (int i = 0; i < 16; i += 2) {  // interleave pairs of rows
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {  // u[i + q]: column q of each 128-bit lane, rows i..i+3
      for (int h = 0; h < 2; ++h) {
        __m512d x = _mm512_castps_pd(t[i + h]), y = _mm512_castps_pd(t[i + h + 2]);
        u[i + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(x, y));
        u[i + 2 * h + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x, y));
      }
    }
    for (int q = 0; q < 4; ++q) {  // gather lane L of the four row groups: column 4L + q
      R lo01 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x44), lo23 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x44);
      R hi01 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xEE), hi23 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xEE);
      r[q] = _mm512_shuffle_f32x4(lo01, lo23, 0x88);
      r[4 + q] = _mm512_shuffle_f32x4(lo01, lo23, 0xDD);
      r[8 + q] = _mm512_shuffle_f32x4(hi01, hi23, 0x88);
      r[12 + q] = _mm512_shuffle_f32x4(hi01, hi23, 0xDD);
    }
  }
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
  static R sub(R a, R b) { return _mm512_sub_pd(a, b); }
  static R mul(R a, R b) { return _mm512_mul_pd(a, b); }
  static T reduce_add(R r) { return _mm512_reduce_add_pd(r); }
  static __mmask8 first(std::size_t n) { return static_cast<__mmask8>((1u << n) - 1); }
  static R load_partial(const T* p, std::size_t n) { return _mm512_maskz_loadu_pd(first(n), p); }
  static void store_partial(T* p, std::size_t n, R r) { _mm512_mask_storeu_pd(p, first(n), r); }
  static void transpose(R (&r)[8]) {
    R t[8];
    for (int i = 0; i < 8; i += 2) {  // t[i + q]: column q of each 128-bit lane, rows i, i+1
      t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
    }
    for (int q = 0; q < 2; ++q) {  // gather lane L of the four row pairs: column 2L + q
      R lo01 = _mm512_shuffle_f64x2(t[q], t[2 + q], 0x44), lo23 = _mm512_shuffle_f64x2(t[4 + q], t[6 + q], 0x44);
      R hi01 = _mm512_shuffle_f64x2(t[q], t[2 + q], 0xEE), hi23 = _mm512_shuffle_f64x2(t[4 + q], t[6 + q], 0xEE);
      r[q] = _mm512_shuffle_f64x2(lo01, lo23, 0x88);
      r[2 + q] = _mm512_shuffle_f64x2(lo01, lo23, 0xDD);
      r[4 + q] = _mm512_shuffle_f64x2(hi01, hi23, 0x88);
      r[6 + q] = _mm512_shuffle_f64x2(hi01, hi23, 0xDD);
    }
  }
};

#include "kernels/gemm_micro_kernel.h"

}  // namespace

namespace isa_kernels {
// 14 x 2 registers of accumulators + 2 of B + 1 broadcast fill the 32 zmm registers;
// the dot kernel: 5 x 5 accumulators + 5 rows of A + 1 of B (a batch of 10: two tiles).
const GemmKernel<float> avx512_f32 = make_gemm_kernel<F32x16, 2, 5>(std::make_index_sequence<14>(), std::make_index_sequence<5>(), 384, 1024);
const GemmKernel<double> avx512_f64 = make_gemm_kernel<F64x8, 2, 5>(std::make_index_sequence<14>(), std::make_index_sequence<5>(), 256, 512);
}  // namespace isa_kernels

}  // namespace fastmlp
