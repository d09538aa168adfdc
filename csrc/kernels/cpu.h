// Which instruction set the kernels use, decided once at import.
//
// Kernels for several ISAs are compiled side by side (CMakeLists.txt puts the CPU flags
// on their sources only). The active ISA is the best one the CPU supports, capped by the
// FASTMLP_ISA environment variable or by set_isa_cap(), so tests can exercise every path.
#pragma once

#include <string>

namespace fastmlp {

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
// "generic", "avx2" or "avx512"; anything else throws std::invalid_argument
// "<arg>: expected one of 'generic', 'avx2', 'avx512', got '<name>'".
Isa parse_isa(const std::string& name, const char* arg);
// The cap FASTMLP_ISA asks for: unset or empty is no cap (avx512); an unknown value is an
// error, as parse_isa says, so a typo never silently picks a slower path.
Isa isa_cap_from_env();

Isa detected_isa();  // best ISA this CPU and OS support (and this build compiled)
Isa active_isa();    // min(detected, cap)
// Cap the active ISA; returns the resulting active ISA.
Isa set_isa_cap(Isa cap);

// Threads used by the kernels (parallel.h): set_num_threads's count for the whole process,
// or else OpenMP's for the calling thread (OMP_NUM_THREADS, threadpoolctl). Work is split
// along rows/columns only, never along a reduction, so results do not depend on this number.
int num_threads();
void set_num_threads(int n);

}  // namespace fastmlp
