"""Coverage-guided fuzzing of the native boundary: the pybind entry points of
fastlstm._core (LayerDims, PackedLayer*, workspace_size, layer_forward_*,
layer_backward_*) and the public layers' calls, with random dims, lengths,
buffers (size, dtype, layout, writability), thread counts and ISA names.

A call must either run or raise ValueError / TypeError / OverflowError with a
message; anything else (a crash, an ASan/UBSan report, another exception) is a
finding. Run it on the sanitizer build (.ci/sanitize):

    python tests/fuzz/fuzz_core.py -max_total_time=60 [corpus_dir]

`one_input(data)` needs no atheris: tests/test_fuzz_regressions.py replays the
saved inputs in tests/fuzz/regressions/ through it.
"""
import collections
import sys

import numpy as np

ACCEPTED = (ValueError, TypeError, OverflowError)
CAP = 1 << 14  # the most elements the harness allocates for one buffer
STATS = collections.Counter()  # outcomes: "ran", or the exception's type
EDGE = [0, 1, 2, 3, -1, -2, 2**31 - 1, 2**31, 2**32 + 1, 2**62, 2**63 - 1, -(2**63)]


class Bytes:
    """Draws values from the fuzzer's bytes (zeros once they run out)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return b

    def pick(self, seq):
        return seq[self.byte() % len(seq)]

    def small(self, lo: int, hi: int) -> int:
        return lo + self.byte() % (hi - lo + 1)

    def mostly(self, good: list, bad: list):
        """One of good, or (one time in 16) one of bad."""
        return self.pick(bad) if self.byte() < 16 else self.pick(good)

    def dim(self, lo: int = 1, hi: int = 5) -> int:
        """Mostly a small valid size; sometimes an edge value."""
        return self.small(lo, hi) if self.byte() < 240 else self.pick(EDGE)


def _n(*sizes) -> int | None:
    """The product of sizes, or None when it is not a size the harness makes."""
    n = 1
    for s in sizes:
        if s < 0:
            return None
        n *= s
    return n if n <= CAP else None


def array(b: Bytes, n, dtype, optional: bool = False):
    """A buffer meant to hold n elements of dtype, sometimes wrong on purpose."""
    kind = b.byte() % 64  # 0-7: a wrong buffer (or None), else the right one
    if optional and kind == 0:
        return None
    if n is None or kind == 1:
        n = b.small(0, 9)
    elif kind == 2:
        n = max(n + b.pick([-1, 1]), 0)
    dt = b.pick([np.float32, np.float64, np.int64, np.float16]) if kind == 3 else dtype
    a = np.random.default_rng(b.byte()).standard_normal(n).astype(dt)
    if kind == 4:
        a = np.repeat(a, 2)[::2]  # not contiguous
    elif kind == 5:
        a.flags.writeable = False
    elif kind == 6:
        return a.tolist()
    elif kind == 7:
        return a.reshape(1, -1)  # the right size in another shape is accepted
    return a


def shaped(a, shape):
    """a in shape where it has the elements for it, else as it is."""
    return a.reshape(shape) if isinstance(a, np.ndarray) and a.size == _n(*shape) else a


def dims(b: Bytes, core):
    cell = b.mostly(["lstm", "gru", "lnlstm"], ["rnn"])
    kw = dict(T=b.dim(), B=b.dim(), I=b.dim(), H=b.dim(), D=b.mostly([1, 2], [0, 3]),
              cell=cell)
    if b.byte() < 64:
        kw["P"] = b.mostly([0, 1, 2], [3, 5, -1]) if cell == "lstm" else b.small(0, 1)
    if b.byte() < 64:
        kw["peephole"] = cell == "lstm" or b.byte() < 16
    if b.byte() < 48:
        kw["zoneout"] = b.mostly([0.0, 0.3, 1.0], [-0.5, 2.0, float("nan")])
    if b.byte() < 48:
        kw["cell_clip"] = b.mostly([0.0, 3.0, 0.5], [-1.0, float("inf"), float("nan")])
    return core.LayerDims(**kw)


def weights(b: Bytes, d, dtype):
    from fastlstm import _spec
    spec = _spec.SPECS[d.cell]
    gh, ho = spec["gates"] * d.H, d.P or d.H
    ext = {None: 1, "gh": gh, "h": d.H, "ho": ho, "i": d.I, "p": d.P, "three": 3}
    present = {"always": True, "bias": True, "proj": d.P > 0, "peephole": d.peephole}
    out = []
    for _ in range(max(d.D, 0) + (1 if b.byte() < 16 else 0)):
        ps = [array(b, _n(ext[p["rows"]], ext[p["cols"]]), dtype, p["when"] == "bias")
              if present[p["when"]] else None for p in spec["params"]]
        if b.byte() < 16:
            ps = ps[:-1]
        out.append(tuple(ps))
    return out


def core_call(b: Bytes):
    from fastlstm import _core as core
    dtype, sfx = b.pick([(np.float32, "f32"), (np.float64, "f64")])
    d = dims(b, core)
    isa = b.mostly([core.best_isa(), "scalar"], ["best", "avx2", "avx512", "neon", ""])
    threads = b.mostly([1, 2, 3], [0, -1, 2**31 - 1])
    packed = getattr(core, "PackedLayer" + sfx.upper())(d, weights(b, d, dtype), isa,
                                                         b.byte() < 128, threads)
    T, B, I, D, H, Ho = d.T, d.B, d.I, d.D, d.H, d.P or d.H
    has_c = d.cell != "gru"
    lengths = None
    if b.byte() < 96:
        lengths = (array(b, _n(B), np.int64) if b.byte() < 64
                   else np.array([b.small(0, max(min(T, 9), 0) + 1) for _ in range(min(max(B, 0), 9))],
                                 np.int64))
    train = b.byte() < 128
    ws = None
    if train:
        try:
            ws = array(b, _n(core.workspace_size(d, lengths, isa, np.dtype(dtype).itemsize)), dtype)
        except ACCEPTED:
            ws = array(b, None, dtype)
    zk = array(b, _n(T, B, D, Ho), dtype, optional=True) if b.byte() < 48 else None
    x = array(b, _n(T, B, I), dtype)
    state = lambda n: array(b, _n(D, B, n), dtype)  # noqa: E731
    h0, c0 = state(Ho), state(H) if has_c else None
    y, hn, cn = array(b, _n(T, B, D, Ho), dtype), state(Ho), state(H) if has_c else None
    getattr(core, "layer_forward_" + sfx)(d, packed, x, lengths, h0, c0, y, hn, cn, ws, threads,
                                          isa, zk)
    if not train:
        return
    grads = weights(b, d, dtype)
    dy, dhn, dcn = array(b, _n(T, B, D, Ho), dtype), state(Ho), state(H) if has_c else None
    dx, dh0, dc0 = array(b, _n(T, B, I), dtype), state(Ho), state(H) if has_c else None
    scratch = None
    if b.byte() < 96:
        try:
            scratch = array(b, _n(core.backward_scratch_size(d, lengths, isa,
                                                              np.dtype(dtype).itemsize)), dtype)
        except ACCEPTED:
            scratch = array(b, None, dtype)
    getattr(core, "layer_backward_" + sfx)(d, packed, grads, x, lengths, c0, ws, dy, dhn, dcn,
                                           dx, dh0, dc0, threads, isa, zk, scratch)


def layer_call(b: Bytes):
    import fastlstm
    cls = b.pick([fastlstm.LSTM, fastlstm.GRU, fastlstm.LayerNormLSTM])
    dtype = b.pick([np.float32, np.float64])
    kw = dict(num_layers=b.small(1, 2), bidirectional=b.byte() < 96, batch_first=b.byte() < 64,
              dtype=dtype, seed=0)
    if cls is fastlstm.LSTM and b.byte() < 64:
        kw["proj_size"] = b.small(0, 3)
    layer = cls(b.small(1, 4), b.small(1, 4), **kw)  # the edge sizes: test_validation.py
    rank = b.mostly([3, 3, 2], [1, 4])
    shape = tuple(b.dim(0, 4) for _ in range(rank - 1)) + (b.mostly([layer.input_size],
                                                                    [layer.input_size + 1]),)
    x = shaped(array(b, _n(*shape), dtype), shape)
    lengths = None
    if b.byte() < 64:
        lengths = array(b, _n(b.dim(0, 4)), np.int64)
    layer.train(b.byte() < 128)
    y, _ = layer(x, lengths=lengths)
    if layer.training:
        layer.backward(shaped(array(b, y.size, y.dtype), y.shape))


def one_input(data: bytes) -> None:
    b = Bytes(data)
    try:
        (core_call if b.byte() < 192 else layer_call)(b)
        STATS["ran"] += 1
    except ACCEPTED as e:
        STATS[type(e).__name__] += 1
        if not str(e):
            raise AssertionError(f"{type(e).__name__} without a message") from e


def main(argv):
    import atheris
    import fastlstm  # noqa: F401
    from fastlstm import _core  # noqa: F401
    atheris.instrument_all()  # this harness's and fastlstm's Python: the native code has no
    atheris.Setup(argv, one_input)  # coverage (gcc builds), but its errors are branches here
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
