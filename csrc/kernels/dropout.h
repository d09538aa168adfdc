// Dropout masks from a counter-based generator. Twin: python/fastmlp/reference/dropout.py,
// which states the generator; the integer functions here are its exact transcription, so
// a mask is bit for bit the same on both backends and for any thread count or block order.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace fastmlp {

inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The key of hidden layer `layer`'s masks in update number `step`.
inline std::uint32_t dropout_key(std::uint64_t seed, std::uint64_t step, std::uint64_t layer) {
  return static_cast<std::uint32_t>(splitmix64(splitmix64(splitmix64(seed) ^ step) ^ layer) >> 32);
}

// lowbias32: two multiplies and three xor-shifts, all 32-bit lanes, so loops vectorise.
inline std::uint32_t hash32(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  return x ^ (x >> 16);
}

inline std::uint32_t dropout_row_key(std::uint32_t key, std::uint64_t row) {
  return hash32(key ^ hash32(static_cast<std::uint32_t>(row)));
}

// round(p 2^32) (ties to even, as Python's round), at most 2^32 - 1: bits below it drop.
inline std::uint32_t dropout_threshold(double p) {
  const double t = std::nearbyint(p * 4294967296.0);
  return t >= 4294967295.0 ? 0xFFFFFFFFu : static_cast<std::uint32_t>(t);
}

// One layer's dropout in a forward pass: out = a ⊙ mask, mask = scale (1/(1 - p)) where a
// unit is kept, else 0; both (n, m) row-major like a. Row i of the pass is row
// row_offset + i of the batch (a shard of a data-parallel batch starts past 0).
template <class T>
struct DropoutPass {
  T* out;
  T* mask;
  std::uint32_t key, threshold;
  T scale;
  std::size_t row_offset;
};

template <class T>
DropoutPass<T> dropout_pass(T* out, T* mask, std::uint32_t key, double p, std::size_t row_offset) {
  return {out, mask, key, dropout_threshold(p), static_cast<T>(1.0 / (1.0 - p)), row_offset};
}

// Rows [i0, i1), columns [j0, j1) of the pass, a with row stride ld (= m): the forward
// epilogue of a layer (linear_forward_rows) calls it on each finished block.
template <class T>
void dropout_forward(const DropoutPass<T>& pass, const T* a, std::size_t i0, std::size_t i1,
                     std::size_t j0, std::size_t j1, std::size_t ld);

}  // namespace fastmlp
