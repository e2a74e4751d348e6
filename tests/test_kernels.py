"""Each kernel of the per-ISA tables (csrc/cpu/kernels.h), called directly on every
kernel path this CPU runs, against plain NumPy loops in float64 written here:

- GemmKernels::tile (float32, float64) and tile_bf16 / widen_bf16 (bfloat16 weights);
- LstmStepKernels::fwd_block[peephole][training] and fwd_block_bf16[peephole];
- LstmStepKernels::bwd_block[peephole];
  (the GRU's step kernels and the layer-norm LSTM's row kernels:
  tests/test_kernels_cells.py; ActivationKernels: tests/test_activations.py).

How (NaN sentinels around every array, tolerances derived from rounding) and the
shared helpers: tests/_kernel_util.py.
"""
import numpy as np
import pytest

from _kernel_util import (ACT_UNITS, F32, F64, ISAS, Buf, bf16_panel, check, gamma, geometry,
                          round_bf16, rows_idx, seeded, sigmoid, unit)
from fastlstm import _core


def test_round_bf16_oracle():
    # values whose rounding is known by construction: exact, below/above halfway, ties
    one = np.float32(1.0)
    step = np.float32(2.0 ** -7)           # bfloat16 spacing in [1, 2)
    half = np.float32(2.0 ** -8)
    x = np.array([one, one + half, one + step + half, one + half / 2, one + half + half / 2,
                  -(one + half), -(one + step + half)], F32)
    want = np.array([one, one, one + 2 * step, one, one + step, -one, -(one + 2 * step)], F32)
    assert np.array_equal(round_bf16(x), want)


# ---- GEMM register tile ---------------------------------------------------------

KINDS = ["f32", "f64", "bf16"]
KIND_DTYPE = {"f32": F32, "f64": F64, "bf16": F32}


def _tile_kernel(kind):
    return getattr(_core, f"_kernel_tile_{kind}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", ["rows", "packed", "strided"])
def test_tile(isa, kind, layout):
    """C[m,:nr] = (acc ? C : 0) + sum_k A(m,k) Bp[k,:nr] for every mr <= MR, several
    nr <= NR, acc, split_k, against the float64 product; without split_k, a row's
    result is bitwise the same whatever tile (mr, position) it is computed in."""
    dt = KIND_DTYPE[kind]
    g = geometry(isa, dt)
    W, NR = g["W"], g["NR"]
    MR = g["MR16"] if kind == "bf16" else g["MR"]
    run = _tile_kernel(kind)
    rng = seeded(isa, kind, layout)
    nrs = sorted({1, W - 1 or 1, W + 1, NR - 1, NR})
    ldc = NR + 2
    for kc in (1, 2, 5, 37):
        A = rng.uniform(-1, 1, (MR, kc)).astype(dt)
        B = rng.uniform(-1, 1, (kc, NR)).astype(dt)
        if kind == "bf16":
            B = round_bf16(B)
        C0 = rng.uniform(-1, 1, (MR, NR)).astype(dt)
        for nr in nrs:
            for split_k in (True, False):
                for acc in (False, True):
                    seen = {}  # global row -> its result without split_k
                    for mr in range(1, MR + 1):
                        for r0 in range(MR - mr + 1):
                            rows = slice(r0, r0 + mr)
                            if layout == "rows":       # row-major A [mr, lda]
                                rsa, csa = kc + 3, 1
                            elif layout == "packed":   # a packed A tile [kc][mr]
                                rsa, csa = 1, mr
                            else:                      # columns apart, rows apart
                                rsa, csa = 2, 2 * mr + 1
                            a = Buf(np.arange(mr)[:, None] * rsa + np.arange(kc)[None, :] * csa,
                                    dt).set(A[rows])
                            # columns past nr must not matter: huge values there show
                            # as a huge error if they leak, and as an overwritten
                            # sentinel if stored past nr (2**100 is exact in bfloat16)
                            panel = B.copy()
                            panel[:, nr:] = 2.0 ** 100
                            if kind == "bf16":
                                bp = Buf(np.arange(kc * NR), np.uint16).set(
                                    bf16_panel(panel, g["bf16_order"]).ravel())
                            else:
                                bp = Buf(np.arange(kc * NR), dt).set(panel.ravel())
                            c = Buf(rows_idx(mr, nr, ldc), dt)
                            if acc:                   # else C stays NaN: must not be read
                                c.set(C0[rows, :nr])
                            run(isa=isa, kc=kc, a=a.arr, rsa=rsa, csa=csa, bp=bp.arr, c=c.arr,
                                ldc=ldc, mr=mr, nr=nr, acc=acc, split_k=split_k)
                            got = c.get()
                            A64, B64 = A[rows].astype(F64), B[:, :nr].astype(F64)
                            want = A64 @ B64
                            mag = np.abs(A64) @ np.abs(B64)
                            if acc:
                                want = want + C0[rows, :nr]
                                mag = mag + np.abs(C0[rows, :nr])
                            # float64: the reference's own sum commits as much again
                            bound = (1 if dt == F32 else 2) * gamma(kc + 1, dt) * mag
                            name = (f"{isa} {kind} {layout} kc={kc} mr={mr} r0={r0} nr={nr} "
                                    f"acc={acc} split_k={split_k}")
                            check(got, want, bound, name)
                            for buf, what in ((a, "a"), (bp, "bp"), (c, "c")):
                                buf.assert_rest_untouched(f"{name}: {what}")
                            if not split_k:
                                for m in range(mr):
                                    ref = seen.setdefault(r0 + m, got[m])
                                    assert np.array_equal(got[m], ref), (
                                        f"{name}: row {r0 + m} differs bitwise from the same "
                                        "row in another tile (split_k=False)")


@pytest.mark.parametrize("isa", ISAS)
def test_bf16_order_is_a_permutation(isa):
    g = geometry(isa, F32)
    assert sorted(g["bf16_order"]) == list(range(2 * g["W"]))
    assert geometry(isa, F64)["bf16_order"] == []


@pytest.mark.parametrize("isa", ISAS)
def test_widen_bf16(isa):
    """widen_bf16 turns a bfloat16 panel (bf16_order) back into floats in natural order."""
    g = geometry(isa, F32)
    NR = g["NR"]
    rng = np.random.default_rng(7)
    for rows in (1, 3):
        w = round_bf16(rng.normal(0, 3, (rows, NR)).astype(F32))
        src = Buf(np.arange(rows * NR), np.uint16).set(bf16_panel(w, g["bf16_order"]).ravel())
        dst = Buf(np.arange(rows * NR), F32)
        _core._kernel_widen_bf16(isa=isa, rows=rows, src=src.arr, dst=dst.arr)
        got = dst.get().reshape(rows, NR)
        bad = np.flatnonzero(got.view(np.uint32) != w.view(np.uint32))
        assert bad.size == 0, (f"{isa} widen rows={rows}: {bad.size} values differ, first at "
                               f"{bad[:1]}: {got.ravel()[bad[:1]]} != {w.ravel()[bad[:1]]}")
        dst.assert_rest_untouched(f"{isa} widen rows={rows}")


# ---- forward step of one unit block --------------------------------------------

def lstm_step(pre, c_prev, ph):
    """The LSTM cell in float64. pre: [n, 4, U] pre-activations, gates i, f, g, o;
    c_prev: [n, U]; ph: [3, U] peepholes (i, f, o) or None. Returns i, f, g, o, c, h."""
    a_i, a_f, a_g, a_o = (pre[:, q] for q in range(4))
    if ph is not None:
        a_i = a_i + ph[0] * c_prev
        a_f = a_f + ph[1] * c_prev
    i, f, g = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g)
    c = f * c_prev + i * g
    if ph is not None:
        a_o = a_o + ph[2] * c
    o = sigmoid(a_o)
    return i, f, g, o, c, o * np.tanh(c)


def lstm_step_bounds(dt, K, pre, mag_pre, c_prev, ph, ref):
    """First-order worst-case error of a dt computation of lstm_step whose
    pre-activations are a sum of K + 1 terms of absolute sum mag_pre [n, 4, U]:
    bounds for i, f, g, o, c, h (as lstm_step returns them)."""
    u, e_act = unit(dt), ACT_UNITS * unit(dt)
    i, f, g, o, c, h = ref
    e_pre = gamma(K + 1, dt) * mag_pre
    e_ai, e_af, e_ag, e_ao = (e_pre[:, q] for q in range(4))
    if ph is not None:
        e_ai = e_ai + 2 * u * (np.abs(pre[:, 0]) + np.abs(ph[0] * c_prev))
        e_af = e_af + 2 * u * (np.abs(pre[:, 1]) + np.abs(ph[1] * c_prev))
    d_i = e_ai / 4 + e_act          # sigmoid' <= 1/4, tanh' <= 1
    d_f = e_af / 4 + e_act
    d_g = e_ag + e_act
    d_c = (np.abs(c_prev) * d_f + np.abs(g) * d_i + i * d_g
           + 2 * u * (np.abs(f * c_prev) + np.abs(i * g)) + u * np.abs(c))
    if ph is not None:
        e_ao = e_ao + np.abs(ph[2]) * d_c + 2 * u * (np.abs(pre[:, 3]) + np.abs(ph[2] * c))
    d_o = e_ao / 4 + e_act
    d_h = np.abs(np.tanh(c)) * d_o + o * (d_c + e_act) + u * np.abs(h)
    return d_i, d_f, d_g, d_o, d_c, d_h


def _fwd_kernel(kind):
    return getattr(_core, f"_kernel_fwd_block_{kind}")


def k_slice(NR, kind):
    """k per slice of the forward step: 16 KB of the W_hh panel (kernels.inc)."""
    return 16384 // (NR * (2 if kind == "bf16" else np.dtype(KIND_DTYPE[kind]).itemsize))


def _fwd_case(rng, kind, dt, W, NR, K, rows, peephole):
    """Random inputs of a block: h [rows,K], w [K,NR] (float values of the weights),
    gx [rows,NR] interleaved, c [rows,W], ph [3,W] or None; pre-activations O(1)."""
    h = rng.uniform(-1, 1, (rows, K)).astype(dt)
    w = (rng.uniform(-1, 1, (K, NR)) * np.sqrt(3.0 / max(K, 1))).astype(dt)
    if kind == "bf16":
        w = round_bf16(w)
    gx = rng.normal(0, 0.7, (rows, NR)).astype(dt)
    c = rng.normal(0, 1.0, (rows, W)).astype(dt)
    ph = rng.uniform(-0.5, 0.5, (3, W)).astype(dt) if peephole else None
    return h, w, gx, c, ph


def _run_fwd(isa, kind, g, dt, peephole, training, split_k, K, n, h, w, gx, c, ph,
             saves=None):
    """One fwd_block call on rows [0, n) of the data, each array at a leading
    dimension longer than its row, inside NaN sentinels. saves: whether gsave and
    csave are given (default: with training). Returns the Bufs."""
    W, NR = g["W"], g["NR"]
    saves = training if saves is None else saves
    ldh, ldgx, ldc, ldo, ldgs, ldcs = K + 2, NR + 3, W + 1, W + 2, NR + 1, W + 3
    b = {
        "h": Buf(rows_idx(n, K, ldh), dt).set(h[:n]),
        "gx": Buf(rows_idx(n, NR, ldgx), dt).set(gx[:n]),
        "c": Buf(rows_idx(n, W, ldc), dt).set(c[:n]),
        "out": Buf(rows_idx(n, W, ldo), dt),
        "gsave": Buf(rows_idx(n, NR, ldgs), dt),
        "csave": Buf(rows_idx(n, W, ldcs), dt),
    }
    if kind == "bf16":
        b["w"] = Buf(np.arange(K * NR), np.uint16).set(bf16_panel(w, g["bf16_order"]).ravel())
    else:
        b["w"] = Buf(np.arange(K * NR), dt).set(w.ravel())
    if ph is not None:
        b["ph"] = Buf(np.arange(3 * W), dt).set(ph.ravel())
    _fwd_kernel(kind)(
        isa=isa, peephole=peephole, training=training, n=n, K=K, h=b["h"].arr, ldh=ldh,
        w=b["w"].arr, gx=b["gx"].arr, ldgx=ldgx, ph=b["ph"].arr if ph is not None else None,
        c=b["c"].arr, ldc=ldc, out=b["out"].arr, ldo=ldo,
        gsave=b["gsave"].arr if saves else None, ldgs=ldgs,
        csave=b["csave"].arr if saves else None, ldcs=ldcs, split_k=split_k)
    return b


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("peephole", [False, True], ids=["plain", "peephole"])
@pytest.mark.parametrize("split_k", [True, False], ids=["split_k", "no_split_k"])
def test_fwd_block(isa, kind, peephole, split_k):
    """fwd_block for n = 1 .. 2*MR+1 rows (every tile and tail shape), K small and
    beyond two k-slices (slicing runs when n > MR), training on/off, against the cell
    equations in float64; the saved gates and c_t; untouched sentinels; training and
    inference agree bitwise; without split_k each row's result does not depend on n."""
    dt = KIND_DTYPE[kind]
    g = geometry(isa, dt)
    W, NR = g["W"], g["NR"]
    MR = g["MR16"] if kind == "bf16" else g["MR"]
    rows = 2 * MR + 1
    trainings = [False] if kind == "bf16" else [False, True]
    rng = seeded(isa, kind, peephole, split_k)
    for K in (1, 19, 2 * k_slice(NR, kind) + 3):
        h, w, gx, c, ph = _fwd_case(rng, kind, dt, W, NR, K, rows, peephole)
        h64, w64, gx64, c64 = (x.astype(F64) for x in (h, w, gx, c))
        ph64 = ph.astype(F64) if peephole else None
        pre = (gx64 + h64 @ w64).reshape(rows, 4, W)
        mag = (np.abs(gx64) + np.abs(h64) @ np.abs(w64)).reshape(rows, 4, W)
        ref = lstm_step(pre, c64, ph64)
        bounds = lstm_step_bounds(dt, K, pre, mag, c64, ph64, ref)
        safety = 2.0 if dt == F32 else 3.0  # float64: the reference's own error too
        solo = {}  # (training, row) -> (c_t, out) of the row computed alone (n = 1)
        if not split_k:
            for training in trainings:
                for j in range(rows):
                    sl = slice(j, j + 1)
                    b = _run_fwd(isa, kind, g, dt, peephole, training, split_k, K, 1, h[sl],
                                 w, gx[sl], c[sl], ph)
                    solo[training, j] = (b["c"].get()[0], b["out"].get()[0])
        for n in range(1, rows + 1):
            by_mode = {}
            for training in trainings:
                name = (f"{isa} {kind} peephole={peephole} split_k={split_k} K={K} n={n} "
                        f"training={training}")
                # gsave and csave are given in inference too: they must stay untouched
                b = _run_fwd(isa, kind, g, dt, peephole, training, split_k, K, n, h, w, gx,
                             c, ph, saves=True)
                i_, f_, g_, o_, c_, h_ = (x[:n] for x in ref)
                di, df, dg, do, dc, dh = (safety * x[:n] for x in bounds)
                got_c, got_out = b["c"].get(), b["out"].get()
                check(got_c, c_, dc, f"{name}: c_t")
                check(got_out, h_, dh, f"{name}: out")
                if training:
                    gs = b["gsave"].get().reshape(n, 4, W)
                    for q, (want, bd) in enumerate(((i_, di), (f_, df), (g_, dg), (o_, do))):
                        check(gs[:, q], want, bd, f"{name}: saved gate {'ifgo'[q]}")
                    assert np.array_equal(b["csave"].get(), got_c), f"{name}: csave != c_t"
                else:
                    for key in ("gsave", "csave"):
                        b[key].assert_all_untouched(f"{name}: inference, {key}")
                # gx is scratch: only the memory around its rows must stay untouched
                for key, buf in b.items():
                    buf.assert_rest_untouched(f"{name}: {key}")
                by_mode[training] = (got_c, got_out)
                if not split_k:
                    for j in range(n):
                        sc, so = solo[training, j]
                        assert np.array_equal(got_c[j], sc) and np.array_equal(got_out[j], so), (
                            f"{name}: row {j} differs bitwise from the same row alone (n=1)")
            if len(by_mode) == 2:
                assert all(np.array_equal(x, y) for x, y in zip(by_mode[False], by_mode[True])), (
                    f"{isa} {kind} K={K} n={n}: training and inference steps differ bitwise")


# ---- backward step (pointwise) ---------------------------------------------------

def lstm_step_grad(i, f, g, o, c, cp, dh, dc, ph):
    """Gradients of L = sum(dh * h_t) + sum(dc * c_t) with respect to the
    pre-activations (i, f, g, o) and c_{t-1}, from the chain rule on lstm_step
    (float64; ph [3, U] or None). Verified by test_lstm_step_grad_oracle."""
    tc = np.tanh(c)
    da_o = dh * tc * o * (1 - o)
    dct = dc + dh * o * (1 - tc * tc)       # dL/dc_t, all paths
    if ph is not None:
        dct = dct + da_o * ph[2]             # through o's peephole
    da_i = dct * g * i * (1 - i)
    da_f = dct * cp * f * (1 - f)
    da_g = dct * i * (1 - g * g)
    dcp = dct * f
    if ph is not None:
        dcp = dcp + da_i * ph[0] + da_f * ph[1]
    return da_i, da_f, da_g, da_o, dcp


@pytest.mark.parametrize("peephole", [False, True], ids=["plain", "peephole"])
def test_lstm_step_grad_oracle(peephole):
    """The backward oracle against central differences of the forward oracle."""
    rng = np.random.default_rng(3)
    U = 3
    pre = rng.normal(0, 1, (1, 4, U))
    cp = rng.normal(0, 1, (1, U))
    ph = rng.uniform(-0.5, 0.5, (3, U)) if peephole else None
    dh, dc = rng.normal(0, 1, (1, U)), rng.normal(0, 1, (1, U))

    def loss(pre, cp):
        *_, c, h = lstm_step(pre, cp, ph)
        return float(np.sum(dh * h) + np.sum(dc * c))

    i, f, g, o, c, _ = lstm_step(pre, cp, ph)
    da = lstm_step_grad(i, f, g, o, c, cp, dh, dc, ph)
    eps = 1e-6
    for q in range(4):
        for u in range(U):
            p1, p0 = pre.copy(), pre.copy()
            p1[0, q, u] += eps
            p0[0, q, u] -= eps
            fd = (loss(p1, cp) - loss(p0, cp)) / (2 * eps)
            assert abs(fd - da[q][0, u]) <= 1e-8 * max(1.0, abs(fd)), ("ifgo"[q], u)
    for u in range(U):
        c1, c0 = cp.copy(), cp.copy()
        c1[0, u] += eps
        c0[0, u] -= eps
        fd = (loss(pre, c1) - loss(pre, c0)) / (2 * eps)
        assert abs(fd - da[4][0, u]) <= 1e-8 * max(1.0, abs(fd)), ("c_prev", u)


def lstm_step_grad_bounds(dt, i, f, g, o, c, cp, dh, dc, ph, grads):
    """First-order worst-case error of a dt computation of lstm_step_grad from
    exact inputs: bounds for da_i, da_f, da_g, da_o, dc_prev."""
    u, e_act = unit(dt), ACT_UNITS * unit(dt)
    da_i, da_f, da_g, da_o, dcp = grads
    tc = np.tanh(c)
    a = np.abs
    e_o = 5 * u * a(da_o) + a(dh) * o * (1 - o) * e_act
    dct = dc + dh * o * (1 - tc * tc) + (da_o * ph[2] if ph is not None else 0)
    e_ct = (3 * u * (a(dc) + a(dh * o * (1 - tc * tc)))
            + a(dh) * o * (2 * a(tc) * e_act + 2 * u))  # tanh's error, 1 - tc*tc's rounding
    if ph is not None:
        e_ct = e_ct + a(ph[2]) * e_o + 2 * u * a(da_o * ph[2])
    e_i = 5 * u * a(da_i) + a(g) * i * (1 - i) * e_ct
    e_f = 5 * u * a(da_f) + a(cp) * f * (1 - f) * e_ct
    e_g = 5 * u * a(da_g) + i * (1 - g * g) * e_ct + a(dct) * i * 2 * u
    e_cp = f * e_ct + 3 * u * a(dct * f)
    if ph is not None:
        e_cp = e_cp + 3 * u * (a(da_i * ph[0]) + a(da_f * ph[1])) + a(ph[0]) * e_i + a(ph[1]) * e_f
    return e_i, e_f, e_g, e_o, e_cp


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dt", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("peephole", [False, True], ids=["plain", "peephole"])
def test_bwd_block(isa, dt, peephole):
    """bwd_block over nblk unit blocks and n rows, every array at a leading dimension
    longer than its row and the gates of dg gstride apart (not a multiple of W), against
    the chain rule in float64; sentinels around and between stay untouched."""
    g = geometry(isa, dt)
    W, NR = g["W"], g["NR"]
    run = getattr(_core, f"_kernel_bwd_block_{'f32' if dt == F32 else 'f64'}")
    rng = seeded(isa, np.dtype(dt).name, peephole)
    safety = 2.0 if dt == F32 else 3.0
    for n in (1, 4):
        for nblk in (1, 3):
            U = nblk * W
            pre = rng.normal(0, 1.2, (n, 4, U))
            cp = rng.normal(0, 1, (n, U)).astype(dt).astype(F64)
            ph = rng.uniform(-0.5, 0.5, (3, U)).astype(dt).astype(F64) if peephole else None
            i, f, gg, o, c, _ = (x.astype(dt).astype(F64) for x in lstm_step(pre, cp, ph))
            dh = rng.normal(0, 1, (n, U)).astype(dt).astype(F64)
            dc = rng.normal(0, 1, (n, U)).astype(dt).astype(F64)
            want = lstm_step_grad(i, f, gg, o, c, cp, dh, dc, ph)
            bounds = lstm_step_grad_bounds(dt, i, f, gg, o, c, cp, dh, dc, ph, want)

            ldg, ldc, ldcp, lddh, lddc = nblk * NR + 2, U + 1, U + 3, U + 2, U + 1
            gstride = U + 1
            lddg = 3 * gstride + U + 2
            # interleaved gates: unit b*W + l of gate q at b*NR + q*W + l
            gate_cols = (np.arange(nblk)[:, None, None] * NR + np.arange(4)[None, :, None] * W
                         + np.arange(W)[None, None, :])          # [nblk, 4, W]
            gates_val = np.stack([i, f, gg, o], 1).reshape(n, 4, nblk, W).transpose(0, 2, 1, 3)
            gates = Buf(np.arange(n)[:, None, None, None] * ldg + gate_cols[None], dt).set(
                gates_val)
            bc = Buf(rows_idx(n, U, ldc), dt).set(c)
            bcp = Buf(rows_idx(n, U, ldcp), dt).set(cp)
            bdh = Buf(rows_idx(n, U, lddh), dt).set(dh)
            bdc = Buf(rows_idx(n, U, lddc), dt).set(dc)
            # dg, gate-major within a row: gate q of unit u at q*gstride + u
            dg_idx = (np.arange(n)[:, None, None] * lddg + np.arange(4)[None, :, None] * gstride
                      + np.arange(U)[None, None, :])
            bdg = Buf(dg_idx, dt)
            bph = None
            if peephole:  # [nblk, 3, W]
                bph = Buf(np.arange(3 * U), dt).set(
                    ph.reshape(3, nblk, W).transpose(1, 0, 2).ravel())
            run(isa=isa, peephole=peephole, n=n, nblk=nblk, gates=gates.arr, ldg=ldg,
                c=bc.arr, ldc=ldc, cp=bcp.arr, ldcp=ldcp, dh=bdh.arr, lddh=lddh, dc=bdc.arr,
                lddc=lddc, dg=bdg.arr, lddg=lddg, gstride=gstride,
                ph=bph.arr if peephole else None)
            name = f"{isa} {np.dtype(dt).name} peephole={peephole} n={n} nblk={nblk}"
            got = bdg.get()
            for q in range(4):
                check(got[:, q], want[q], safety * bounds[q], f"{name}: dgates {'ifgo'[q]}")
            check(bdc.get(), want[4], safety * bounds[4], f"{name}: dc_prev")
            for key, buf in (("gates", gates), ("c", bc), ("cp", bcp), ("dh", bdh),
                             ("dc", bdc), ("dg", bdg)) + ((("ph", bph),) if peephole else ()):
                buf.assert_rest_untouched(f"{name}: {key}")


# ---- the entry points check every size -------------------------------------------

def test_entry_points_reject_bad_sizes():
    isa = ISAS[0]
    g = geometry(isa, F32)
    W, NR, MR = g["W"], g["NR"], g["MR"]
    z = lambda k, dt=F32: np.zeros(k, dt)  # noqa: E731
    tile = dict(isa=isa, kc=4, a=z(4 * MR), rsa=4, csa=1, bp=z(4 * NR), c=z(MR * NR),
                ldc=NR, mr=MR, nr=NR, acc=False, split_k=True)
    _core._kernel_tile_f32(**tile)  # the valid call
    readonly = z(MR * NR)
    readonly.setflags(write=False)
    for change, err in ((dict(mr=MR + 1), ValueError), (dict(mr=0), ValueError),
                        (dict(nr=NR + 1), ValueError), (dict(ldc=NR - 1), ValueError),
                        (dict(c=z(MR * NR - 1)), ValueError), (dict(bp=z(4 * NR - 1)), ValueError),
                        (dict(a=z(4 * MR - 1)), ValueError), (dict(rsa=-1), ValueError),
                        (dict(kc=-1), ValueError), (dict(a=z(4 * MR, F64)), TypeError),
                        (dict(c=z(2 * MR * NR)[::2]), ValueError),  # not contiguous
                        (dict(a=np.frombuffer(bytearray(16 * MR + 1), F32, 4 * MR, 1)),
                         ValueError),  # not aligned
                        (dict(c=readonly), ValueError),
                        (dict(isa="sse9"), ValueError)):
        with pytest.raises(err):
            _core._kernel_tile_f32(**{**tile, **change})
    with pytest.raises(ValueError):  # rows * ld overflows
        _core._kernel_tile_f32(**{**tile, "rsa": 2**62})
    with pytest.raises(TypeError):
        _core._kernel_tile_bf16(**{**tile, "mr": 1})  # bp must be uint16

    n, K = 2, 3
    fwd = dict(isa=isa, peephole=False, training=True, n=n, K=K, h=z(n * K), ldh=K,
               w=z(K * NR), gx=z(n * NR), ldgx=NR, ph=None, c=z(n * W), ldc=W, out=z(n * W),
               ldo=W, gsave=z(n * NR), ldgs=NR, csave=z(n * W), ldcs=W, split_k=True)
    _core._kernel_fwd_block_f32(**fwd)
    for change in (dict(h=z(n * K - 1)), dict(ldh=K - 1), dict(w=z(K * NR - 1)),
                   dict(gx=z(n * NR - 1)), dict(c=z(n * W - 1)), dict(out=z(n * W - 1)),
                   dict(gsave=z(n * NR - 1)), dict(csave=z(n * W - 1)), dict(gsave=None),
                   dict(peephole=True), dict(ph=z(3 * W)), dict(n=-1), dict(K=-1),
                   dict(peephole=True, ph=z(3 * W - 1))):
        with pytest.raises(ValueError):
            _core._kernel_fwd_block_f32(**{**fwd, **change})
    with pytest.raises(ValueError):  # the bfloat16 step is inference only
        _core._kernel_fwd_block_bf16(**{**fwd, "w": z(K * NR, np.uint16)})

    nblk = 2
    U = nblk * W
    bwd = dict(isa=isa, peephole=True, n=n, nblk=nblk, gates=z(n * nblk * NR), ldg=nblk * NR,
               c=z(n * U), ldc=U, cp=z(n * U), ldcp=U, dh=z(n * U), lddh=U, dc=z(n * U),
               lddc=U, dg=z(n * 4 * U), lddg=4 * U, gstride=U, ph=z(3 * U))
    _core._kernel_bwd_block_f32(**bwd)
    for change in (dict(gstride=U - 1), dict(lddg=4 * U - 1), dict(dg=z(n * 4 * U - 1)),
                   dict(gates=z(n * nblk * NR - 1)), dict(ph=z(3 * U - 1)), dict(ph=None),
                   dict(dc=z(n * U - 1)), dict(nblk=3), dict(ldcp=U - 1)):
        with pytest.raises(ValueError):
            _core._kernel_bwd_block_f32(**{**bwd, **change})
    with pytest.raises(ValueError):
        _core._kernel_geometry(isa, "float16")
