"""Every kernel path (ISA) this CPU runs, against the float64 NumPy reference.

`fastlstm.available_isas()` lists the paths (scalar, avx2, avx512); each one is
forced with `isa=` and checked, forward (train and eval) and backward (every
gradient), in float32 and float64, on:

- bidirectional, 2 layers, proj_size, peephole, no bias, variable unsorted
  lengths, given h0/c0;
- B=1, where a step's GEMMs have one row (the k-split micro-kernel), with
  recurrent K = Ho on both sides of the split factor (K % 3 = 0, 1, 2, K < 3);
- T*B large enough that the forward's input projection (computed in chunks of
  about 2 MB of gate pre-activations) runs in >= 3 chunks, with and without
  lengths, so the inference path's chunk buffer is reused across chunks.

And results are bitwise identical across 1, 2 and 3 threads on every path,
including bidirectional layers (whose directions run concurrently on 2+
threads) and the chunked projection.

Tolerances as in tests/test_lstm_oracles.py: float64 1e-10 relative to
max|oracle|; float32 compared with the float64 reference, bound = 8x the error
the reference itself commits in float32 (on the same inputs and on inputs moved
by one ulp), with a floor of 32 float32 ulps of max|oracle|.
"""
import zlib

import numpy as np
import pytest
from _tolerance import F32, F64, bound_for, float32_reference_error, max_abs, perturb_ulp

fastlstm = pytest.importorskip("fastlstm")
from fastlstm import functional as F  # noqa: E402
from fastlstm import reference as ref  # noqa: E402
from fastlstm import _core  # noqa: E402

ISAS = fastlstm.available_isas()
CHUNK_BYTES = 2 << 20           # the forward's projection chunk (csrc/cpu/layer_forward.cpp)


pytestmark = pytest.mark.usefixtures("restore_threads")


def test_scalar_path_is_always_available():
    assert ISAS and ISAS[0] == "scalar", ISAS
    assert set(ISAS) <= {"scalar", "avx2", "avx512"}


# ----------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------

# T, B, I, H, L, bidirectional, P, peephole, bias, lengths (None or list), hx
CASES = {
    "bidir_lengths_hx": dict(T=6, B=5, I=3, H=5, L=1, bidir=True, P=0, peep=False, bias=True,
                             lengths=[3, 6, 1, 5, 2], hx=True),
    "2layers_proj_peep_nobias": dict(T=5, B=3, I=4, H=6, L=2, bidir=False, P=4, peep=True,
                                     bias=False, lengths=[2, 5, 4], hx=True),
    "bidir_2layers_proj_peep_lengths": dict(T=4, B=7, I=7, H=11, L=2, bidir=True, P=3,
                                            peep=True, bias=True,
                                            lengths=[4, 1, 3, 4, 2, 2, 3], hx=True),
    "bidir_2layers_full": dict(T=5, B=4, I=9, H=17, L=2, bidir=True, P=0, peep=False,
                               bias=True, lengths=None, hx=False),
    # B = 1: one-row GEMMs (k-split) with K = Ho = 8, 4, 2, 9, 1
    "B1_bidir_2layers_peep": dict(T=9, B=1, I=5, H=8, L=2, bidir=True, P=0, peep=True,
                                  bias=True, lengths=None, hx=True),
    "B1_proj_I1": dict(T=6, B=1, I=1, H=7, L=1, bidir=False, P=4, peep=True, bias=True,
                       lengths=None, hx=False),
    "B1_H2": dict(T=5, B=1, I=2, H=2, L=1, bidir=True, P=0, peep=False, bias=True,
                  lengths=[4], hx=True),
    "B1_H9_proj1": dict(T=4, B=1, I=3, H=9, L=2, bidir=False, P=1, peep=False, bias=False,
                        lengths=None, hx=True),
    # several projection chunks (>= 3 on every path and dtype, checked below). A large
    # H keeps the row count (and so the length of the parameter-gradient reductions)
    # small: over ~30k rows (H=8) the float32 bias gradients, summed along the rows in
    # the kernel's order, reach the 32-ulp floor, while the float32 reference sums
    # pairwise (np.sum) and so does not show that error in its own estimate.
    "chunks_uni": dict(T=70, B=32, I=8, H=128, L=1, bidir=False, P=0, peep=False, bias=True,
                       lengths=None, hx=False),
    "chunks_bidir_lengths_proj_peep": dict(T=80, B=36, I=8, H=124, L=1, bidir=True, P=16,
                                           peep=True, bias=True, lengths="random", hx=True),
    # many rows (full tiles, a two-row tail, rows ending) against a wide W_hh panel
    "wide_panel_lengths": dict(T=4, B=14, I=5, H=264, L=1, bidir=True, P=0, peep=True,
                                  bias=True, lengths="random", hx=True),
}


def make_inputs(name, dtype):
    c = CASES[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    T, B, I, H, L, P = c["T"], c["B"], c["I"], c["H"], c["L"], c["P"]
    D, Ho = (2 if c["bidir"] else 1), (P or H)
    scale = min(0.6, 2.0 / np.sqrt(H))
    shapes = F.param_shapes(I, H, L, c["bias"], c["bidir"], P, c["peep"])
    params = {k: rng.uniform(-scale, scale, s).astype(dtype) for k, s in shapes.items()}
    lengths = c["lengths"]
    if lengths == "random":      # unsorted, contains 1 and T
        lengths = rng.permutation(np.concatenate([[1, T], rng.integers(3 * T // 4, T + 1, B - 2)]))
    lengths = None if lengths is None else np.asarray(lengths, np.int64)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((D * L, B, Ho)).astype(dtype) if c["hx"] else None
    c0 = rng.standard_normal((D * L, B, H)).astype(dtype) if c["hx"] else None
    dy = rng.standard_normal((T, B, D * Ho)).astype(dtype)
    dhn = rng.standard_normal((D * L, B, Ho)).astype(dtype)
    dcn = rng.standard_normal((D * L, B, H)).astype(dtype)
    return dict(params=params, lengths=lengths, x=x, h0=h0, c0=c0, dy=dy, dhn=dhn, dcn=dcn)


def config_kw(name):
    c = CASES[name]
    return dict(num_layers=c["L"], hidden_size=c["H"], proj_size=c["P"],
                bidirectional=c["bidir"], bias=c["bias"], peephole=c["peep"])


_REF_CACHE = {}


def reference(name, dtype):
    """float64 oracle (and, for float32, the float32 reference's own error), per case."""
    key = (name, np.dtype(dtype).name)
    if key in _REF_CACHE:
        return _REF_CACHE[key]
    inp, kw = make_inputs(name, dtype), config_kw(name)

    def run(cdtype, prng=None):
        pt = (lambda a: a) if prng is None else \
            (lambda a: None if a is None else perturb_ulp(a, prng))
        y, hn, cn, cache = ref.lstm_forward(
            pt(inp["x"]), {k: pt(v) for k, v in inp["params"].items()}, h0=pt(inp["h0"]),
            c0=pt(inp["c0"]), lengths=inp["lengths"], dtype=cdtype, **kw)
        dx, dh0, dc0, g = ref.lstm_backward(cache, pt(inp["dy"]), pt(inp["dhn"]),
                                            pt(inp["dcn"]))
        out = {"y": y, "h_n": hn, "c_n": cn, "dx": dx, "dh0": dh0, "dc0": dc0}
        out.update({"grad " + k: v for k, v in g.items()})
        return out

    want = run(F64)
    err32 = {}
    if dtype == F32:
        err32 = float32_reference_error(run, want)
    _REF_CACHE[key] = (want, err32)
    return want, err32


def run_kernel(name, dtype, isa, inp=None):
    """Train forward + backward and eval forward on `isa`; every result in a dict."""
    inp = make_inputs(name, dtype) if inp is None else inp
    kw = config_kw(name)
    common = dict(h0=inp["h0"], c0=inp["c0"], lengths=inp["lengths"], isa=isa, **kw)
    y, hn, cn, ctx = F.lstm_forward(inp["x"], inp["params"], training=True, **common)
    assert ctx is not None and ctx.isa == isa
    dx, dh0, dc0, grads = F.lstm_backward(ctx, inp["dy"], inp["dhn"], inp["dcn"])
    ye, hne, cne, ctx_e = F.lstm_forward(inp["x"], inp["params"], training=False, **common)
    assert ctx_e is None
    out = {"y": y, "h_n": hn, "c_n": cn, "dx": dx, "dh0": dh0, "dc0": dc0,
           "y (eval)": ye, "h_n (eval)": hne, "c_n (eval)": cne}
    out.update({"grad " + k: v for k, v in grads.items()})
    return out


# ----------------------------------------------------------------------------
# the chunked projection really is chunked
# ----------------------------------------------------------------------------

def padded_hidden(name, dtype, isa):
    """Hp (H rounded up to the path's SIMD width), read off the training workspace:
    per row and direction it saves gates [4Hp], c [Hp] and h_{t-1} [ldh]; ldh = Hp
    without a projection."""
    c = CASES[name]
    T, B, H, D = c["T"], c["B"], c["H"], (2 if c["bidir"] else 1)
    dims = _core.LayerDims(T=T, B=B, I=c["I"], H=H, D=D, peephole=bool(c["peep"]))
    itemsize = np.dtype(dtype).itemsize
    ws = _core.workspace_size(dims, None, isa, itemsize)
    assert ws % (T * B * D * 6) == 0
    return ws // (T * B * D * 6)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", ["chunks_uni", "chunks_bidir_lengths_proj_peep",
                                  "threads:bidir_chunks_lengths"])
def test_chunk_cases_span_at_least_three_chunks(name, dtype, isa):
    inp = make_inputs(name, dtype)
    c = CASES[name]
    rows = int(np.sum(inp["lengths"])) if inp["lengths"] is not None else c["T"] * c["B"]
    row_bytes = 4 * padded_hidden(name, dtype, isa) * np.dtype(dtype).itemsize
    target = max(64, CHUNK_BYTES // row_bytes)       # rows per chunk at most
    assert c["B"] < target                           # chunks hold whole steps
    assert rows > 2 * target, f"{rows} rows of {row_bytes} B: fewer than 3 chunks"


# ----------------------------------------------------------------------------
# every path against the reference
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(CASES))
def test_path_matches_reference(name, dtype, isa):
    # one thread: quick on a loaded machine; test_bitwise_identical_across_threads
    # proves 2 and 3 threads give the same bits
    fastlstm.set_num_threads(1)
    got = run_kernel(name, dtype, isa)
    want, err32 = reference(name, dtype)
    shapes = F.param_shapes(CASES[name]["I"], CASES[name]["H"], CASES[name]["L"],
                            CASES[name]["bias"], CASES[name]["bidir"], CASES[name]["P"],
                            CASES[name]["peep"])
    assert {k[5:] for k in got if k.startswith("grad ")} == set(shapes)
    failures = []
    for n, g in got.items():
        w = want[n.replace(" (eval)", "")]
        assert g.dtype == dtype, f"{n}: dtype {g.dtype}"
        assert g.shape == w.shape, f"{n}: shape {g.shape}, expected {w.shape}"
        b = bound_for(dtype, w, err32.get(n.replace(" (eval)", "")))
        err = max_abs(g.astype(np.float64) - w)
        if not err <= b:
            failures.append(f"{n}: max|diff| = {err:.3e} > bound {b:.3e} "
                            f"(max|oracle| = {max_abs(w):.3e})")
    assert not failures, f"isa={isa}:\n" + "\n".join(failures)
    lengths = make_inputs(name, dtype)["lengths"]
    if lengths is not None:     # zero past each row's length, in train and eval
        pad = np.arange(CASES[name]["T"])[:, None] >= lengths[None, :]
        assert np.all(got["y"][pad] == 0) and np.all(got["y (eval)"][pad] == 0)


@pytest.mark.parametrize("isa", ISAS)
def test_env_var_selects_the_path_of_the_layer(isa, monkeypatch):
    """FASTLSTM_ISA drives the layer: its results equal the functional call with isa=."""
    name, dtype = "bidir_2layers_proj_peep_lengths", F32
    c, inp = CASES[name], make_inputs(name, dtype)
    fastlstm.set_num_threads(2)
    want = run_kernel(name, dtype, isa, inp)
    monkeypatch.setenv("FASTLSTM_ISA", isa)
    lstm = fastlstm.LSTM(c["I"], c["H"], num_layers=c["L"], bias=c["bias"],
                         bidirectional=c["bidir"], proj_size=c["P"], peephole=c["peep"],
                         dtype=dtype, seed=0)
    lstm.load_state_dict(inp["params"])
    y, (hn, cn) = lstm(inp["x"], (inp["h0"], inp["c0"]), lengths=inp["lengths"])
    assert lstm._packed[1].isa == isa
    dx, (dh0, dc0) = lstm.backward(inp["dy"], inp["dhn"], inp["dcn"])
    got = {"y": y, "h_n": hn, "c_n": cn, "dx": dx, "dh0": dh0, "dc0": dc0}
    got.update({"grad " + k: v for k, v in lstm.grads.items()})
    for n, g in got.items():
        assert np.array_equal(g, want[n]), f"{n} differs from functional isa={isa!r}"


# ----------------------------------------------------------------------------
# bitwise identical across thread counts, on every path
# ----------------------------------------------------------------------------

# big enough that the recurrence really splits over 3 threads (8*B*H*(Ho+P) flops a step
# >= 3 * 262144), small enough that 3 threads on 2 cores stay quick
THREAD_CASES = {
    "bidir_2layers_lengths_hx": dict(T=10, B=8, I=16, H=128, L=2, bidir=True, P=0, peep=False,
                                     bias=True, lengths=[10, 3, 7, 10, 1, 9, 4, 6], hx=True),
    "uni_proj_peep": dict(T=8, B=9, I=12, H=120, L=1, bidir=False, P=72, peep=True, bias=True,
                          lengths=None, hx=True),
    "bidir_B1_peep": dict(T=12, B=1, I=6, H=384, L=1, bidir=True, P=0, peep=True, bias=False,
                          lengths=None, hx=False),
    # several projection chunks on every path (f32: 4Hp = 256 floats, <= 2048 rows a chunk)
    "bidir_chunks_lengths": dict(T=160, B=32, I=4, H=64, L=1, bidir=True, P=0, peep=False,
                                 bias=True, lengths="random", hx=False),
    # B >= 16: threads split the rows. W_hh is 1.4 MB in float32 (rows in both passes)
    # and 2.9 MB in float64 (units in the forward, rows in the backward).
    "rows_split_lengths_peep": dict(T=3, B=17, I=5, H=300, L=1, bidir=False, P=0, peep=True,
                                    bias=True, lengths="random", hx=True),
}
CASES.update({"threads:" + k: v for k, v in THREAD_CASES.items()})


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", ["threads:" + k for k in THREAD_CASES])
def test_bitwise_identical_across_threads(name, dtype, isa):
    inp = make_inputs(name, dtype)
    results = {}
    for nt in (1, 2, 3):
        fastlstm.set_num_threads(nt)
        results[nt] = run_kernel(name, dtype, isa, inp)
    for nt in (2, 3):
        for n, a in results[1].items():
            b = results[nt][n]
            assert np.array_equal(a, b), (
                f"isa={isa}: {n} with {nt} threads differs from 1 thread (max|diff| "
                f"{max_abs(a.astype(np.float64) - b):.3e})")
    assert np.isfinite(results[1]["dx"]).all() and max_abs(results[1]["dx"]) > 0
