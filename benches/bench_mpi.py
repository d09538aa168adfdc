"""Data-parallel training on one host: 1 process × 2 threads against 2 MPI ranks × 1
thread, on the design's mid and big cases (native backend), in one run.

    python -m pytest benches/bench_mpi.py --benchmark-only

Each entry runs benches/mpi_epoch.py in its own process(es), which times its epochs
itself (mpirun's start-up is not counted; pytest-benchmark's own table shows whole
jobs), so the table's baseline is the plain fit() of
one process with 2 threads; "1 rank x 2 threads" is fit(comm=...) on one MPI rank (the
cost of the data-parallel path alone).
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install '.[mpi]')")

SCRIPT = Path(__file__).with_name("mpi_epoch.py")
MPIRUN = (str(Path(sys.executable).parent / "mpirun")
          if (Path(sys.executable).parent / "mpirun").exists() else shutil.which("mpirun"))
CONFIGS = {  # name: (ranks, threads per rank, mode)
    "fit 1 x 2 threads": (1, 2, "fit"),
    "mpi 1 rank x 2 thr": (1, 2, "mpi"),
    "mpi 2 ranks x 1 thr": (2, 1, "mpi"),
}
BASELINE = "fit 1 x 2 threads"


@pytest.mark.skipif(MPIRUN is None, reason="no mpirun (pip install '.[mpi]')")
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ["mid", "big"])
def test_mpi_epoch(benchmark, record_measured, case, dtype, config):
    ranks, threads, mode = CONFIGS[config]

    def job():
        return subprocess.run([MPIRUN, "-n", str(ranks), sys.executable, str(SCRIPT), case,
                               dtype, str(threads), mode], capture_output=True, text=True,
                              timeout=900, check=True).stdout

    # pytest-benchmark times the whole job (start-up included); the table below uses the
    # epoch time the job measured itself
    benchmark.group = f"mpi job {case} {dtype}"
    out = benchmark.pedantic(job, rounds=1, iterations=1)
    result = json.loads(out.strip().splitlines()[-1])
    record_measured(f"mpi {case} {dtype}", config, result["seconds"], result["samples"],
                    baseline=BASELINE)
