// Blocks of work spread over threads: a small pool of our own instead of OpenMP's
// fork/join regions.
//
// Why not `omp parallel for`: at the end of a region the calling thread waits until every
// thread of the team has arrived, even one that had nothing left to do, so a worker that
// the OS or a VM's host wakes late stalls the whole product (measurements:
// docs/performance-notes.md, "Threads"). Here the caller claims blocks from the same
// counter as the workers and waits only for blocks that a worker has claimed, so a late
// worker finds nothing left and costs nothing.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastmlp {

using BlockFn = void (*)(const void* context, std::size_t block, std::size_t slot);

// Memory that the workers of a job read into their caches once no block of it is left:
// what the caller's next job will read from memory and no thread has touched yet, read
// while the caller works alone in between (train_epoch: the rows of X of the batch after
// next). `count` rows of `bytes` >= 1 bytes, row i at base + rows[i] * bytes (rows null:
// base + i * bytes). A worker stops reading when the next job begins. Everything named
// here must stay valid until wait_for_warm_up() returns.
struct WarmUp {
  const char* base = nullptr;
  const std::int64_t* rows = nullptr;
  std::size_t count = 0, bytes = 0;
};

// Returns once no worker is reading a WarmUp's memory any more.
void wait_for_warm_up();

// See parallel_blocks.
void run_blocks(std::size_t blocks, std::size_t threads, BlockFn fn, const void* context,
                const WarmUp* warm_up = nullptr);

// Calls body(block, slot) once for each block in [0, blocks), on up to `threads` threads
// (the caller is one of them), and returns when all have run. `slot` < threads differs
// between bodies that run at the same time (per-thread scratch); the caller is slot 0.
// The caller runs every block itself, in order, when threads <= 1 or while another
// caller's blocks are in flight. body must not throw (if it does, the process ends: other
// threads may still be running blocks that use the caller's data). warm_up: see WarmUp.
template <class Body>
void parallel_blocks(std::size_t blocks, std::size_t threads, const Body& body,
                     const WarmUp* warm_up = nullptr) {
  run_blocks(blocks, threads,
             [](const void* context, std::size_t block, std::size_t slot) noexcept {
               (*static_cast<const Body*>(context))(block, slot);
             },
             &body, warm_up);
}

}  // namespace fastmlp
