// Matrix products (GEMM) and the fused layer kernels built on them.
// Twins: python/fastmlp/reference/gemm.py (matmul, linear_forward, linear_backward).
//
// BLIS-style: B is packed into kc x nc blocks of NR-wide micro-panels, A into MR x kc
// micro-panels (a row-major A serving few tiles is read in place instead), and a
// register-blocked micro-kernel computes each tile of C. Operands are
// read through (row, col) strides, so transposed, Fortran-order, strided and
// negative-stride inputs need no copy. Packing buffers are thread-local and only grow: a
// steady-state call allocates nothing. Small X Wᵀ products (A row-major, B = Wᵀ with W
// row-major, at most 2 MiB, with k >= 32) skip packing and use a dot-product kernel instead.
//
// Determinism: each element of C is computed by a sequence of operations that depends on
// the ISA, the dtype, k, n and the operands' layout, never on m or on the thread count
// (k is cut into equal blocks by k alone, edge tiles run the same chain of multiply-adds,
// threads split C along rows or columns, never along k). So results are bitwise
// identical for any number of threads, and row i of C does not depend on the other rows
// of the batch.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/activation.h"
#include "kernels/dropout.h"
#include "kernels/parallel.h"

namespace fastmlp {

// A (m,k) strides (rs_a, cs_a), B (k,n) strides (rs_b, cs_b) -> C (m,n) row stride ldc.
// C = A B, or C += A B when `accumulate`. Strides are in elements and may be negative
// or zero. k == 0 gives C = 0 (or leaves C unchanged when accumulating).
template <class T>
void gemm(T* c, std::ptrdiff_t ldc, const T* a, std::ptrdiff_t rs_a, std::ptrdiff_t cs_a,
          const T* b, std::ptrdiff_t rs_b, std::ptrdiff_t cs_b, std::size_t m, std::size_t n,
          std::size_t k, bool accumulate);

// X (n,k), W (m,k), bias (m) -> Z (n,m) = X Wᵀ + bias, A (n,m) = f(Z); Z and A have row
// stride m. The bias and the activation are applied to each block of rows while it is
// still in cache. `a` may equal `z` (then only f(Z) is kept).
template <class T>
void linear_forward(T* z, T* a, const T* x, std::ptrdiff_t rs_x, std::ptrdiff_t cs_x,
                    const T* w, std::ptrdiff_t rs_w, std::ptrdiff_t cs_w, const T* bias,
                    std::ptrdiff_t s_bias, std::size_t n, std::size_t k, std::size_t m, Act act,
                    T param);

// delta (n,m) = dJ/dZ, X (n,k), W (m,k), z_prev and a_prev (n,k) row stride k
//   -> dW (m,k) = deltaᵀ X, db (m) = sum of delta's rows (row 0 first), both overwritten
//      or, when `accumulate`, added to;
//      delta_prev (n,k) = (delta W) * f'(z_prev) (skipped when delta_prev is null; no
//      multiply for Act::identity, and then z_prev / a_prev may be null).
// dW is skipped when dw is null (weight_sgd_step does the weight step then), db when db is.
template <class T>
void linear_backward(T* dw, T* db, T* delta_prev, const T* delta, std::ptrdiff_t rs_d,
                     std::ptrdiff_t cs_d, const T* x, std::ptrdiff_t rs_x, std::ptrdiff_t cs_x,
                     const T* w, std::ptrdiff_t rs_w, std::ptrdiff_t cs_w, const T* z_prev,
                     const T* a_prev, std::size_t n, std::size_t k, std::size_t m, Act act_prev,
                     T param_prev, bool accumulate);

// linear_backward with delta_prev multiplied by mask_prev (n,k), the dropout mask of the
// previous layer's output, in the same epilogue (activation_backward_masked).
template <class T>
void linear_backward_masked(T* dw, T* db, T* delta_prev, const T* delta, std::ptrdiff_t rs_d,
                            std::ptrdiff_t cs_d, const T* x, std::ptrdiff_t rs_x,
                            std::ptrdiff_t cs_x, const T* w, std::ptrdiff_t rs_w,
                            std::ptrdiff_t cs_w, const T* z_prev, const T* a_prev, std::size_t n,
                            std::size_t k, std::size_t m, Act act_prev, T param_prev,
                            bool accumulate, const T* mask_prev);

// delta (n,m), X (n,k), W (m,k) row-major -> W ← W − lr (δᵀX + weight_decay W): the weight
// step of linear_backward followed by sgd_update, with the same operations in the same
// order (so W ends bitwise the same), but the gradient dW = δᵀX is applied to W tile by
// tile while still in registers instead of being stored and read back. When the batch is
// too long for one pass over the reduction (or empty), dw (m,k) receives dW on the way.
// x_rows (n) or null: row i of the batch is row x_rows[i] of a row-major X (cs_x == 1).
template <class T>
void weight_sgd_step(T* w, T* dw, const T* delta, std::ptrdiff_t rs_d, std::ptrdiff_t cs_d,
                     const T* x, std::ptrdiff_t rs_x, std::ptrdiff_t cs_x,
                     const std::int64_t* x_rows, std::size_t n, std::size_t k, std::size_t m, T lr,
                     T weight_decay);

// weight_sgd_step on a batch (cs_x == 1), then linear_forward_rows of the next batch of the
// same X (rows x_next, or next_rows[i] of it; n_next rows) with the stepped W: Z (n_next, m)
// = X_next Wᵀ + bias, A = f(Z) (bias contiguous, no dropout), bitwise the same as the two
// calls. When the step updates W in place (1 <= n <= the kernel's kc) and the product
// takes the dot kernel, both run in one parallel region instead of two: each thread steps
// its block of W's rows and at once computes the columns of Z those rows give, while they
// are in its cache, then their bias and f. Otherwise the two calls run one after the other.
// warm_up (or null): what the region's workers read afterwards (see WarmUp).
template <class T>
void weight_sgd_step_then_forward(T* w, T* dw, const T* delta, std::ptrdiff_t rs_d,
                                  std::ptrdiff_t cs_d, const T* x, std::ptrdiff_t rs_x,
                                  const std::int64_t* x_rows, std::size_t n, std::size_t k,
                                  std::size_t m, T lr, T weight_decay, T* z, T* a,
                                  const T* x_next, const std::int64_t* next_rows,
                                  std::size_t n_next, const T* bias, Act act, T param,
                                  const WarmUp* warm_up = nullptr);

// Called on a finished block of a product's C: rows [i0, i1), columns [j0, j1).
using BlockCallback = void (*)(const void* context, std::size_t i0, std::size_t i1,
                               std::size_t j0, std::size_t j1);

// The weight gradient of linear_backward, dW = δᵀX (delta (n,m), X (n,k) row-major; x_rows
// as in weight_sgd_step) into dw (m,k), with then(context, ...) called on each finished
// block of it from the thread that computed it, while the block is still in cache: an
// optimizer's step of W there reads dW once, on the product's threads. The threads split
// W by rows, as weight_sgd_step does. dW is the same as linear_backward's, bit for bit.
template <class T>
void weight_gradient_blocks(T* dw, const T* delta, std::ptrdiff_t rs_d, std::ptrdiff_t cs_d,
                            const T* x, std::ptrdiff_t rs_x, std::ptrdiff_t cs_x,
                            const std::int64_t* x_rows, std::size_t n, std::size_t k,
                            std::size_t m, BlockCallback then, const void* context);

// linear_forward on the batch whose row i is row x_rows[i] of a row-major X (cs_x == 1;
// x_rows null: rows 0 .. n-1): a shuffled batch read where it lies, without a copy. With
// `dropout`, its pass (dropout.h) over A runs in the same epilogue, after f.
template <class T>
void linear_forward_rows(T* z, T* a, const T* x, std::ptrdiff_t rs_x, std::ptrdiff_t cs_x,
                         const std::int64_t* x_rows, const T* w, std::ptrdiff_t rs_w,
                         std::ptrdiff_t cs_w, const T* bias, std::ptrdiff_t s_bias, std::size_t n,
                         std::size_t k, std::size_t m, Act act, T param,
                         const DropoutPass<T>* dropout = nullptr);

// ---- Internal: the micro-kernels, one set per ISA (gemm_avx2.cpp, gemm_avx512.cpp). ----

// What a micro-kernel does with its tile P of products and C: C = P, C += P, or the SGD
// step of sgd_update with P as the gradient, C ← C − lr (P + weight_decay C).
template <class T>
struct TileUpdate {
  enum Mode { overwrite, add, sgd } mode;
  T lr, weight_decay;
};

// a: packed MR x kc micro-panel (a[p*MR + i]), b: packed kc x NR micro-panel
// (b[p*NR + j]), both zero-padded and 64-byte aligned -> the top-left m x n corner of
// the MR x NR tile at c (row stride ldc), updated with P = a b as `up` says.
// P is accumulated over p = 0, 1, ..., kc-1 from zero, then applied to C.
template <class T>
using MicroKernel = void (*)(std::size_t kc, const T* a, const T* b, T* c, std::ptrdiff_t ldc,
                             std::size_t m, std::size_t n, const TileUpdate<T>& up);

// The same tile as MicroKernel with A read where it lies: row i of the m-row tile starts
// at rows[i] and is contiguous along p (a row-major A, its rows possibly by index). The
// products are the same chains of operations, so C is bitwise the same as when A is
// packed; what is saved is packing A, which each thread would otherwise do for every
// block of C it computes (in the forward product X Wᵀ, all of the batch's X).
template <class T>
using MicroKernelRows = void (*)(std::size_t kc, const T* const* rows, const T* b, T* c,
                                 std::ptrdiff_t ldc, std::size_t m, std::size_t n,
                                 const TileUpdate<T>& up);

// A micro-kernel family with its register tile (mr x nr) and cache blocking: kc x nc
// blocks of B are packed (k is cut into blocks of at most kc). run[r - 1] computes
// r-row tiles, r = 1 .. mr: edge rows cost no wasted work, and since every element is
// the same chain of operations whatever the tile height, results do not change.
constexpr std::size_t kMaxMr = 16;

// Rows given by index: where a kernel below takes `idx`, its line / row r is at
// src + idx[r] * ld instead of src + r * ld (idx null: in order). A shuffled batch is
// read where it lies in X, not copied into a batch first.

// src (lines, kc): line r at src + r*ld, contiguous along p -> dst (kc, width):
// dst[p*width + r] = src[r*ld + p] for r < lines, 0 for lines <= r < width.
// Packing is a transpose when A is row-major or B column-major (W in X Wᵀ), so each ISA
// brings its own, done in registers.
template <class T>
using PackTransposed = void (*)(T* dst, const T* src, std::ptrdiff_t ld, const std::int64_t* idx,
                                std::size_t lines, std::size_t width, std::size_t kc);

// The product without packing when A is row-major and B column-major (X Wᵀ) and small:
// a (m rows, row stride lda), b (dot_nr columns, column stride ldb), both contiguous
// along k -> the m x n corner of C = a b (or C += a b when not `overwrite`). Each
// element is a sum of vector-lane partial sums (lane l takes p = l, l + width, ...) added
// in a fixed order at the end: its own order, fixed per ISA and dtype, that does not
// depend on m (rows past m, columns past n repeat the last ones and are not stored).
template <class T>
using DotKernel = void (*)(std::size_t k, const T* a, std::ptrdiff_t lda, const std::int64_t* idx,
                           const T* b, std::ptrdiff_t ldb, T* c, std::ptrdiff_t ldc, std::size_t m,
                           std::size_t n, bool overwrite);

// src (kc, n_valid) row stride ld, contiguous along j -> dst (kc, width):
// dst[p*width + j] = src[p*ld + j] for j < n_valid, 0 for n_valid <= j < width
// (row-major B: short copies that are not worth a memcpy call each).
template <class T>
using PackRows = void (*)(T* dst, const T* src, std::ptrdiff_t ld, const std::int64_t* idx,
                          std::size_t kc, std::size_t n_valid, std::size_t width);

// dot[r - 1] computes r-row tiles, r = 1 .. dot_mr, like run: a batch of 10 rows costs
// 4 + 4 + 2 rows of work, not 12.
constexpr std::size_t kMaxDotMr = 8;

template <class T>
struct GemmKernel {
  MicroKernel<T> run[kMaxMr];
  MicroKernelRows<T> run_rows[kMaxMr];  // run_rows[0] null: A is always packed
  PackTransposed<T> pack_transposed;
  PackRows<T> pack_rows;
  std::size_t mr, nr, kc, nc;
  DotKernel<T> dot[kMaxDotMr];  // dot[0] null: no unpacked path
  std::size_t dot_mr, dot_nr;
};

namespace isa_kernels {
#ifdef FASTMLP_X86
extern const GemmKernel<float> avx2_f32;
extern const GemmKernel<double> avx2_f64;
extern const GemmKernel<float> avx512_f32;
extern const GemmKernel<double> avx512_f64;
#endif
}  // namespace isa_kernels

}  // namespace fastmlp
