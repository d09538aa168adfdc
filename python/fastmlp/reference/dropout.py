"""Dropout masks from a counter-based generator (NumPy twin of csrc/kernels/dropout.h).

A unit's mask is a pure function of (seed, update number, hidden layer, row of the batch,
unit): no generator state is drawn from, so the masks are the same on both backends, for
any thread count and any order of computing them, and a resumed fit reproduces them.

    key(seed, step, layer)   three SplitMix64 rounds over 64-bit integers -> 32 bits
    row_key(key, row)        hash32(key ^ hash32(row))
    bits(row, unit)          hash32(row_key + unit · 0x9E3779B9)          (mod 2^32)
    mask                     1/(1 − p) where bits >= threshold(p), else 0

hash32 is a 32-bit integer mixer (two multiplies, three xor-shifts: C. Wellons'
"lowbias32"), so the native kernels compute a mask element in a few vector instructions.
A unit is kept with probability 1 − threshold/2^32, within 2^-32 of 1 − p.
"""
import numpy as np

MASK64 = (1 << 64) - 1
GOLDEN64 = 0x9E3779B97F4A7C15
GOLDEN32 = np.uint32(0x9E3779B9)


def splitmix64(x):
    """SplitMix64's output function of the 64-bit integer x (Python ints, exact)."""
    x = (x + GOLDEN64) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def dropout_key(seed, step, layer):
    """The 32-bit key of hidden layer `layer`'s masks in update number `step`."""
    x = splitmix64(splitmix64(splitmix64(seed & MASK64) ^ (step & MASK64)) ^ layer)
    return x >> 32


def hash32(x):
    """lowbias32 of a uint32 array (wrapping arithmetic)."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def dropout_threshold(p):
    """Bits below it drop the unit: round(p · 2^32), at most 2^32 − 1."""
    return min(int(round(p * 2.0**32)), 2**32 - 1)


def dropout_forward(a, key, row_offset, p):
    """a (n, m) -> (a ⊙ mask, mask): row i of `a` is row row_offset + i of the batch; mask
    is 1/(1 − p) for a kept unit and 0 for a dropped one, in a's dtype."""
    n, m = a.shape
    rows = np.arange(row_offset, row_offset + n, dtype=np.uint64).astype(np.uint32)
    row_keys = hash32(np.uint32(key) ^ hash32(rows))
    units = np.arange(m, dtype=np.uint32) * GOLDEN32
    bits = hash32(row_keys[:, None] + units[None, :])
    scale = a.dtype.type(1.0 / (1.0 - p))
    mask = np.where(bits >= np.uint32(dropout_threshold(p)), scale, a.dtype.type(0))
    return a * mask, mask
