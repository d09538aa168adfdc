// The portable build of the element-wise and loss kernels (baseline flags of the target).
#include "kernels/activation_impl.h"
#include "kernels/loss_impl.h"
#include "kernels/update_impl.h"

namespace fastmlp {
FASTMLP_INSTANTIATE_ELTWISE(Isa::generic)
}  // namespace fastmlp
