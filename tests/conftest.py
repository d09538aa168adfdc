"""Shared fixtures: `mlp_backend` runs a model test on every backend that can run the MLP;
`isa` runs a native test under every ISA cap this CPU can run."""
import threading

import pytest

import fastmlp
from fastmlp.backend import native_unavailable


def native_skip_reason():
    """Why the native backend cannot run an MLP here, or None if it can."""
    return native_unavailable()


MLP_BACKENDS = [
    pytest.param("numpy"),
    pytest.param("native", marks=pytest.mark.skipif(native_skip_reason() is not None,
                                                    reason=str(native_skip_reason()))),
]


@pytest.fixture(params=MLP_BACKENDS)
def mlp_backend(request):
    return request.param


def _native_isas():
    """The ISA caps this CPU can run, slowest first; none without the native backend."""
    order = ("generic", "avx2", "avx512")
    try:
        cpu = fastmlp.build_info()["cpu_isa"]
    except RuntimeError:
        return ()
    return order[: order.index(cpu) + 1]


ISAS = _native_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    previous = fastmlp.build_info()["isa"]
    assert fastmlp.set_isa(request.param) == request.param
    yield request.param
    fastmlp.set_isa(previous)


def run_in_threads(work, count, timeout=60):
    """Calls work(i) for i in range(count), each on a thread of its own, all at once, and
    returns the exceptions they raised (a thread's failure would otherwise go unseen)."""
    errors = []

    def guarded(i):
        try:
            work(i)
        except Exception as exc:   # pragma: no cover - the caller asserts there are none
            errors.append(exc)
    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return errors


def fail_at_call(monkeypatch, owner, name, call, exception=KeyboardInterrupt, after=False):
    """Replace owner.name (for the test) so that its `call`-th call raises `exception`:
    before it runs, or once it has run (after=True: its work done, then a failure)."""
    original, calls = getattr(owner, name), []

    def failing(*args):
        calls.append(1)
        if len(calls) == call and not after:
            raise exception
        result = original(*args)
        if len(calls) == call:
            raise exception
        return result
    monkeypatch.setattr(owner, name, failing)
