// The element-wise and loss kernels compiled with the AVX-512 flags (CMakeLists.txt).
#include "kernels/activation_impl.h"
#include "kernels/loss_impl.h"
#include "kernels/update_impl.h"

namespace fastmlp {
FASTMLP_INSTANTIATE_ELTWISE(Isa::avx512)
}  // namespace fastmlp
