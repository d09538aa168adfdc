#include "kernels/cpu.h"

#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace fastmlp {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "generic";
  }
}

Isa parse_isa(const std::string& name, const char* arg) {
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512})
    if (name == isa_name(isa)) return isa;
  throw std::invalid_argument(std::string(arg) + ": expected one of 'generic', 'avx2', 'avx512', got '" +
                              name + "'");
}

Isa isa_cap_from_env() {
  const char* env = std::getenv("FASTMLP_ISA");
  return env != nullptr && *env != '\0' ? parse_isa(env, "FASTMLP_ISA") : Isa::avx512;
}

Isa detected_isa() {
#if defined(FASTMLP_X86) && (defined(__GNUC__) || defined(__clang__))
  // __builtin_cpu_supports also checks that the OS saves the wide registers (XCR0).
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
  return Isa::generic;
}

namespace {
std::atomic<int> g_active{-1};
}  // namespace

// The module sets the cap at import (set_isa_cap(isa_cap_from_env())); a program that
// never imports it reads FASTMLP_ISA on its first kernel call.
Isa active_isa() {
  int v = g_active.load(std::memory_order_relaxed);
  if (v < 0) {
    Isa det = detected_isa(), cap = isa_cap_from_env();
    v = static_cast<int>(cap < det ? cap : det);
    g_active.store(v, std::memory_order_relaxed);
  }
  return static_cast<Isa>(v);
}

Isa set_isa_cap(Isa cap) {
  Isa det = detected_isa();
  Isa isa = cap < det ? cap : det;
  g_active.store(static_cast<int>(isa), std::memory_order_relaxed);
  return isa;
}

namespace {
std::atomic<int> g_threads{0};  // set_num_threads's count; 0: not called
}  // namespace

// The kernels run on their own pool (parallel.h), but until set_num_threads is called they
// take OpenMP's count of the calling thread, so OMP_NUM_THREADS and threadpoolctl's
// OpenMP limit keep working.
int num_threads() {
  const int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : omp_get_max_threads();
}

void set_num_threads(int n) { g_threads.store(n < 1 ? 1 : n, std::memory_order_relaxed); }

}  // namespace fastmlp
