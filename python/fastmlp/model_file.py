"""The model file: an .npz archive of the weights and biases and a JSON config. No pickle.

Writing is atomic; reading checks every array's header against the config before any
array is read, so a truncated, corrupted, foreign or hostile file is refused with a
ValueError naming the file and the problem.
"""
import contextlib
import glob
import json
import math
import os
import stat
import tempfile
import time
import zipfile

import numpy as np

from . import optim
from .specs import (activation_spec, check_dtype, check_sizes, parse_activations,
                    parse_batch_norm, weight_shapes)

BATCH_NORM_ARRAYS = ("gamma", "beta", "mean", "var")

FORMAT_VERSION = 1
CONFIG_KEYS = {"sizes", "activations", "output", "loss", "dtype", "backend", "seed", "rng_state"}
# optional: "optimizer", the optimizer's config() (hyperparameters, schedule, state), whose
# buffers are the arrays opt{i}_{j}: buffer j of parameter array i (weights, then biases);
# "dropout" (the rate per hidden layer) and "mask_seed": absent from files written before
# dropout, which load with no dropout and the seed as mask_seed; "batch_norm" (a flag per
# hidden layer; absent: none), whose layers j have the arrays gamma{j}, beta{j}, mean{j},
# var{j} (γ, β, running mean and variance), and whose γ, β have optimizer buffers after
# the biases'.
# A temporary file of ours older than this was left by a save that was killed: removed.
STALE_SECONDS = 3600


def _umask():
    """The process's umask, read without changing it where the system tells it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)   # elsewhere: the only portable way to read it
    os.umask(mask)
    return mask


def target_path(path):
    """Where save() writes `path` (str, bytes or os.PathLike): ".npz" appended when missing,
    as NumPy does, and through a symbolic link to the file it names."""
    path = os.fsdecode(os.fspath(path))
    if not os.path.basename(path):
        raise ValueError(f"path: expected a file name, got {path!r}")
    if not path.endswith(".npz"):
        path += ".npz"
    return os.path.realpath(path) if os.path.islink(path) else path


def _remove_stale_temporaries(path):
    """Temporary files of our own naming for `path` that a killed save left behind."""
    for tmp in glob.glob(glob.escape(path) + ".*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - os.stat(tmp).st_mtime > STALE_SECONDS:
                os.unlink(tmp)


def write(path, config, weights, biases, buffers=(), batch_norm=()):
    """Write `config` (a dict with CONFIG_KEYS) and the arrays to target_path(path), under
    a temporary name in the same directory renamed over it at the end: a crash mid-save
    leaves the old file (or none), never half a model. The file gets the permissions the
    umask gives a new file. `buffers`: per parameter array, its optimizer buffers;
    `batch_norm`: per batch-normalised layer, its (γ, β, running mean, running var)."""
    arrays = {f"W{l}": w for l, w in enumerate(weights)}
    arrays.update({f"b{l}": b for l, b in enumerate(biases)})
    arrays.update({f"{name}{j}": a for j, layer in enumerate(batch_norm)
                   for name, a in zip(BATCH_NORM_ARRAYS, layer, strict=True)})
    arrays.update({f"opt{i}_{j}": a for i, bufs in enumerate(buffers) for j, a in enumerate(bufs)})
    path = target_path(path)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                               prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())   # mkstemp's 0600 is for its secrecy, not ours
        with os.fdopen(fd, "wb") as f:
            np.savez(f, format_version=np.int64(FORMAT_VERSION),
                     config=np.array(json.dumps(config)), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read(path, build, max_params):
    """build(config, weights, biases, buffers) from a file written by write() (the config's
    "activations" as specs, buffers flat: parameter by parameter); a ValueError naming the
    file for anything else, for a file that is not a regular one, for a model of more
    than max_params weights and biases (checked on the headers, before reading them), or
    when build refuses what it read (non-finite weights, say)."""
    try:
        return build(*_read(path, max_params))
    except FileNotFoundError:
        raise
    # (zipfile raises NotImplementedError / RuntimeError for archive features it lacks)
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, TypeError, ValueError,
            OverflowError, NotImplementedError, RuntimeError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(f"{path!r}:"):
            raise
        raise ValueError(f"{path!r}: not a valid fastmlp model file ({type(exc).__name__}: "
                         f"{exc})") from exc


def _read(path, max_params):
    def fail(problem):
        raise ValueError(f"{path!r}: {problem}")
    with open(path, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):   # /dev/zero reads forever
            fail("is not a regular file")
        if not zipfile.is_zipfile(fh):
            fail("is not a fastmlp model file (not an .npz archive)")
        headers = _npz_headers(fh, fail)
        for name, kind in (("format_version", "iu"), ("config", "U")):
            if name not in headers or headers[name][0] != () or headers[name][1].kind not in kind:
                fail(f"is not a fastmlp model file (no {name})")
        fh.seek(0)
        with np.load(fh, allow_pickle=False) as f:
            version = int(f["format_version"])
            if version != FORMAT_VERSION:
                fail(f"has model format {version}; this fastmlp reads format "
                     f"{FORMAT_VERSION}")
            config = json.loads(str(f["config"]))
            if not isinstance(config, dict) or not CONFIG_KEYS <= config.keys():
                fail(f"config: expected the keys {sorted(CONFIG_KEYS)}")
            # The arrays must be exactly what the config describes; checked on their
            # headers, before any is read or the config's sizes build anything.
            sizes = check_sizes(config["sizes"])
            activations = [activation_spec(*a) for a in config["activations"]]
            shapes = weight_shapes(sizes, parse_activations(activations, len(sizes) - 2))
            flags = parse_batch_norm(config.get("batch_norm", False), len(sizes) - 2)
            norm_shapes = [shape[:1] for shape, flag in zip(shapes, flags) if flag]
            n_params = sum(rows * fan_in + rows for rows, fan_in in shapes)
            if n_params > max_params:
                fail(f"declares {n_params} parameters; expected at most max_params="
                     f"{max_params} (pass a larger max_params to load it)")
            dtype = np.dtype(check_dtype(config["dtype"]))
            expected = {f"W{l}": shape for l, shape in enumerate(shapes)}
            expected.update({f"b{l}": shape[:1] for l, shape in enumerate(shapes)})
            expected.update({f"{name}{j}": shape for j, shape in enumerate(norm_shapes)
                             for name in BATCH_NORM_ARRAYS})
            buffer_names = []
            if config.get("optimizer") is not None:   # its settings checked by building it
                if not isinstance(config["optimizer"], dict) or not isinstance(
                        config["optimizer"].get("schedule"), dict):
                    fail("config: expected the optimizer's settings as an object")
                n_buffers = len(optim.from_config(config["optimizer"], []).buffer_names)
                param_shapes = shapes + [shape[:1] for shape in shapes] + norm_shapes * 2
                for i, shape in enumerate(param_shapes):
                    for j in range(n_buffers):
                        buffer_names.append(f"opt{i}_{j}")
                        expected[buffer_names[-1]] = shape
            if set(headers) != set(expected) | {"format_version", "config"}:
                fail(f"expected the arrays {sorted(expected)}, got {sorted(headers)}")
            for name, shape in expected.items():
                if headers[name] != (shape, dtype):
                    fail(f"{name}: expected {dtype} {shape} for the model's config, got "
                         f"{headers[name][1]} {headers[name][0]}")
            params = {name: f[name] for name in expected}
    config = {**config, "sizes": sizes, "activations": activations, "dtype": dtype.name}
    return (config, [params[f"W{l}"] for l in range(len(shapes))],
            [params[f"b{l}"] for l in range(len(shapes))], [params[n] for n in buffer_names],
            [[params[f"{name}{j}"] for j in range(len(norm_shapes))]
             for name in BATCH_NORM_ARRAYS])


def _npz_headers(file, fail):
    """{name: (shape, dtype)} of the arrays in an .npz archive, from their .npy headers
    alone, each checked to hold exactly the bytes it declares: a corrupted or hostile
    header is refused before anything of its size is allocated."""
    headers = {}
    with zipfile.ZipFile(file) as zf:
        for info in zf.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else None
            if name is None or name in headers or info.flag_bits & 0x1 \
                    or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                fail(f"is not a fastmlp model file (member {info.filename!r})")
            with zf.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version not in ((1, 0), (2, 0)):
                    fail(f"{name}: unsupported .npy version {version}")
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(member)
                if dtype.hasobject:
                    fail(f"{name}: holds Python objects (refused: they would need unpickling)")
                nbytes = math.prod(shape) * dtype.itemsize
                if info.file_size != member.tell() + nbytes:
                    fail(f"{name}: the header announces {shape} of {dtype}, "
                         f"{nbytes} bytes, but the member has {info.file_size - member.tell()}")
            headers[name] = (shape, dtype)
    return headers
