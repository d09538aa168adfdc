# cython: language_level=3, boundscheck=False, wraparound=False
# The Cython API (see cython_kernels.pxd): each function forwards to the kernel of
# fastmlp._core through the KernelTable that _core exports in a capsule, so there is one
# copy of the kernels and their ISA dispatch.
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.stdint cimport int64_t
from libcpp cimport bool

from . import _core

cdef extern from "kernels/kernel_table.h" namespace "fastmlp" nogil:
    enum class Act:
        pass

    cdef cppclass KernelsFor[T]:
        void (*gemm)(T*, Py_ssize_t, const T*, Py_ssize_t, Py_ssize_t, const T*, Py_ssize_t,
                     Py_ssize_t, size_t, size_t, size_t, bool) noexcept
        void (*linear_forward)(T*, T*, const T*, Py_ssize_t, Py_ssize_t, const T*, Py_ssize_t,
                               Py_ssize_t, const T*, Py_ssize_t, size_t, size_t, size_t, Act,
                               T) noexcept
        void (*linear_backward)(T*, T*, T*, const T*, Py_ssize_t, Py_ssize_t, const T*,
                                Py_ssize_t, Py_ssize_t, const T*, Py_ssize_t, Py_ssize_t,
                                const T*, const T*, size_t, size_t, size_t, Act, T,
                                bool) noexcept
        void (*activation_forward)(T*, const T*, size_t, Act, T) noexcept
        void (*activation_derivative)(T*, const T*, const T*, size_t, Act, T) noexcept
        void (*activation_backward)(T*, const T*, const T*, size_t, Act, T) noexcept
        void (*maxout_forward)(T*, int64_t*, const T*, size_t, size_t, size_t) noexcept
        void (*maxout_backward)(T*, const T*, const int64_t*, size_t, size_t, size_t) noexcept
        void (*softmax)(T*, const T*, size_t, size_t) noexcept
        double (*softmax_cross_entropy_labels)(T*, const T*, const int64_t*, size_t,
                                               size_t) noexcept
        double (*softmax_cross_entropy_targets)(T*, const T*, const T*, size_t,
                                                size_t) noexcept
        double (*sigmoid_binary_cross_entropy)(T*, const T*, const T*, size_t, size_t) noexcept
        double (*quadratic_loss)(T*, const T*, const T*, size_t, size_t) noexcept
        void (*sgd_update)(T*, const T*, size_t, T, T) noexcept
        void (*momentum_update)(T*, T*, const T*, size_t, double, double, bool, double) noexcept
        void (*adam_update)(T*, T*, T*, const T*, size_t, double, double, double, double,
                            double, bool, long long) noexcept

    cdef cppclass KernelTable:
        pass

    const KernelsFor[T]& kernels_of[T](const KernelTable&, const T*)
    const char* kKernelTableCapsule

# The .pxd's Activation values are the C++ Act values (a cast converts between them).
cdef extern from *:
    """
    static_assert(int(fastmlp::Act::sigmoid) == 0 && int(fastmlp::Act::tanh) == 1 &&
                  int(fastmlp::Act::relu) == 2 && int(fastmlp::Act::leaky_relu) == 3 &&
                  int(fastmlp::Act::elu) == 4 && int(fastmlp::Act::identity) == 5,
                  "fastmlp/cython_kernels.pxd: Activation must list fastmlp::Act's values");
    """

cdef const KernelTable* _table = <const KernelTable*>PyCapsule_GetPointer(
    _core._kernel_table, kKernelTableCapsule)


cdef void gemm(floating* c, Py_ssize_t ldc,
               const floating* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
               const floating* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
               size_t m, size_t n, size_t k, bint accumulate) noexcept nogil:
    kernels_of(_table[0], c).gemm(c, ldc, a, rs_a, cs_a, b, rs_b, cs_b, m, n, k, accumulate)


cdef void linear_forward(floating* z, floating* a,
                         const floating* x, Py_ssize_t rs_x, Py_ssize_t cs_x,
                         const floating* w, Py_ssize_t rs_w, Py_ssize_t cs_w,
                         const floating* bias, Py_ssize_t s_bias,
                         size_t n, size_t k, size_t m, Activation act,
                         floating param) noexcept nogil:
    kernels_of(_table[0], z).linear_forward(z, a, x, rs_x, cs_x, w, rs_w, cs_w, bias, s_bias,
                                            n, k, m, <Act>act, param)


cdef void linear_backward(floating* dw, floating* db, floating* delta_prev,
                          const floating* delta, Py_ssize_t rs_d, Py_ssize_t cs_d,
                          const floating* x, Py_ssize_t rs_x, Py_ssize_t cs_x,
                          const floating* w, Py_ssize_t rs_w, Py_ssize_t cs_w,
                          const floating* z_prev, const floating* a_prev,
                          size_t n, size_t k, size_t m, Activation act_prev,
                          floating param_prev, bint accumulate) noexcept nogil:
    kernels_of(_table[0], dw).linear_backward(dw, db, delta_prev, delta, rs_d, cs_d,
                                              x, rs_x, cs_x, w, rs_w, cs_w, z_prev, a_prev,
                                              n, k, m, <Act>act_prev, param_prev, accumulate)


cdef void activation_forward(floating* a, const floating* z, size_t size,
                             Activation act, floating param) noexcept nogil:
    kernels_of(_table[0], a).activation_forward(a, z, size, <Act>act, param)


cdef void activation_derivative(floating* d, const floating* z, const floating* a,
                                size_t size, Activation act, floating param) noexcept nogil:
    kernels_of(_table[0], d).activation_derivative(d, z, a, size, <Act>act, param)


cdef void activation_backward(floating* delta, const floating* z, const floating* a,
                              size_t size, Activation act, floating param) noexcept nogil:
    kernels_of(_table[0], delta).activation_backward(delta, z, a, size, <Act>act, param)


cdef void maxout_forward(floating* a, int64_t* argmax, const floating* z,
                         size_t n, size_t m, size_t k) noexcept nogil:
    kernels_of(_table[0], a).maxout_forward(a, argmax, z, n, m, k)


cdef void maxout_backward(floating* dz, const floating* da, const int64_t* argmax,
                          size_t n, size_t m, size_t k) noexcept nogil:
    kernels_of(_table[0], dz).maxout_backward(dz, da, argmax, n, m, k)


cdef void softmax(floating* p, const floating* z, size_t n, size_t k) noexcept nogil:
    kernels_of(_table[0], p).softmax(p, z, n, k)


cdef double softmax_cross_entropy_labels(floating* dz, const floating* z,
                                         const int64_t* labels,
                                         size_t n, size_t k) noexcept nogil:
    return kernels_of(_table[0], dz).softmax_cross_entropy_labels(dz, z, labels, n, k)


cdef double softmax_cross_entropy_targets(floating* dz, const floating* z,
                                          const floating* y,
                                          size_t n, size_t k) noexcept nogil:
    return kernels_of(_table[0], dz).softmax_cross_entropy_targets(dz, z, y, n, k)


cdef double sigmoid_binary_cross_entropy(floating* dz, const floating* z,
                                         const floating* y,
                                         size_t n, size_t k) noexcept nogil:
    return kernels_of(_table[0], dz).sigmoid_binary_cross_entropy(dz, z, y, n, k)


cdef double quadratic_loss(floating* da, const floating* a, const floating* y,
                           size_t n, size_t k) noexcept nogil:
    return kernels_of(_table[0], da).quadratic_loss(da, a, y, n, k)


cdef void sgd_update(floating* w, const floating* dw, size_t size,
                     floating lr, floating weight_decay) noexcept nogil:
    kernels_of(_table[0], w).sgd_update(w, dw, size, lr, weight_decay)


cdef void momentum_update(floating* w, floating* velocity, const floating* dw, size_t size,
                          double lr, double momentum, bint nesterov,
                          double weight_decay) noexcept nogil:
    kernels_of(_table[0], w).momentum_update(w, velocity, dw, size, lr, momentum, nesterov,
                                             weight_decay)


cdef void adam_update(floating* w, floating* m, floating* v, const floating* dw, size_t size,
                      double lr, double beta1, double beta2, double eps, double weight_decay,
                      bint decoupled, long long step) noexcept nogil:
    kernels_of(_table[0], w).adam_update(w, m, v, dw, size, lr, beta1, beta2, eps,
                                         weight_decay, decoupled, step)
