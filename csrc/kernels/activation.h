// Element-wise activations f, their derivatives f', and maxout.
// Twins: python/fastmlp/reference/activation.py (same formulas, same order of operations).
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastmlp {

enum class Act : int { sigmoid, tanh, relu, leaky_relu, elu, identity };

// Returns false if `name` is not an activation name ("maxout" is not: it changes shapes).
bool parse_activation(const char* name, Act* out);

// z (n) -> a (n), a = f(z). `a` may alias `z`. param: leaky-ReLU slope or ELU alpha.
template <class T>
void activation_forward(T* a, const T* z, std::size_t n, Act act, T param);

// z (n), a = f(z) (n) -> d (n), d = f'(z). `d` may alias `z` or `a`.
template <class T>
void activation_derivative(T* d, const T* z, const T* a, std::size_t n, Act act, T param);

// In place: delta (n) *= f'(z). The backward epilogue of a layer.
template <class T>
void activation_backward(T* delta, const T* z, const T* a, std::size_t n, Act act, T param);

// In place: delta (n) = delta * f'(z) * mask: the backward epilogue of a layer whose output
// went through dropout (mask: 1/(1 - p) or 0, from dropout.h). For Act::identity, z and a
// may be null.
template <class T>
void activation_backward_masked(T* delta, const T* z, const T* a, const T* mask, std::size_t n,
                                Act act, T param);

// Batch normalization over the n rows (twin: python/fastmlp/reference/batch_norm.py, same
// formulas in the same order). z (n, m), gamma, beta (m) -> y = gamma x̂ + beta and x̂ (n, m),
// mean, var (biased) and inv_std = 1/sqrt(var + eps) (m); per unit, sums run over the rows
// in order, so the results do not depend on the thread count.
template <class T>
void batch_norm_forward(T* y, T* xhat, T* mean, T* var, T* inv_std, const T* z, const T* gamma,
                        const T* beta, std::size_t n, std::size_t m, T eps);

// dy = dJ/dy (n, m), forward's x̂ and inv_std -> dz (n, m), dgamma, dbeta (m). dz may alias dy.
template <class T>
void batch_norm_backward(T* dz, T* dgamma, T* dbeta, const T* dy, const T* xhat, const T* gamma,
                         const T* inv_std, std::size_t n, std::size_t m);

// z (n, m*k) -> a (n, m), argmax (n, m): unit j's pieces are columns j*k .. j*k+k-1,
// ties go to the first piece.
template <class T>
void maxout_forward(T* a, std::int64_t* argmax, const T* z, std::size_t n, std::size_t m,
                    std::size_t k);

// da (n, m), argmax (n, m) -> dz (n, m*k): da routed to each unit's winning piece.
template <class T>
void maxout_backward(T* dz, const T* da, const std::int64_t* argmax, std::size_t n,
                     std::size_t m, std::size_t k);

}  // namespace fastmlp
