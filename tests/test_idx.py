"""The IDX reader on files written here: valid raw and gzip, and every way one can be broken."""
import gzip
import struct

import numpy as np
import pytest

from fastmlp.data.idx import load_idx_split, load_mnist, read_idx


def idx_bytes(array, type_code=0x08):
    """The IDX encoding of `array` (big-endian header and data)."""
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, data):
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def mnist_dir(tmp, n_train=5, n_test=3, gz=False, shape=(28, 28)):
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    arrays = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write(tmp / f"{prefix}-images-idx3-ubyte{ext}", idx_bytes(images))
        write(tmp / f"{prefix}-labels-idx1-ubyte{ext}", idx_bytes(labels))
        arrays[split] = images, labels
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_round_trip(tmp_path, gz):
    arrays = mnist_dir(tmp_path, gz=gz)
    (X, y), (Xt, yt) = load_mnist(tmp_path)
    assert X.shape == (5, 784) and X.dtype == np.float32 and y.dtype == np.int64
    assert Xt.shape == (3, 784)
    np.testing.assert_array_equal(X, arrays["train"][0].reshape(5, -1) / np.float32(255))
    np.testing.assert_array_equal(y, arrays["train"][1])
    np.testing.assert_array_equal(yt, arrays["test"][1])
    assert 0 <= X.min() and X.max() <= 1


@pytest.mark.parametrize("type_code,dtype", [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16),
                                             (0x0C, np.int32), (0x0D, np.float32),
                                             (0x0E, np.float64)])
def test_read_idx_every_type(tmp_path, type_code, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == np.uint8:
        a = np.arange(24, dtype=dtype).reshape(2, 3, 4)
    got = read_idx(write(tmp_path / "a.idx", idx_bytes(a, type_code)))
    assert got.dtype == dtype and got.shape == a.shape and got.dtype.isnative
    np.testing.assert_array_equal(got, a)


def test_truncated_file(tmp_path):
    data = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(write(tmp_path / "t.idx", data[:-1]))
    with pytest.raises(ValueError, match="trailing"):
        read_idx(write(tmp_path / "t.idx", data + b"\0"))
    with pytest.raises(ValueError, match="dimensions"):
        read_idx(write(tmp_path / "t.idx", data[:9]))
    with pytest.raises(ValueError, match="too short"):
        read_idx(write(tmp_path / "t.idx", b"\0\0"))


def test_truncated_gzip(tmp_path):
    path = tmp_path / "t.idx.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((4, 28, 28), np.uint8)))[:20])
    with pytest.raises(ValueError, match="cannot read"):
        read_idx(path)


@pytest.mark.parametrize("head", [b"\x00\x01\x08\x03", b"\x1f\x8b\x08\x00", b"\x00\x00\x07\x01"])
def test_wrong_magic(tmp_path, head):
    data = head + idx_bytes(np.zeros((2, 2, 2), np.uint8))[4:]
    with pytest.raises(ValueError, match="magic"):
        read_idx(write(tmp_path / "m.idx", data))


def test_mismatched_counts_and_kinds(tmp_path):
    mnist_dir(tmp_path)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(ValueError, match="5 images .* 4 labels"):
        load_idx_split(tmp_path, "train")
    # images and labels swapped: each file is valid IDX but the wrong kind
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros((5, 28, 28), np.uint8)))
    with pytest.raises(ValueError, match=r"labels of shape \(n,\)"):
        load_idx_split(tmp_path, "train")
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros((3, 28, 28), np.float32), 0x0D))
    with pytest.raises(ValueError, match="unsigned-byte images"):
        load_idx_split(tmp_path, "test")


def test_missing_files_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_mnist(tmp_path / "nope")
    with pytest.raises(ValueError, match="split"):
        load_idx_split(tmp_path, "valid")


def test_gzip_stream_past_the_data_is_not_inflated(tmp_path):
    """A gzip bomb behind a valid header: 64 MB of zeros after 4 bytes of data. The reader
    stops one byte past the data instead of inflating the rest."""
    import tracemalloc
    path = tmp_path / "bomb-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(idx_bytes(np.zeros((2, 2), np.uint8)))
        for _ in range(64):
            f.write(bytes(1 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"has trailing bytes: .* needs 16 bytes, the file has more"):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"read_idx held {peak >> 20} MB for 16 bytes of IDX data"


def test_raw_file_checked_against_its_header_before_reading(tmp_path):
    """A header that claims 2.8e14 bytes is refused from the file's size, not by reading."""
    header = struct.pack(">BBBB3I", 0, 0, 0x08, 3, 65535, 65535, 65535)
    with pytest.raises(ValueError, match=r"truncated: shape \(65535, 65535, 65535\) .* the file has 20$"):
        read_idx(write(tmp_path / "huge.idx", header + bytes(4)))


def test_read_at_most_stops_at_count(monkeypatch):
    import io
    from fastmlp.data import idx
    monkeypatch.setattr(idx, "_PIECE", 3)   # several pieces
    stream = io.BytesIO(bytes(range(100)))
    assert idx._read_at_most(stream, 10) == bytes(range(10))
    assert stream.tell() == 10
    assert idx._read_at_most(stream, 1000) == bytes(range(10, 100))   # the rest, then its end
