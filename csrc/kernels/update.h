// Kernels over a layer's parameters: the SGD, momentum and Adam updates (twins:
// python/fastmlp/reference/update.py), the finiteness check that tells a diverged step, and
// the weight-decay penalty's Σ W².
#pragma once

#include <cstddef>

namespace fastmlp {

// In place: w (n) ← w − lr (dw + weight_decay · w), dw (n). Biases pass weight_decay = 0.
template <class T>
void sgd_update(T* w, const T* dw, std::size_t n, T lr, T weight_decay);

// torch.optim's optimizer steps, in place on w and the optimizer's state (outputs first; the
// Python kernels take w, dw, then the state). Each hyperparameter is rounded to T once per
// call, from double, as the twin does; then every ISA does the same roundings per element in
// the same order (no contraction), so the result is the twin's bit for bit.

// SGD with momentum (torch.optim.SGD, dampening 0); w, velocity, dw (n each). velocity
// starts at zeros, so the first step gives velocity = g:
//   g = dw + weight_decay · w,   velocity ← momentum · velocity + g,
//   w ← w − lr (g + momentum · velocity) with nesterov, else w ← w − lr · velocity.
template <class T>
void momentum_update(T* w, T* velocity, const T* dw, std::size_t n, double lr, double momentum,
                     bool nesterov, double weight_decay);

// Adam (torch.optim.Adam; decoupled = true is torch.optim.AdamW); w, m, v, dw (n each). step
// >= 1 counts the steps including this one; the bias corrections are computed in double:
//   step_size = lr / (1 − beta1^step),   inv_bc2_sqrt = 1 / sqrt(1 − beta2^step),
//   decoupled: w ← (1 − lr · weight_decay) · w, g = dw;  else g = dw + weight_decay · w,
//   m ← beta1 · m + (1 − beta1) · g,   v ← beta2 · v + (1 − beta2) · g²,
//   w ← w − step_size · m / (sqrt(v) · inv_bc2_sqrt + eps)  (torch divides by the
//   square root; multiplying saves a division per weight and stays within an ulp).
template <class T>
void adam_update(T* w, T* m, T* v, const T* dw, std::size_t n, double lr, double beta1,
                 double beta2, double eps, double weight_decay, bool decoupled, long long step);

// The same two updates of a block of rows x cols elements at row stride ld in each array
// (the part of W that a product block has just finished), on the calling thread, with the
// constants computed once for the block.
template <class T>
void momentum_update_block(T* w, T* velocity, const T* dw, std::size_t rows, std::size_t cols,
                           std::size_t ld, double lr, double momentum, bool nesterov,
                           double weight_decay);
template <class T>
void adam_update_block(T* w, T* m, T* v, const T* dw, std::size_t rows, std::size_t cols,
                       std::size_t ld, double lr, double beta1, double beta2, double eps,
                       double weight_decay, bool decoupled, long long step);

// Whether every v[i] (n of them) is finite: neither NaN nor ±inf.
template <class T>
bool all_finite(const T* v, std::size_t n);

// Σ v[i]², accumulated in double (the weight-decay penalty's sum). The same operations in
// the same order on every ISA.
template <class T>
double sum_of_squares(const T* v, std::size_t n);

}  // namespace fastmlp
