"""fastmlp train's data sources, fastmlp plot, fastmlp bench, and exit statuses."""
import gzip
import struct
import subprocess
import sys

import numpy as np
import pytest

from fastmlp import MLP, cli


def run(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_every_command_has_help():
    for command in ([], ["train"], ["plot"], ["bench"]):
        result = subprocess.run([sys.executable, "-m", "fastmlp", *command, "--help"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and result.stdout.startswith("usage: fastmlp")


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def test_train_on_an_idx_directory(capsys, tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 120), ("t10k", 40)):
        y = rng.integers(0, 3, n).astype(np.uint8)
        images = np.zeros((n, 4, 4), np.uint8)
        images[np.arange(n), y, y] = 255          # class k lights pixel (k, k)
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", y)
    status, out, _ = run(capsys, "train", "--data", str(tmp_path), "--hidden", "8",
                         "--epochs", "20", "--backend", "numpy", "--no-progress")
    assert status == 0, out
    assert "96 train, 24 validation, 40 test rows, 16 features, 3 classes" in out
    assert float(out.rsplit("test accuracy: ", 1)[1].split()[0]) == 1.0


@pytest.mark.parametrize("kind", ["csv", "npz"])
def test_train_on_csv_and_npz_files(capsys, tmp_path, kind):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 3))
    labels = np.where(X[:, 0] > 0, 7, 3)          # any label values; coded 0..K-1
    path = tmp_path / f"d.{kind}"
    if kind == "csv":
        np.savetxt(path, np.column_stack([labels, X]), delimiter=",", header="label,a,b,c",
                   comments="")
        extra = ["--label-column", "0"]
    else:
        np.savez(path, X=X, y=labels)
        extra = []
    model = tmp_path / "m.npz"
    status, out, _ = run(capsys, "train", "--data", str(path), *extra, "--hidden", "8",
                         "--activation", "tanh", "--output", "sigmoid", "--epochs", "10",
                         "--backend", "numpy", "--save", str(model), "--no-progress")
    assert status == 0, out
    assert "120 train, 40 validation, 40 test rows, 3 features, 2 classes" in out
    assert float(out.rsplit("test accuracy: ", 1)[1].split()[0]) > 0.9
    assert MLP.load(model).output == "sigmoid"


@pytest.mark.parametrize("make,message", [
    (lambda p: p / "missing.csv", "no such file"),
    (lambda p: p, "train-images-idx3-ubyte"),                       # empty directory
    (lambda p: (p / "bad.csv").write_text("a,b\n1,x\n") and p / "bad.csv", "CSV"),
    (lambda p: (p / "bad.npz").write_bytes(b"not a zip") and p / "bad.npz", "npz"),
    (lambda p: (p / "data.txt").write_text("1") and p / "data.txt", "expected 'digits'"),
])
def test_bad_data_exits_1_with_one_line(capsys, tmp_path, make, message):
    status, _, err = run(capsys, "train", "--data", str(make(tmp_path)), "--backend", "numpy")
    assert status == 1 and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unwritable_save_path_exits_1(capsys, tmp_path):
    status, _, err = run(capsys, "train", "--epochs", "1", "--backend", "numpy",
                         "--no-progress", "--save", str(tmp_path / "no" / "dir" / "m.npz"))
    assert status == 1 and "--save" in err


@pytest.mark.parametrize("argv", [
    ["train", "--val-size", "1.5"], ["train", "--threads", "0"], ["plot", "bogus"],
    ["bench", "--cases", "huge"], ["bench", "--repeat", "0"], ["frobnicate"],
])
def test_usage_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2 and "usage: fastmlp" in capsys.readouterr().err


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_plot_writes_every_png(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    out_dir = tmp_path / "img"
    status, out, _ = run(capsys, "plot", "--out-dir", str(out_dir), "--epochs", "15",
                         "--backend", "numpy")
    assert status == 0
    for name in cli.PLOTS:
        width, height = png_size(out_dir / f"{name}.png")
        assert 200 <= width <= 2000 and 200 <= height <= 2000
        assert f"wrote {out_dir / name}.png" in out


def test_plot_some_and_unwritable_dir(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    status, _, _ = run(capsys, "plot", "universal", "--out-dir", str(tmp_path))
    assert status == 0 and [p.name for p in tmp_path.iterdir()] == ["universal.png"]
    blocker = tmp_path / "file"
    blocker.write_text("")
    status, _, err = run(capsys, "plot", "universal", "--out-dir", str(blocker / "sub"))
    assert status == 1 and "--out-dir" in err


def test_bench_quick_prints_a_table_with_ratios(capsys):
    status, out, _ = run(capsys, "bench", "--quick", "--cases", "seed", "--dtypes", "float32",
                         "--runners", "numpy", "native")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["case", "dtype", "runner", "samples/s", "vs", "numpy"]
    numpy_row = next(line.split() for line in lines if " numpy " in line)
    assert numpy_row[:3] == ["seed", "float32", "numpy"] and numpy_row[-1] == "1.00x"
    assert float(numpy_row[3].replace(",", "")) > 0
    native_rows = [line for line in lines if " native " in line]
    assert native_rows or "(native: native kernels not built)" in lines
