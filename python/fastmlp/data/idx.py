"""Reader for the IDX files of MNIST and Fashion-MNIST (raw or gzip), from a directory you give.

    (X_train, y_train), (X_test, y_test) = load_mnist("~/data/mnist")

The directory holds the four standard files, each optionally gzipped:

    train-images-idx3-ubyte   train-labels-idx1-ubyte
    t10k-images-idx3-ubyte    t10k-labels-idx1-ubyte

IDX layout (big-endian): two zero bytes, a type code, the number of dimensions d, then d
uint32 sizes, then the data. Every header field and the file size are checked, so a
truncated download or a wrong file gives a ValueError saying which file and what is wrong.
"""
import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

# IDX type code -> big-endian NumPy dtype
IDX_DTYPES = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}

# (split, part) -> file stem; ".idx" variants are how some mirrors spell them
MNIST_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


# Data is read in pieces of at most this size: memory then grows only with what a stream
# really holds, never with what a header claims.
_PIECE = 1 << 24


def _read_at_most(f, count):
    """Up to `count` bytes of the binary stream f (fewer at its end)."""
    pieces, left = [], count
    while left > 0:
        piece = f.read(min(left, _PIECE))
        if not piece:
            break
        pieces.append(piece)
        left -= len(piece)
    return b"".join(pieces)


def read_idx(path):
    """The array stored in one IDX file (raw, or gzip if the name ends in .gz).

    Raises ValueError if the magic number, the type code, the dimensions or the file size
    do not describe a valid IDX file. Nothing past the data the header announces is read: a
    raw file's size is checked against the header first, and a gzip stream that runs on is
    decompressed one byte past the data (a file of a few KB cannot make us inflate GBs).
    """
    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such IDX file")
    gz = path.suffix == ".gz"
    try:
        with (gzip.open if gz else open)(path, "rb") as f:
            return _read_idx_stream(path, f, gz)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: cannot read IDX data ({exc})") from exc


def _read_idx_stream(path, f, gz):
    head = _read_at_most(f, 4)
    if len(head) < 4:
        raise ValueError(f"{path}: {len(head)} bytes is too short for an IDX header")
    if head[0] != 0 or head[1] != 0 or head[2] not in IDX_DTYPES:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{head.hex()}; expected 0x0000TTDD with "
            f"type TT in {{{', '.join(f'{t:02x}' for t in IDX_DTYPES)}}} "
            "(is this an IDX file, or a gzip file without the .gz name?)")
    dtype, ndim = IDX_DTYPES[head[2]], head[3]
    if ndim == 0:
        raise ValueError(f"{path}: header announces 0 dimensions")
    dims = _read_at_most(f, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(f"{path}: header announces {ndim} dimensions but the file ends "
                         f"after {4 + len(dims)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
    header = 4 + 4 * ndim
    data_bytes = math.prod(shape) * dtype.itemsize   # exact: no int64 wrap-around
    expected = header + data_bytes
    if gz:   # its size is known only by decompressing it
        data = _read_at_most(f, data_bytes + 1)
        size = header + len(data)
    else:
        size = path.stat().st_size
        data = _read_at_most(f, data_bytes) if size == expected else b""
    if size != expected:
        state = "truncated" if size < expected else "has trailing bytes"
        has = "more" if gz and size > expected else size
        raise ValueError(f"{path}: {state}: shape {shape} of {dtype.itemsize}-byte items "
                         f"needs {expected} bytes, the file has {has}")
    if len(data) != data_bytes:   # a raw file that shrank while being read
        raise ValueError(f"{path}: truncated: read {header + len(data)} of {expected} bytes")
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory, stem):
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                 stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory}: no {stem} or {stem}.gz (expected the four "
                            f"standard MNIST/Fashion-MNIST file names: "
                            f"{', '.join(MNIST_FILES.values())})")


def load_idx_split(directory, split="train", dtype="float32"):
    """(X, y) of one split ("train" or "test"): X (n, rows·cols) scaled to [0, 1], y int64."""
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    directory = Path(os.fspath(directory)).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a directory")
    images_path = _find(directory, MNIST_FILES[split, "images"])
    labels_path = _find(directory, MNIST_FILES[split, "labels"])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{images_path}: expected unsigned-byte images of shape "
                         f"(n, rows, cols), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(f"{labels_path}: expected unsigned-byte labels of shape (n,), "
                         f"got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{directory}: {len(images)} images in {images_path.name} but "
                         f"{len(labels)} labels in {labels_path.name}")
    X = images.reshape(len(images), -1).astype(dtype) / np.dtype(dtype).type(255)
    return X, labels.astype(np.int64)


def load_mnist(directory, dtype="float32"):
    """((X_train, y_train), (X_test, y_test)) from a directory of MNIST-style IDX files.

    Works for MNIST and Fashion-MNIST alike (same file names and layout). X rows are the
    flattened 28×28 images scaled to [0, 1]; y are integer labels.
    """
    return load_idx_split(directory, "train", dtype), load_idx_split(directory, "test", dtype)
