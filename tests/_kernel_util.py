"""Helpers of the direct kernel tests (tests/test_kernels.py, tests/test_kernels_cells.py):
sentinel buffers, rounding bounds, bfloat16 written independently of the extension.

The kernels are reached through the extension's internal `_kernel_*` entry points
(csrc/python/module.cpp, csrc/python/kernel_cells.cpp), which take arrays already in
the kernels' layouts. Every array handed to a kernel sits inside a larger buffer of
NaN sentinels (before and after it, and between its rows where the leading dimension
is longer than a row): a kernel that reads past what it should turns a result into
NaN, one that writes past it overwrites a sentinel (compared bit for bit).

Tolerances are worst-case bounds of the rounding each computation may commit,
element by element (the standard gamma_n = n*u/(1-n*u) for a sum of n terms, and
first-order propagation through the cell's maths), not fitted epsilons.
"""
import zlib

import numpy as np

import fastlstm
from fastlstm import _core

ISAS = fastlstm.available_isas()
F32, F64 = np.float32, np.float64

# Activations are within 4 ulp (float32) or 4 eps (float64) of the exact value on
# [-40, 40] (tests/test_activations.py); their values lie in [-1, 1], so within
# 4 * 2u of the exact value, u the unit roundoff.
ACT_UNITS = 8.0


def seeded(*key):
    """A generator seeded from the test's parameters (the same on every run)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def unit(dt):
    """Unit roundoff of dtype dt."""
    return float(np.finfo(dt).eps) / 2


def gamma(n, dt):
    """Bound of the relative error of a sum of n terms in dt (Higham's gamma_n)."""
    u = unit(dt)
    return n * u / (1 - n * u)


def geometry(isa, dt):
    return _core._kernel_geometry(isa, np.dtype(dt).name)


def rows_idx(rows, width, ld):
    """Flat indices of a [rows, width] block whose rows are ld apart."""
    return np.arange(rows)[:, None] * ld + np.arange(width)[None, :]


# Sentinels: NaNs with a payload of their own, compared bit for bit, so that a
# kernel storing any value there (even a NaN it computed) is seen.
SENTINEL = {np.dtype(F32): (np.uint32, 0x7FC5A5A5), np.dtype(F64): (np.uint64, 0x7FF8A5A5A5A5A5A5),
            np.dtype(np.uint16): (np.uint16, 0x7FC1)}  # uint16: a bfloat16 NaN


class Buf:
    """The elements at flat indices `idx` (any shape) inside a buffer of sentinels;
    `arr` (what a kernel gets) starts `lead` elements into the buffer, so that
    writes before and after the elements are seen."""

    def __init__(self, idx, dt, lead=3, tail=5):
        self.idx = lead + np.asarray(idx, np.int64)
        size = (int(self.idx.max()) + 1 if self.idx.size else lead) + tail
        bits, value = SENTINEL[np.dtype(dt)]
        self.bits = bits
        self.buf = np.full(size, value, bits).view(dt)
        self.arr = self.buf[lead:]

    def set(self, values):
        self.buf[self.idx] = values
        return self

    def get(self):
        return self.buf[self.idx].copy()

    def _intact(self, mask):
        bits, value = SENTINEL[self.buf.dtype]
        return np.all(self.buf.view(bits)[mask] == bits(value))

    def assert_rest_untouched(self, name):
        rest = np.ones(self.buf.size, bool)
        rest[self.idx.ravel()] = False
        assert self._intact(rest), f"{name}: memory outside the kernel's elements was written"

    def untouched(self):
        """Whether every sentinel, the kernel's elements included, is intact."""
        return self._intact(np.ones(self.buf.size, bool))

    def assert_all_untouched(self, name):
        assert self.untouched(), f"{name}: written"


def check(got, want, bound, name):
    got = np.asarray(got, F64)
    assert np.all(np.isfinite(got)), f"{name}: non-finite result (read a sentinel?)"
    err = np.abs(got - want)
    bad = err > bound
    assert not bad.any(), (f"{name}: {bad.sum()} of {bad.size} elements off; worst "
                           f"|diff| = {err[bad].max():.3e} with bound "
                           f"{bound[bad][np.argmax(err[bad])]:.3e}")


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---- bfloat16, written independently of the extension ----------------------------

def round_bf16(x):
    """float32 array x rounded to the nearest bfloat16 (ties to the even one), as
    float32 values: the two neighbours are the truncation and the next bfloat16 away
    from zero; the nearer one wins (finite values, no overflow)."""
    x = np.asarray(x, F32)
    bits = x.view(np.uint32)
    lo_bits = bits & np.uint32(0xFFFF0000)
    hi_bits = lo_bits + np.uint32(0x10000)
    lo, hi = lo_bits.view(F32).astype(F64), hi_bits.view(F32).astype(F64)
    d_lo, d_hi = np.abs(x - lo), np.abs(hi - x)
    lo_even = ((lo_bits >> 16) & 1) == 0
    take_hi = (d_hi < d_lo) | ((d_hi == d_lo) & ~lo_even)
    return np.where(take_hi, hi_bits, lo_bits).view(F32)


def bf16_panel(w32, order):
    """uint16 panel [rows, NR] of the bfloat16 values w32 (exact in bfloat16,
    natural column order) in the kernels' layout: position s of each group of 2W
    holds column order[s] of that group."""
    rows, nr = w32.shape
    g = len(order)
    top = (np.ascontiguousarray(w32, F32).view(np.uint32) >> 16).astype(np.uint16)
    perm = (np.arange(nr // g)[:, None] * g + np.asarray(order)[None, :]).ravel()
    return np.ascontiguousarray(top[:, perm])
