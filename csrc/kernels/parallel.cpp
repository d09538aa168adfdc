// The block pool of parallel.h.
//
// One job at a time: the caller publishes it by storing a new generation in `ticket_`,
// whose low bits count the blocks claimed so far. Every thread claims a block by a
// compare-and-swap of the ticket, so a thread that still holds an old generation cannot
// claim anything of a newer job. The caller starts the next job only after `done_` says
// every block of this one has run, so a block's function and context stay valid while
// any thread that claimed it runs it. A job's WarmUp is copied by each worker that claims
// a block of it, so the worker may read its rows after the job (and the caller's WarmUp)
// is gone; `warming_` counts those readers. Idle workers spin for a short while (steps
// follow each other within microseconds), then sleep on a condition variable.
#include "kernels/parallel.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <system_error>
#include <thread>

namespace fastmlp {

namespace {

constexpr unsigned kIndexBits = 32;
constexpr std::uint64_t kIndexMask = (std::uint64_t(1) << kIndexBits) - 1;
// How long an idle worker spins before it sleeps: long enough to span the serial parts
// of a training step, short enough not to keep a core from other work for long.
constexpr std::chrono::microseconds kSpinFor{200};

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

std::uint64_t generation(std::uint64_t ticket) { return ticket >> kIndexBits; }

void run_inline(std::size_t blocks, BlockFn fn, const void* context) {
  for (std::size_t b = 0; b < blocks; ++b) fn(context, b, 0);
}

class Pool {
 public:
  // Call only with threads > 1 and blocks > 1 (run_blocks runs the rest inline).
  void run(std::size_t blocks, std::size_t threads, BlockFn fn, const void* context,
           const WarmUp* warm_up) {
    std::unique_lock<std::mutex> submit(submit_, std::try_to_lock);
    if (!submit.owns_lock() || blocks > kIndexMask) {
      run_inline(blocks, fn, context);
      return;
    }
    add_workers(std::min(threads, blocks) - 1);
    fn_.store(fn, std::memory_order_relaxed);
    context_.store(context, std::memory_order_relaxed);
    blocks_.store(blocks, std::memory_order_relaxed);
    threads_.store(threads, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    warm_up_.store(warm_up, std::memory_order_relaxed);
    const std::uint64_t gen = generation(ticket_.load(std::memory_order_relaxed)) + 1;
    ticket_.store(gen << kIndexBits, std::memory_order_seq_cst);  // publishes all of the above
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard<std::mutex> lock(sleep_); }  // a sleeper is now waiting, or will see gen
      wake_.notify_all();
    }
    work(gen, 0);
    while (done_.load(std::memory_order_acquire) != blocks) cpu_relax();
  }

  void wait_for_warm_up() const {
    while (warming_.load(std::memory_order_acquire) != 0) cpu_relax();
  }

 private:
  // Claims and runs blocks of generation gen until none is left (or a newer job began);
  // then a worker that ran any reads the job's WarmUp.
  void work(std::uint64_t gen, std::size_t slot) {
    WarmUp after;  // the job's WarmUp, once this worker has claimed a block of it
    for (;;) {
      std::uint64_t t = ticket_.load(std::memory_order_acquire);
      if (generation(t) != gen || (t & kIndexMask) >= blocks_.load(std::memory_order_relaxed)) break;
      if (!ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel)) continue;
      // Claimed: the job cannot end before this block is done, so fn_, context_ and
      // warm_up_ are its own.
      if (slot > 0 && after.count == 0) after = claim_warm_up();
      fn_.load(std::memory_order_relaxed)(context_.load(std::memory_order_relaxed),
                                          static_cast<std::size_t>(t & kIndexMask), slot);
      done_.fetch_add(1, std::memory_order_release);
    }
    if (after.count == 0) return;
    read_rows(after, gen);
    warming_.fetch_sub(1, std::memory_order_release);
  }

  // A copy of the running job's WarmUp (count 0: none), counted in warming_ until it has
  // been read. Called with a claimed block in hand: done_ cannot yet tell the caller that
  // the job has ended, so wait_for_warm_up cannot miss the count.
  WarmUp claim_warm_up() {
    const WarmUp* warm_up = warm_up_.load(std::memory_order_relaxed);
    if (warm_up == nullptr || warm_up->count == 0) return {};
    warming_.fetch_add(1, std::memory_order_relaxed);
    return *warm_up;
  }

  // One load per cache line of the rows, until a job newer than gen begins (which the
  // worker then joins late, as any late worker).
  void read_rows(const WarmUp& warm_up, std::uint64_t gen) const {
    for (std::size_t i = 0; i < warm_up.count; ++i) {
      if (generation(ticket_.load(std::memory_order_relaxed)) != gen) return;
      const std::int64_t row = warm_up.rows ? warm_up.rows[i] : static_cast<std::int64_t>(i);
      const volatile char* bytes = warm_up.base + row * static_cast<std::int64_t>(warm_up.bytes);
      for (std::size_t at = 0; at < warm_up.bytes; at += 64) bytes[at];
      bytes[warm_up.bytes - 1];  // the last line, when the row does not start one
    }
  }

  // The ticket of a generation newer than `seen`: spins, then sleeps.
  std::uint64_t next_job(std::uint64_t seen) {
    const auto give_up = std::chrono::steady_clock::now() + kSpinFor;
    for (unsigned spins = 1;; ++spins) {
      std::uint64_t t = ticket_.load(std::memory_order_acquire);
      if (generation(t) != seen) return t;
      cpu_relax();
      if (spins % 64 == 0 && std::chrono::steady_clock::now() > give_up) break;
    }
    std::unique_lock<std::mutex> lock(sleep_);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    std::uint64_t t;
    wake_.wait(lock, [&] { return generation(t = ticket_.load(std::memory_order_seq_cst)) != seen; });
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
    return t;
  }

  void worker(std::size_t slot) {
    std::uint64_t seen = generation(ticket_.load(std::memory_order_acquire));
    for (;;) {
      seen = generation(next_job(seen));
      if (slot < threads_.load(std::memory_order_relaxed)) work(seen, slot);
    }
  }

  // Workers are detached and live as long as the process (the pool is never destroyed,
  // so none can outlive it); worker i runs as slot i + 1.
  void add_workers(std::size_t wanted) {
    while (workers_ < wanted) {
      try {
        std::thread(&Pool::worker, this, workers_ + 1).detach();
      } catch (const std::system_error&) {
        return;  // no more threads: the blocks still all run, on fewer of them
      }
      ++workers_;
    }
  }

  std::mutex submit_;           // one job at a time
  std::size_t workers_ = 0;     // guarded by submit_
  std::atomic<std::uint64_t> ticket_{0};
  std::atomic<BlockFn> fn_{nullptr};
  std::atomic<const void*> context_{nullptr};
  std::atomic<std::size_t> blocks_{0}, threads_{0}, done_{0};
  std::atomic<const WarmUp*> warm_up_{nullptr};
  std::atomic<int> warming_{0};  // workers that will read, or are reading, a WarmUp's rows
  std::mutex sleep_;
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
};

Pool* g_pool = nullptr;
std::once_flag g_pool_once;

// A forked child has only the forking thread: it starts over with a pool of no workers
// (the parent's pool, whose mutexes another thread may have held, is left alone).
void new_pool_in_child() { g_pool = new Pool(); }

Pool& pool() {
  std::call_once(g_pool_once, [] {
    g_pool = new Pool();
    pthread_atfork(nullptr, nullptr, &new_pool_in_child);
  });
  return *g_pool;
}

}  // namespace

void run_blocks(std::size_t blocks, std::size_t threads, BlockFn fn, const void* context,
                const WarmUp* warm_up) {
  // Most products of a small network's step are one block: they never touch the pool.
  if (threads <= 1 || blocks <= 1)
    run_inline(blocks, fn, context);
  else
    pool().run(blocks, threads, fn, context, warm_up);
}

void wait_for_warm_up() {
  pool().wait_for_warm_up();
}

}  // namespace fastmlp
