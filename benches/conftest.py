"""Shared bench plumbing: every bench records its median time per group, and the run ends
with a table of ratios against the group's baseline (the NumPy reference), all measured in
this one run. Machines are noisy: compare ratios, not absolute times."""
import collections
import time

import pytest

# Idle worker threads of the previous bench's thread pool (OpenBLAS spins for up to ~0.1 s,
# libgomp briefly) would steal a core from the next bench; let them fall asleep first.
SETTLE_SECONDS = 0.3

_results = collections.defaultdict(dict)   # group -> {name: (median seconds, work items)}
_baselines = {}                            # group -> its baseline's name, if not "numpy"
_tables = collections.defaultdict(list)    # title -> lines a bench wants printed at the end


@pytest.fixture
def record(benchmark):
    """Run fn under pytest-benchmark and file its median under (group, name).

    `items` is the work per call (samples, FLOPs...) so the table can show a rate.
    """
    def run(group, name, fn, items=None, rounds=5, warmup_rounds=1, baseline="numpy"):
        _baselines[group] = baseline
        benchmark.group = group
        benchmark.name = name
        time.sleep(SETTLE_SECONDS)
        benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=warmup_rounds)
        _results[group][name] = (benchmark.stats.stats.median, items)
    return run


@pytest.fixture
def record_measured():
    """File a time measured elsewhere (e.g. inside an mpirun job) under (group, name);
    ratios in its group are taken against `baseline`."""
    def run(group, name, seconds, items=None, baseline="numpy"):
        _baselines[group] = baseline
        _results[group][name] = (seconds, items)
    return run


@pytest.fixture
def table():
    """table(title, line): a line of a table printed at the end of the run (for numbers
    that are not times: scores, errors)."""
    def add(title, line):
        _tables[title].append(line)
    return add


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    for title, lines in _tables.items():
        tr.section(title)
        for line in lines:
            tr.write_line(line)
    if not _results:
        return
    tr.section("fastmlp: ratios in this run (baseline = numpy unless the group says; "
               "> 1 means faster)")
    for group in sorted(_results):
        entries = _results[group]
        baseline = _baselines.get(group, "numpy")
        base = entries.get(baseline, (None, None))[0]
        tr.write_line(group if baseline == "numpy" else f"{group} (baseline: {baseline})")
        for name, (median, items) in sorted(entries.items(), key=lambda kv: kv[1][0]):
            rate = f"{items / median:14,.0f}/s" if items else " " * 16
            ratio = f"{base / median:6.2f}x" if base else "   n/a"
            tr.write_line(f"    {name:<22} {median * 1e3:10.3f} ms {rate} {ratio}")
