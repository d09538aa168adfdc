"""fit(progress=True) as a user sees it: a tqdm bar that moves within a native epoch on a
terminal (the C++ epoch reports its batches every 0.1 s), one clean line per epoch
elsewhere, and Ctrl-C mid-epoch still undoing the epoch."""
import os
import re
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from fastmlp import MLP, native_training

from conftest import native_skip_reason

pytest.importorskip("tqdm")

# one native epoch of a few seconds: 1078 digits, one row per batch, wide layers
LONG_EPOCH = ["train", "--backend", "native", "--threads", "1", "--epochs", "1",
              "--hidden", "1500", "1500", "--batch-size", "1", "--lr", "0.01"]
requires_native = pytest.mark.skipif(native_skip_reason() is not None,
                                     reason=str(native_skip_reason()))
BAR = re.compile(rb"epoch 1/1:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")


def run_under_a_terminal(argv, interrupt_after=None):
    """`python -m fastmlp argv` with stdout and stderr on a pseudo-terminal -> (everything
    it wrote, exit status). interrupt_after: send SIGINT once the bar has shown this many
    distinct counts."""
    import fcntl
    import pty
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    child = subprocess.Popen([sys.executable, "-m", "fastmlp", *argv], stdin=subprocess.DEVNULL,
                             stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    output, deadline, sent = b"", time.monotonic() + 300, False
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 4096)
            except OSError:   # EIO: the child has exited and closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if interrupt_after and not sent and len(intermediate_counts(output)) >= interrupt_after:
                child.send_signal(signal.SIGINT)
                sent = True
    finally:
        os.close(master)
        status = child.wait(timeout=60)
    return output, status


def intermediate_counts(output):
    """The distinct batch counts the bar showed between 0 and the epoch's total."""
    return {int(done) for done, total in BAR.findall(output) if 0 < int(done) < int(total)}


@requires_native
@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_the_bar_moves_during_one_long_native_epoch_on_a_terminal():
    output, status = run_under_a_terminal(LONG_EPOCH)
    assert status == 0, output.decode(errors="replace")
    counts = intermediate_counts(output)
    assert len(counts) >= 3, f"the bar showed only {sorted(counts)}:\n{output!r}"
    assert b"epoch    1  loss " in output   # and the epoch's line after it


@requires_native
@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_ctrl_c_during_a_native_epoch_with_the_bar_undoes_the_epoch():
    output, status = run_under_a_terminal(LONG_EPOCH, interrupt_after=2)
    assert status == 130, output.decode(errors="replace")
    assert (b"fit: interrupted in epoch 1; the model holds its weights as of fit() started"
            in output)


def test_off_a_terminal_the_log_has_one_clean_line_per_epoch():
    result = subprocess.run([sys.executable, "-m", "fastmlp", "train", "--epochs", "3",
                             "--hidden", "16"], capture_output=True, check=True)
    assert b"\r" not in result.stdout + result.stderr and result.stderr == b""
    epochs = [line for line in result.stdout.splitlines() if line.startswith(b"epoch")]
    assert [line[:10] for line in epochs] == [b"epoch    1", b"epoch    2", b"epoch    3"]


class RecordingBar:
    """As tqdm's bar is used by the epochs: .n, update() and close()."""

    def __init__(self, interrupt_at=None):
        self.n, self.counts, self.interrupt_at = 0, [], interrupt_at

    def update(self, k):   # the count after each advance
        self.n += k
        if k:
            self.counts.append(self.n)
        if len(self.counts) == self.interrupt_at:
            raise KeyboardInterrupt

    def close(self):
        pass


def native_net(dtype):
    return MLP([64, 256, 256, 10], activation="relu", backend="native", dtype=dtype, seed=1)


def long_epoch_data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((6000, 64)), rng.integers(0, 10, 6000)


@requires_native
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_reported_epoch_is_bitwise_the_silent_one(dtype, monkeypatch):
    X, y = long_epoch_data()
    silent, shown = native_net(dtype), native_net(dtype)
    silent.fit(X, y, epochs=2, batch_size=7, lr=0.01)
    bars = []
    monkeypatch.setattr("fastmlp.training._epoch_bar",
                        lambda *args: bars.append(RecordingBar()) or bars[-1])
    monkeypatch.setattr(native_training, "PROGRESS_INTERVAL", 0.0)   # a report per batch
    shown.fit(X, y, epochs=2, batch_size=7, lr=0.01, progress=True)
    for a, b in zip(silent.weights + silent.biases, shown.weights + shown.biases):
        np.testing.assert_array_equal(a, b)
    n_batches = -(-6000 // 7)
    assert [bar.counts for bar in bars] == [list(range(1, n_batches + 1))] * 2


@requires_native
def test_an_interrupt_from_the_bar_mid_epoch_leaves_the_weights_as_they_were(monkeypatch):
    X, y = long_epoch_data()
    net = native_net("float32")
    net.fit(X[:100], y[:100], epochs=1, batch_size=10, lr=0.01)
    before = [p.copy() for p in net.weights + net.biases]
    bar = RecordingBar(interrupt_at=2)
    monkeypatch.setattr("fastmlp.training._epoch_bar", lambda *args: bar)
    monkeypatch.setattr(native_training, "PROGRESS_INTERVAL", 0.0)
    with pytest.raises(KeyboardInterrupt, match=r"^fit: interrupted in epoch 1; the model "
                                                r"holds its weights as of fit\(\) started$"):
        net.fit(X, y, epochs=1, batch_size=1, lr=0.01, progress=True)
    assert bar.counts == [1, 2]   # stopped inside the C++ epoch, at its second batch
    for a, b in zip(before, net.weights + net.biases):
        np.testing.assert_array_equal(a, b)


@requires_native
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(progress=3), TypeError, r"^progress: expected a callable or None$"),
    (dict(progress=print, progress_interval=-1.0), ValueError, r"^progress_interval: expected seconds in \[0, 3600\]$"),
    (dict(progress=print, progress_interval=float("nan")), ValueError, r"^progress_interval: expected"),
])
def test_the_native_epoch_refuses_a_bad_progress_argument(kwargs, error, match):
    net = native_net("float64")
    X, y = long_epoch_data()
    before = [p.copy() for p in net.weights + net.biases]
    ws = native_training.workspace(net, 10)
    with pytest.raises(error, match=match):
        ws.epoch(net.weights, net.biases, X[:20], y[:20], None, 10, 0.1, 0.0, **kwargs)
    for a, b in zip(before, net.weights + net.biases):
        np.testing.assert_array_equal(a, b)
