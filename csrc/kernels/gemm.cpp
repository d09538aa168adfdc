// The GEMM driver (packing, cache blocking, threads, ISA dispatch), the portable
// micro-kernel, and the fused layer kernels. See gemm.h for the design.
#include "kernels/gemm.h"

#include <algorithm>
#include <cstdlib>
#include <new>
#include <type_traits>

#include "kernels/cpu.h"
#include "kernels/parallel.h"
#include "kernels/update.h"

namespace fastmlp {

namespace {

// A grow-only, 64-byte aligned scratch buffer: after the first call at a given size,
// packing allocates nothing.
class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ~ScratchBuffer() { std::free(data_); }

  template <class T>
  T* get(std::size_t count) {
    std::size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
    if (bytes > size_) {
      std::free(data_);
      data_ = std::aligned_alloc(64, bytes);
      if (data_ == nullptr) {
        size_ = 0;
        throw std::bad_alloc();
      }
      size_ = bytes;
    }
    return static_cast<T*>(data_);
  }

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

// The packing buffers of every thread of a call live with the calling thread and are
// allocated before the blocks are handed out, so no allocation can fail inside a block.
thread_local ScratchBuffer tls_packed;

// The portable micro-kernel: a plain triple loop over a register-sized tile (the compiler
// may vectorise it across j), the path on any CPU and the reference the SIMD kernels are
// tested against. Without -ffp-contract it multiplies then adds (two roundings per term).
template <class T, std::size_t MR, std::size_t NR>
void generic_micro_kernel(std::size_t kc, const T* a, const T* b, T* c, std::ptrdiff_t ldc,
                          std::size_t m, std::size_t n, const TileUpdate<T>& up) {
  T acc[MR][NR] = {};
  for (std::size_t p = 0; p < kc; ++p)
    for (std::size_t i = 0; i < MR; ++i)
      for (std::size_t j = 0; j < NR; ++j) acc[i][j] += a[p * MR + i] * b[p * NR + j];
  for (std::size_t i = 0; i < m; ++i) {
    T* row = c + static_cast<std::ptrdiff_t>(i) * ldc;
    for (std::size_t j = 0; j < n; ++j) {
      if (up.mode == TileUpdate<T>::overwrite) row[j] = acc[i][j];
      else if (up.mode == TileUpdate<T>::add) row[j] += acc[i][j];
      else  // as sgd_update, the decay term skipped when it is 0
        row[j] -= up.lr * (up.weight_decay != T(0) ? acc[i][j] + up.weight_decay * row[j] : acc[i][j]);
    }
  }
}

// See PackTransposed in gemm.h.
template <class T>
void generic_pack_transposed(T* dst, const T* src, std::ptrdiff_t ld, const std::int64_t* idx,
                             std::size_t lines, std::size_t width, std::size_t kc) {
  for (std::size_t r = 0; r < lines; ++r) {
    const T* line = src + (idx ? idx[r] : static_cast<std::ptrdiff_t>(r)) * ld;
    for (std::size_t p = 0; p < kc; ++p) dst[p * width + r] = line[p];
  }
  for (std::size_t r = lines; r < width; ++r)
    for (std::size_t p = 0; p < kc; ++p) dst[p * width + r] = T(0);
}

// See PackRows in gemm.h.
template <class T>
void generic_pack_rows(T* dst, const T* src, std::ptrdiff_t ld, const std::int64_t* idx,
                       std::size_t kc, std::size_t n_valid, std::size_t width) {
  for (std::size_t p = 0; p < kc; ++p) {
    const T* row = src + (idx ? idx[p] : static_cast<std::ptrdiff_t>(p)) * ld;
    for (std::size_t j = 0; j < n_valid; ++j) dst[p * width + j] = row[j];
    for (std::size_t j = n_valid; j < width; ++j) dst[p * width + j] = T(0);
  }
}

template <class T>
constexpr GemmKernel<T> generic_kernel{{&generic_micro_kernel<T, 1, 8>, &generic_micro_kernel<T, 2, 8>,
                                        &generic_micro_kernel<T, 3, 8>, &generic_micro_kernel<T, 4, 8>},
                                       {},
                                       &generic_pack_transposed<T>, &generic_pack_rows<T>, 4, 8, 256,
                                       512, {}, 0, 0};

template <class T>
const GemmKernel<T>& active_kernel() {
#ifdef FASTMLP_X86
  switch (active_isa()) {
    case Isa::avx512:
      if constexpr (std::is_same_v<T, float>) return isa_kernels::avx512_f32;
      else return isa_kernels::avx512_f64;
    case Isa::avx2:
      if constexpr (std::is_same_v<T, float>) return isa_kernels::avx2_f32;
      else return isa_kernels::avx2_f64;
    default:
      break;
  }
#endif
  return generic_kernel<T>;
}

// An index as a signed offset, to multiply with a stride that may be negative.
inline std::ptrdiff_t as_offset(std::size_t i) { return static_cast<std::ptrdiff_t>(i); }

inline std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

// Ask for the source elements first[0], first[stride], ... first[(count-1)*stride] ahead
// of use when they form a short contiguous range: the packing loops read many short
// runs (rows of A, rows of W) that the hardware prefetcher picks up too late.
template <class T>
void prefetch_run(const T* first, std::ptrdiff_t stride, std::size_t count) {
  if (count == 0 || std::abs(stride) > 2) return;
  const char* lo =
      reinterpret_cast<const char*>(stride < 0 ? first + as_offset(count - 1) * stride : first);
  const std::size_t bytes = count * static_cast<std::size_t>(std::abs(stride)) * sizeof(T);
  for (std::size_t off = 0; off < bytes; off += 64) __builtin_prefetch(lo + off);
}

// The outer loops of the packing run this many iterations ahead with their prefetches.
constexpr std::size_t kPrefetchAhead = 2;

// A (mr, kc) strides (rs, cs) -> dst (kc, mr): dst[p*mr + i]. Rows by index (idx, see
// gemm.h) only when A is row-major.
template <class T>
void pack_a(const GemmKernel<T>& kernel, T* dst, const T* a, std::ptrdiff_t rs, std::ptrdiff_t cs,
            const std::int64_t* idx, std::size_t mr, std::size_t kc) {
  if (cs == 1) {  // row-major A
    kernel.pack_transposed(dst, a, rs, idx, mr, mr, kc);
  } else if (std::abs(cs) <= std::abs(rs)) {  // walk the source along its smaller stride
    for (std::size_t i = 0; i < mr; ++i) {
      const T* row = a + as_offset(i) * rs;
      if (i + kPrefetchAhead < mr) prefetch_run(row + as_offset(kPrefetchAhead) * rs, cs, kc);
      for (std::size_t p = 0; p < kc; ++p) dst[p * mr + i] = row[as_offset(p) * cs];
    }
  } else if (rs == 1) {  // column-major A, e.g. δᵀ in the weight step: runs of mr to copy
    for (std::size_t p = 0; p < kc; ++p) {
      const T* col = a + as_offset(p) * cs;
      for (std::size_t i = 0; i < mr; ++i) dst[p * mr + i] = col[i];
    }
  } else {
    for (std::size_t p = 0; p < kc; ++p) {
      const T* col = a + as_offset(p) * cs;
      for (std::size_t i = 0; i < mr; ++i) dst[p * mr + i] = col[as_offset(i) * rs];
    }
  }
}

// B (kc, n_valid) strides (rs, cs) -> dst (kc, nr): dst[p*nr + j], columns >= n_valid zero.
// Rows by index (idx, see gemm.h) only when B is row-major.
template <class T>
void pack_b(const GemmKernel<T>& kernel, T* dst, const T* b, std::ptrdiff_t rs, std::ptrdiff_t cs,
            const std::int64_t* idx, std::size_t kc, std::size_t n_valid, std::size_t nr) {
  if (cs == 1) {  // row-major B
    kernel.pack_rows(dst, b, rs, idx, kc, n_valid, nr);
    return;
  }
  if (rs == 1) {  // column-major B, e.g. Wᵀ
    kernel.pack_transposed(dst, b, cs, nullptr, n_valid, nr, kc);
    return;
  }
  if (std::abs(cs) <= std::abs(rs)) {
    for (std::size_t p = 0; p < kc; ++p) {
      const T* row = b + as_offset(p) * rs;
      for (std::size_t j = 0; j < n_valid; ++j) dst[p * nr + j] = row[as_offset(j) * cs];
    }
  } else {
    for (std::size_t j = 0; j < n_valid; ++j) {
      const T* col = b + as_offset(j) * cs;
      if (j + kPrefetchAhead < n_valid) prefetch_run(col + as_offset(kPrefetchAhead) * cs, rs, kc);
      for (std::size_t p = 0; p < kc; ++p) dst[p * nr + j] = col[as_offset(p) * rs];
    }
  }
  // Column by column: a short row of zeros per p would become a memset call each.
  for (std::size_t j = n_valid; j < nr; ++j)
    for (std::size_t p = 0; p < kc; ++p) dst[p * nr + j] = T(0);
}

// C = P (overwrite) or C += P (accumulate).
template <class T>
TileUpdate<T> stored(bool accumulate) {
  return {accumulate ? TileUpdate<T>::add : TileUpdate<T>::overwrite, T(0), T(0)};
}

struct NoEpilogue {
  void operator()(std::size_t, std::size_t, std::size_t, std::size_t) const {}
};

// The operands and blocking of one product, shared by the blocks computed in parallel.
template <class T>
struct Product {
  T* c;
  std::ptrdiff_t ldc;
  const T* a;
  std::ptrdiff_t rs_a, cs_a;
  const T* b;
  std::ptrdiff_t rs_b, cs_b;
  std::size_t m, n, k;
  TileUpdate<T> first;  // how the first block along k meets C; later ones add to it
  const std::int64_t* a_rows;  // rows of A by index (row-major A only), or null
  const std::int64_t* b_rows;  // rows of B by index (row-major B only), or null

  // Where the block of A from row i, column p starts, with the index of its rows (or null);
  // the same for B from row p, column j.
  const T* a_at(std::size_t i, std::size_t p) const {
    return a + (a_rows ? 0 : as_offset(i) * rs_a) + as_offset(p) * cs_a;
  }
  const std::int64_t* a_idx(std::size_t i) const { return a_rows ? a_rows + i : nullptr; }
  const T* b_at(std::size_t p, std::size_t j) const {
    return b + (b_rows ? 0 : as_offset(p) * rs_b) + as_offset(j) * cs_b;
  }
  const std::int64_t* b_idx(std::size_t p) const { return b_rows ? b_rows + p : nullptr; }
  const GemmKernel<T>* kernel;
  std::size_t kc_max, nc_max;
  bool a_in_place;  // A's layout lets the micro-kernel read its rows where they lie

  // Where row i of a row-major A starts.
  const T* a_row(std::size_t i) const { return a + (a_rows ? a_rows[i] : as_offset(i)) * rs_a; }
};

// An A micro-panel read in place serves at most this many tiles of C; beyond that,
// packing it once pays for itself (32 tiles, big on two threads: 1-2.5% slower in place).
constexpr std::size_t kMaxTilesInPlace = 16;

// Rows [i_begin, i_end) x columns [j_begin, j_end) of C, single-threaded: for each
// nc x kc block of B, pack it, then sweep the rows with one A micro-panel at a time (it
// stays in L1 while B streams from L2), packed or read in place. packed_b holds kc x nc,
// packed_a mr x kc.
template <class T, class Epilogue>
void compute_block(const Product<T>& product, std::size_t i_begin, std::size_t i_end,
                   std::size_t j_begin, std::size_t j_end, T* packed_b, T* packed_a,
                   const Epilogue& epilogue) {
  const GemmKernel<T>& kernel = *product.kernel;
  const std::size_t mr = kernel.mr, nr = kernel.nr;
  for (std::size_t jc = j_begin; jc < j_end; jc += product.nc_max) {
    const std::size_t nc = std::min(product.nc_max, j_end - jc), tiles_n = ceil_div(nc, nr);
    const bool in_place = product.a_in_place && tiles_n <= kMaxTilesInPlace;
    for (std::size_t pc = 0; pc < product.k; pc += product.kc_max) {
      const std::size_t kc = std::min(product.kc_max, product.k - pc);
      const TileUpdate<T> tile_update =
          pc == 0 ? product.first : TileUpdate<T>{TileUpdate<T>::add, T(0), T(0)};
      const bool last = pc + kc == product.k;
      const std::size_t rows = i_end - i_begin, tiles_m = ceil_div(rows, mr);
      // With a single tile of rows (predict on a few rows) each micro-panel of B serves one
      // tile: it is packed into the same L1-sized slot just before its use, rather than the
      // whole kc x nc block first, which would stream B out and back through the caches
      // (one row against a packed 256 x 784 W, float32: 36 -> 16 us). The same kernel sees
      // the same packed numbers, so C is bitwise the same.
      const bool panel_at_a_time = tiles_m == 1;
      auto pack_panel = [&](std::size_t jt, T* dst) {
        pack_b(kernel, dst, product.b_at(pc, jc + jt * nr), product.rs_b, product.cs_b,
               product.b_idx(pc), kc, std::min(nr, nc - jt * nr), nr);
      };
      if (!panel_at_a_time)
        for (std::size_t jt = 0; jt < tiles_n; ++jt) pack_panel(jt, packed_b + jt * kc * nr);
      // Tiles as even as the kernel heights allow (15 rows: 8 + 7, not 14 + 1): a short
      // tile costs nearly as much per k as a full one. No result changes (see MicroKernel).
      for (std::size_t t = 0, i0 = i_begin, tile_rows = 0; t < tiles_m; ++t, i0 += tile_rows) {
        tile_rows = rows / tiles_m + (t < rows % tiles_m ? 1 : 0);
        const T* a_rows[kMaxMr];
        if (in_place)
          for (std::size_t r = 0; r < tile_rows; ++r) a_rows[r] = product.a_row(i0 + r) + pc;
        else
          pack_a(kernel, packed_a, product.a_at(i0, pc), product.rs_a, product.cs_a,
                 product.a_idx(i0), tile_rows, kc);
        for (std::size_t jt = 0; jt < tiles_n; ++jt) {
          const std::size_t j0 = jc + jt * nr, n_valid = std::min(nr, jc + nc - j0);
          T* b_panel = panel_at_a_time ? packed_b : packed_b + jt * kc * nr;
          if (panel_at_a_time) pack_panel(jt, b_panel);
          T* c_tile = product.c + as_offset(i0) * product.ldc + as_offset(j0);
          if (in_place)
            kernel.run_rows[tile_rows - 1](kc, a_rows, b_panel, c_tile, product.ldc, tile_rows,
                                           n_valid, tile_update);
          else
            kernel.run[tile_rows - 1](kc, packed_a, b_panel, c_tile, product.ldc, tile_rows, n_valid,
                                      tile_update);
        }
        if (last) epilogue(i0, i0 + tile_rows, jc, jc + nc);
      }
    }
  }
}

// The same block of C as compute_block, by the unpacked dot-product kernel.
template <class T, class Epilogue>
void compute_block_dot(const Product<T>& product, std::size_t i_begin, std::size_t i_end,
                       std::size_t j_begin, std::size_t j_end, const Epilogue& epilogue) {
  const GemmKernel<T>& kernel = *product.kernel;
  for (std::size_t i0 = i_begin; i0 < i_end; i0 += kernel.dot_mr) {
    const std::size_t tile_rows = std::min(kernel.dot_mr, i_end - i0);
    for (std::size_t j0 = j_begin; j0 < j_end; j0 += kernel.dot_nr)
      kernel.dot[tile_rows - 1](product.k, product.a_at(i0, 0), product.rs_a, product.a_idx(i0),
                                product.b + as_offset(j0) * product.cs_b, product.cs_b,
                                product.c + as_offset(i0) * product.ldc + as_offset(j0),
                                product.ldc, tile_rows, std::min(kernel.dot_nr, j_end - j0),
                                product.first.mode == TileUpdate<T>::overwrite);
    epilogue(i0, i0 + tile_rows, j_begin, j_end);
  }
}

// B up to this size (W in X Wᵀ: n x k, contiguous along k) is read unpacked by the dot
// kernel: packing W costs as much as the product at small m (one row against mid's W(0),
// 256 x 784: 16 us packed, 7 unpacked in float32; 36 and 12 in float64), and at mid's
// batch of 64 the two run alike (A/B in separate processes, 2026-12-07: mid float32
// 101-123 k samples/s unpacked against 85-110 k packed, float64 54-65 k against 46-64 k).
// The choice depends on n, k and the layout, never on m.
constexpr std::size_t kDotMaxBBytes = 2048 * 1024;
// ... and W's rows at least this long: each element of the dot kernel's C ends in a sum
// across vector lanes, which dominates when k is short (k = 13, 133 rows x 100 units,
// float64: 33 us unpacked, 18 packed; the seed case's k = 30 layers, float64: 355 k
// against 385 k samples/s, float32 alike).
constexpr std::size_t kDotMinK = 32;

// Below this many multiply-adds per thread, sharing out blocks costs more than it saves.
// (The seed case's first layer, 10 x 784 x 30 = 235k, gains a fifth of its step from two.)
constexpr double kMinMacsPerThread = 1 << 16;
// When C is split along rows, blocks are about this tall or more (each one packs all of
// B again), and at least one per thread.
constexpr std::size_t kMinBlockRows = 256;

// How gemm_driver shares one product out among threads: the blocks of C (rows
// [i0, i1) x columns [j0, j1) of block b, see block()) and one slot of packed B and one of
// packed A per thread (none on the dot path).
template <class T>
struct Plan {
  Product<T> product;
  bool dot;  // the unpacked dot kernel (compute_block_dot), not compute_block
  std::size_t threads, blocks_m, blocks_n, rows_per_block, cols_per_block;
  std::size_t b_slot, a_slot;  // elements, each a multiple of 64 bytes

  std::size_t blocks() const { return blocks_m * blocks_n; }
  void block(std::size_t b, std::size_t& i0, std::size_t& i1, std::size_t& j0, std::size_t& j1) const {
    i0 = b / blocks_n * rows_per_block;
    j0 = b % blocks_n * cols_per_block;
    i1 = std::min(product.m, i0 + rows_per_block);
    j1 = std::min(product.n, j0 + cols_per_block);
  }
};

// The plan of gemm_driver's product (m, n, k >= 1; the arguments as there).
template <class T>
Plan<T> plan_product(T* c, std::ptrdiff_t ldc, const T* a, std::ptrdiff_t rs_a, std::ptrdiff_t cs_a,
                     const T* b, std::ptrdiff_t rs_b, std::ptrdiff_t cs_b, std::size_t m,
                     std::size_t n, std::size_t k, TileUpdate<T> first,
                     const std::int64_t* a_rows, const std::int64_t* b_rows, bool c_is_weights) {
  const GemmKernel<T>& kernel = active_kernel<T>();
  // k is cut into equal blocks of at most kernel.kc: this depends on k alone (never on m,
  // n or the threads), so every element still sees the same additions.
  const std::size_t kc_even = ceil_div(k, ceil_div(k, kernel.kc));
  // A row-major A is read in place, unless its rows are a multiple of 4 KiB apart: they
  // then share one L1 set (4 KiB per way on current x86 cores), and 14 of them overflow
  // its 8-12 ways (big's 1024-unit layers: 12% slower in place). Packing or not changes no
  // result.
  const bool a_in_place = kernel.run_rows[0] != nullptr && cs_a == 1 &&
                          (static_cast<std::size_t>(std::abs(rs_a)) * sizeof(T)) % 4096 != 0;
  const Product<T> product{c, ldc, a, rs_a, cs_a, b, rs_b, cs_b, m, n, k, first, a_rows, b_rows,
                           &kernel, kc_even, kernel.nc, a_in_place};
  const bool dot = kernel.dot[0] != nullptr && first.mode != TileUpdate<T>::sgd && cs_a == 1 && rs_b == 1 &&
                   n * k * sizeof(T) <= kDotMaxBBytes && k >= kDotMinK;
  const std::size_t mr = dot ? kernel.dot_mr : kernel.mr, nr = dot ? kernel.dot_nr : kernel.nr;
  const std::size_t tiles_m = ceil_div(m, mr), tiles_n = ceil_div(n, nr);

  // Blocks: rows x columns, in whole micro-tiles.
  double macs = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  std::size_t threads = static_cast<std::size_t>(
      std::min<double>(num_threads(), std::max(1.0, macs / kMinMacsPerThread)));
  // Columns first: each thread then packs only its share of B, where a split along rows
  // makes every thread pack all of B. Rows when that balances the tiles better (few
  // columns, or a batch of many rows), in blocks of kMinBlockRows or more.
  const bool weight_rows = first.mode == TileUpdate<T>::sgd || c_is_weights;
  std::size_t blocks_m = 1, blocks_n = 1;
  if (threads > 1) {
    const std::size_t row_load = ceil_div(tiles_m, threads) * tiles_n;
    const std::size_t col_load = tiles_m * ceil_div(tiles_n, threads);
    // The SGD step of W (C = W) splits W along its rows, as the forward product X Wᵀ
    // (columns of Z = rows of W) does: each core then updates the part of W it read in
    // the forward pass and still holds in its L2, instead of W crossing between the cores
    // twice per step (mid, 2 threads: about 10% more samples/s).
    // The dot path packs nothing, so with many rows (predict on a large set) a split along
    // rows is free and has each core stream only its share of A from memory, where a
    // column split streams all of A through both cores.
    const bool many_rows = dot && m >= threads * kMinBlockRows;
    if (col_load <= row_load && !weight_rows && !many_rows) {
      blocks_n = std::min(tiles_n, threads);
    } else {
      blocks_m = std::min(tiles_m, threads * std::max<std::size_t>(1, m / (threads * 2 * kMinBlockRows)));
    }
    threads = std::min(threads, blocks_m * blocks_n);
  }
  // Rows of W are cut evenly, not in whole tiles (a block may end in a short tile; its
  // results are the same): this balances the threads better and matches where the
  // forward product cut W.
  const std::size_t rows_per_block = weight_rows ? ceil_div(m, blocks_m) : ceil_div(tiles_m, blocks_m) * mr;
  const std::size_t cols_per_block = ceil_div(tiles_n, blocks_n) * nr;
  blocks_m = ceil_div(m, rows_per_block);
  blocks_n = ceil_div(n, cols_per_block);

  const std::size_t kc = std::min(k, product.kc_max), align = 64 / sizeof(T);
  const std::size_t b_slot = dot ? 0 : ceil_div(kc * std::min(cols_per_block, product.nc_max), align) * align;
  const std::size_t a_slot = dot ? 0 : ceil_div(kc * mr, align) * align;
  return {product, dot, threads, blocks_m, blocks_n, rows_per_block, cols_per_block, b_slot, a_slot};
}

// The packing buffers of all the plan's threads (null on the dot path).
template <class T>
T* packing_slots(const Plan<T>& plan) {
  return plan.dot ? nullptr : tls_packed.get<T>(plan.threads * (plan.b_slot + plan.a_slot));
}

// Block b of the plan, on the thread of `slot` (see parallel_blocks).
template <class T, class Epilogue>
void run_block(const Plan<T>& plan, T* slots, std::size_t b, std::size_t slot, const Epilogue& epilogue) {
  std::size_t i0, i1, j0, j1;
  plan.block(b, i0, i1, j0, j1);
  if (plan.dot) {
    compute_block_dot(plan.product, i0, i1, j0, j1, epilogue);
  } else {
    T* packed_b = slots + slot * (plan.b_slot + plan.a_slot);
    compute_block(plan.product, i0, i1, j0, j1, packed_b, packed_b + plan.b_slot, epilogue);
  }
}

// C = A B, C += A B or the SGD step of C with the gradient A B, as `first` says (sgd needs
// 1 <= k <= the kernel's kc: one pass over the reduction), then epilogue(i0, i1, j0, j1)
// on each finished block of C, called once per element, from the thread that computed it.
// a_rows / b_rows (or null): the rows of a row-major A / B by index, see gemm.h.
//
// Threads take independent blocks of C (rows, or columns when there are few rows), each
// with its own packing buffers, from one queue (parallel.h): a thread that the OS preempts
// or wakes late delays only the blocks it took. The blocks cannot change any result.
template <class T, class Epilogue>
void gemm_driver(T* c, std::ptrdiff_t ldc, const T* a, std::ptrdiff_t rs_a, std::ptrdiff_t cs_a,
                 const T* b, std::ptrdiff_t rs_b, std::ptrdiff_t cs_b, std::size_t m,
                 std::size_t n, std::size_t k, TileUpdate<T> first, const Epilogue& epilogue,
                 const std::int64_t* a_rows = nullptr, const std::int64_t* b_rows = nullptr,
                 bool c_is_weights = false) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (first.mode == TileUpdate<T>::overwrite)
      for (std::size_t i = 0; i < m; ++i) std::fill_n(c + as_offset(i) * ldc, n, T(0));
    epilogue(0, m, 0, n);
    return;
  }
  const Plan<T> plan = plan_product(c, ldc, a, rs_a, cs_a, b, rs_b, cs_b, m, n, k, first, a_rows,
                                    b_rows, c_is_weights);
  T* slots = packing_slots(plan);
  parallel_blocks(plan.blocks(), plan.threads, [&](std::size_t block, std::size_t slot) {
    run_block(plan, slots, block, slot, epilogue);
  });
}

// The epilogue of linear_forward_rows on Z (n, m), A (n, m): Z += bias, A = f(Z), then the
// dropout pass (when not null) over A.
template <class T>
struct BiasAndActivation {
  T* z;
  T* a;
  const T* bias;
  std::ptrdiff_t s_bias;
  std::size_t m;
  Act act;
  T param;
  const DropoutPass<T>* dropout;

  void operator()(std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) const {
    for (std::size_t i = i0; i < i1; ++i) {
      T* z_row = z + i * m;
      for (std::size_t j = j0; j < j1; ++j) z_row[j] += bias[as_offset(j) * s_bias];
    }
    // Whole rows are one contiguous run: one call keeps narrow layers (30 units) in full
    // vectors instead of a scalar tail per row. Element-wise, so the values are the same.
    if (j0 == 0 && j1 == m)
      activation_forward(a + i0 * m, z + i0 * m, (i1 - i0) * m, act, param);
    else
      for (std::size_t i = i0; i < i1; ++i)
        activation_forward(a + i * m + j0, z + i * m + j0, j1 - j0, act, param);
    if (dropout != nullptr) dropout_forward(*dropout, a, i0, i1, j0, j1, m);
  }
};

}  // namespace

template <class T>
void gemm(T* c, std::ptrdiff_t ldc, const T* a, std::ptrdiff_t rs_a, std::ptrdiff_t cs_a,
          const T* b, std::ptrdiff_t rs_b, std::ptrdiff_t cs_b, std::size_t m, std::size_t n,
          std::size_t k, bool accumulate) {
  gemm_driver(c, ldc, a, rs_a, cs_a, b, rs_b, cs_b, m, n, k, stored<T>(accumulate), NoEpilogue{});
}

template <class T>
void linear_forward(T* z, T* a, const T* x, std::ptrdiff_t rs_x, std::ptrdiff_t cs_x,
                    const T* w, std::ptrdiff_t rs_w, std::ptrdiff_t cs_w, const T* bias,
                    std::ptrdiff_t s_bias, std::size_t n, std::size_t k, std::size_t m, Act act,
                    T param) {
  linear_forward_rows(z, a, x, rs_x, cs_x, static_cast<const std::int64_t*>(nullptr), w, rs_w,
                      cs_w, bias, s_bias, n, k, m, act, param);
}

template <class T>
void linear_forward_rows(T* z, T* a, const T* x, std::ptrdiff_t rs_x, std::ptrdiff_t cs_x,
                         const std::int64_t* x_rows, const T* w, std::ptrdiff_t rs_w,
                         std::ptrdiff_t cs_w, const T* bias, std::ptrdiff_t s_bias, std::size_t n,
                         std::size_t k, std::size_t m, Act act, T param,
                         const DropoutPass<T>* dropout) {
  // Z = X Wᵀ: B = Wᵀ is W read with its strides swapped.
  gemm_driver(z, as_offset(m), x, rs_x, cs_x, w, cs_w, rs_w, n, m, k, stored<T>(false),
              BiasAndActivation<T>{z, a, bias, s_bias, m, act, param, dropout}, x_rows);
}

template <class T>
void linear_backward(T* dw, T* db, T* delta_prev, const T* delta, std::ptrdiff_t rs_d,
                     std::ptrdiff_t cs_d, const T* x, std::ptrdiff_t rs_x, std::ptrdiff_t cs_x,
                     const T* w, std::ptrdiff_t rs_w, std::ptrdiff_t cs_w, const T* z_prev,
                     const T* a_prev, std::size_t n, std::size_t k, std::size_t m, Act act_prev,
                     T param_prev, bool accumulate) {
  linear_backward_masked(dw, db, delta_prev, delta, rs_d, cs_d, x, rs_x, cs_x, w, rs_w, cs_w, z_prev,
                         a_prev, n, k, m, act_prev, param_prev, accumulate,
                         static_cast<const T*>(nullptr));
}

template <class T>
void linear_backward_masked(T* dw, T* db, T* delta_prev, const T* delta, std::ptrdiff_t rs_d,
                            std::ptrdiff_t cs_d, const T* x, std::ptrdiff_t rs_x,
                            std::ptrdiff_t cs_x, const T* w, std::ptrdiff_t rs_w,
                            std::ptrdiff_t cs_w, const T* z_prev, const T* a_prev, std::size_t n,
                            std::size_t k, std::size_t m, Act act_prev, T param_prev,
                            bool accumulate, const T* mask_prev) {
  // dW = δᵀ X: A = δᵀ is δ read with its strides swapped; the reduction runs over the batch.
  if (dw != nullptr)
    gemm_driver(dw, as_offset(k), delta, cs_d, rs_d, x, rs_x, cs_x, m, k, n, stored<T>(accumulate),
                NoEpilogue{});
  if (db != nullptr) {
    // db: rows added in order, so the sum does not depend on the thread count.
    if (!accumulate) std::fill_n(db, m, T(0));
    for (std::size_t i = 0; i < n; ++i) {
      const T* row = delta + as_offset(i) * rs_d;
      for (std::size_t j = 0; j < m; ++j) db[j] += row[as_offset(j) * cs_d];
    }
  }

  if (delta_prev == nullptr) return;
  // δ_prev = (δ W) ⊙ f'(z_prev), the derivative applied to each finished block of rows.
  auto times_derivative = [&](std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) {
    if (mask_prev != nullptr) {  // (δ W) ⊙ f'(z_prev) ⊙ mask; whole rows in one run
      const bool whole_rows = j0 == 0 && j1 == k;
      for (std::size_t i = i0; i < (whole_rows ? i0 + 1 : i1); ++i) {
        const std::size_t at = i * k + j0;
        activation_backward_masked(delta_prev + at, z_prev ? z_prev + at : nullptr,
                                   a_prev ? a_prev + at : nullptr, mask_prev + at,
                                   whole_rows ? (i1 - i0) * k : j1 - j0, act_prev, param_prev);
      }
      return;
    }
    if (act_prev == Act::identity) return;
    if (j0 == 0 && j1 == k) {  // whole rows: one contiguous run, as in linear_forward
      activation_backward(delta_prev + i0 * k, z_prev + i0 * k, a_prev + i0 * k, (i1 - i0) * k,
                          act_prev, param_prev);
      return;
    }
    for (std::size_t i = i0; i < i1; ++i)
      activation_backward(delta_prev + i * k + j0, z_prev + i * k + j0, a_prev + i * k + j0,
                          j1 - j0, act_prev, param_prev);
  };
  gemm_driver(delta_prev, as_offset(k), delta, rs_d, cs_d, w, rs_w, cs_w, n, k, m, stored<T>(false),
              times_derivative);
}

template <class T>
void weight_sgd_step(T* w, T* dw, const T* delta, std::ptrdiff_t rs_d, std::ptrdiff_t cs_d,
                     const T* x, std::ptrdiff_t rs_x, std::ptrdiff_t cs_x,
                     const std::int64_t* x_rows, std::size_t n, std::size_t k, std::size_t m, T lr,
                     T weight_decay) {
  if (n == 0 || n > active_kernel<T>().kc) {
    gemm_driver(dw, as_offset(k), delta, cs_d, rs_d, x, rs_x, cs_x, m, k, n, stored<T>(false), NoEpilogue{},
                nullptr, x_rows);
    sgd_update(w, dw, m * k, lr, weight_decay);
    return;
  }
  gemm_driver(w, as_offset(k), delta, cs_d, rs_d, x, rs_x, cs_x, m, k, n,
              TileUpdate<T>{TileUpdate<T>::sgd, lr, weight_decay}, NoEpilogue{}, nullptr, x_rows);
}

template <class T>
void weight_sgd_step_then_forward(T* w, T* dw, const T* delta, std::ptrdiff_t rs_d,
                                  std::ptrdiff_t cs_d, const T* x, std::ptrdiff_t rs_x,
                                  const std::int64_t* x_rows, std::size_t n, std::size_t k,
                                  std::size_t m, T lr, T weight_decay, T* z, T* a,
                                  const T* x_next, const std::int64_t* next_rows,
                                  std::size_t n_next, const T* bias, Act act, T param,
                                  const WarmUp* warm_up) {
  const auto one_after_the_other = [&] {
    weight_sgd_step(w, dw, delta, rs_d, cs_d, x, rs_x, 1, x_rows, n, k, m, lr, weight_decay);
    linear_forward_rows(z, a, x_next, rs_x, 1, next_rows, w, as_offset(k), 1, bias, 1, n_next, k,
                        m, act, param);
  };
  if (n == 0 || n > active_kernel<T>().kc || n_next == 0 || k == 0 || m == 0)
    return one_after_the_other();  // the step goes through dW, or a product is empty
  // The plans weight_sgd_step and linear_forward_rows would make: the step's blocks are
  // whole rows of W (blocks_n == 1), and the product of the dot kernel needs no packing,
  // so the block of Z's columns that a block of W's rows gives can follow it on its thread.
  const Plan<T> step = plan_product(w, as_offset(k), delta, cs_d, rs_d, x, rs_x, 1, m, k, n,
                                    TileUpdate<T>{TileUpdate<T>::sgd, lr, weight_decay}, nullptr,
                                    x_rows, false);
  const Plan<T> forward = plan_product(z, as_offset(m), x_next, rs_x, 1, w, 1, as_offset(k), n_next,
                                       m, k, stored<T>(false), next_rows, nullptr, false);
  if (!forward.dot || step.blocks_n != 1) return one_after_the_other();
  const BiasAndActivation<T> epilogue{z, a, bias, 1, m, act, param, nullptr};
  T* slots = packing_slots(step);
  parallel_blocks(step.blocks(), step.threads, [&](std::size_t block, std::size_t slot) {
    run_block(step, slots, block, slot, NoEpilogue{});
    std::size_t i0, i1, j0, j1;  // rows [i0, i1) of W, just stepped: columns [i0, i1) of Z
    step.block(block, i0, i1, j0, j1);
    compute_block_dot(forward.product, 0, n_next, i0, i1, epilogue);
  }, warm_up);
}

template <class T>
void weight_gradient_blocks(T* dw, const T* delta, std::ptrdiff_t rs_d, std::ptrdiff_t cs_d,
                            const T* x, std::ptrdiff_t rs_x, std::ptrdiff_t cs_x,
                            const std::int64_t* x_rows, std::size_t n, std::size_t k,
                            std::size_t m, BlockCallback then, const void* context) {
  auto call_then = [&](std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) {
    then(context, i0, i1, j0, j1);
  };
  gemm_driver(dw, as_offset(k), delta, cs_d, rs_d, x, rs_x, cs_x, m, k, n, stored<T>(false), call_then,
              nullptr, x_rows, true);
}

#define FASTMLP_INSTANTIATE(T)                                                                 \
  template void weight_gradient_blocks<T>(T*, const T*, std::ptrdiff_t, std::ptrdiff_t,       \
                                          const T*, std::ptrdiff_t, std::ptrdiff_t,           \
                                          const std::int64_t*, std::size_t, std::size_t,      \
                                          std::size_t, BlockCallback, const void*);           \
  template void gemm<T>(T*, std::ptrdiff_t, const T*, std::ptrdiff_t, std::ptrdiff_t, const T*, \
                        std::ptrdiff_t, std::ptrdiff_t, std::size_t, std::size_t, std::size_t, \
                        bool);                                                                 \
  template void linear_forward<T>(T*, T*, const T*, std::ptrdiff_t, std::ptrdiff_t, const T*,  \
                                  std::ptrdiff_t, std::ptrdiff_t, const T*, std::ptrdiff_t,    \
                                  std::size_t, std::size_t, std::size_t, Act, T);              \
  template void linear_backward<T>(T*, T*, T*, const T*, std::ptrdiff_t, std::ptrdiff_t,       \
                                   const T*, std::ptrdiff_t, std::ptrdiff_t, const T*,         \
                                   std::ptrdiff_t, std::ptrdiff_t, const T*, const T*,         \
                                   std::size_t, std::size_t, std::size_t, Act, T, bool);      \
  template void linear_backward_masked<T>(T*, T*, T*, const T*, std::ptrdiff_t, std::ptrdiff_t, \
                                          const T*, std::ptrdiff_t, std::ptrdiff_t, const T*,  \
                                          std::ptrdiff_t, std::ptrdiff_t, const T*, const T*,  \
                                          std::size_t, std::size_t, std::size_t, Act, T, bool, \
                                          const T*);                                          \
  template void weight_sgd_step<T>(T*, T*, const T*, std::ptrdiff_t, std::ptrdiff_t, const T*, \
                                   std::ptrdiff_t, std::ptrdiff_t, const std::int64_t*,       \
                                   std::size_t, std::size_t, std::size_t, T, T);              \
  template void weight_sgd_step_then_forward<T>(                                              \
      T*, T*, const T*, std::ptrdiff_t, std::ptrdiff_t, const T*, std::ptrdiff_t,             \
      const std::int64_t*, std::size_t, std::size_t, std::size_t, T, T, T*, T*, const T*,     \
      const std::int64_t*, std::size_t, const T*, Act, T, const WarmUp*);                     \
  template void linear_forward_rows<T>(T*, T*, const T*, std::ptrdiff_t, std::ptrdiff_t,        \
                                       const std::int64_t*, const T*, std::ptrdiff_t,          \
                                       std::ptrdiff_t, const T*, std::ptrdiff_t, std::size_t,  \
                                       std::size_t, std::size_t, Act, T, const DropoutPass<T>*);
FASTMLP_INSTANTIATE(float)
FASTMLP_INSTANTIATE(double)
#undef FASTMLP_INSTANTIATE

}  // namespace fastmlp
