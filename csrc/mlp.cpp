#include "mlp.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "kernels/gemm.h"
#include "kernels/loss.h"
#include "kernels/update.h"

namespace fastmlp {

namespace {

bool is_maxout(const Network& net, std::size_t l) {
  return l < net.hidden.size() && net.hidden[l].maxout_pieces > 0;
}

// The element-wise activation linear_forward applies in layer l. Maxout layers take the
// identity there (maxout_forward does the rest); softmax is applied by its loss kernel.
Act layer_activation(const Network& net, std::size_t l) {
  if (l < net.hidden.size()) return is_maxout(net, l) ? Act::identity : net.hidden[l].act;
  return net.output == Output::sigmoid ? Act::sigmoid : Act::identity;
}

// a = f(z) of layer l: its own buffer, or z itself when f is the identity.
template <class T>
T* activations(Workspace<T>& ws, std::size_t l) {
  return ws.a[l].empty() ? ws.z[l].data() : ws.a[l].data();
}

// First index of the row's maximum; like numpy.argmax, the first NaN beats every number.
template <class T>
std::size_t row_argmax(const T* row, std::size_t k) {
  std::size_t best = 0;
  for (std::size_t j = 1; j < k; ++j) {
    bool nan_beats_number = row[j] != row[j] && row[best] == row[best];
    if (row[j] > row[best] || nan_beats_number) best = j;
  }
  return best;
}

// equations.score_sum of a batch: z (n,K) the output logits, out (n,K) = f(z).
template <class T>
double score_sum(const Network& net, const T* z, const T* out, Targets<T> y, std::size_t n) {
  const std::size_t k = net.sizes.back();
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const T* zi = z + i * k;
    const T* yi = y.values ? y.values + i * k : nullptr;
    switch (net.output) {
      case Output::softmax: {
        std::size_t label = y.labels ? static_cast<std::size_t>(y.labels[i]) : row_argmax(yi, k);
        total += row_argmax(zi, k) == label;
        break;
      }
      case Output::sigmoid: {
        bool all_right = true;
        for (std::size_t j = 0; j < k; ++j) all_right = all_right && (zi[j] >= T(0)) == (yi[j] >= T(0.5));
        total += all_right;
        break;
      }
      case Output::identity:
        for (std::size_t j = 0; j < k; ++j) {
          double diff = static_cast<double>(out[i * k + j] - yi[j]);
          total += diff * diff;
        }
        break;
      case Output::exp:  // the prediction e^z, as the twin's np.exp computes it in T
        for (std::size_t j = 0; j < k; ++j) {
          double diff = static_cast<double>(std::exp(zi[j]) - yi[j]);
          total += diff * diff;
        }
        break;
    }
  }
  return total;
}

// J of the batch (without weight decay); writes delta = dJ/dz of the output layer.
template <class T>
double loss_and_delta(Workspace<T>& ws, Targets<T> y, std::size_t n) {
  const Network& net = ws.net;
  const std::size_t last = net.n_layers() - 1, k = net.sizes.back();
  T* delta = ws.delta[last].data();
  const T* z = ws.z[last].data();
  const T* out = activations(ws, last);
  switch (net.loss) {
    case Loss::cross_entropy:
      return y.labels ? softmax_cross_entropy(delta, z, y.labels, n, k, y.weights)
                      : softmax_cross_entropy(delta, z, y.values, n, k, y.weights);
    case Loss::binary_cross_entropy:
      return sigmoid_binary_cross_entropy(delta, z, y.values, n, k, y.weights);
    case Loss::poisson:
      return poisson_loss(delta, z, y.values, n, k, y.weights);
    case Loss::quadratic: {
      double loss = quadratic_loss(delta, out, y.values, n, k, y.weights);
      // the lecture's δ(L) = (a − y) ⊙ σ'(z(L)), with the 1/n of the batch mean
      if (net.output == Output::sigmoid) activation_backward(delta, z, out, n * k, Act::sigmoid, T(0));
      return loss;
    }
  }
  return 0.0;
}

// The one definition of a diverged run (python/fastmlp/checks.py in_range): Σ v² of the
// array, accumulated in double, is at most T's largest number; NaN or ±inf fail it too.
template <class T>
bool in_range(const T* v, std::size_t n) {
  return sum_of_squares(v, n) <= static_cast<double>(std::numeric_limits<T>::max());
}

// (weight_decay / 2) Σ W², biases excluded, accumulated in double.
template <class T>
double weight_penalty(const Network& net, T* const* w, T weight_decay) {
  if (weight_decay == T(0)) return 0.0;
  double sum = 0.0;
  for (std::size_t l = 0; l < net.n_layers(); ++l) sum += sum_of_squares(w[l], net.rows(l) * net.sizes[l]);
  return 0.5 * static_cast<double>(weight_decay) * sum;
}

// Whether the batch's rows of x are finite, seen from z(0) = x W(0)ᵀ + b(0): a NaN or inf in
// a row of x makes that row of z(0) NaN or inf (every unit multiplies every input), so a
// finite z(0) proves the batch finite from a few hundred numbers. Only when it is not (which
// an overflow from finite inputs can cause too) are the rows themselves read.
template <class T>
bool batch_finite(const Workspace<T>& ws, const T* x, const std::int64_t* x_rows, std::size_t n) {
  const std::size_t s_in = ws.net.sizes.front();
  if (all_finite(ws.z[0].data(), n * ws.net.rows(0))) return true;
  for (std::size_t i = 0; i < n; ++i)
    if (!all_finite(x + static_cast<std::size_t>(x_rows ? x_rows[i] : std::int64_t(i)) * s_in, s_in))
      return false;
  return true;
}

// Layer l's output as the next layer reads it: a = f(z), or a ⊙ mask when the last forward
// pass dropped units of it.
template <class T>
T* output(Workspace<T>& ws, std::size_t l) {
  return ws.masked && ws.net.has_dropout(l) ? ws.dropped[l].data() : activations(ws, l);
}

// The dropout mask of layer l's output in the last forward pass, or null.
template <class T>
const T* output_mask(const Workspace<T>& ws, std::size_t l) {
  return ws.masked && ws.net.has_dropout(l) ? ws.mask[l].data() : nullptr;
}

// The parameter of layer l's activation (0 for the output layer).
template <class T>
T layer_param(const Network& net, std::size_t l) {
  return l < net.hidden.size() ? static_cast<T>(net.hidden[l].param) : T(0);
}

// x_rows (n) or null: the batch's row i is row x_rows[i] of x (read in place). Dropout
// layers apply the masks of `masks` (none when masks.step < 0); batch-normalised layers
// use the batch's statistics (the running ones are the caller's to update). With
// `layer0_done`, z(0) and a(0) of this batch are already in ws (see NextBatch) and the
// pass starts at layer 1.
template <class T>
void forward(Workspace<T>& ws, T* const* w, T* const* b, const BatchNorms<T>& norms, const T* x,
             const std::int64_t* x_rows, std::size_t n, const MaskSource& masks,
             bool layer0_done = false) {
  const Network& net = ws.net;
  ws.masked = masks.step >= 0;
  const T* in = layer0_done ? output(ws, 0) : x;
  for (std::size_t l = layer0_done ? 1 : 0; l < net.n_layers(); ++l) {
    const std::size_t fan_in = net.sizes[l], rows = net.rows(l);
    const T param = layer_param<T>(net, l);
    T* z = ws.z[l].data();
    DropoutPass<T> pass{};
    const bool drop = ws.masked && net.has_dropout(l);
    if (drop)
      pass = dropout_pass(ws.dropped[l].data(), ws.mask[l].data(),
                          dropout_key(masks.seed, static_cast<std::uint64_t>(masks.step), l),
                          net.hidden[l].dropout, masks.row_offset);
    if (net.has_batch_norm(l)) {
      // z = X Wᵀ + b, then y = gamma x̂ + beta in its place, then f(y) (and the dropout pass)
      linear_forward_rows(z, z, in, std::ptrdiff_t(fan_in), 1, l == 0 ? x_rows : nullptr, w[l],
                          std::ptrdiff_t(fan_in), 1, b[l], 1, n, fan_in, rows, Act::identity, T(0));
      batch_norm_forward(z, ws.xhat[l].data(), ws.mean[l].data(), ws.var[l].data(),
                         ws.inv_std[l].data(), static_cast<const T*>(z), norms.gamma[l], norms.beta[l],
                         n, rows, static_cast<T>(kBatchNormEps));
      const std::size_t units = net.sizes[l + 1];
      if (is_maxout(net, l))
        maxout_forward(ws.a[l].data(), ws.argmax[l].data(), z, n, units, net.hidden[l].maxout_pieces);
      else
        activation_forward(activations(ws, l), static_cast<const T*>(z), n * rows, net.hidden[l].act, param);
      if (drop) dropout_forward(pass, static_cast<const T*>(activations(ws, l)), 0, n, 0, units, units);
      in = output(ws, l);
      continue;
    }
    // a maxout layer keeps only z here: its a (fewer columns) comes from maxout_forward
    linear_forward_rows(z, is_maxout(net, l) ? z : activations(ws, l), in, std::ptrdiff_t(fan_in), 1,
                        l == 0 ? x_rows : nullptr, w[l], std::ptrdiff_t(fan_in), 1, b[l], 1, n, fan_in,
                        rows, layer_activation(net, l), param,
                        drop && !is_maxout(net, l) ? &pass : nullptr);
    if (is_maxout(net, l)) {
      const std::size_t units = net.sizes[l + 1];
      maxout_forward(ws.a[l].data(), ws.argmax[l].data(), z, n, units, net.hidden[l].maxout_pieces);
      if (drop) dropout_forward(pass, static_cast<const T*>(ws.a[l].data()), 0, n, 0, units, units);
    }
    in = output(ws, l);
  }
}

// After a training step's forward pass, in place, as torch.nn.BatchNorm1d: running mean ←
// (1 − m) running mean + m mean, running var ← (1 − m) running var + m var n/(n − 1)
// (unbiased), m = kBatchNormMomentum (numpy_training: equations.update_running_stats).
template <class T>
void update_running_stats(const Workspace<T>& ws, const BatchNorms<T>& norms, std::size_t n) {
  const T m = static_cast<T>(kBatchNormMomentum), keep = static_cast<T>(1.0 - kBatchNormMomentum);
  const T unbiased = static_cast<T>(static_cast<double>(n) / static_cast<double>(n - 1));
  for (std::size_t l = 0; l < ws.net.hidden.size(); ++l) {
    if (!ws.net.has_batch_norm(l)) continue;
    T* run_mean = norms.running_mean[l];
    T* run_var = norms.running_var[l];
    const T* mean = ws.mean[l].data();
    const T* var = ws.var[l].data();
    for (std::size_t j = 0; j < ws.net.rows(l); ++j) {
      run_mean[j] = keep * run_mean[j] + m * mean[j];
      run_var[j] = keep * run_var[j] + m * (var[j] * unbiased);
    }
  }
}

// Layer l's gradient into dw (rows(l), s_l; skipped when dw is null) and db (rows(l)), and
// delta of layer l-1 (no weight is changed, so the caller may update W(l) as soon as this
// returns); when layer l-1 is batch-normalised, delta through its normalisation and its
// dgamma, dbeta.
template <class T>
void backward_layer(Workspace<T>& ws, T* const* w, const BatchNorms<T>& norms, const T* x,
                    std::size_t n, std::size_t l, T* dw, T* db, T* dgamma, T* dbeta) {
  const Network& net = ws.net;
  const std::size_t fan_in = net.sizes[l], rows = net.rows(l);
  const T* in = l == 0 ? x : output(ws, l - 1);
  const T* delta = ws.delta[l].data();
  const auto ld_in = std::ptrdiff_t(fan_in), ld_delta = std::ptrdiff_t(rows);
  if (l == 0) {
    linear_backward(dw, db, static_cast<T*>(nullptr), delta, ld_delta, 1, in, ld_in, 1, w[l],
                    ld_in, 1, static_cast<const T*>(nullptr), static_cast<const T*>(nullptr), n,
                    fan_in, rows, Act::identity, T(0), false);
  } else if (is_maxout(net, l - 1)) {
    // "identity" gives dJ/da_prev = δ W; maxout_backward routes it to the winning pieces
    linear_backward_masked(dw, db, ws.d_maxout.data(), delta, ld_delta, 1, in, ld_in, 1, w[l], ld_in,
                           1, static_cast<const T*>(nullptr), static_cast<const T*>(nullptr), n,
                           fan_in, rows, Act::identity, T(0), false, output_mask(ws, l - 1));
    maxout_backward(ws.delta[l - 1].data(), ws.d_maxout.data(), ws.argmax[l - 1].data(), n,
                    fan_in, net.hidden[l - 1].maxout_pieces);
  } else {
    const HiddenLayer& prev = net.hidden[l - 1];
    linear_backward_masked(dw, db, ws.delta[l - 1].data(), delta, ld_delta, 1, in, ld_in, 1, w[l],
                           ld_in, 1, ws.z[l - 1].data(), activations(ws, l - 1), n, fan_in, rows,
                           prev.act, static_cast<T>(prev.param), false, output_mask(ws, l - 1));
  }
  if (l > 0 && net.has_batch_norm(l - 1)) {
    T* d = ws.delta[l - 1].data();  // dJ/dy in, dJ/dz out
    batch_norm_backward(d, dgamma, dbeta, static_cast<const T*>(d), ws.xhat[l - 1].data(),
                        norms.gamma[l - 1], ws.inv_std[l - 1].data(), n, net.rows(l - 1));
  }
}

// One update of a rows x cols block (row stride ld) of a parameter array by a rule other
// than plain SGD, from its gradient g; `number` is the update's count (Adam's t),
// state0/state1 the rule's buffers at the same place.
template <class T>
void apply_update(const Update<T>& up, long long number, T* p, T* state0, T* state1, const T* g,
                  std::size_t rows, std::size_t cols, std::size_t ld, double weight_decay) {
  if (up.rule == Rule::momentum)
    momentum_update_block(p, state0, g, rows, cols, ld, up.lr, up.momentum, up.nesterov,
                          weight_decay);
  else
    adam_update_block(p, state0, state1, g, rows, cols, ld, up.lr, up.beta1, up.beta2,
                      up.sklearn_eps ? up.eps / std::sqrt(1.0 - std::pow(up.beta2, static_cast<double>(number)))
                                     : up.eps,
                      weight_decay, up.decoupled, number);
}

// What the block callback of weight_gradient_blocks needs to update W(l) by a rule.
template <class T>
struct WeightBlockUpdate {
  const Update<T>* up;
  long long number;
  std::size_t layer, fan_in;
  T* w;
  const T* dw;

  // Rows i0..i1, columns j0..j1 of W(l), as soon as their gradient is known.
  static void run(const void* context, std::size_t i0, std::size_t i1, std::size_t j0,
                  std::size_t j1) {
    const auto& b = *static_cast<const WeightBlockUpdate*>(context);
    const Update<T>& up = *b.up;
    T* const* second = up.state[2];  // Adam's v, or null
    const std::size_t at = i0 * b.fan_in + j0;
    apply_update(up, b.number, b.w + at, up.state[0][b.layer] + at,
                 second ? second[b.layer] + at : nullptr, b.dw + at, i1 - i0, j1 - j0, b.fan_in,
                 up.weight_decay);
  }
};

// gamma and beta of layer l by their gradients in ws.dgamma, ws.dbeta: as biases (no
// weight decay), by the rule's kernel.
template <class T>
void update_norm(Workspace<T>& ws, const BatchNorms<T>& norms, const Update<T>& up, long long number,
                 std::size_t l) {
  const std::size_t rows = ws.net.rows(l);
  T* params[2] = {norms.gamma[l], norms.beta[l]};
  const T* grads[2] = {ws.dgamma.data(), ws.dbeta.data()};
  for (int i = 0; i < 2; ++i) {
    if (up.rule == Rule::sgd) {
      sgd_update(params[i], grads[i], rows, static_cast<T>(up.lr), T(0));
      continue;
    }
    T* const* second = up.norm_state[2 + i];  // Adam's v, or null
    apply_update(up, number, params[i], up.norm_state[i][l], second ? second[l] : nullptr, grads[i], 1,
                 rows, rows, 0.0);
  }
}

// The batch after this one in an epoch (x_rows as in step_on_rows). A plain SGD step runs
// the next batch's layer-0 product right after updating W(0), in the same parallel region
// (weight_sgd_step_then_forward): each thread computes the columns of z(0) from the rows of
// W(0) it has just updated, still in its cache, and the next step starts at layer 1. Only
// where layer 0's forward pass is that product alone (fuses_layer0). Between the two steps
// only batch_done runs (a progress count), which neither reads nor changes the weights.
//
// That region reads the next batch's rows of X, which no thread has read yet: shuffled
// rows come from memory. The other threads wait while the caller runs the rest of a step
// alone, so they read the batch after next into their caches as soon as their part of a
// region is done (`after`, see WarmUp). Seed, 2 threads, median speed-up of in-process
// A/B rounds: 1.05-1.09x in float64, 1.11-1.12x in float32 (docs/performance-notes.md).
template <class T>
struct NextBatch {
  const T* x;
  const std::int64_t* x_rows;
  std::size_t n;
  WarmUp after;  // the batch after it, or nothing (see kMaxWarmUpBytes)
};

// A batch after next larger than this is not read ahead: such a batch's products are
// large enough to overlap reading it (mid float32, 64 rows of 784, 196 KiB: 0.97-0.99x
// with it, in-process A/B).
constexpr std::size_t kMaxWarmUpBytes = 128 << 10;

// Where an epoch's rows from lo on lie: rows order[lo], order[lo + 1], ... of x (x_rows),
// or with order null x's own rows from lo (x_rows null); s_in values a row.
template <class T>
struct EpochRows {
  const T* x;
  const std::int64_t* x_rows;
};

template <class T>
EpochRows<T> epoch_rows(const T* x, const std::int64_t* order, std::size_t lo, std::size_t s_in) {
  return order != nullptr ? EpochRows<T>{x, order + lo} : EpochRows<T>{x + lo * s_in, nullptr};
}

// n of an epoch's rows from lo on (see epoch_rows) as a WarmUp, or none when they are more
// than kMaxWarmUpBytes.
template <class T>
WarmUp warm_up_rows(const T* x, const std::int64_t* order, std::size_t lo, std::size_t n,
                    std::size_t s_in) {
  const std::size_t row_bytes = s_in * sizeof(T);
  if (n == 0 || row_bytes == 0 || n * row_bytes > kMaxWarmUpBytes) return {};
  const EpochRows<T> rows = epoch_rows(x, order, lo, s_in);
  return {reinterpret_cast<const char*>(rows.x), rows.x_rows, n, row_bytes};
}

// Whether a step by `rule` may compute the next batch's layer 0 (see NextBatch): plain SGD,
// and layer 0 without batch norm, maxout or dropout, so that its forward pass is
// linear_forward_rows with W(0) and b(0) and nothing else.
template <class T>
bool fuses_layer0(const Network& net, const Update<T>& rule) {
  return rule.rule == Rule::sgd && !net.has_batch_norm(0) && !is_maxout(net, 0) && !net.has_dropout(0);
}

// Backpropagates delta of the output layer down to layer 0, updating each layer's W and b
// as soon as its gradient is known (no later step reads them). δ_prev is computed first,
// from W before its update. Plain SGD: weight_sgd_step applies dW to W tile by tile, as
// linear_backward + sgd_update would. Other rules: weight_gradient_blocks computes dW and
// the rule's kernel updates each block of W while its dW is still in cache, on the
// product's threads; the same operations as the kernel over the whole array. With `next`
// (plain SGD and fuses_layer0 only), the next batch's z(0) and a(0) follow W(0)'s update.
template <class T>
void backward_and_update(Workspace<T>& ws, T* const* w, T* const* b, const BatchNorms<T>& norms,
                         const T* x, const std::int64_t* x_rows, std::size_t n, const Update<T>& up,
                         long long number, const NextBatch<T>* next) {
  const Network& net = ws.net;
  const T lr = static_cast<T>(up.lr), weight_decay = static_cast<T>(up.weight_decay);
  for (std::size_t l = net.n_layers(); l-- > 0;) {
    const std::size_t fan_in = net.sizes[l], rows = net.rows(l);
    backward_layer(ws, w, norms, x, n, l, static_cast<T*>(nullptr), ws.db.data(), ws.dgamma.data(),
                   ws.dbeta.data());  // W still unchanged
    if (l > 0 && net.has_batch_norm(l - 1)) update_norm(ws, norms, up, number, l - 1);
    const T* in = l == 0 ? x : output(ws, l - 1);
    const std::int64_t* in_rows = l == 0 ? x_rows : nullptr;
    if (up.rule == Rule::sgd) {
      // b before W: the next batch's forward product below reads the new b(0)
      sgd_update(b[l], ws.db.data(), rows, lr, T(0));
      if (l == 0 && next != nullptr)
        weight_sgd_step_then_forward(w[l], ws.dw.data(), ws.delta[l].data(), std::ptrdiff_t(rows), 1,
                                     in, std::ptrdiff_t(fan_in), in_rows, n, fan_in, rows, lr,
                                     weight_decay, ws.z[0].data(), activations(ws, 0), next->x,
                                     next->x_rows, next->n, b[0], layer_activation(net, 0),
                                     layer_param<T>(net, 0), &next->after);
      else
        weight_sgd_step(w[l], ws.dw.data(), ws.delta[l].data(), std::ptrdiff_t(rows), 1, in,
                        std::ptrdiff_t(fan_in), 1, in_rows, n, fan_in, rows, lr, weight_decay);
      continue;
    }
    const WeightBlockUpdate<T> block{&up, number, l, fan_in, w[l], ws.dw.data()};
    weight_gradient_blocks(ws.dw.data(), ws.delta[l].data(), std::ptrdiff_t(rows), 1, in,
                           std::ptrdiff_t(fan_in), 1, in_rows, n, fan_in, rows,
                           &WeightBlockUpdate<T>::run, &block);
    apply_update(up, number, b[l], up.state[1][l], up.state[3] ? up.state[3][l] : nullptr,
                 ws.db.data(), 1, rows, rows, 0.0);
  }
}

// The targets of the batch rows[0..n), copied into the workspace as Y[order][lo:hi] does;
// rows null: y itself.
template <class T>
Targets<T> gather_targets(Workspace<T>& ws, Targets<T> y, const std::int64_t* rows, std::size_t n) {
  if (rows == nullptr) return y;
  const std::size_t k = ws.net.sizes.back();
  for (std::size_t i = 0; i < n; ++i) {
    const auto row = static_cast<std::size_t>(rows[i]);
    if (y.labels) ws.label_batch[i] = y.labels[row];
    else std::memcpy(ws.y_batch.data() + i * k, y.values + row * k, k * sizeof(T));
    if (y.weights) ws.weight_batch[i] = y.weights[row];
  }
  Targets<T> batch;
  if (y.labels) batch.labels = ws.label_batch.data();
  else batch.values = ws.y_batch.data();
  if (y.weights) batch.weights = ws.weight_batch.data();
  return batch;
}

// The targets of rows lo .. lo+n-1.
template <class T>
Targets<T> rows_from(Targets<T> y, std::size_t lo, std::size_t k) {
  return {y.labels ? y.labels + lo : nullptr, y.values ? y.values + lo * k : nullptr,
          y.weights ? y.weights + lo : nullptr};
}

// The rule of one batch: a per-sample weight decay divided by the batch's weight (Σ sample
// weights in row order, in double, as numpy_training sums them; its rows without
// weights). A batch of weight 0 has no decay.
template <class T>
Update<T> batch_rule(const Update<T>& up, Targets<T> y, std::size_t n) {
  if (!up.decay_per_sample) return up;
  double weight = 0.0;
  if (y.weights)
    for (std::size_t i = 0; i < n; ++i) weight += static_cast<double>(y.weights[i]);
  else
    weight = static_cast<double>(n);
  Update<T> batch = up;
  batch.weight_decay = weight > 0 ? up.weight_decay / weight : 0.0;
  batch.penalty = weight > 0 ? up.penalty / weight : 0.0;
  return batch;
}

// The batch x[rows[0..n)] and its targets, copied into the workspace as X[order][lo:hi]
// does; rows null: the first n rows of x, in place.
template <class T>
std::pair<const T*, Targets<T>> gather_batch(Workspace<T>& ws, const T* x, Targets<T> y,
                                             const std::int64_t* rows, std::size_t n) {
  if (rows == nullptr) return {x, y};
  const std::size_t s_in = ws.net.sizes.front();
  for (std::size_t i = 0; i < n; ++i)
    std::memcpy(ws.x_batch.data() + i * s_in, x + static_cast<std::size_t>(rows[i]) * s_in,
                s_in * sizeof(T));
  return {ws.x_batch.data(), gather_targets(ws, y, rows, n)};
}

// Update number `number` (by `up`) on the batch whose row i is row x_rows[i] of x (x_rows
// null: rows 0 .. n-1), read in place: only the kernels of layer 0 read x. layer0_done: the
// previous step computed this batch's z(0) and a(0); next (or null): the batch whose z(0)
// and a(0) this step computes (see NextBatch).
template <class T>
StepResult step_on_rows(T* const* w, T* const* b, const BatchNorms<T>& norms, Workspace<T>& ws,
                        const T* x, const std::int64_t* x_rows, Targets<T> y, std::size_t n,
                        const Update<T>& rule, long long number, bool layer0_done = false,
                        const NextBatch<T>* next = nullptr) {
  const Network& net = ws.net;
  const Update<T> up = batch_rule(rule, y, n);
  const std::size_t last = net.n_layers() - 1;
  forward(ws, w, b, norms, x, x_rows, n, MaskSource{up.mask_seed, number, 0}, layer0_done);
  StepResult result;
  if (!batch_finite(ws, x, x_rows, n)) {
    result.x_finite = false;
    return result;
  }
  update_running_stats(ws, norms, n);
  result.loss = loss_and_delta(ws, y, n) + weight_penalty(net, w, static_cast<T>(up.penalty));
  result.score_sum = score_sum(net, ws.z[last].data(), activations(ws, last), y, n);
  backward_and_update(ws, w, b, norms, x, x_rows, n, up, number, next);
  return result;
}

// ---- the network's rules ----

// The Python model's names, in the order of the enums.
const char* name_of(Output output) {
  static const char* const names[] = {"softmax", "sigmoid", "identity", "exp"};
  return names[static_cast<int>(output)];
}

const char* name_of(Loss loss) {
  static const char* const names[] = {"cross_entropy", "binary_cross_entropy", "quadratic", "poisson"};
  return names[static_cast<int>(loss)];
}

// The losses each output supports, its natural one first (specs.py OUTPUT_LOSSES).
std::vector<Loss> losses_of(Output output) {
  switch (output) {
    case Output::softmax: return {Loss::cross_entropy};
    case Output::sigmoid: return {Loss::binary_cross_entropy, Loss::quadratic};
    case Output::identity: return {Loss::quadratic};
    case Output::exp: return {Loss::poisson};
  }
  return {};
}

// Python's repr of a tuple of names: ('a',) or ('a', 'b').
template <class Items>
std::string tuple_repr(const Items& items) {
  std::string s = "(";
  for (auto item : items) s += (s.size() > 1 ? ", '" : "'") + std::string(name_of(item)) + "'";
  return s + (items.size() == 1 ? ",)" : ")");
}

// Buffer sizes are products of the widths and the batch size: refuse ones that overflow.
constexpr std::size_t kMaxElements = std::size_t(1) << 40;

void check_product(std::size_t a, std::size_t b, const char* what) {
  if (a != 0 && b > kMaxElements / a)
    throw std::invalid_argument(std::string(what) + ": the workspace would be too large (" +
                                std::to_string(a) + " x " + std::to_string(b) + " elements)");
}

}  // namespace

Output output_from_name(const std::string& name) {
  const auto all = {Output::softmax, Output::sigmoid, Output::identity, Output::exp};
  for (Output output : all)
    if (name == name_of(output)) return output;
  throw std::invalid_argument("output: expected one of " + tuple_repr(all) + ", got '" + name + "'");
}

Loss loss_from_name(const std::string& name, Output output) {
  const std::vector<Loss> supported = losses_of(output);
  for (Loss loss : supported)
    if (name == name_of(loss)) return loss;
  throw std::invalid_argument("loss: '" + name + "' is not supported with output='" + name_of(output) +
                              "'; expected one of " + tuple_repr(supported));
}

Network make_network(const std::vector<long long>& sizes, std::vector<HiddenLayer> hidden,
                     const std::string& output, const std::string& loss, long long max_batch) {
  if (max_batch < 1)
    throw std::invalid_argument("max_batch: expected an integer >= 1, got " + std::to_string(max_batch));
  if (sizes.size() < 2) throw std::invalid_argument("sizes: expected at least two layer widths");
  Network net;
  for (long long s : sizes) {
    if (s < 1) throw std::invalid_argument("sizes: expected widths >= 1, got " + std::to_string(s));
    net.sizes.push_back(static_cast<std::size_t>(s));
  }
  if (hidden.size() != sizes.size() - 2)
    throw std::invalid_argument("hidden: expected one (name, param) per hidden layer (" +
                                std::to_string(sizes.size() - 2) + "), got " + std::to_string(hidden.size()));
  for (std::size_t l = 0; l < hidden.size(); ++l) {
    if (!std::isfinite(hidden[l].param))
      throw std::invalid_argument("hidden[" + std::to_string(l) + "]: expected a finite parameter");
    if (!(hidden[l].dropout >= 0.0 && hidden[l].dropout < 1.0))
      throw std::invalid_argument("dropout[" + std::to_string(l) + "]: expected a rate in [0, 1)");
  }
  net.hidden = std::move(hidden);
  net.output = output_from_name(output);
  net.loss = loss_from_name(loss, net.output);
  if (net.output == Output::softmax && net.sizes.back() < 2)
    throw std::invalid_argument("sizes: a softmax output needs at least 2 units, got " +
                                std::to_string(net.sizes.back()) +
                                "; use output='sigmoid' for one binary output");
  const auto batch = static_cast<std::size_t>(max_batch);
  for (std::size_t l = 0; l < net.n_layers(); ++l) {
    check_product(net.sizes[l + 1], is_maxout(net, l) ? net.hidden[l].maxout_pieces : 1, "sizes");
    check_product(net.rows(l), net.sizes[l], "sizes");
    check_product(net.rows(l), batch, "max_batch");
  }
  check_product(net.sizes.front(), batch, "max_batch");
  return net;
}

template <class T>
T require_finite(double value, const char* arg) {
  if (!std::isfinite(value) || !std::isfinite(static_cast<T>(value))) {
    char text[32];
    std::snprintf(text, sizeof text, "%.17g", value);
    throw std::invalid_argument(std::string(arg) + ": expected a finite number" +
                                (std::isfinite(value) ? " in the array's dtype" : "") + ", got " + text);
  }
  return static_cast<T>(value);
}

// ---- training ----

template <class T>
Workspace<T>::Workspace(const Network& network, std::size_t batch)
    : net(network), max_batch(batch) {
  const std::size_t layers = net.n_layers();
  z.resize(layers);
  a.resize(layers);
  delta.resize(layers);
  argmax.resize(layers);
  dropped.resize(layers);
  mask.resize(layers);
  for (auto* v : {&xhat, &mean, &var, &inv_std}) v->resize(layers);
  std::size_t max_params = 0, max_rows = 0, max_maxout_units = 0;
  for (std::size_t l = 0; l < layers; ++l) {
    const std::size_t rows = net.rows(l), units = net.sizes[l + 1];
    z[l].resize(batch * rows);
    delta[l].resize(batch * rows);
    if (layer_activation(net, l) != Act::identity || is_maxout(net, l)) a[l].resize(batch * units);
    if (net.has_dropout(l)) {
      dropped[l].resize(batch * units);
      mask[l].resize(batch * units);
    }
    if (net.has_batch_norm(l)) {
      xhat[l].resize(batch * rows);
      for (auto* v : {&mean, &var, &inv_std}) (*v)[l].resize(rows);
    }
    if (is_maxout(net, l)) {
      argmax[l].resize(batch * units);
      max_maxout_units = std::max(max_maxout_units, units);
    }
    max_params = std::max(max_params, rows * net.sizes[l]);
    max_rows = std::max(max_rows, rows);
  }
  d_maxout.resize(batch * max_maxout_units);
  dw.resize(max_params);
  db.resize(max_rows);
  dgamma.resize(max_rows);
  dbeta.resize(max_rows);
  x_batch.resize(batch * net.sizes.front());
  y_batch.resize(batch * net.sizes.back());
  label_batch.resize(batch);
  weight_batch.resize(batch);
}

template <class T>
StepResult train_step(T* const* w, T* const* b, const BatchNorms<T>& norms, Workspace<T>& ws,
                      const T* x, Targets<T> y, std::size_t n, const Update<T>& up) {
  StepResult result = step_on_rows(w, b, norms, ws, x, static_cast<const std::int64_t*>(nullptr), y,
                                   n, up, up.step + 1);
  if (!result.x_finite) return result;
  result.finite = std::isfinite(result.loss);
  const Network& net = ws.net;
  for (std::size_t l = 0; l < net.n_layers() && result.finite; ++l) {
    result.finite = in_range(w[l], net.rows(l) * net.sizes[l]) && in_range(b[l], net.rows(l));
    if (net.has_batch_norm(l))
      result.finite = result.finite && in_range(norms.gamma[l], net.rows(l)) &&
                      in_range(norms.beta[l], net.rows(l));
  }
  return result;
}

template <class T>
StepResult batch_gradients(T* const* dw, T* const* db, T* const* dgamma, T* const* dbeta,
                           T* const* w, T* const* b, const BatchNorms<T>& norms, Workspace<T>& ws,
                           const T* x, Targets<T> y, const std::int64_t* rows, std::size_t n, T scale,
                           T weight_decay, const MaskSource& masks) {
  const Network& net = ws.net;
  const std::size_t last = net.n_layers() - 1;
  if (n == 0) {  // an empty shard adds nothing to the sum of the shards' gradients
    for (std::size_t l = 0; l <= last; ++l) {
      std::fill_n(dw[l], net.rows(l) * net.sizes[l], T(0));
      std::fill_n(db[l], net.rows(l), T(0));
      if (net.has_batch_norm(l)) {
        std::fill_n(dgamma[l], net.rows(l), T(0));
        std::fill_n(dbeta[l], net.rows(l), T(0));
      }
    }
    return {0.0, 0.0};
  }
  const auto [xb, yb] = gather_batch(ws, x, y, rows, n);
  forward(ws, w, b, norms, xb, static_cast<const std::int64_t*>(nullptr), n, masks);
  StepResult result;
  result.loss = loss_and_delta(ws, yb, n) + weight_penalty(net, w, weight_decay);
  result.score_sum = score_sum(net, ws.z[last].data(), activations(ws, last), yb, n);
  // δ(L) is linear in the loss, and every gradient is linear in δ(L): one scaling here
  // scales them all
  if (scale != T(1)) {
    T* delta = ws.delta[last].data();
    for (std::size_t i = 0; i < n * net.sizes.back(); ++i) delta[i] *= scale;
  }
  for (std::size_t l = net.n_layers(); l-- > 0;) {
    const bool norm = l > 0 && net.has_batch_norm(l - 1);
    backward_layer(ws, w, norms, xb, n, l, dw[l], db[l], norm ? dgamma[l - 1] : nullptr,
                   norm ? dbeta[l - 1] : nullptr);
  }
  return result;
}

template <class T>
StepResult train_epoch(T* const* w, T* const* b, const BatchNorms<T>& norms, Workspace<T>& ws,
                       const T* x, Targets<T> y, std::size_t n_rows, const std::int64_t* order,
                       std::size_t batch_size, const Update<T>& up, const BatchDone& batch_done) {
  const std::size_t s_in = ws.net.sizes.front(), k = ws.net.sizes.back();
  const bool fuse = fuses_layer0(ws.net, up);
  StepResult total;
  long long number = up.step;
  bool layer0_done = false;  // this batch's z(0), a(0) came with the last step (NextBatch)
  // no worker may still read x or order (NextBatch::after) when this returns or throws
  struct WarmUpDone {
    ~WarmUpDone() { wait_for_warm_up(); }
  } warm_up_done;
  for (std::size_t lo = 0; lo < n_rows; lo += batch_size) {
    const std::size_t n = std::min(batch_size, n_rows - lo), hi = lo + n;
    ++number;
    const std::size_t n_next = std::min(batch_size, n_rows - hi), after = hi + n_next;
    const WarmUp after_next = warm_up_rows(x, order, after, std::min(batch_size, n_rows - after), s_in);
    const EpochRows<T> next_rows = epoch_rows(x, order, hi, s_in);
    const NextBatch<T> next{next_rows.x, next_rows.x_rows, n_next, after_next};
    const NextBatch<T>* then = fuse && hi < n_rows ? &next : nullptr;
    // a shuffled batch: its rows of x are read where they lie, only the targets are gathered
    const EpochRows<T> rows = epoch_rows(x, order, lo, s_in);
    const Targets<T> y_batch = order != nullptr ? gather_targets(ws, y, order + lo, n) : rows_from(y, lo, k);
    StepResult step = step_on_rows(w, b, norms, ws, rows.x, rows.x_rows, y_batch, n, up, number,
                                   layer0_done, then);
    // A batch with a NaN or inf in x ends the epoch with the weights the batches before it
    // gave: computing its z(0) early changed only the workspace.
    if (!step.x_finite) return step;
    layer0_done = then != nullptr;
    total.loss += step.loss * static_cast<double>(n);
    total.score_sum += step.score_sum;
    if (batch_done) batch_done(static_cast<std::size_t>(number - up.step));
  }
  return total;
}

namespace {

// What train_step and train_epoch trust of an Update: rates finite in T (plain SGD uses
// them as T), a state array per layer for each buffer of its rule (also for gamma and beta
// when the net is batch-normalised), a step count >= 0.
template <class T>
void check_update(const Network& net, const Update<T>& up) {
  require_finite<T>(up.lr, "lr");
  require_finite<T>(up.weight_decay, "weight_decay");
  require_finite<T>(up.penalty, "penalty");
  const int buffers = up.rule == Rule::sgd ? 0 : up.rule == Rule::momentum ? 2 : 4;
  bool normalised = false;
  for (std::size_t l = 0; l < net.hidden.size(); ++l) normalised = normalised || net.has_batch_norm(l);
  for (int i = 0; i < 4; ++i) {
    if ((up.state[i] != nullptr) != (i < buffers))
      throw std::invalid_argument("state: expected " + std::to_string(buffers / 2) +
                                  " buffer(s) per parameter array for this rule");
    if ((up.norm_state[i] != nullptr) != (normalised && i < buffers))
      throw std::invalid_argument("state: expected " + std::to_string(normalised ? buffers / 2 : 0) +
                                  " buffer(s) per gamma and beta array for this rule");
  }
  if (up.step < 0) throw std::invalid_argument("step: expected an integer >= 0, got " + std::to_string(up.step));
}

// A batch-normalised net has gamma and beta per normalised layer (and the running
// statistics when `running`: a training step updates them), and trains on batches of at
// least 2 rows (`what` names the argument that gives the batch's rows).
template <class T>
void check_norms(const Network& net, const BatchNorms<T>& norms, std::size_t smallest_batch,
                 const char* what, bool running) {
  for (std::size_t l = 0; l < net.hidden.size(); ++l) {
    if (!net.has_batch_norm(l)) continue;
    if (!norms.gamma || !norms.beta || !norms.gamma[l] || !norms.beta[l] ||
        (running && (!norms.running_mean || !norms.running_var || !norms.running_mean[l] ||
                     !norms.running_var[l])))
      throw std::invalid_argument("gammas: expected gamma, beta" +
                                  std::string(running ? " and running statistics" : "") +
                                  " for layer " + std::to_string(l));
    if (smallest_batch < 2)
      throw std::invalid_argument(std::string(what) + ": batch normalization needs training batches of "
                                  "at least 2 rows, got " + std::to_string(smallest_batch));
  }
}

}  // namespace

template <class T>
Trainer<T>::Trainer(const Network& net, std::size_t max_batch) : ws_(net, max_batch) {}

template <class T>
Trainer<T>::Claim::Claim(Trainer& trainer) : busy_(trainer.busy_) {
  if (busy_.exchange(true))
    throw std::runtime_error("workspace: already in use by another thread; give each thread its own model");
}

template <class T>
Trainer<T>::Claim::~Claim() {
  busy_ = false;
}

template <class T>
StepResult Trainer<T>::step(const Claim&, T* const* w, T* const* b, const BatchNorms<T>& norms,
                            const T* x, Targets<T> y, std::size_t n, const Update<T>& up) {
  if (n > ws_.max_batch)
    throw std::invalid_argument("x: " + std::to_string(n) + " rows exceed the workspace's max_batch " +
                                std::to_string(ws_.max_batch));
  check_update(ws_.net, up);
  check_norms(ws_.net, norms, n, "x", true);
  return train_step(w, b, norms, ws_, x, y, n, up);
}

template <class T>
StepResult Trainer<T>::epoch(const Claim&, T* const* w, T* const* b, const BatchNorms<T>& norms,
                             const T* x, Targets<T> y, std::size_t n_rows, const std::int64_t* order,
                             long long batch_size, const Update<T>& up, const BatchDone& batch_done) {
  if (batch_size < 1 || static_cast<std::size_t>(batch_size) > ws_.max_batch)
    throw std::invalid_argument("batch_size: expected 1 .. max_batch (" + std::to_string(ws_.max_batch) +
                                "), got " + std::to_string(batch_size));
  check_update(ws_.net, up);
  const auto size = static_cast<std::size_t>(batch_size);
  if (n_rows > 0) check_norms(ws_.net, norms, std::min(size, n_rows % size ? n_rows % size : size), "batch_size", true);
  return train_epoch(w, b, norms, ws_, x, y, n_rows, order, size, up, batch_done);
}

template <class T>
StepResult Trainer<T>::gradients(const Claim&, T* const* dw, T* const* db, T* const* dgamma,
                                 T* const* dbeta, T* const* w, T* const* b, const BatchNorms<T>& norms,
                                 const T* x, Targets<T> y, const std::int64_t* rows, std::size_t n,
                                 double scale, double weight_decay, const MaskSource& masks) {
  for (std::size_t l = 0; l < ws_.net.n_layers(); ++l)
    if (dw[l] == w[l] || db[l] == b[l])
      throw std::invalid_argument("dws, dbs: expected arrays of their own, got the weights or biases");
  if (n > ws_.max_batch)
    throw std::invalid_argument("rows: " + std::to_string(n) + " rows exceed the workspace's max_batch " +
                                std::to_string(ws_.max_batch));
  check_norms(ws_.net, norms, n == 0 ? 2 : n, "rows", false);  // an empty shard writes zeros
  for (std::size_t l = 0; l < ws_.net.hidden.size(); ++l)
    if (ws_.net.has_batch_norm(l) && (!dgamma || !dbeta || !dgamma[l] || !dbeta[l]))
      throw std::invalid_argument("dgammas, dbetas: expected arrays for layer " + std::to_string(l));
  const T scale_t = require_finite<T>(scale, "scale");
  const T wd_t = require_finite<T>(weight_decay, "weight_decay");
  return batch_gradients(dw, db, dgamma, dbeta, w, b, norms, ws_, x, y, rows, n, scale_t, wd_t, masks);
}

#define FASTMLP_INSTANTIATE(T)                                                                 \
  template struct Workspace<T>;                                                                \
  template StepResult train_step<T>(T* const*, T* const*, const BatchNorms<T>&, Workspace<T>&, \
                                    const T*, Targets<T>, std::size_t, const Update<T>&);      \
  template StepResult batch_gradients<T>(T* const*, T* const*, T* const*, T* const*,         \
                                         T* const*, T* const*, const BatchNorms<T>&,         \
                                         Workspace<T>&, const T*, Targets<T>,                \
                                         const std::int64_t*, std::size_t, T, T,             \
                                         const MaskSource&);                                 \
  template StepResult train_epoch<T>(T* const*, T* const*, const BatchNorms<T>&,              \
                                     Workspace<T>&, const T*, Targets<T>, std::size_t,        \
                                     const std::int64_t*, std::size_t, const Update<T>&,      \
                                     const BatchDone&);                                       \
  template T require_finite<T>(double, const char*);                                          \
  template class Trainer<T>;
FASTMLP_INSTANTIATE(float)
FASTMLP_INSTANTIATE(double)
#undef FASTMLP_INSTANTIATE

}  // namespace fastmlp
