// Output layers and losses. Twins: python/fastmlp/reference/loss.py.
//
// Each loss writes its gradient and returns J, the mean over the n rows of each row's
// loss (summed over the k outputs). Row losses are added in row order in double, so J does
// not depend on the ISA or on how a batch is split; J of an empty batch is 0.
// Gradients are ∂J/∂(the loss's input), i.e. already divided by n.
//
// `weights` (n sample weights >= 0, or null) makes J the weighted mean
// Σ_i w_i loss_i / Σ_i w_i: each row's gradient is then scaled by w_i / Σ w (computed in
// double, rounded to T) instead of divided by n. A batch whose weights sum to 0 has J = 0
// and a zero gradient.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastmlp {

// z (n,k) -> p (n,k), p_ij = e^(z_ij − max_j z_ij) / Σ_j e^(z_ij − max_j z_ij). k >= 1.
// `p` may alias `z`.
template <class T>
void softmax(T* p, const T* z, std::size_t n, std::size_t k);

// z (n,k), labels (n) in [0, k) -> dz (n,k) = (softmax(z) − onehot(labels)) / n;
// returns J = −(1/n) Σ_i log softmax(z)_(i, label_i). k >= 1; labels are trusted.
template <class T>
double softmax_cross_entropy(T* dz, const T* z, const std::int64_t* labels, std::size_t n,
                             std::size_t k, const T* weights);

// z (n,k), y (n,k) one-hot or probabilities -> dz (n,k) = (softmax(z) − y) / n;
// returns J = −(1/n) Σ_i Σ_j y_ij log softmax(z)_ij. k >= 1.
template <class T>
double softmax_cross_entropy(T* dz, const T* z, const T* y, std::size_t n, std::size_t k,
                             const T* weights);

// z (n,k), y (n,k) -> dz (n,k) = (σ(z) − y) / n;
// returns J = (1/n) Σ [max(z,0) − y z + log1p(e^(−|z|))], which is the binary
// cross-entropy of σ(z) written so that it never overflows.
template <class T>
double sigmoid_binary_cross_entropy(T* dz, const T* z, const T* y, std::size_t n, std::size_t k,
                                    const T* weights);

// a (n,k), y (n,k) -> da (n,k) = (a − y) / n; returns J = (1/2n) Σ (a − y)².
template <class T>
double quadratic_loss(T* da, const T* a, const T* y, std::size_t n, std::size_t k,
                      const T* weights);

// z (n,k), y (n,k) >= 0 -> dz (n,k) = (e^z − y) / n; returns the half Poisson deviance of
// the prediction e^z (scikit-learn's), J = (1/n) Σ [xlogy(y, y) − y z − y + e^z].
template <class T>
double poisson_loss(T* dz, const T* z, const T* y, std::size_t n, std::size_t k,
                    const T* weights);

}  // namespace fastmlp
