"""One bench entry of benches/bench_mpi.py, run as `[mpirun -n R] python mpi_epoch.py CASE
DTYPE THREADS MODE`: samples/s of one training epoch of a design case (fastmlp.bench), best
of 3 after a warm-up epoch. MODE "fit" is the plain one-process fit(); "mpi" is
fit(comm=COMM_WORLD) over the launched ranks. Rank 0 prints the rate as JSON."""
import json
import sys
import time

from mpi4py import MPI

import fastmlp
from fastmlp.bench import CASES, LR, synthetic

REPEAT = 3


def main():
    case, dtype, threads, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    comm = MPI.COMM_WORLD if mode == "mpi" else None
    sizes, activation, batch_size, n = CASES[case]
    X, y = synthetic(n, sizes, dtype)
    fastmlp.set_num_threads(threads)
    net = fastmlp.MLP(sizes, activation=activation, backend="native", dtype=dtype, seed=0)

    def epoch():
        MPI.COMM_WORLD.Barrier()
        start = time.perf_counter()
        net.fit(X, y, epochs=1, batch_size=batch_size, lr=LR, comm=comm)
        MPI.COMM_WORLD.Barrier()
        return time.perf_counter() - start

    epoch()
    best = min(epoch() for _ in range(REPEAT))
    if MPI.COMM_WORLD.Get_rank() == 0:
        print(json.dumps({"samples_per_s": n / best, "seconds": best, "samples": n}))


if __name__ == "__main__":
    main()
