// The register-blocked micro-kernel, written once over a SIMD vector type V and included
// by each ISA's source (gemm_avx2.cpp, gemm_avx512.cpp), which defines V and compiles
// this with its own CPU flags.
//
// Include it only inside an anonymous namespace: code compiled for AVX-512 must never
// be an inline function or template with external linkage, or the linker could pick the
// AVX-512 copy for generic callers (an ODR violation that crashes older CPUs).
//
// V provides: type R (one register of V::width elements of type T), zero(), load(p)
// (64-byte aligned), loadu(p), storeu(p, r), load_partial(p, n) (n < width elements, the
// rest zero), store_partial(p, n, r), broadcast(p), fmadd(a, b, c) = a*b + c with one
// rounding, add(a, b), sub(a, b) = a - b, mul(a, b), transpose(r[width]) (in place: r[c] becomes column c),
// reduce_add(r) (the sum of the lanes, in a fixed order).
// No std:: function templates here: they are inline with external linkage (see above). The includer provides <cstddef>, <cstdint> and <utility> (no headers may be
// included from here: this text sits inside a namespace).

// c ← c − lr (p + weight_decay c), the operations of sgd_update, one rounding each (the
// decay term skipped when it is 0, as there).
template <class T>
T sgd_updated(T c, T p, const TileUpdate<T>& up) {
  return c - up.lr * (up.weight_decay != T(0) ? p + up.weight_decay * c : p);
}

// Where the micro-kernel reads element (i, p) of its MR x kc block of A: a packed
// micro-panel (a[p*MR + i]), or MR rows in place (rows[i][p]; see MicroKernelRows).
// prefetch_c: whether to start fetching the C tile first. Not with rows in place, which
// are often still on their way from memory (a shuffled batch of X): the C prefetches
// then compete with them, and the mid case ran 1.5% slower on two threads.
template <class T, std::size_t MR>
struct PackedPanel {
  static constexpr bool prefetch_c = true;
  const T* a;
  const T* at(std::size_t i, std::size_t p) const { return a + p * MR + i; }
};
template <class T, std::size_t MR>
struct RowsInPlace {
  static constexpr bool prefetch_c = false;
  const T* row[MR];  // copied from the caller's array, so they can live in registers
  const T* at(std::size_t i, std::size_t p) const { return row[i] + p; }
};

// A (MR x kc, read through `a`), b (kc, NV*width) packed -> the m x n corner of C (row
// stride ldc), updated with P = A b as `up` says (see MicroKernel in gemm.h). Each element
// of P is a chain of fused multiply-adds over p = 0 .. kc-1 starting from zero, then
// applied to C: the same operations whatever n is and wherever A is read from (B's edge
// panels are zero-padded by the packing; a tile of m rows runs the kernel with MR = m).
template <class V, std::size_t MR, std::size_t NV, class ASource>
void simd_micro_kernel_from(std::size_t kc, const ASource& a, const typename V::T* b,
                            typename V::T* c, std::ptrdiff_t ldc, std::size_t m, std::size_t n,
                            const TileUpdate<typename V::T>& up) {
  using T = typename V::T;
  using R = typename V::R;
  constexpr std::size_t W = V::width, NR = NV * W;
  // Start fetching the C tile now, so it has arrived when the products are added to it
  // (prefetches never fault, so edge tiles need no care).
  if constexpr (ASource::prefetch_c) {
#pragma GCC unroll 32
    for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (std::size_t j = 0; j < NR * sizeof(T); j += 64)
        _mm_prefetch(reinterpret_cast<const char*>(c + static_cast<std::ptrdiff_t>(i) * ldc) + j,
                     _MM_HINT_T0);
  }
  R acc[MR][NV];
#pragma GCC unroll 32
  for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (std::size_t j = 0; j < NV; ++j) acc[i][j] = V::zero();

  for (std::size_t p = 0; p < kc; ++p, b += NR) {
    R bv[NV];
#pragma GCC unroll 8
    for (std::size_t j = 0; j < NV; ++j) bv[j] = V::load(b + j * W);
#pragma GCC unroll 32
    for (std::size_t i = 0; i < MR; ++i) {
      R ai = V::broadcast(a.at(i, p));
#pragma GCC unroll 8
      for (std::size_t j = 0; j < NV; ++j) acc[i][j] = V::fmadd(ai, bv[j], acc[i][j]);
    }
  }

  // A full tile goes straight to C; an edge tile goes through `tile`, then only its
  // valid corner is touched, with the same operations one element at a time. (`up` is
  // copied first: stores to C could alias it, which would reload it after every store.)
  const TileUpdate<T> how = up;
  if (m == MR && n == NR) {
    if (how.mode == TileUpdate<T>::sgd) {
      const R lr = V::broadcast(&how.lr), decay = V::broadcast(&how.weight_decay);
      // Without weight decay the term is skipped, as sgd_update does: two of the four
      // operations go, at a batch of 10 a seventh of the work.
      const bool decays = how.weight_decay != T(0);
#pragma GCC unroll 32
      for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 8
        for (std::size_t j = 0; j < NV; ++j) {
          T* dst = c + static_cast<std::ptrdiff_t>(i) * ldc + j * W;
          const R ci = V::loadu(dst);
          const R grad = decays ? V::add(acc[i][j], V::mul(decay, ci)) : acc[i][j];
          V::storeu(dst, V::sub(ci, V::mul(lr, grad)));
        }
      return;
    }
    const bool add = how.mode == TileUpdate<T>::add;
#pragma GCC unroll 32
    for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (std::size_t j = 0; j < NV; ++j) {
        T* dst = c + static_cast<std::ptrdiff_t>(i) * ldc + j * W;
        V::storeu(dst, add ? V::add(V::loadu(dst), acc[i][j]) : acc[i][j]);
      }
    return;
  }
  alignas(64) T tile[MR][NR];
#pragma GCC unroll 32
  for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (std::size_t j = 0; j < NV; ++j) V::storeu(&tile[i][j * W], acc[i][j]);
  for (std::size_t i = 0; i < m; ++i) {
    T* row = c + static_cast<std::ptrdiff_t>(i) * ldc;
    for (std::size_t j = 0; j < n; ++j) {
      if (how.mode == TileUpdate<T>::overwrite) row[j] = tile[i][j];
      else if (how.mode == TileUpdate<T>::add) row[j] += tile[i][j];
      else row[j] = sgd_updated(row[j], tile[i][j], how);
    }
  }
}

// See MicroKernel in gemm.h.
template <class V, std::size_t MR, std::size_t NV>
void simd_micro_kernel(std::size_t kc, const typename V::T* a, const typename V::T* b,
                       typename V::T* c, std::ptrdiff_t ldc, std::size_t m, std::size_t n,
                       const TileUpdate<typename V::T>& up) {
  simd_micro_kernel_from<V, MR, NV>(kc, PackedPanel<typename V::T, MR>{a}, b, c, ldc, m, n, up);
}

// See MicroKernelRows in gemm.h.
template <class V, std::size_t MR, std::size_t NV>
void simd_micro_kernel_rows(std::size_t kc, const typename V::T* const* rows, const typename V::T* b,
                            typename V::T* c, std::ptrdiff_t ldc, std::size_t m, std::size_t n,
                            const TileUpdate<typename V::T>& up) {
  RowsInPlace<typename V::T, MR> a;
#pragma GCC unroll 32
  for (std::size_t i = 0; i < MR; ++i) a.row[i] = rows[i];
  simd_micro_kernel_from<V, MR, NV>(kc, a, b, c, ldc, m, n, up);
}

// See PackTransposed in gemm.h: blocks of width x width elements are transposed in
// registers.
template <class V>
void simd_pack_transposed(typename V::T* dst, const typename V::T* src, std::ptrdiff_t ld,
                          const std::int64_t* idx, std::size_t lines, std::size_t width,
                          std::size_t kc) {
  using T = typename V::T;
  using R = typename V::R;
  constexpr std::size_t W = V::width;
  const T* line[W];
  for (std::size_t r0 = 0; r0 < width; r0 += W) {
    for (std::size_t q = 0; q < W && r0 + q < lines; ++q)
      line[q] = src + (idx ? idx[r0 + q] : static_cast<std::ptrdiff_t>(r0 + q)) * ld;
    const std::size_t cols = width - r0 < W ? width - r0 : W;  // of dst in this block
    for (std::size_t p0 = 0; p0 < kc; p0 += W) {
      const std::size_t ps = kc - p0 < W ? kc - p0 : W;
      R r[W];
      if (r0 + W <= lines && ps == W && cols == W) {  // a full block: no edge checks
#pragma GCC unroll 16
        for (std::size_t q = 0; q < W; ++q) r[q] = V::loadu(line[q] + p0);
        V::transpose(r);
#pragma GCC unroll 16
        for (std::size_t q = 0; q < W; ++q) V::storeu(dst + (p0 + q) * width + r0, r[q]);
        continue;
      }
      for (std::size_t q = 0; q < W; ++q) {
        if (r0 + q >= lines) {
          r[q] = V::zero();
          continue;
        }
        r[q] = ps == W ? V::loadu(line[q] + p0) : V::load_partial(line[q] + p0, ps);
      }
      V::transpose(r);
      for (std::size_t q = 0; q < ps; ++q) {
        auto* out = dst + (p0 + q) * width + r0;
        if (cols == W)
          V::storeu(out, r[q]);
        else
          V::store_partial(out, cols, r[q]);
      }
    }
  }
}

// See PackRows in gemm.h; width is a multiple of V::width.
template <class V>
void simd_pack_rows(typename V::T* dst, const typename V::T* src, std::ptrdiff_t ld,
                    const std::int64_t* idx, std::size_t kc, std::size_t n_valid, std::size_t width) {
  constexpr std::size_t W = V::width;
  for (std::size_t p = 0; p < kc; ++p) {
    const auto* row = src + (idx ? idx[p] : static_cast<std::ptrdiff_t>(p)) * ld;
    auto* out = dst + p * width;
    for (std::size_t j = 0; j < width; j += W) {
      if (j + W <= n_valid)
        V::storeu(out + j, V::loadu(row + j));
      else
        V::storeu(out + j, j < n_valid ? V::load_partial(row + j, n_valid - j) : V::zero());
    }
  }
}

// See DotKernel in gemm.h.
template <class V, std::size_t MR, std::size_t NR>
void simd_dot_kernel(std::size_t k, const typename V::T* a, std::ptrdiff_t lda,
                     const std::int64_t* idx, const typename V::T* b, std::ptrdiff_t ldb,
                     typename V::T* c, std::ptrdiff_t ldc, std::size_t m, std::size_t n,
                     bool overwrite) {
  using T = typename V::T;
  using R = typename V::R;
  constexpr std::size_t W = V::width;
  const T* ar[MR];
  const T* br[NR];
  for (std::size_t i = 0; i < MR; ++i) {
    const std::size_t row = i < m ? i : m - 1;
    ar[i] = a + (idx ? idx[row] : static_cast<std::ptrdiff_t>(row)) * lda;
  }
  for (std::size_t j = 0; j < NR; ++j) br[j] = b + static_cast<std::ptrdiff_t>(j < n ? j : n - 1) * ldb;
  R acc[MR][NR];
#pragma GCC unroll 8
  for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (std::size_t j = 0; j < NR; ++j) acc[i][j] = V::zero();
  std::size_t p = 0;
  for (; p + W <= k; p += W) {
    R av[MR];
#pragma GCC unroll 8
    for (std::size_t i = 0; i < MR; ++i) av[i] = V::loadu(ar[i] + p);
#pragma GCC unroll 8
    for (std::size_t j = 0; j < NR; ++j) {
      R bv = V::loadu(br[j] + p);
#pragma GCC unroll 8
      for (std::size_t i = 0; i < MR; ++i) acc[i][j] = V::fmadd(av[i], bv, acc[i][j]);
    }
  }
  if (p < k) {  // the tail, zero-padded
    R av[MR];
#pragma GCC unroll 8
    for (std::size_t i = 0; i < MR; ++i) av[i] = V::load_partial(ar[i] + p, k - p);
#pragma GCC unroll 8
    for (std::size_t j = 0; j < NR; ++j) {
      R bv = V::load_partial(br[j] + p, k - p);
#pragma GCC unroll 8
      for (std::size_t i = 0; i < MR; ++i) acc[i][j] = V::fmadd(av[i], bv, acc[i][j]);
    }
  }
  T sums[MR][NR];
#pragma GCC unroll 8
  for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (std::size_t j = 0; j < NR; ++j) sums[i][j] = V::reduce_add(acc[i][j]);
  for (std::size_t i = 0; i < m && i < MR; ++i) {
    T* row = c + static_cast<std::ptrdiff_t>(i) * ldc;
    for (std::size_t j = 0; j < n && j < NR; ++j) row[j] = overwrite ? sums[i][j] : row[j] + sums[i][j];
  }
}

// The kernel family for tiles of 1 .. sizeof...(I) rows, NV vectors wide, and the
// unpacked dot-product kernels for tiles of 1 .. sizeof...(D) rows, DNR columns wide.
template <class V, std::size_t NV, std::size_t DNR, std::size_t... I, std::size_t... D>
constexpr GemmKernel<typename V::T> make_gemm_kernel(std::index_sequence<I...>, std::index_sequence<D...>,
                                                     std::size_t kc, std::size_t nc) {
  return {{&simd_micro_kernel<V, I + 1, NV>...}, {&simd_micro_kernel_rows<V, I + 1, NV>...},
          &simd_pack_transposed<V>, &simd_pack_rows<V>, sizeof...(I), NV * V::width, kc, nc,
          {&simd_dot_kernel<V, D + 1, DNR>...}, sizeof...(D), DNR};
}
