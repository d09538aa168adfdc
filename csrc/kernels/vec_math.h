// Scalar building blocks and row reductions written so that GCC/Clang vectorise the loops that call them
// (no calls into libm, no branches, no float->int conversions), for the element-wise and
// loss kernels that are compiled once per ISA (activation_impl.h, loss_impl.h).
//
// Everything here has internal linkage on purpose: this header is included by sources
// compiled with different -m flags, and an inline function with external linkage would be
// merged across them by the linker, so the portable path could end up running AVX-512 code.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace fastmlp {
namespace {

template <class T> struct FloatTraits;
template <> struct FloatTraits<float> {
  using Bits = std::uint32_t;
  static constexpr int kMantissaBits = 23, kExponentBias = 127;
  // Clamps exp's argument so that 2^n stays representable; e^x is already inf / 0 there.
  static constexpr float kExpMax = 89.0f, kExpMin = -104.0f;
  static constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: x + magic rounds x to an integer
  static constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;  // ln 2 = hi + lo, hi * n exact
};
template <> struct FloatTraits<double> {
  using Bits = std::uint64_t;
  static constexpr int kMantissaBits = 52, kExponentBias = 1023;
  static constexpr double kExpMax = 710.0, kExpMin = -746.0;
  static constexpr double kRoundMagic = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double kLn2Hi = 6.93145751953125e-1, kLn2Lo = 1.42860682030941723212e-6;
};

template <class T>
inline typename FloatTraits<T>::Bits bits_of(T x) {
  typename FloatTraits<T>::Bits b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

template <class T>
inline T from_bits(typename FloatTraits<T>::Bits b) {
  T x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

// e^r for |r| <= ln(2)/2, within ~1 ulp (float: the Cephes expf polynomial).
inline float exp_reduced(float r) {
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * (r * r) + r + 1.0f;
}

inline double exp_reduced(double r) {
  // Taylor series to r^13 (the next term is < 5e-18 here); no division, so it vectorises
  // into plain multiply-adds.
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  return p * (r * r) + r + 1.0;
}

// e^x, within ~1 ulp of the correctly rounded value, for every x: overflows to inf,
// rounds to subnormals and 0 like libm, NaN in -> NaN out.
template <class T>
inline T exp_vectorizable(T x) {
  using F = FloatTraits<T>;
  using Bits = typename F::Bits;
  using SignedBits = std::make_signed_t<Bits>;
  x = x > F::kExpMax ? F::kExpMax : x;  // NaN passes both clamps unchanged
  x = x < F::kExpMin ? F::kExpMin : x;
  // x = n ln2 + r with n = round(x / ln2), read from the low bits of (x log2e + magic).
  T shifted = x * T(1.44269504088896340736) + F::kRoundMagic;
  T n = shifted - F::kRoundMagic;
  SignedBits ni = static_cast<SignedBits>(bits_of(shifted) - bits_of(F::kRoundMagic));
  T r = x - n * F::kLn2Hi;
  r = r - n * F::kLn2Lo;
  // 2^n as two factors 2^(n/2) 2^(n - n/2), each a normal number, so that a subnormal
  // result is rounded once, in the last multiply.
  SignedBits half = ni >> 1;  // arithmetic shift (GCC, Clang)
  T scale1 = from_bits<T>(static_cast<Bits>(half + F::kExponentBias) << F::kMantissaBits);
  T scale2 = from_bits<T>(static_cast<Bits>(ni - half + F::kExponentBias) << F::kMantissaBits);
  return exp_reduced(r) * scale1 * scale2;
}

// e^x − 1 by its Taylor series, for |x| <= 1: the terms left out are below half an ulp of
// the result (to x^19 / 19! for double, x^12 / 12! for float), and x + x² q keeps the
// leading term exact.
// 1/m! for m = 0 .. 19, rounded once to double.
struct InverseFactorials {
  double of[20];
  constexpr InverseFactorials() : of() {
    double f = 1.0;
    for (int m = 0; m < 20; ++m) {
      f *= m > 1 ? m : 1;
      of[m] = 1.0 / f;
    }
  }
};
constexpr InverseFactorials kInverseFactorial{};

template <class T>
inline T expm1_taylor(T x) {
  constexpr int kLast = sizeof(T) == 8 ? 19 : 12;  // the last power kept
  T h = T(kInverseFactorial.of[kLast]);             // h = Σ_{m=2..kLast} x^(m−2) / m!
#pragma GCC unroll 20
  for (int m = kLast - 1; m >= 2; --m) h = h * x + T(kInverseFactorial.of[m]);
  return x + x * x * h;
}

// e^x − 1 within a few ulps for every x: the Taylor series where e^x − 1 would cancel
// (|x| < 1), e^x − 1 elsewhere (the result is then at least 0.63 in magnitude, so the 1-ulp
// error of e^x stays about one ulp of it). Both are computed and one is kept, which
// vectorises; a NaN stays NaN.
template <class T>
inline T expm1_vectorizable(T x) {
  const bool near = std::fabs(x) < T(1);  // false for NaN
  const T near_zero = expm1_taylor(near ? x : T(0));
  const T far = exp_vectorizable(x) - T(1);
  return near ? near_zero : far;
}

// tanh x = expm1(2|x|) / (expm1(2|x|) + 2), with x's sign; the quotient damps the error of
// expm1 (its relative sensitivity is 2 / (expm1 + 2) <= 1), so the result is within a few
// ulps. Beyond |x| = 40 tanh is 1 in both dtypes (and the quotient would be inf / inf); the
// 1 is chosen at the end, not by clamping x, which would let GCC thread a constant path
// through the arithmetic and leave the loop scalar without AVX-512.
template <class T>
inline T tanh_vectorizable(T x) {
  const T ax = std::fabs(x);
  const T t = expm1_vectorizable(T(2) * ax);
  const T quotient = t / (t + T(2));
  return std::copysign(ax > T(40) ? T(1) : quotient, x);  // a NaN x stays NaN
}

// e^(−|z|), which lies in (0, 1] and so never overflows.
template <class T>
inline T exp_minus_abs(T z) {
  return exp_vectorizable(z < T(0) ? z : -z);
}

// σ(z) from e = e^(−|z|), the NumPy twin's formula: 1 / (1 + e) for z >= 0, else e / (1 + e).
// The numerator is chosen before one division: an operation under a condition may not be
// vectorised without AVX-512's masks, since it could raise a floating-point flag.
template <class T>
inline T sigmoid_from_exp_minus_abs(T z, T e) {
  return (z >= T(0) ? T(1) : e) / (T(1) + e);
}

template <class T>
inline T sigmoid_vectorizable(T z) {
  return sigmoid_from_exp_minus_abs(z, exp_minus_abs(z));
}

// Row reductions use kLanes interleaved partial results: that breaks the dependency chain
// of a serial sum and lets the compiler use vector registers, and because the lane count is
// fixed in the source (not the vector width), every ISA adds in the same order.
constexpr std::size_t kLanes = 16;

// op-reduces the kLanes lanes as a tree, not a chain (short rows, k = 10, are dominated by
// this step); the widths are spelled out so the compiler keeps the lanes in registers.
template <class T, class Op>
inline T combine_lanes(T* lane, Op op) {
  static_assert(kLanes == 16, "combine_lanes spells out a 16-lane tree");
  for (std::size_t l = 0; l < 8; ++l) lane[l] = op(lane[l], lane[l + 8]);
  for (std::size_t l = 0; l < 4; ++l) lane[l] = op(lane[l], lane[l + 4]);
  for (std::size_t l = 0; l < 2; ++l) lane[l] = op(lane[l], lane[l + 2]);
  return op(lane[0], lane[1]);
}

// max_j x_j for k >= 1. A NaN may be skipped; callers then see it through e^(x − max).
template <class T>
inline T row_max(const T* x, std::size_t k) {
  T lane[kLanes];
  for (std::size_t l = 0; l < kLanes; ++l) lane[l] = x[0];
  std::size_t j = 0;
  for (; j + kLanes <= k; j += kLanes) {
#pragma omp simd
    for (std::size_t l = 0; l < kLanes; ++l) lane[l] = x[j + l] > lane[l] ? x[j + l] : lane[l];
  }
  for (std::size_t l = 0; j < k; ++j, ++l) lane[l] = x[j] > lane[l] ? x[j] : lane[l];
  return combine_lanes(lane, [](T a, T b) { return b > a ? b : a; });
}

// Σ_{j<k} term(j) in Acc. term may also write element j of an output (it runs once per j).
template <class Acc, class Term>
inline Acc lane_sum(std::size_t k, Term&& term) {
  Acc lane[kLanes] = {};
  std::size_t j = 0;
  for (; j + kLanes <= k; j += kLanes) {
#pragma omp simd
    for (std::size_t l = 0; l < kLanes; ++l) lane[l] += term(j + l);
  }
  for (std::size_t l = 0; j < k; ++j, ++l) lane[l] += term(j);
  return combine_lanes(lane, [](Acc a, Acc b) { return a + b; });
}

}  // namespace
}  // namespace fastmlp
