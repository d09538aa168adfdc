"""Samples per second for one training epoch: the design's three cases, native vs the
NumPy reference (and PyTorch CPU when installed), float32 and float64, in one run.

    python -m pytest benches/bench_training.py --benchmark-only
"""
import pytest

from fastmlp.bench import CASES, make_runner
from fastmlp.model import DTYPES

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("runner", ["numpy", "native", "torch"])
def test_epoch(record, case, dtype, runner):
    epoch, n = make_runner(runner, case, dtype)
    if epoch is None:
        pytest.skip(f"{runner} is not installed")
    record(f"epoch {case} {dtype}", runner, epoch, items=n, rounds=3)
