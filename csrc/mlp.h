// A whole training step, and a whole epoch, of an MLP in C++.
// Twin: python/fastmlp/numpy_training.py (train_batch, epoch, gradients), which writes the
// lecture's equations (equations.py) one kernel call at a time.
//
// train_step makes the same kernel calls, in the same order and with the same formulas,
// as numpy_training.train_batch on the native kernel table: forward through linear_forward (fused
// bias + activation; maxout_forward for maxout layers), the output's loss kernel, the
// backward pass through linear_backward (fused f' epilogue; maxout_backward), and the
// weight-decay SGD update through sgd_update. Dropout's masks (kernels/dropout.h) are drawn
// and applied in the epilogues of those products; a batch-normalised layer runs
// batch_norm_forward after its product and batch_norm_backward after the derivative's.
// So it agrees with the NumPy reference within the kernels' rounding, and bitwise with the
// Python loop over the native kernels.
//
// Every buffer lives in a Workspace allocated once for a largest batch size: a
// steady-state step or epoch allocates nothing (the GEMM's packing buffers only grow).
//
// The network's rules (make_network) and the one-call-at-a-time Trainer are stated here
// once; the bindings (csrc/bindings/training.cpp) only convert Python objects and release
// the GIL. Broken rules throw std::invalid_argument (ValueError in Python) with a message
// that starts with the argument's name; a Trainer already in use throws std::runtime_error
// (RuntimeError, as for a model that another thread trains).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/activation.h"

namespace fastmlp {

// exp: the prediction is e^z (a log link, for counts); its loss is poisson.
enum class Output : int { softmax, sigmoid, identity, exp };
enum class Loss : int { cross_entropy, binary_cross_entropy, quadratic, poisson };

// A hidden layer: an element-wise activation (with its leaky slope / ELU alpha), or
// maxout with maxout_pieces > 0 linear pieces per unit (then act is unused).
// dropout: the rate p in [0, 1) at which training drops the layer's outputs (inverted
// dropout, kernels/dropout.h); 0 for none. batch_norm: the layer's z is batch-normalised
// (y = gamma x̂ + beta, batch_norm_forward) before f.
struct HiddenLayer {
  Act act = Act::identity;
  double param = 0.0;
  std::size_t maxout_pieces = 0;
  double dropout = 0.0;
  bool batch_norm = false;
};

// torch.nn.BatchNorm1d's constants, as python/fastmlp/specs.py states them.
constexpr double kBatchNormMomentum = 0.1;
constexpr double kBatchNormEps = 1e-5;

struct Network {
  std::vector<std::size_t> sizes;   // s_1 (inputs), hidden ..., s_L (outputs); >= 2 entries
  std::vector<HiddenLayer> hidden;  // sizes.size() - 2 entries
  Output output = Output::softmax;
  Loss loss = Loss::cross_entropy;

  std::size_t n_layers() const { return sizes.size() - 1; }
  bool has_dropout(std::size_t l) const { return l < hidden.size() && hidden[l].dropout > 0.0; }
  bool has_batch_norm(std::size_t l) const { return l < hidden.size() && hidden[l].batch_norm; }
  // Rows of W(l): the units of layer l+1, times the pieces of a maxout layer.
  std::size_t rows(std::size_t l) const {
    bool maxout = l < hidden.size() && hidden[l].maxout_pieces > 0;
    return sizes[l + 1] * (maxout ? hidden[l].maxout_pieces : 1);
  }
};

// The names the Python model uses (python/fastmlp/specs.py OUTPUT_LOSSES), and its words
// when a name or a pairing is refused.
Output output_from_name(const std::string& name);
// One of the losses `output` supports; any other name, known or not, is refused.
Loss loss_from_name(const std::string& name, Output output);

// The network of widths sizes = [s_1, ..., s_L], checked in this order: max_batch >= 1;
// L >= 2 and every s_l >= 1; one hidden layer per inner width, with a finite parameter; the
// output's name; a loss that goes with it; >= 2 units for a softmax output; no buffer over
// 2^40 elements (layer by layer, then the input batch); dropout rates in [0, 1). The HiddenLayer values come converted
// (activation names through parse_activation, maxout pieces >= 1).
Network make_network(const std::vector<long long>& sizes, std::vector<HiddenLayer> hidden,
                     const std::string& output, const std::string& loss, long long max_batch);

// `value` as T; std::invalid_argument naming `arg` unless it is finite in double and in T.
template <class T>
T require_finite(double value, const char* arg);

// A batch's targets: class labels (n) for a softmax output, else an (n, K) matrix
// (one-hot rows for softmax). Exactly one of the two is set. With sample weights (n finite
// numbers >= 0), J is the weighted mean of the rows' losses (kernels/loss.h).
template <class T>
struct Targets {
  const std::int64_t* labels = nullptr;
  const T* values = nullptr;
  const T* weights = nullptr;
};

// Buffers of one network for batches of up to max_batch rows; per layer l (row-major,
// max_batch rows): z[l] (rows(l) columns), a[l] = f(z[l]) (s_(l+2) columns; may be z[l]
// itself), delta[l] = dJ/dz[l], argmax[l] (maxout layers); for a hidden layer with dropout,
// dropped[l] = a[l] ⊙ mask[l], the next layer's input while training (`masked`: the last
// forward pass applied the masks); for a batch-normalised layer, z[l] holds y (the
// normalised, scaled and shifted z) and xhat[l], mean[l], var[l], inv_std[l] the batch's
// x̂ and statistics. dW / db (and dgamma / dbeta) hold one layer's gradient at a time
// (each layer is updated as soon as its backward pass is done).
template <class T>
struct Workspace {
  Workspace(const Network& net, std::size_t max_batch);

  Network net;
  std::size_t max_batch;
  std::vector<std::vector<T>> z, a, delta;
  std::vector<std::vector<std::int64_t>> argmax;
  std::vector<std::vector<T>> dropped, mask;
  bool masked = false;
  std::vector<std::vector<T>> xhat, mean, var, inv_std;
  std::vector<T> dgamma, dbeta;
  std::vector<T> d_maxout;            // dJ/da of a maxout layer, before routing to its pieces
  std::vector<T> dw, db;
  std::vector<T> x_batch, y_batch;    // a gathered batch of rows
  std::vector<std::int64_t> label_batch;
  std::vector<T> weight_batch;        // its sample weights
};

// Which dropout masks a training pass applies (kernels/dropout.h): those of update number
// `step` of the generator `seed`, the pass's row i being row row_offset + i of its batch.
// step < 0: none (the pass evaluates the network as predict does).
struct MaskSource {
  std::uint64_t seed = 0;
  long long step = -1;
  std::size_t row_offset = 0;
};

// Batch normalization's arrays of the layers l that have it (the others' entries are not
// read): gamma[l], beta[l] (trained like biases), running_mean[l], running_var[l] (updated
// by each training step as torch's), each rows(l) long. All null for a net without.
template <class T>
struct BatchNorms {
  T* const* gamma = nullptr;
  T* const* beta = nullptr;
  T* const* running_mean = nullptr;
  T* const* running_var = nullptr;
};

// How a step updates the weights and biases: torch.optim's rules (twin: python/fastmlp/
// optim.py with numpy_training.update). Plain SGD is fused into the weight gradient's
// product (weight_sgd_step); the others compute dW and db, then run their update kernel
// (update.h) on each array. Weight decay applies to the weights only.
enum class Rule : int { sgd, momentum, adam };

// The rule and its settings, apart from where its state lives.
struct UpdateRule {
  Rule rule = Rule::sgd;
  double lr = 0.0;
  double weight_decay = 0.0;  // SGD and Adam: L2 added to the gradient; AdamW: decoupled
  double penalty = 0.0;       // the weight decay that is part of J (0 for decoupled decay)
  double momentum = 0.0;
  bool nesterov = false;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  // Adam as scikit-learn has it: eps added to √v before the bias correction, i.e. torch's
  // formula with eps / √(1 − β2^t) (python/fastmlp/optim.py Adam.step_eps)
  bool sklearn_eps = false;
  bool decoupled = false;
  long long step = 0;  // updates applied before this call (Adam's t counts from step + 1)
  std::uint64_t mask_seed = 0;  // update number u applies the dropout masks {mask_seed, u}
  // weight_decay and penalty are per unit of batch weight, as scikit-learn's alpha: each
  // batch divides them by its rows' Σ sample weights (its row count without weights)
  bool decay_per_sample = false;
};

template <class T>
struct Update : UpdateRule {
  // Per layer: momentum: velocity of W(l) in state[0], of b(l) in state[1]; Adam: m of
  // W(l), b(l) in state[0], state[1], v in state[2], state[3]. Each shaped like its array.
  T* const* state[4] = {nullptr, nullptr, nullptr, nullptr};
  // The same for gamma(l) and beta(l) of the batch-normalised layers (null without).
  T* const* norm_state[4] = {nullptr, nullptr, nullptr, nullptr};
};

struct StepResult {
  double loss = 0.0;  // J of the batch before the update, weight-decay penalty included
  // what the batch adds to the score: rows predicted right, or the residual sum of
  // squares (identity and exp outputs)
  double score_sum = 0.0;
  // false: a row of x holds NaN or inf. The step then stops before any weight changes (an
  // epoch stops at that batch, its earlier batches applied), and loss and score_sum mean
  // nothing.
  bool x_finite = true;
  // train_step only: the loss is finite and every updated weight and bias array is in
  // range (Σ v² at most T's largest number; else the run diverged, and training.step puts
  // the weights back).
  bool finite = true;
};

// X (n, s_1) row-major, targets of n rows; w[l] (rows(l), s_(l+1)) and b[l] (rows(l))
// row-major, updated in place by `up` (plain SGD: w ← w − lr (dW + weight_decay w),
// b ← b − lr db) with its state; up.step is this update's number minus one.
// n <= ws.max_batch. score_sum as equations.score_sum: argmax z == label (softmax), every
// output's (z >= 0) == (y >= 0.5) (sigmoid), Σ (out − y)² (identity; e^z for exp). Also says whether
// the loss is finite and the new parameters in range (see StepResult::finite).
// With batch norm: the batch's statistics normalise each layer, gamma and beta are updated
// like biases and the running statistics as torch's (n >= 2).
template <class T>
StepResult train_step(T* const* w, T* const* b, const BatchNorms<T>& norms, Workspace<T>& ws,
                      const T* x, Targets<T> y, std::size_t n, const Update<T>& up);

// The gradients of the batch x[rows[0..n)] (rows null: the first n rows of x), times
// `scale`, into dw[l] and db[l] (shaped like w[l] and b[l]); the weights are not changed
// and weight decay is left to the update (sgd_update). Returns J before scaling, with the
// weight-decay penalty, and the score_sum, as train_step. For data-parallel training: with
// scale = n / B the shards of a batch of B rows have gradients that sum to the batch's (and
// masks.row_offset = the shard's first row in the batch: the batch's masks).
// n <= ws.max_batch (n = 0 writes zeros); rows' values are trusted to index rows of x.
// With batch norm (the batch's statistics; the running ones are left alone), also dgamma[l]
// and dbeta[l] of the normalised layers.
template <class T>
StepResult batch_gradients(T* const* dw, T* const* db, T* const* dgamma, T* const* dbeta,
                           T* const* w, T* const* b, const BatchNorms<T>& norms, Workspace<T>& ws,
                           const T* x, Targets<T> y, const std::int64_t* rows, std::size_t n,
                           T scale, T weight_decay, const MaskSource& masks);

// One epoch over X (n_rows, s_1) and its targets: batches of batch_size rows (the last one
// smaller) taken in `order` (a permutation of 0 .. n_rows-1; null: in row order), one
// train_step each (batch i is update number up.step + i + 1). Returns Σ J_batch · rows_batch (as fit() sums it) and the total
// score_sum, or stops at the first batch with a row of x that is not finite (x_finite false): every
// row is read in the first epoch, so fit() needs no pass of its own over X to check it.
// batch_size <= ws.max_batch; order's values are trusted to lie in [0, n_rows).
// batch_done, if set, is called after each batch with the number of batches done (for a
// progress bar); if it throws, the epoch stops there, its batches so far applied.
using BatchDone = std::function<void(std::size_t batches_done)>;
template <class T>
StepResult train_epoch(T* const* w, T* const* b, const BatchNorms<T>& norms, Workspace<T>& ws,
                       const T* x, Targets<T> y, std::size_t n_rows, const std::int64_t* order,
                       std::size_t batch_size, const Update<T>& up,
                       const BatchDone& batch_done = {});

// Training calls on one network, one at a time: the Workspace and a busy flag. Each call
// checks what the functions above trust (row counts against max_batch, the batch size,
// finite lr / weight_decay / scale in T) and then runs them, so its results are theirs.
template <class T>
class Trainer {
 public:
  // `net` from make_network with the same max_batch (>= 1).
  Trainer(const Network& net, std::size_t max_batch);

  const Network& net() const { return ws_.net; }
  std::size_t max_batch() const { return ws_.max_batch; }

  // Held for a whole call, argument handling included (the bindings keep the call's weight
  // pointers in slots of their own, and run it without the GIL): a second Claim while one
  // is held throws "workspace: already in use by another thread; ...".
  class Claim {
   public:
    explicit Claim(Trainer& trainer);
    ~Claim();
    Claim(const Claim&) = delete;
    Claim& operator=(const Claim&) = delete;

   private:
    std::atomic<bool>& busy_;
  };

  // train_step on the n rows of x; n <= max_batch ("x: ..."); up's rates finite in T and
  // its state set for its rule.
  StepResult step(const Claim&, T* const* w, T* const* b, const BatchNorms<T>& norms,
                  const T* x, Targets<T> y, std::size_t n, const Update<T>& up);
  // train_epoch; 1 <= batch_size <= max_batch.
  StepResult epoch(const Claim&, T* const* w, T* const* b, const BatchNorms<T>& norms,
                   const T* x, Targets<T> y, std::size_t n_rows, const std::int64_t* order,
                   long long batch_size, const Update<T>& up, const BatchDone& batch_done = {});
  // batch_gradients; n <= max_batch ("rows: ..."), and dw / db are not the weights' arrays.
  StepResult gradients(const Claim&, T* const* dw, T* const* db, T* const* dgamma,
                       T* const* dbeta, T* const* w, T* const* b, const BatchNorms<T>& norms,
                       const T* x, Targets<T> y, const std::int64_t* rows, std::size_t n,
                       double scale, double weight_decay, const MaskSource& masks);

 private:
  Workspace<T> ws_;
  std::atomic<bool> busy_{false};
};

}  // namespace fastmlp
