// The GEMM driver (packing, cache blocking, threads, ISA dispatch), the portable
// micro-kernel, and the fused layer kernels. See gemm.h for the design.
#include "kernels/gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

#include "kernels/cpu.h"

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

// Both live with the calling thread and are allocated before the threads fork (so no
// allocation can fail inside the parallel region): packed B is shared by the threads,
// packed A has one micro-panel slot per thread.
thread_local ScratchBuffer tls_packed_b;
thread_local ScratchBuffer tls_packed_a;

// The portable micro-kernel, and the oracle the SIMD ones are checked against: a plain
// triple loop over a register-sized tile that the compiler may vectorise across j.
// Without -ffp-contract it multiplies then adds (two roundings per term).
template <class T, std::size_t MR, std::size_t NR>
void generic_micro_kernel(std::size_t kc, const T* a, const T* b, T* c, std::ptrdiff_t ldc,
                          std::size_t m, std::size_t n, bool overwrite) {
  T acc[MR][NR] = {};
  for (std::size_t p = 0; p < kc; ++p)
    for (std::size_t i = 0; i < MR; ++i)
      for (std::size_t j = 0; j < NR; ++j) acc[i][j] += a[p * MR + i] * b[p * NR + j];
  for (std::size_t i = 0; i < m; ++i) {
    T* row = c + static_cast<std::ptrdiff_t>(i) * ldc;
    for (std::size_t j = 0; j < n; ++j) row[j] = overwrite ? acc[i][j] : row[j] + acc[i][j];
  }
}

template <class T>
constexpr GemmKernel<T> generic_kernel{&generic_micro_kernel<T, 4, 8>, 4, 8, 256, 512};

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

inline std::ptrdiff_t sd(std::size_t i) { return static_cast<std::ptrdiff_t>(i); }

inline std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

// A (m_valid, kc) strides (rs, cs) -> dst (kc, mr): dst[p*mr + i], rows >= m_valid zero.
template <class T>
void pack_a(T* dst, const T* a, std::ptrdiff_t rs, std::ptrdiff_t cs, std::size_t m_valid,
            std::size_t kc, std::size_t mr) {
  // Walk the source along its unit (or smaller) stride.
  if (std::abs(cs) <= std::abs(rs)) {
    for (std::size_t i = 0; i < m_valid; ++i) {
      const T* row = a + sd(i) * rs;
      for (std::size_t p = 0; p < kc; ++p) dst[p * mr + i] = row[sd(p) * cs];
    }
  } else {
    for (std::size_t p = 0; p < kc; ++p) {
      const T* col = a + sd(p) * cs;
      for (std::size_t i = 0; i < m_valid; ++i) dst[p * mr + i] = col[sd(i) * rs];
    }
  }
  if (m_valid < mr)
    for (std::size_t p = 0; p < kc; ++p)
      for (std::size_t i = m_valid; i < mr; ++i) dst[p * mr + i] = T(0);
}

// B (kc, n_valid) strides (rs, cs) -> dst (kc, nr): dst[p*nr + j], columns >= n_valid zero.
template <class T>
void pack_b(T* dst, const T* b, std::ptrdiff_t rs, std::ptrdiff_t cs, std::size_t kc,
            std::size_t n_valid, std::size_t nr) {
  if (std::abs(cs) <= std::abs(rs)) {
    for (std::size_t p = 0; p < kc; ++p) {
      const T* row = b + sd(p) * rs;
      T* out = dst + p * nr;
      for (std::size_t j = 0; j < n_valid; ++j) out[j] = row[sd(j) * cs];
      for (std::size_t j = n_valid; j < nr; ++j) out[j] = T(0);
    }
  } else {
    for (std::size_t j = 0; j < n_valid; ++j) {
      const T* col = b + sd(j) * cs;
      for (std::size_t p = 0; p < kc; ++p) dst[p * nr + j] = col[sd(p) * rs];
    }
    if (n_valid < nr)
      for (std::size_t p = 0; p < kc; ++p)
        for (std::size_t j = n_valid; j < nr; ++j) dst[p * nr + j] = T(0);
  }
}

// Below this many multiply-adds, forking threads costs more than it saves.
constexpr double kMinMacsPerThread = 1 << 19;

struct Split {
  int threads;
  bool along_m;  // else along n (within each nc block)
};

// How to share C among threads: along whichever of rows / columns balances best.
// Any choice gives the same results (see gemm.h), so this is free to tune.
Split choose_split(std::size_t m, std::size_t n, std::size_t k, std::size_t mr, std::size_t nr,
                   std::size_t nc) {
  double macs = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  int threads = std::min(num_threads(), static_cast<int>(macs / kMinMacsPerThread) + 1);
  std::size_t tiles_m = ceil_div(m, mr), tiles_n = ceil_div(std::min(n, nc), nr);
  if (threads <= 1) return {1, true};
  auto balance = [threads](std::size_t tiles) {
    std::size_t per = ceil_div(tiles, static_cast<std::size_t>(threads));
    return static_cast<double>(tiles) / static_cast<double>(per * threads);
  };
  bool along_m = balance(tiles_m) >= balance(tiles_n);  // ties: along m, A is packed once
  std::size_t tiles = along_m ? tiles_m : tiles_n;
  return {static_cast<int>(std::min<std::size_t>(tiles, threads)), along_m};
}

struct NoEpilogue {
  void operator()(std::size_t, std::size_t, std::size_t, std::size_t) const {}
};

// C = A B (or C += A B), then epilogue(i0, i1, j0, j1) on each finished block of C,
// called once per element, from the thread that computed it.
template <class T, class Epilogue>
void gemm_driver(T* c, std::ptrdiff_t ldc, const T* a, std::ptrdiff_t rs_a, std::ptrdiff_t cs_a,
                 const T* b, std::ptrdiff_t rs_b, std::ptrdiff_t cs_b, std::size_t m,
                 std::size_t n, std::size_t k, bool accumulate, const Epilogue& epilogue) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate)
      for (std::size_t i = 0; i < m; ++i) std::fill_n(c + sd(i) * ldc, n, T(0));
    epilogue(0, m, 0, n);
    return;
  }
  const GemmKernel<T>& kr = active_kernel<T>();
  const std::size_t mr = kr.mr, nr = kr.nr, kc_max = kr.kc, nc_max = kr.nc;
  const Split split = choose_split(m, n, k, mr, nr, nc_max);
  // B tile jt always sits at jt * b_tile, whatever the current kc, so a thread never
  // writes where another may still be reading.
  const std::size_t b_tile = std::min(k, kc_max) * nr;
  T* packed_b = tls_packed_b.get<T>(b_tile * ceil_div(std::min(n, nc_max), nr));
  const std::size_t a_slot = mr * std::min(k, kc_max);
  T* packed_a_all = tls_packed_a.get<T>(a_slot * static_cast<std::size_t>(split.threads));
  const std::size_t tiles_m = ceil_div(m, mr);

#pragma omp parallel num_threads(split.threads) if (split.threads > 1)
  {
    const std::size_t tid = static_cast<std::size_t>(omp_get_thread_num());
    const std::size_t nth = static_cast<std::size_t>(omp_get_num_threads());
    T* packed_a = packed_a_all + tid * a_slot;
    auto share = [&](std::size_t count, std::size_t* begin, std::size_t* end) {
      *begin = count * tid / nth;
      *end = count * (tid + 1) / nth;
    };
    std::size_t im0 = 0, im1 = tiles_m;
    if (split.along_m) share(tiles_m, &im0, &im1);

    for (std::size_t jc = 0; jc < n; jc += nc_max) {
      const std::size_t nc = std::min(nc_max, n - jc), tiles_n = ceil_div(nc, nr);
      // This thread's column tiles, and the B tiles it packs (all of them are shared
      // when splitting along m; only its own when splitting along n).
      std::size_t jn0 = 0, jn1 = tiles_n, pb0, pb1;
      if (!split.along_m) share(tiles_n, &jn0, &jn1);
      share(tiles_n, &pb0, &pb1);
      for (std::size_t pc = 0; pc < k; pc += kc_max) {
        const std::size_t kc = std::min(kc_max, k - pc);
        const bool overwrite = pc == 0 && !accumulate, last = pc + kc == k;
        for (std::size_t jt = pb0; jt < pb1; ++jt)
          pack_b(packed_b + jt * b_tile, b + sd(pc) * rs_b + sd(jc + jt * nr) * cs_b, rs_b, cs_b,
                 kc, std::min(nr, nc - jt * nr), nr);
        if (split.along_m) {
#pragma omp barrier
        }
        for (std::size_t it = im0; it < im1; ++it) {
          const std::size_t i0 = it * mr, mv = std::min(mr, m - i0);
          pack_a(packed_a, a + sd(i0) * rs_a + sd(pc) * cs_a, rs_a, cs_a, mv, kc, mr);
          for (std::size_t jt = jn0; jt < jn1; ++jt) {
            const std::size_t j0 = jc + jt * nr;
            kr.run(kc, packed_a, packed_b + jt * b_tile, c + sd(i0) * ldc + sd(j0), ldc, mv,
                   std::min(nr, n - j0), overwrite);
          }
          if (last && jn0 < jn1) epilogue(i0, i0 + mv, jc + jn0 * nr, std::min(n, jc + jn1 * nr));
        }
        if (split.along_m) {
#pragma omp barrier  // everyone is done with packed_b before it is repacked
        }
      }
      if (!split.along_m) {
#pragma omp barrier  // the next nc block may give a B tile to another thread
      }
    }
  }
}

}  // namespace

template <class T>
void gemm(T* c, std::ptrdiff_t ldc, const T* a, std::ptrdiff_t rs_a, std::ptrdiff_t cs_a,
          const T* b, std::ptrdiff_t rs_b, std::ptrdiff_t cs_b, std::size_t m, std::size_t n,
          std::size_t k, bool accumulate) {
  gemm_driver(c, ldc, a, rs_a, cs_a, b, rs_b, cs_b, m, n, k, accumulate, NoEpilogue{});
}

template <class T>
void linear_forward(T* z, T* a, const T* x, std::ptrdiff_t rs_x, std::ptrdiff_t cs_x,
                    const T* w, std::ptrdiff_t rs_w, std::ptrdiff_t cs_w, const T* bias,
                    std::ptrdiff_t s_bias, std::size_t n, std::size_t k, std::size_t m, Act act,
                    T param) {
  // Z = X Wᵀ: B = Wᵀ is W read with its strides swapped.
  auto bias_and_activation = [&](std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) {
    for (std::size_t i = i0; i < i1; ++i) {
      T* z_row = z + i * m;
      for (std::size_t j = j0; j < j1; ++j) z_row[j] += bias[sd(j) * s_bias];
      activation_forward(a + i * m + j0, z_row + j0, j1 - j0, act, param);
    }
  };
  gemm_driver(z, sd(m), x, rs_x, cs_x, w, cs_w, rs_w, n, m, k, false, bias_and_activation);
}

template <class T>
void linear_backward(T* dw, T* db, T* delta_prev, const T* delta, std::ptrdiff_t rs_d,
                     std::ptrdiff_t cs_d, const T* x, std::ptrdiff_t rs_x, std::ptrdiff_t cs_x,
                     const T* w, std::ptrdiff_t rs_w, std::ptrdiff_t cs_w, const T* z_prev,
                     const T* a_prev, std::size_t n, std::size_t k, std::size_t m, Act act_prev,
                     T param_prev, bool accumulate) {
  // dW = δᵀ X: A = δᵀ is δ read with its strides swapped; the reduction runs over the batch.
  gemm_driver(dw, sd(k), delta, cs_d, rs_d, x, rs_x, cs_x, m, k, n, accumulate, NoEpilogue{});

  // db: rows added in order, so the sum does not depend on the thread count.
  if (!accumulate) std::fill_n(db, m, T(0));
  for (std::size_t i = 0; i < n; ++i) {
    const T* row = delta + sd(i) * rs_d;
    for (std::size_t j = 0; j < m; ++j) db[j] += row[sd(j) * cs_d];
  }

  if (delta_prev == nullptr) return;
  // δ_prev = (δ W) ⊙ f'(z_prev), the derivative applied to each finished block of rows.
  auto times_derivative = [&](std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) {
    if (act_prev == Act::identity) return;
    for (std::size_t i = i0; i < i1; ++i)
      activation_backward(delta_prev + i * k + j0, z_prev + i * k + j0, a_prev + i * k + j0,
                          j1 - j0, act_prev, param_prev);
  };
  gemm_driver(delta_prev, sd(k), delta, rs_d, cs_d, w, rs_w, cs_w, n, k, m, false,
              times_derivative);
}

#define FASTMLP_INSTANTIATE(T)                                                                 \
  template void gemm<T>(T*, std::ptrdiff_t, const T*, std::ptrdiff_t, std::ptrdiff_t, const T*, \
                        std::ptrdiff_t, std::ptrdiff_t, std::size_t, std::size_t, std::size_t, \
                        bool);                                                                 \
  template void linear_forward<T>(T*, T*, const T*, std::ptrdiff_t, std::ptrdiff_t, const T*,  \
                                  std::ptrdiff_t, std::ptrdiff_t, const T*, std::ptrdiff_t,    \
                                  std::size_t, std::size_t, std::size_t, Act, T);              \
  template void linear_backward<T>(T*, T*, T*, const T*, std::ptrdiff_t, std::ptrdiff_t,       \
                                   const T*, std::ptrdiff_t, std::ptrdiff_t, const T*,         \
                                   std::ptrdiff_t, std::ptrdiff_t, const T*, const T*,         \
                                   std::size_t, std::size_t, std::size_t, Act, T, bool);
FASTMLP_INSTANTIATE(float)
FASTMLP_INSTANTIATE(double)
#undef FASTMLP_INSTANTIATE

}  // namespace fastmlp
