# fastmlp's native kernels for Cython code: `from fastmlp.cython_kernels cimport gemm, ...`.
#
# Like scipy.linalg.cython_blas: plain C functions, no GIL, no Python objects, and no
# argument checks (the caller owns the shapes, strides and buffers, as with BLAS). They
# run the kernels of fastmlp._core itself (same ISA dispatch, FASTMLP_ISA cap,
# fastmlp.set_isa and fastmlp.set_num_threads), through function pointers.
#
# Every function is fused over `floating` (float or double): Cython picks the float32 or
# float64 kernel from the pointer types at compile time, so a training loop written once
# over `floating` gets both. Scalars (param, lr, ...) take the same type, but for the
# optimizers' hyperparameters: double, rounded to the array's type inside, once per call.
#
# Matrices are raw pointers with strides counted in elements (not bytes): for a typed
# memoryview `v`, pass `&v[0, 0]`, `v.strides[0] // sizeof(v[0, 0])`, ...
# Outputs come first; shapes are in the comment above each function; outputs are C-order
# (row stride = number of columns) unless a stride is given. Build downstream code with
# include_dirs=[fastmlp.get_include()] and as C or C++.
#
# Allocation failure inside a kernel (its packing buffers only grow, once) aborts the
# process, since these functions cannot raise.

from cython cimport floating
from libc.stdint cimport int64_t

# The element-wise activations f (fastmlp's names, upper-cased). `param` is the leaky-ReLU
# slope (fastmlp's default 0.1) or the ELU alpha (default 1.0); the others ignore it.
cdef enum Activation:
    SIGMOID = 0
    TANH = 1
    RELU = 2
    LEAKY_RELU = 3
    ELU = 4
    IDENTITY = 5

# ---- Matrix products ----

# A (m,k) strides (rs_a, cs_a), B (k,n) strides (rs_b, cs_b) -> C (m,n) row stride ldc.
# C = A B, or C += A B when `accumulate`. Strides may be negative or zero; k == 0 gives
# C = 0 (or leaves C unchanged when accumulating).
cdef void gemm(floating* c, Py_ssize_t ldc,
               const floating* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
               const floating* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
               size_t m, size_t n, size_t k, bint accumulate) noexcept nogil

# X (n,k), W (m,k), bias (m) stride s_bias -> Z (n,m) = X Wᵀ + bias, A (n,m) = f(Z).
# `a` may equal `z` (then only f(Z) is kept).
cdef void linear_forward(floating* z, floating* a,
                         const floating* x, Py_ssize_t rs_x, Py_ssize_t cs_x,
                         const floating* w, Py_ssize_t rs_w, Py_ssize_t cs_w,
                         const floating* bias, Py_ssize_t s_bias,
                         size_t n, size_t k, size_t m, Activation act,
                         floating param) noexcept nogil

# delta (n,m) = dJ/dZ, X (n,k), W (m,k), z_prev and a_prev (n,k) C-order
#   -> dW (m,k) = deltaᵀ X, db (m) = column sums of delta (overwritten, or added to when
#      `accumulate`), delta_prev (n,k) = (delta W) * f'(z_prev) with f = act_prev.
# delta_prev may be NULL (the first layer needs none); with act_prev = IDENTITY,
# z_prev and a_prev may be NULL.
cdef void linear_backward(floating* dw, floating* db, floating* delta_prev,
                          const floating* delta, Py_ssize_t rs_d, Py_ssize_t cs_d,
                          const floating* x, Py_ssize_t rs_x, Py_ssize_t cs_x,
                          const floating* w, Py_ssize_t rs_w, Py_ssize_t cs_w,
                          const floating* z_prev, const floating* a_prev,
                          size_t n, size_t k, size_t m, Activation act_prev,
                          floating param_prev, bint accumulate) noexcept nogil

# ---- Element-wise (contiguous arrays of `size` elements) ----

# a = f(z); `a` may alias `z`.
cdef void activation_forward(floating* a, const floating* z, size_t size,
                             Activation act, floating param) noexcept nogil

# d = f'(z) given a = f(z); `d` may alias `z` or `a`.
cdef void activation_derivative(floating* d, const floating* z, const floating* a,
                                size_t size, Activation act, floating param) noexcept nogil

# In place: delta *= f'(z), given a = f(z).
cdef void activation_backward(floating* delta, const floating* z, const floating* a,
                              size_t size, Activation act, floating param) noexcept nogil

# z (n, m*k) -> a (n,m), argmax (n,m): unit j's pieces are columns j*k .. j*k+k-1; ties go
# to the first piece.
cdef void maxout_forward(floating* a, int64_t* argmax, const floating* z,
                         size_t n, size_t m, size_t k) noexcept nogil

# da (n,m), argmax (n,m) -> dz (n, m*k): da routed to each unit's winning piece.
cdef void maxout_backward(floating* dz, const floating* da, const int64_t* argmax,
                          size_t n, size_t m, size_t k) noexcept nogil

# ---- Outputs and losses (C-order (n,k) arrays; k >= 1) ----
# Each loss writes its gradient, already divided by n, and returns J, the mean over the n
# rows (0 for n == 0), accumulated in double.

# z (n,k) -> p (n,k) = softmax of each row; `p` may alias `z`.
cdef void softmax(floating* p, const floating* z, size_t n, size_t k) noexcept nogil

# z (n,k), labels (n) in [0, k) (not checked) -> dz = (softmax(z) − onehot(labels)) / n;
# returns J = −(1/n) Σ_i log softmax(z)[i, labels[i]].
cdef double softmax_cross_entropy_labels(floating* dz, const floating* z,
                                         const int64_t* labels,
                                         size_t n, size_t k) noexcept nogil

# z (n,k), y (n,k) one-hot or probabilities -> dz = (softmax(z) − y) / n;
# returns J = −(1/n) Σ y log softmax(z).
cdef double softmax_cross_entropy_targets(floating* dz, const floating* z,
                                          const floating* y,
                                          size_t n, size_t k) noexcept nogil

# z (n,k), y (n,k) -> dz = (σ(z) − y) / n; returns the binary cross-entropy of σ(z),
# computed from z so that it never overflows.
cdef double sigmoid_binary_cross_entropy(floating* dz, const floating* z,
                                         const floating* y,
                                         size_t n, size_t k) noexcept nogil

# a (n,k), y (n,k) -> da = (a − y) / n; returns J = (1/2n) Σ (a − y)².
cdef double quadratic_loss(floating* da, const floating* a, const floating* y,
                           size_t n, size_t k) noexcept nogil

# ---- Update ----

# In place: w (size) ← w − lr (dw + weight_decay · w). Biases pass weight_decay = 0.
cdef void sgd_update(floating* w, const floating* dw, size_t size,
                     floating lr, floating weight_decay) noexcept nogil

# torch.optim's steps, in place on w and the optimizer's state (all contiguous, `size`
# elements, no two of w and the state overlapping); zero state to start. Outputs first, so
# the state comes before dw here (the Python kernels take w, dw, then the state).

# SGD with momentum (torch.optim.SGD, dampening 0): g = dw + weight_decay · w,
# velocity ← momentum · velocity + g, w ← w − lr (g + momentum · velocity) if nesterov,
# else w ← w − lr · velocity.
cdef void momentum_update(floating* w, floating* velocity, const floating* dw, size_t size,
                          double lr, double momentum, bint nesterov,
                          double weight_decay) noexcept nogil

# Adam (torch.optim.Adam; decoupled: torch.optim.AdamW); step >= 1 counts this step:
# g = dw (+ weight_decay · w unless decoupled, which scales w by 1 − lr · weight_decay),
# m ← beta1 · m + (1 − beta1) g, v ← beta2 · v + (1 − beta2) g²,
# w ← w − lr / (1 − beta1^step) · m / (sqrt(v) / sqrt(1 − beta2^step) + eps).
cdef void adam_update(floating* w, floating* m, floating* v, const floating* dw, size_t size,
                      double lr, double beta1, double beta2, double eps, double weight_decay,
                      bint decoupled, long long step) noexcept nogil
