// The element-wise and loss kernels compiled with -mavx2 -mfma (CMakeLists.txt).
#include "kernels/activation_impl.h"
#include "kernels/loss_impl.h"
#include "kernels/update_impl.h"

namespace fastmlp {
FASTMLP_INSTANTIATE_ELTWISE(Isa::avx2)
}  // namespace fastmlp
