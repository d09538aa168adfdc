"""Data-parallel training over MPI (fastmlp.distributed), run under `mpirun -n 2`.

Each case launches tests/mpi_worker.py (or the CLI) in 2 MPI processes, with a timeout so
that a hang fails the test instead of blocking CI.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import MLP_BACKENDS

MPI = pytest.importorskip("mpi4py.MPI", reason="mpi4py is not installed (pip install '.[mpi]')")

import mpi_worker  # noqa: E402  (after the skip: it imports mpi4py)
from fastmlp import MLP, distributed  # noqa: E402


def find_mpirun():
    """mpirun beside this Python (the mpich wheel puts it in the venv), else on PATH."""
    beside = Path(sys.executable).parent / "mpirun"
    return str(beside) if beside.exists() else shutil.which("mpirun")


MPIRUN = find_mpirun()
needs_mpirun = pytest.mark.skipif(MPIRUN is None, reason="no mpirun (pip install '.[mpi]')")
TIMEOUT = 180   # seconds; generous for a loaded machine, short enough to catch a hang
WORKER = Path(__file__).with_name("mpi_worker.py")


def mpirun(args, n=2, timeout=TIMEOUT, cwd=None):
    """Run `mpirun -n n args...` -> CompletedProcess; kill the whole job on timeout."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([MPIRUN, "-n", str(n), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
                            cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"mpirun hung for {timeout}s\nstdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_worker(tmp_path, **case):
    return mpirun([sys.executable, str(WORKER), json.dumps(case), str(tmp_path)])


def relative_error(a, b):
    scale = np.abs(b).max()
    return np.abs(a - b).max() / (scale if scale else 1.0)


# ------------------------------------------------------------------ 2 ranks = 1 process

@needs_mpirun
@pytest.mark.parametrize("backend", MLP_BACKENDS)
@pytest.mark.parametrize("optimizer", sorted(mpi_worker.OPTIMIZERS))
def test_two_ranks_match_one_process_with_every_optimizer(tmp_path, optimizer, backend):
    """Each rank applies the same update to the summed gradient: the optimizer's buffers,
    schedule and weights equal one process's."""
    result = run_worker(tmp_path, mode="parity", arch="relu_softmax", backend=backend,
                        optimizer=optimizer)
    assert result.returncode == 0, result.stderr
    net, hist = mpi_worker.train("relu_softmax", backend, optimizer=optimizer)
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    arrays = {f"p{i}": p for i, p in enumerate(net.weights + net.biases)}
    arrays.update({f"s{i}": s for i, s in enumerate(net.optimizer.state_arrays())})
    assert len(arrays) > len(net.weights + net.biases)   # the optimizer has buffers
    for name, want in arrays.items():
        assert relative_error(ranks[0][name], want) < 1e-10, (name, relative_error(ranks[0][name], want))
        np.testing.assert_array_equal(ranks[1][name], ranks[0][name])
    np.testing.assert_allclose(ranks[0]["lr"], hist.lr, rtol=1e-12)
    np.testing.assert_allclose(ranks[0]["loss"], hist.loss, rtol=1e-10)


@needs_mpirun
@pytest.mark.parametrize("backend", MLP_BACKENDS)
@pytest.mark.parametrize("arch", sorted(mpi_worker.ARCHITECTURES))
def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path, arch, backend):
    result = run_worker(tmp_path, mode="parity", arch=arch, backend=backend)
    assert result.returncode == 0, result.stderr
    net, hist = mpi_worker.train(arch, backend)
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    params = (net.weights + net.biases + net.gammas + net.betas + net.running_means +
              net.running_vars)
    # a batch-normalised layer's bias has gradient 0: its values are rounding noise (~1e-17)
    noise = {len(net.weights) + l for l, bn in enumerate(net.batch_norm) if bn}
    for i, p in enumerate(params):
        if i in noise:
            assert np.abs(ranks[0][f"p{i}"] - p).max() < 1e-12
            continue
        assert relative_error(ranks[0][f"p{i}"], p) < 1e-10, (i, relative_error(ranks[0][f"p{i}"], p))
        # the ranks apply the same updates: bitwise the same weights
        np.testing.assert_array_equal(ranks[1][f"p{i}"], ranks[0][f"p{i}"])
    for name in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_allclose(ranks[0][name], getattr(hist, name), rtol=1e-10)
        np.testing.assert_array_equal(ranks[1][name], ranks[0][name])


# ------------------------------------------------------------------ failures end every rank

@needs_mpirun
@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_bad_data_on_one_rank_fails_every_rank_with_its_message(tmp_path, backend):
    result = run_worker(tmp_path, mode="bad_data", backend=backend)
    assert result.returncode != 0
    # both ranks raise, each naming the rank with the bad data and why
    assert result.stderr.count("bad input on rank 1: ValueError: X: contains NaN") == 2, \
        result.stderr
    assert "done" not in result.stdout


@needs_mpirun
def test_ranks_with_different_data_refuse_to_train(tmp_path):
    result = run_worker(tmp_path, mode="different_data", backend="numpy")
    assert result.returncode != 0
    assert result.stderr.count("rank 1 differs from rank 0 in training data") == 2, result.stderr


@needs_mpirun
@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_an_exception_in_a_step_on_one_rank_aborts_every_rank(tmp_path, backend):
    result = run_worker(tmp_path, mode="raises_in_step", backend=backend)
    assert result.returncode != 0
    assert ("MPI rank 1 of 2 failed during training (RuntimeError: planted failure in a "
            "training step); aborting every rank") in result.stderr, result.stderr
    assert "done" not in result.stdout


@needs_mpirun
def test_a_rank_that_dies_ends_the_job(tmp_path):
    result = run_worker(tmp_path, mode="dies_in_step", backend="numpy")
    assert result.returncode != 0
    assert "done" not in result.stdout


# ------------------------------------------------------------------ rank 0 reports and saves

@needs_mpirun
def test_progress_and_save_happen_on_rank_0_only(tmp_path):
    result = run_worker(tmp_path, mode="print_and_save", backend="numpy")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("progress from rank 0") == 2
    assert "progress from rank 1" not in result.stdout
    assert sorted(p.name for p in tmp_path.glob("model_rank*")) == ["model_rank0.npz"]


@needs_mpirun
def test_cli_under_mpirun_prints_and_saves_once(tmp_path):
    path = tmp_path / "digits.npz"
    result = mpirun([sys.executable, "-m", "fastmlp", "train", "--epochs", "2", "--no-progress",
                     "--backend", "numpy", "--save", str(path)])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("data-parallel over 2 MPI processes") for line in lines)
    assert sum(line.startswith("epoch") for line in lines) == 2
    assert sum(line.startswith("test accuracy") for line in lines) == 1
    assert lines.count(f"saved to {path}") == 1
    assert MLP.load(path).sizes == [64, 30, 30, 10]


@needs_mpirun
def test_cli_error_on_every_rank_exits_non_zero_without_hanging(tmp_path):
    result = mpirun([sys.executable, "-m", "fastmlp", "train", "--data",
                     str(tmp_path / "missing.npz")])
    assert result.returncode == 1
    assert "MPI rank 0 of 2: error: --data" in result.stderr or \
        "MPI rank 1 of 2: error: --data" in result.stderr


@needs_mpirun
def test_readme_mpi_example_runs_under_mpirun(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme.split("## Training over MPI", 1)[1].split("```python\n", 1)[1]
    (tmp_path / "train.py").write_text(example.split("```", 1)[0])
    result = mpirun([sys.executable, "train.py"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "digits.npz").exists()


# ------------------------------------------------------------------ in process, one rank

@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_one_rank_trains_bitwise_like_fit_without_comm(backend):
    (X, Y), val = mpi_worker.make_data("relu_softmax")
    nets = [mpi_worker.make_net("relu_softmax", backend) for _ in range(2)]
    hists = [nets[0].fit(X, Y, validation_data=val, **mpi_worker.FIT),
             nets[1].fit(X, Y, validation_data=val, comm=MPI.COMM_SELF, **mpi_worker.FIT)]
    for a, b in zip(nets[0].weights + nets[0].biases, nets[1].weights + nets[1].biases):
        np.testing.assert_array_equal(a, b)
    assert hists[0].val_loss == pytest.approx(hists[1].val_loss, rel=1e-12)
    assert hists[0].accuracy == hists[1].accuracy


def test_comm_must_be_an_mpi_communicator():
    net = MLP([3, 2], output="sigmoid", backend="numpy")
    with pytest.raises(TypeError, match="comm: expected an mpi4py communicator"):
        net.fit(np.zeros((4, 3)), np.zeros((4, 2)), comm="world")


def test_shards_cover_each_batch_once_in_order():
    for m in (1, 2, 7, 15):
        for size in (1, 2, 3, 5):
            bounds = [distributed.shard(10, 10 + m, r, size) for r in range(size)]
            assert bounds[0][0] == 10 and bounds[-1][1] == 10 + m
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))


def test_threads_per_rank_divides_the_cores_among_the_ranks_of_a_host():
    assert distributed.threads_per_rank(MPI.COMM_SELF) == distributed._cores()
