"""The GRU's step kernels and the layer-norm LSTM's row kernels of the per-ISA tables
(csrc/cpu/kernels.h), called directly on every kernel path this CPU runs, float32 and
float64, against plain NumPy loops in float64 written here (not fastlstm.reference):

- Kernels::gru.fwd_block[0][training][0] and gru.fwd_block_bf16[0][0] (GruRows);
- Kernels::gru.bwd_block[0][0] (gru_bwd_block);
- Kernels::lnlstm.fwd_row, bwd_row and norm_backward (cpu/lnlstm_rows.inc).

They are reached through the internal `_kernel_gru_*` / `_kernel_ln_*` entry points
(csrc/python/kernel_cells.cpp). As in tests/test_kernels.py (see tests/_kernel_util.py):
every array sits in NaN sentinels, around it and between its rows (a kernel reading
past its elements gets NaN into a result, one writing past them changes a sentinel),
and tolerances are first-order worst-case bounds of the rounding the kernel may commit
(gamma_n for a sum of n terms; the activations within ACT_UNITS*u), times 2 in float32
(first-order terms left out) or 3 in float64 (the float64 oracle's own rounding is of
the same size). Unit blocks are padded (H not a multiple of W): inputs' padding units
are zero, as the drivers keep them, and the padding units of every output must come
out exactly zero.
"""
import numpy as np
import pytest

from _kernel_util import (ACT_UNITS, F32, F64, ISAS, Buf, bf16_panel, check, gamma, geometry,
                          round_bf16, rows_idx, seeded, sigmoid, unit)
from fastlstm import _core

DTS = [F32, F64]
SAFETY = {np.dtype(F32): 2.0, np.dtype(F64): 3.0}
LN_EPS = 1e-5  # torch.nn.LayerNorm's, as csrc/cells/lnlstm.h (kLnEps)


def sfx(dt):
    return "f32" if np.dtype(dt) == F32 else "f64"


def exact(x, dt):
    """x rounded to dt, as float64 (values every computation starts from exactly)."""
    return np.asarray(x).astype(dt).astype(F64)


# ==== GRU: forward step of one unit block ==========================================

GRU_KINDS = ["f32", "f64", "bf16"]
KIND_DTYPE = {"f32": F32, "f64": F64, "bf16": F32}


def gru_mr(g, kind):
    """Rows of a GRU step tile: FL_MR_GRU (8 with 64-byte vectors, else 4; kernels.inc,
    not in the geometry) or MR16 with bfloat16 weights."""
    if kind == "bf16":
        return g["MR16"]
    return 8 if g["W"] * np.dtype(KIND_DTYPE[kind]).itemsize == 64 else 4


def gru_k_slice(W, kind):
    """k per slice of the GRU's forward step: 16 KB of a 3W-wide panel (kernels.inc)."""
    return 16384 // (3 * W * (2 if kind == "bf16" else np.dtype(KIND_DTYPE[kind]).itemsize))


def gru_step(a_r, a_z, m, xn, hp):
    """torch's GRU cell in float64, from the summed pre-activations a_r, a_z, the
    recurrent n part m = h W_hn^T + b_hn, the input n part xn = x W_in^T + b_in and
    hp = h_{t-1}. Returns r, z, n, h_t."""
    r, z = sigmoid(a_r), sigmoid(a_z)
    n = np.tanh(xn + r * m)
    return r, z, n, (1 - z) * n + z * hp


def gru_step_bounds(dt, K, mag, m, xn, hp, ref):
    """First-order worst-case error of a dt computation of gru_step whose a_r, a_z, m
    are sums of K + 1 terms of absolute sums mag [n, 3, W] (xn, hp exact): bounds for
    r, z, n, m, h_t."""
    u, e_act = unit(dt), ACT_UNITS * unit(dt)
    r, z, n, h = ref
    e_ar, e_az, e_m = (gamma(K + 1, dt) * mag[:, q] for q in range(3))
    d_r = e_ar / 4 + e_act               # sigmoid' <= 1/4, tanh' <= 1
    d_z = e_az / 4 + e_act
    d_n = np.abs(m) * d_r + r * e_m + 2 * u * (np.abs(xn) + np.abs(r * m)) + e_act
    diff = np.abs(hp - n)                # h_t = n + z*(hp - n)
    d_h = d_n + diff * d_z + z * (d_n + u * diff) + u * z * diff + u * np.abs(h)
    return d_r, d_z, d_n, e_m, d_h


def _gru_fwd_case(rng, kind, dt, W, K, rows, valid):
    """Random inputs of a block whose lanes >= valid are padding (zero weights, gx,
    b_hn and h_{t-1}, as packing and the drivers leave them): h [rows,K], w [K,3W]
    (r | z | n columns), gx [rows,3W] (r, z, x_n), bhn [W], hself [rows,W]."""
    h = rng.uniform(-1, 1, (rows, K)).astype(dt)
    w = (rng.uniform(-1, 1, (K, 3 * W)) * np.sqrt(3.0 / max(K, 1))).astype(dt)
    if kind == "bf16":
        w = round_bf16(w)
    gx = rng.normal(0, 0.7, (rows, 3 * W)).astype(dt)
    bhn = rng.uniform(-0.5, 0.5, W).astype(dt)
    hself = rng.uniform(-1, 1, (rows, W)).astype(dt)
    pad = np.arange(3 * W) % W >= valid
    w[:, pad] = 0
    gx[:, pad] = 0
    bhn[valid:] = 0
    hself[:, valid:] = 0
    return h, w, gx, bhn, hself


def _run_gru_fwd(isa, kind, g, dt, training, split_k, K, n, h, w, gx, bhn, hself, saves=None):
    """One gru fwd_block call on rows [0, n), every array at a leading dimension
    longer than its row, inside NaN sentinels. Returns the Bufs."""
    W = g["W"]
    saves = training if saves is None else saves
    ldh, ldgx, ldo, ldgs, ldms = max(K, W) + 2, 3 * W + 3, W + 2, 3 * W + 1, W + 3
    b = {
        "h": Buf(rows_idx(n, K, ldh), dt).set(h[:n]),
        "hself": Buf(rows_idx(n, W, ldh), dt).set(hself[:n]),
        "gx": Buf(rows_idx(n, 3 * W, ldgx), dt).set(gx[:n]),
        "msum": Buf(np.arange(n * W), dt),  # scratch: stays NaN until the kernel writes
        "bhn": Buf(np.arange(W), dt).set(bhn),
        "out": Buf(rows_idx(n, W, ldo), dt),
        "gsave": Buf(rows_idx(n, 3 * W, ldgs), dt),
        "msave": Buf(rows_idx(n, W, ldms), dt),
    }
    if kind == "bf16":  # [K, 4W] panel: the last W columns padding, huge so a leak shows
        panel = np.concatenate([w, np.full((K, W), 2.0 ** 100, F32)], 1)
        b["w"] = Buf(np.arange(K * 4 * W), np.uint16).set(
            bf16_panel(panel, g["bf16_order"]).ravel())
    else:
        b["w"] = Buf(np.arange(K * 3 * W), dt).set(w.ravel())
    getattr(_core, f"_kernel_gru_fwd_block_{kind}")(
        isa=isa, training=training, n=n, K=K, h=b["h"].arr, ldh=ldh, hself=b["hself"].arr,
        w=b["w"].arr, gx=b["gx"].arr, ldgx=ldgx, msum=b["msum"].arr, bhn=b["bhn"].arr,
        out=b["out"].arr, ldo=ldo, gsave=b["gsave"].arr if saves else None, ldgs=ldgs,
        msave=b["msave"].arr if saves else None, ldms=ldms, split_k=split_k)
    return b


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind", GRU_KINDS)
@pytest.mark.parametrize("split_k", [True, False], ids=["split_k", "no_split_k"])
@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
def test_gru_fwd_block(isa, kind, split_k, padded):
    """gru fwd_block for n = 1 .. 2*MR+1 rows (every tile and tail shape), K small and
    beyond two k-slices (slicing, with its running sums in gx and msum, runs when
    n > MR), training on/off, against torch's GRU equations in float64: h_t, the saved
    r, z, n and W_hn h + b_hn; x_n in gx untouched; padding lanes of h_t exactly zero;
    untouched sentinels; training and inference agree bitwise; without split_k each
    row's result does not depend on n."""
    dt = KIND_DTYPE[kind]
    g = geometry(isa, dt)
    W = g["W"]
    valid = max(1, W // 2 - 1) if padded else W
    rows = 2 * gru_mr(g, kind) + 1
    trainings = [False] if kind == "bf16" else [False, True]
    rng = seeded("gru_fwd", isa, kind, split_k, padded)
    safety = SAFETY[np.dtype(dt)]
    for K in (1, 19, 2 * gru_k_slice(W, kind) + 3):
        h, w, gx, bhn, hself = _gru_fwd_case(rng, kind, dt, W, K, rows, valid)
        h64, w64, gx64, bhn64, hs64 = (x.astype(F64) for x in (h, w, gx, bhn, hself))
        s = (h64 @ w64).reshape(rows, 3, W)
        mag = (np.abs(h64) @ np.abs(w64)).reshape(rows, 3, W)
        gq = gx64.reshape(rows, 3, W)
        a_r, a_z, m, xn = gq[:, 0] + s[:, 0], gq[:, 1] + s[:, 1], bhn64 + s[:, 2], gq[:, 2]
        mag = mag + np.abs(np.stack([gq[:, 0], gq[:, 1], np.broadcast_to(bhn64, m.shape)], 1))
        ref = gru_step(a_r, a_z, m, xn, hs64)
        bounds = gru_step_bounds(dt, K, mag, m, xn, hs64, ref)
        solo = {}  # (training, row) -> h_t of the row computed alone (n = 1)
        if not split_k:
            for training in trainings:
                for j in range(rows):
                    sl = slice(j, j + 1)
                    b = _run_gru_fwd(isa, kind, g, dt, training, split_k, K, 1, h[sl], w,
                                     gx[sl], bhn, hself[sl])
                    solo[training, j] = b["out"].get()[0]
        for n in range(1, rows + 1):
            by_mode = {}
            for training in trainings:
                name = (f"{isa} gru {kind} split_k={split_k} valid={valid}/{W} K={K} n={n} "
                        f"training={training}")
                # gsave and msave are given in inference too: they must stay untouched
                b = _run_gru_fwd(isa, kind, g, dt, training, split_k, K, n, h, w, gx, bhn,
                                 hself, saves=True)
                r_, z_, n_, h_ = (x[:n] for x in ref)
                dr, dz, dn, dm, dh = (safety * x[:n] for x in bounds)
                got = b["out"].get()
                check(got, h_, dh, f"{name}: h_t")
                assert np.all(got[:, valid:] == 0), f"{name}: padding lanes of h_t not zero"
                if training:
                    gs = b["gsave"].get().reshape(n, 3, W)
                    for q, (want, bd) in enumerate(((r_, dr), (z_, dz), (n_, dn))):
                        check(gs[:, q], want, bd, f"{name}: saved gate {'rzn'[q]}")
                    check(b["msave"].get(), m[:n], dm, f"{name}: saved W_hn h + b_hn")
                else:
                    for key in ("gsave", "msave"):
                        b[key].assert_all_untouched(f"{name}: inference, {key}")
                # the k-sliced path ran exactly where it should (else this test would
                # not cover it: FL_MR_GRU or the slice size changed in kernels.inc?)
                sliced = n > gru_mr(g, kind) and K > 2 * gru_k_slice(W, kind)
                touched = not b["msum"].untouched()
                assert touched == sliced, f"{name}: k slices ran: {touched}, expected {sliced}"
                # gx's r and z columns and msum are scratch; x_n waits in gx, read only
                assert np.array_equal(b["gx"].get()[:, 2 * W:], gx[:n, 2 * W:]), (
                    f"{name}: x_n in gx was changed")
                for key, buf in b.items():
                    buf.assert_rest_untouched(f"{name}: {key}")
                by_mode[training] = got
                if not split_k:
                    for j in range(n):
                        assert np.array_equal(got[j], solo[training, j]), (
                            f"{name}: row {j} differs bitwise from the same row alone (n=1)")
            if len(by_mode) == 2:
                assert np.array_equal(by_mode[False], by_mode[True]), (
                    f"{isa} gru {kind} K={K} n={n}: training and inference steps differ bitwise")


# ==== GRU: backward step (pointwise) ================================================

def gru_step_grad(r, z, n, m, hp, dh):
    """Gradients of L = sum(dh * h_t) (gru_step, float64) with respect to m, a_r, a_z,
    xn (the dgates slots [dm, r, z, x_n]) and the direct part z*dh of dL/dh_{t-1}
    (through h_t = (1-z) n + z hp only). Verified by test_gru_step_grad_oracle."""
    d_xn = dh * (1 - z) * (1 - n * n)
    d_az = dh * (hp - n) * z * (1 - z)
    d_ar = d_xn * m * r * (1 - r)
    return d_xn * r, d_ar, d_az, d_xn, dh * z


def test_gru_step_grad_oracle():
    """The backward oracle against central differences of the forward oracle."""
    rng = np.random.default_rng(5)
    U = 4
    a_r, a_z, m, xn, hp, dh = (rng.normal(0, 1, (1, U)) for _ in range(6))

    def loss(a_r, a_z, m, xn, hp):
        return float(np.sum(dh * gru_step(a_r, a_z, m, xn, hp)[3]))

    r, z, n, _ = gru_step(a_r, a_z, m, xn, hp)
    dm, dar, daz, dxn, dhp = gru_step_grad(r, z, n, m, hp, dh)
    args = [a_r, a_z, m, xn, hp]
    # hp's gradient through h_t's z*hp term only: hp also feeds nothing else here
    for k, want in ((0, dar), (1, daz), (2, dm), (3, dxn), (4, dhp)):
        for u in range(U):
            eps = 1e-6
            p1 = [x.copy() for x in args]
            p0 = [x.copy() for x in args]
            p1[k][0, u] += eps
            p0[k][0, u] -= eps
            fd = (loss(*p1) - loss(*p0)) / (2 * eps)
            assert abs(fd - want[0, u]) <= 1e-8 * max(1.0, abs(fd)), (k, u)


def gru_step_grad_bounds(dt, r, z, n, m, hp, dh, grads):
    """First-order worst-case error of a dt computation of gru_step_grad from exact
    inputs: bounds for dm, da_r, da_z, d_xn, dh_direct."""
    u = unit(dt)
    a = np.abs
    dm, dar, daz, dxn, dhd = grads
    # (1 - n*n): n*n rounds (u n^2), the difference too (u |1 - n^2|); 1 - z: u; two products
    e_xn = 4 * u * a(dxn) + u * a(dh) * a(1 - z) * n * n
    e_az = 5 * u * a(daz)                    # hp - n, 1 - z, three products
    e_ar = a(m * r * (1 - r)) * e_xn + 4 * u * a(dar)
    e_m = r * e_xn + u * a(dm)
    e_dh = u * a(dhd)
    return e_m, e_ar, e_az, e_xn, e_dh


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dt", DTS, ids=["f32", "f64"])
def test_gru_bwd_block(isa, dt):
    """gru bwd_block over nblk unit blocks (the last one padded: lanes past H hold what
    the forward leaves there, r = z = 1/2, n = m = h = 0, and dh = 0) and n rows, every
    array at a leading dimension longer than its row and the dgates slots gstride apart
    (not a multiple of W), against the chain rule in float64: the slots [dm, r, z, x_n]
    and z*dh written back into dh; padding exactly zero; sentinels untouched."""
    g = geometry(isa, dt)
    W = g["W"]
    run = getattr(_core, f"_kernel_gru_bwd_block_{sfx(dt)}")
    rng = seeded("gru_bwd", isa, sfx(dt))
    safety = SAFETY[np.dtype(dt)]
    for n in (1, 4):
        for nblk in (1, 3):
            U = nblk * W
            H = U - W // 2  # W >= 2: the last block has padding lanes
            pad = np.arange(U) >= H
            r, z = sigmoid(rng.normal(0, 1.5, (2, n, U)))
            m = rng.normal(0, 1, (n, U))
            nn = np.tanh(rng.normal(0, 1, (n, U)) + r * m)
            hp = rng.uniform(-1, 1, (n, U))
            dh = rng.normal(0, 1, (n, U))
            r[:, pad], z[:, pad] = 0.5, 0.5
            for x in (nn, m, hp, dh):
                x[:, pad] = 0
            r, z, nn, m, hp, dh = (exact(x, dt) for x in (r, z, nn, m, hp, dh))
            want = gru_step_grad(r, z, nn, m, hp, dh)
            bounds = gru_step_grad_bounds(dt, r, z, nn, m, hp, dh, want)

            ldg, ldm, ldhp, lddh = 3 * U + 2, U + 1, U + 3, U + 2
            gstride = U + 1
            lddg = 3 * gstride + U + 2
            # interleaved gates: unit b*W + l of gate q at b*3W + q*W + l
            gate_cols = (np.arange(nblk)[:, None, None] * 3 * W
                         + np.arange(3)[None, :, None] * W + np.arange(W)[None, None, :])
            gates_val = np.stack([r, z, nn], 1).reshape(n, 3, nblk, W).transpose(0, 2, 1, 3)
            gates = Buf(np.arange(n)[:, None, None, None] * ldg + gate_cols[None], dt).set(
                gates_val)
            bm = Buf(rows_idx(n, U, ldm), dt).set(m)
            bhp = Buf(rows_idx(n, U, ldhp), dt).set(hp)
            bdh = Buf(rows_idx(n, U, lddh), dt).set(dh)
            dg_idx = (np.arange(n)[:, None, None] * lddg + np.arange(4)[None, :, None] * gstride
                      + np.arange(U)[None, None, :])
            bdg = Buf(dg_idx, dt)
            run(isa=isa, n=n, nblk=nblk, gates=gates.arr, ldg=ldg, m=bm.arr, ldm=ldm,
                hp=bhp.arr, ldhp=ldhp, dh=bdh.arr, lddh=lddh, dg=bdg.arr, lddg=lddg,
                gstride=gstride)
            name = f"{isa} gru {sfx(dt)} n={n} nblk={nblk} H={H}"
            got = bdg.get()
            for q in range(4):
                what = ("dm", "da_r", "da_z", "dx_n")[q]
                check(got[:, q], want[q], safety * bounds[q], f"{name}: dgates {what}")
                assert np.all(got[:, q][:, pad] == 0), f"{name}: padding of {what} not zero"
            got_dh = bdh.get()
            check(got_dh, want[4], safety * bounds[4], f"{name}: z*dh")
            assert np.all(got_dh[:, pad] == 0), f"{name}: padding of z*dh not zero"
            for key, buf in (("gates", gates), ("m", bm), ("hp", bhp), ("dh", bdh),
                             ("dg", bdg)):
                buf.assert_rest_untouched(f"{name}: {key}")


# ==== layer-norm LSTM: row kernels ===================================================

def ln_stats(v, e_v, dt):
    """Layer norm over the last axis of v [rows, N] (float64, the values a dt
    computation starts from, each within e_v of the exact ones) and the first-order
    worst-case error of its dt computation (mean; d = v - mean; var = mean(d*d);
    rstd = 1/sqrt(var + eps) with eps rounded to dt; v_hat = d*rstd). Returns
    v_hat, rstd [rows, 1], and their bounds."""
    u, N = unit(dt), v.shape[-1]
    mean = v.mean(-1, keepdims=True)
    d = v - mean
    var = (d * d).mean(-1, keepdims=True)
    s = var + LN_EPS
    rstd = 1 / np.sqrt(s)
    e_mean = e_v.sum(-1, keepdims=True) / N + gamma(N + 1, dt) * np.abs(v).mean(-1, keepdims=True)
    e_d = e_v + e_mean + u * np.abs(d)
    e_var = 2 * (np.abs(d) * e_d).mean(-1, keepdims=True) + gamma(N + 2, dt) * var
    e_rstd = rstd * (e_var / (2 * s) + 4 * u)  # + eps, eps's own rounding, sqrt, division
    v_hat = d * rstd
    return v_hat, rstd, np.abs(d) * e_rstd + rstd * e_d + u * np.abs(v_hat), e_rstd


def ln_grad(dn, e_dn, v_hat, rstd, dt):
    """dL/dv of v_hat = LN(v) over the last axis, given dn = dL/dv_hat (within e_dn),
    v_hat and rstd exact in dt: rstd*(dn - mean(dn) - v_hat*mean(dn*v_hat)), and the
    first-order worst-case error of its dt computation."""
    u, N = unit(dt), dn.shape[-1]
    m1 = dn.mean(-1, keepdims=True)
    m2 = (dn * v_hat).mean(-1, keepdims=True)
    out = rstd * (dn - m1 - v_hat * m2)
    e_m1 = e_dn.mean(-1, keepdims=True) + gamma(N + 1, dt) * np.abs(dn).mean(-1, keepdims=True)
    e_m2 = ((np.abs(v_hat) * e_dn).mean(-1, keepdims=True)
            + gamma(N + 2, dt) * np.abs(dn * v_hat).mean(-1, keepdims=True))
    e = (rstd * (e_dn + e_m1 + np.abs(v_hat) * e_m2
                 + 3 * u * (np.abs(dn) + np.abs(m1) + np.abs(v_hat * m2))) + u * np.abs(out))
    return out, e


def lnlstm_row(gx, r, cp, p, dt):
    """The layer-norm LSTM's row step in float64 (Ba et al. 2016 as haste): gx, r
    [rows, 4, H] = x W_ih^T, h W_hh^T (gate-major), cp [rows, H] = c_{t-1}, p the
    constants (gih, ghh, b [4, H]; gc, bc [H]). Returns the values (xn, rn [rows,4,H],
    i, f, g, o, c, chat, h [rows,H], rstd [rows,3]) and the first-order worst-case
    errors of a dt computation from these exact inputs, with the same keys."""
    u, e_act, a = unit(dt), ACT_UNITS * unit(dt), np.abs
    rows, _, H = gx.shape
    z = np.zeros((rows, 4 * H))
    xn, rx, e_xn, e_rx = ln_stats(gx.reshape(rows, 4 * H), z, dt)
    rn, rh, e_rn, e_rh = ln_stats(r.reshape(rows, 4 * H), z, dt)
    xn, e_xn, rn, e_rn = (x.reshape(rows, 4, H) for x in (xn, e_xn, rn, e_rn))
    pre = xn * p["gih"] + rn * p["ghh"] + p["b"]
    e_pre = (a(p["gih"]) * e_xn + a(p["ghh"]) * e_rn
             + 3 * u * (a(xn * p["gih"]) + a(rn * p["ghh"]) + a(p["b"])))
    i, f, gg, o = sigmoid(pre[:, 0]), sigmoid(pre[:, 1]), np.tanh(pre[:, 2]), sigmoid(pre[:, 3])
    d_i, d_f, d_o = (e_pre[:, q] / 4 + e_act for q in (0, 1, 3))
    d_g = e_pre[:, 2] + e_act
    c = f * cp + i * gg
    d_c = (a(cp) * d_f + a(gg) * d_i + i * d_g + 2 * u * (a(f * cp) + a(i * gg)) + u * a(c))
    chat, rc, e_ch, e_rc = ln_stats(c, d_c, dt)
    arg = chat * p["gc"] + p["bc"]
    t = np.tanh(arg)
    e_t = a(p["gc"]) * e_ch + 2 * u * (a(chat * p["gc"]) + a(p["bc"])) + e_act
    h = o * t
    val = dict(xn=xn, rn=rn, i=i, f=f, g=gg, o=o, c=c, chat=chat, h=h,
               rstd=np.concatenate([rx, rh, rc], 1))
    err = dict(xn=e_xn, rn=e_rn, i=d_i, f=d_f, g=d_g, o=d_o, c=d_c, chat=e_ch,
               h=a(t) * d_o + o * e_t + u * a(h), rstd=np.concatenate([e_rx, e_rh, e_rc], 1))
    return val, err


def lnlstm_row_grad(s, p, dh, dc, dt):
    """Gradients of L = sum(dh * h_t) + sum(dc * c_t) through lnlstm_row, from its
    saved values s (i, f, g, o, rn, chat, rstd, and cp = c_{t-1}; float64, exact in dt)
    and dh, dc [rows, H]: da [rows, 4, H] (pre-activations, = dL/db), dr [rows, 4, H]
    (dL/d(h W_hh^T)), dcp (dL/dc_{t-1}), du (dL/d(chat*gc + bc), = dL/dbc), and the
    first-order worst-case errors of a dt computation, keyed alike. Verified by
    test_lnlstm_row_grad_oracle."""
    u, e_act, a = unit(dt), ACT_UNITS * unit(dt), np.abs
    i, f, gg, o, cp, chat = s["i"], s["f"], s["g"], s["o"], s["cp"], s["chat"]
    rh, rc = s["rstd"][:, 1:2], s["rstd"][:, 2:3]
    t = np.tanh(chat * p["gc"] + p["bc"])
    e_t = 2 * u * (a(chat * p["gc"]) + a(p["bc"])) + e_act
    du = dh * o * (1 - t * t)
    e_du = a(dh * o) * (2 * a(t) * e_t + u * t * t + u * a(1 - t * t)) + 2 * u * a(du)
    dao = dh * t * o * (1 - o)
    e_dao = a(dh * o * (1 - o)) * e_t + 4 * u * a(dao)
    dch = du * p["gc"]
    lnc, e_lnc = ln_grad(dch, a(p["gc"]) * e_du + u * a(dch), chat, rc, dt)
    dct = dc + lnc
    e_dct = e_lnc + u * (a(dc) + a(lnc))
    dai = dct * gg * i * (1 - i)
    daf = dct * cp * f * (1 - f)
    dag = dct * i * (1 - gg * gg)
    e_ai = a(gg * i * (1 - i)) * e_dct + 4 * u * a(dai)
    e_af = a(cp * f * (1 - f)) * e_dct + 4 * u * a(daf)
    e_ag = (a(i * (1 - gg * gg)) * e_dct + a(dct * i) * u * (gg * gg + a(1 - gg * gg))
            + 2 * u * a(dag))
    da = np.stack([dai, daf, dag, dao], 1)
    e_da = np.stack([e_ai, e_af, e_ag, e_dao], 1)
    rows, _, H = da.shape
    dn = (da * p["ghh"]).reshape(rows, 4 * H)
    e_dn = (a(p["ghh"]) * e_da + u * a(da * p["ghh"])).reshape(rows, 4 * H)
    dr, e_dr = ln_grad(dn, e_dn, s["rn"].reshape(rows, 4 * H), rh, dt)
    val = dict(da=da, dr=dr.reshape(rows, 4, H), dcp=dct * f, du=du)
    err = dict(da=e_da, dr=e_dr.reshape(rows, 4, H), dcp=f * e_dct + u * a(dct * f), du=e_du)
    return val, err


def test_lnlstm_row_grad_oracle():
    """The backward oracles (lnlstm_row_grad, and ln_grad for dL/d(x W_ih^T)) against
    central differences of the forward oracle lnlstm_row: da through the bias, dr
    through h W_hh^T, dL/dc_{t-1} through c_{t-1}, du through bc, dL/dgx through gx."""
    rng = np.random.default_rng(11)
    H = 3
    gx, r = rng.normal(0.2, 1, (2, 1, 4, H))
    cp, dh, dc = rng.normal(0, 1, (3, 1, H))
    p = dict(gih=rng.uniform(0.5, 1.5, (4, H)), ghh=rng.uniform(0.5, 1.5, (4, H)),
             b=rng.uniform(-0.5, 0.5, (4, H)), gc=rng.uniform(0.5, 1.5, H),
             bc=rng.uniform(-0.5, 0.5, H))

    def loss(gx, r, cp, p):
        v, _ = lnlstm_row(gx, r, cp, p, F64)
        return float(np.sum(dh * v["h"]) + np.sum(dc * v["c"]))

    v, _ = lnlstm_row(gx, r, cp, p, F64)
    grads, _ = lnlstm_row_grad({**v, "cp": cp}, p, dh, dc, F64)
    dgx, _ = ln_grad((grads["da"] * p["gih"]).reshape(1, 4 * H), np.zeros((1, 4 * H)),
                     v["xn"].reshape(1, 4 * H), v["rstd"][:, 0:1], F64)
    cases = [("b", grads["da"]), ("r", grads["dr"]), ("cp", grads["dcp"]),
             ("bc", grads["du"]), ("gx", dgx.reshape(1, 4, H))]
    eps = 1e-6
    for key, want in cases:
        for idx in np.ndindex(*want.shape[1:]):
            def at(sign):
                args = dict(gx=gx.copy(), r=r.copy(), cp=cp.copy(),
                            p={k: x.copy() for k, x in p.items()})
                arr = args["p"][key] if key in p else args[key]
                if key in p:
                    arr[idx] += sign * eps
                else:
                    arr[(0,) + idx] += sign * eps
                return loss(args["gx"], args["r"], args["cp"], args["p"])
            fd = (at(1) - at(-1)) / (2 * eps)
            got = want[(0,) + idx]
            assert abs(fd - got) <= 1e-7 * max(1.0, abs(fd)), (key, idx, fd, got)


def _ln_layout(H, W):
    """Column maps of a row of H units padded to Hp: gate-major [4][Hp] and
    interleaved [Hp/W][4][W], each [4, H] (the column of gate q, unit u), and Hp."""
    Hp = -(-H // W) * W
    q, uu = np.meshgrid(np.arange(4), np.arange(H), indexing="ij")
    return q * Hp + uu, (uu // W) * 4 * W + q * W + uu % W, Hp


def _spread(vals, cols, width, fill=0.0):
    """Rows [rows, width] holding vals [rows, *cols.shape] at cols, fill elsewhere."""
    out = np.full((vals.shape[0], width), fill)
    out[:, cols] = vals
    return out


def _ln_consts(rng, H, Hp, gm, dt):
    """Random layer-norm constants, exact in dt: the dict lnlstm_row takes and the
    packed [14*Hp] array (zero padded), as packing lays them out."""
    p = dict(gih=rng.uniform(-1.5, 1.5, (4, H)), ghh=rng.uniform(-1.5, 1.5, (4, H)),
             b=rng.uniform(-0.5, 0.5, (4, H)), gc=rng.uniform(-1.5, 1.5, H),
             bc=rng.uniform(-0.5, 0.5, H))
    p = {k: exact(x, dt) for k, x in p.items()}
    packed = np.zeros(14 * Hp)
    for k, key in enumerate(("gih", "ghh", "b")):
        packed[k * 4 * Hp + gm.ravel()] = p[key].ravel()
    packed[12 * Hp:12 * Hp + H] = p["gc"]
    packed[13 * Hp:13 * Hp + H] = p["bc"]
    return p, packed


def _ln_hs(W):
    return sorted({1, max(W - 1, 1), W, 2 * W + 3, 37})


def _ln_rows(rng, n, H, dt):
    """n rows of products x W_ih^T, h W_hh^T [n, 4, H] (exact in dt), each with its own
    offset and spread; the second has variance near eps (where eps matters)."""
    spread = np.array([1.0, 3e-3, 4.0, 0.5])[:n, None, None]
    offset = np.array([0.3, 0.1, -2.0, 0.0])[:n, None, None]
    gx = offset + spread * rng.normal(0, 1, (n, 4, H))
    r = offset[::-1] * 0.5 + spread[::-1] * rng.normal(0, 1, (n, 4, H))
    return exact(gx, dt), exact(r, dt)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dt", DTS, ids=["f32", "f64"])
def test_ln_fwd_row(isa, dt):
    """lnlstm fwd_row on n rows of H units (H below, at and past multiples of W: padded
    unit blocks), against the layer-norm LSTM equations in float64: LN(x W_ih^T),
    LN(h W_hh^T), the activated gates, c_t, LN(c_t), h_t and the three rstds; rows of
    variance near eps; padding units of every row output exactly zero; every array at
    a leading dimension longer than its row, sentinels untouched."""
    W = geometry(isa, dt)["W"]
    run = getattr(_core, f"_kernel_ln_fwd_row_{sfx(dt)}")
    rng = seeded("ln_fwd", isa, sfx(dt))
    safety = SAFETY[np.dtype(dt)]
    for H in _ln_hs(W):
        gm, il, Hp = _ln_layout(H, W)
        GX = 4 * Hp
        for n in (1, 4):
            p, packed = _ln_consts(rng, H, Hp, gm, dt)
            gx, r = _ln_rows(rng, n, H, dt)
            cp = exact(rng.normal(0, 1, (n, H)), dt)
            want, err = lnlstm_row(gx, r, cp, p, dt)
            ld = {"gx": GX + 1, "r": GX + 3, "xn": GX + 2, "rn": GX + 1, "gates": GX + 5,
                  "c": Hp + 1, "chat": Hp + 2, "h": Hp + 3, "rstd": 4}
            width = dict(gx=GX, r=GX, xn=GX, rn=GX, gates=GX, c=Hp, chat=Hp, h=Hp, rstd=3)
            b = {k: Buf(rows_idx(n, width[k], ld[k]), dt) for k in ld}
            b["gx"].set(_spread(gx, il, GX))
            b["r"].set(_spread(r, il, GX))
            b["c"].set(_spread(cp, np.arange(H), Hp))
            bln = Buf(np.arange(14 * Hp), dt).set(packed)
            run(isa=isa, n=n, H=H, ln=bln.arr, **{k: b[k].arr for k in ld},
                **{"ld" + k: ld[k] for k in ld})
            name = f"{isa} lnlstm fwd_row {sfx(dt)} H={H} Hp={Hp} n={n}"
            got = {k: b[k].get() for k in ld}
            valid = {"gm": np.zeros(GX, bool), "il": np.zeros(GX, bool),
                     "h": np.arange(Hp) < H}
            valid["gm"][gm.ravel()] = True
            valid["il"][il.ravel()] = True
            for key, cols, mask in (("xn", gm, "gm"), ("rn", gm, "gm"), ("c", None, "h"),
                                    ("chat", None, "h"), ("h", None, "h")):
                vals = got[key][:, cols] if cols is not None else got[key][:, :H]
                check(vals, want[key], safety * err[key], f"{name}: {key}")
                assert np.all(got[key][:, ~valid[mask]] == 0), (
                    f"{name}: padding units of {key} not zero")
            gates = got["gates"][:, il]
            for q, key in enumerate("ifgo"):
                check(gates[:, q], want[key], safety * err[key], f"{name}: gate {key}")
            # the gates' padding: finite (see test_ln_fwd_row_gates_padding)
            assert np.all(np.isfinite(got["gates"])), f"{name}: gates' padding not finite"
            check(got["rstd"], want["rstd"], safety * err["rstd"], f"{name}: rstd")
            for key, buf in list(b.items()) + [("ln", bln)]:
                buf.assert_rest_untouched(f"{name}: {key}")


@pytest.mark.parametrize("isa", ISAS)
def test_ln_fwd_row_gates_padding(isa):
    """The activated gates' padding units out of fwd_row are zero, as documented."""
    W = geometry(isa, F64)["W"]
    H = W + 1
    gm, il, Hp = _ln_layout(H, W)
    GX = 4 * Hp
    rng = seeded("ln_fwd_pad", isa)
    p, packed = _ln_consts(rng, H, Hp, gm, F64)
    gx, r = _ln_rows(rng, 1, H, F64)
    a = dict(gx=_spread(gx, il, GX).ravel(), r=_spread(r, il, GX).ravel(), xn=np.zeros(GX),
             rn=np.zeros(GX), gates=np.zeros(GX), c=np.zeros(Hp), chat=np.zeros(Hp),
             h=np.zeros(Hp), rstd=np.zeros(3))
    _core._kernel_ln_fwd_row_f64(isa=isa, n=1, H=H, ln=packed, **a,
                                 **{"ld" + k: v.size for k, v in a.items()})
    pad = np.ones(GX, bool)
    pad[il.ravel()] = False
    assert np.all(a["gates"][pad] == 0), a["gates"][pad]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dt", DTS, ids=["f32", "f64"])
def test_ln_bwd_row(isa, dt):
    """lnlstm bwd_row on n rows of H units (padded unit blocks), from a consistent
    forward state rounded to dt, against the chain rule in float64: dL/da (gate-major),
    dL/d(h W_hh^T), dL/dc_{t-1} (written over dc), dL/du; padding units exactly zero
    (the saved gates' padding holds what fwd_row leaves there, finite, not zero);
    every array at a leading dimension longer than its row, sentinels untouched."""
    W = geometry(isa, dt)["W"]
    run = getattr(_core, f"_kernel_ln_bwd_row_{sfx(dt)}")
    rng = seeded("ln_bwd", isa, sfx(dt))
    safety = SAFETY[np.dtype(dt)]
    for H in _ln_hs(W):
        gm, il, Hp = _ln_layout(H, W)
        GX = 4 * Hp
        for n in (1, 4):
            p, packed = _ln_consts(rng, H, Hp, gm, dt)
            gx, r = _ln_rows(rng, n, H, dt)
            cp = exact(rng.normal(0, 1, (n, H)), dt)
            fwd, _ = lnlstm_row(gx, r, cp, p, dt)
            s = {k: exact(x, dt) for k, x in fwd.items()}
            s["cp"] = cp
            dh = exact(rng.normal(0, 1, (n, H)), dt)
            dc = exact(rng.normal(0, 1, (n, H)), dt)
            want, err = lnlstm_row_grad(s, p, dh, dc, dt)
            ld = {"gates": GX + 1, "rn": GX + 3, "chat": Hp + 1, "cp": Hp + 2, "rstd": 4,
                  "dh": Hp + 3, "dc": Hp + 1, "da": GX + 2, "dr": GX + 1, "du": Hp + 2}
            width = dict(gates=GX, rn=GX, chat=Hp, cp=Hp, rstd=3, dh=Hp, dc=Hp, da=GX,
                         dr=GX, du=Hp)
            b = {k: Buf(rows_idx(n, width[k], ld[k]), dt) for k in ld}
            hcols = np.arange(H)
            # the gates' padding: sigmoid(0) = 1/2 (i, f, o) and tanh(0) = 0 (g) is what
            # fwd_row leaves there; 1/2 everywhere is as finite and must not leak either
            b["gates"].set(_spread(np.stack([s[k] for k in "ifgo"], 1), il, GX, fill=0.5))
            b["rn"].set(_spread(s["rn"], gm, GX))
            for key, vals in (("chat", s["chat"]), ("cp", cp), ("dh", dh), ("dc", dc)):
                b[key].set(_spread(vals, hcols, Hp))
            b["rstd"].set(s["rstd"])
            bln = Buf(np.arange(14 * Hp), dt).set(packed)
            run(isa=isa, n=n, H=H, ln=bln.arr, **{k: b[k].arr for k in ld},
                **{"ld" + k: ld[k] for k in ld})
            name = f"{isa} lnlstm bwd_row {sfx(dt)} H={H} Hp={Hp} n={n}"
            got = {k: b[k].get() for k in ld}
            pad_gm = np.ones(GX, bool)
            pad_gm[gm.ravel()] = False
            pad_h = np.arange(Hp) >= H
            for key, cols, pad, wkey in (("da", gm, pad_gm, "da"), ("dr", gm, pad_gm, "dr"),
                                         ("dc", hcols, pad_h, "dcp"), ("du", hcols, pad_h, "du")):
                check(got[key][:, cols], want[wkey], safety * err[wkey], f"{name}: {key}")
                assert np.all(got[key][:, pad] == 0), f"{name}: padding units of {key} not zero"
            for key, buf in list(b.items()) + [("ln", bln)]:
                buf.assert_rest_untouched(f"{name}: {key}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dt", DTS, ids=["f32", "f64"])
def test_ln_norm_backward(isa, dt):
    """lnlstm norm_backward (dL/d(x W_ih^T) in the drivers) on n rows of 4H units
    (padded unit blocks): rstd*(dn - mean dn - v_hat*mean(dn*v_hat)), dn = da*gain,
    against float64; padding exactly zero; sentinels around and between rows untouched."""
    W = geometry(isa, dt)["W"]
    run = getattr(_core, f"_kernel_ln_norm_backward_{sfx(dt)}")
    rng = seeded("ln_norm_bwd", isa, sfx(dt))
    safety = SAFETY[np.dtype(dt)]
    for H in _ln_hs(W):
        gm, _, Hp = _ln_layout(H, W)
        GX = 4 * Hp
        for n in (1, 3):
            v, _ = _ln_rows(rng, n, H, dt)
            v_hat, rstd, _, _ = ln_stats(v.reshape(n, 4 * H), np.zeros((n, 4 * H)), dt)
            v_hat, rstd = exact(v_hat, dt), exact(rstd, dt)
            gain = exact(rng.uniform(-1.5, 1.5, 4 * H), dt)
            da = exact(rng.normal(0, 1, (n, 4 * H)), dt)
            dn = da * gain
            want, err = ln_grad(dn, unit(dt) * np.abs(dn), v_hat, rstd, dt)
            cols = gm.ravel()
            ldda, ldn, ldo = GX + 1, GX + 2, GX + 3
            bgain = Buf(np.arange(GX), dt).set(_spread(gain[None], cols, GX)[0])
            bda = Buf(rows_idx(n, GX, ldda), dt).set(_spread(da, cols, GX))
            bn = Buf(rows_idx(n, GX, ldn), dt).set(_spread(v_hat, cols, GX))
            brs = Buf(np.arange(n), dt).set(rstd[:, 0])
            bo = Buf(rows_idx(n, GX, ldo), dt)
            run(isa=isa, n=n, H=H, gain=bgain.arr, da=bda.arr, ldda=ldda, nrm=bn.arr,
                ldnrm=ldn, rstd=brs.arr, out=bo.arr, ldout=ldo)
            name = f"{isa} lnlstm norm_backward {sfx(dt)} H={H} Hp={Hp} n={n}"
            got = bo.get()
            check(got[:, cols], want, safety * err, f"{name}: out")
            pad = np.ones(GX, bool)
            pad[cols] = False
            assert np.all(got[:, pad] == 0), f"{name}: padding units not zero"
            for key, buf in (("gain", bgain), ("da", bda), ("nrm", bn), ("rstd", brs),
                             ("out", bo)):
                buf.assert_rest_untouched(f"{name}: {key}")


# ==== the entry points check every size ===============================================

def test_cell_entry_points_reject_bad_sizes():
    isa = ISAS[0]
    W = geometry(isa, F32)["W"]
    z = lambda k, dt=F32: np.zeros(k, dt)  # noqa: E731
    n, K = 2, 3
    ldh = max(K, W)
    fwd = dict(isa=isa, training=True, n=n, K=K, h=z(n * ldh), ldh=ldh, hself=z(n * ldh),
               w=z(K * 3 * W), gx=z(n * 3 * W), ldgx=3 * W, msum=z(n * W), bhn=z(W),
               out=z(n * W), ldo=W, gsave=z(n * 3 * W), ldgs=3 * W, msave=z(n * W), ldms=W,
               split_k=True)
    _core._kernel_gru_fwd_block_f32(**fwd)  # the valid call
    for change in (dict(h=z(n * ldh - ldh + K - 1)), dict(ldh=W - 1), dict(w=z(K * 3 * W - 1)),
                   dict(hself=z((n - 1) * ldh + W - 1)), dict(gx=z(n * 3 * W - 1)),
                   dict(ldgx=3 * W - 1), dict(msum=z(n * W - 1)), dict(bhn=z(W - 1)),
                   dict(out=z(n * W - 1)), dict(gsave=z(n * 3 * W - 1)),
                   dict(msave=z(n * W - 1)), dict(gsave=None), dict(msave=None),
                   dict(n=-1), dict(K=-1), dict(isa="sse9")):
        with pytest.raises(ValueError):
            _core._kernel_gru_fwd_block_f32(**{**fwd, **change})
    with pytest.raises(TypeError):
        _core._kernel_gru_fwd_block_f32(**{**fwd, "h": z(n * ldh, F64)})
    bf = {**fwd, "training": False, "gsave": None, "msave": None, "w": z(K * 4 * W, np.uint16)}
    _core._kernel_gru_fwd_block_bf16(**bf)
    for change in (dict(w=z(K * 4 * W - 1, np.uint16)), dict(training=True)):
        with pytest.raises(ValueError):  # the bfloat16 panel is 4W wide; inference only
            _core._kernel_gru_fwd_block_bf16(**{**bf, **change})

    nblk = 2
    U = nblk * W
    bwd = dict(isa=isa, n=n, nblk=nblk, gates=z(n * 3 * U), ldg=3 * U, m=z(n * U), ldm=U,
               hp=z(n * U), ldhp=U, dh=z(n * U), lddh=U, dg=z(n * 4 * U), lddg=4 * U,
               gstride=U)
    _core._kernel_gru_bwd_block_f32(**bwd)
    for change in (dict(gstride=U - 1), dict(lddg=4 * U - 1), dict(dg=z(n * 4 * U - 1)),
                   dict(gates=z(n * 3 * U - 1)), dict(ldg=3 * U - 1), dict(m=z(n * U - 1)),
                   dict(hp=z(n * U - 1)), dict(dh=z(n * U - 1)), dict(nblk=3), dict(n=-1)):
        with pytest.raises(ValueError):
            _core._kernel_gru_bwd_block_f32(**{**bwd, **change})
    ro = z(n * U)
    ro.setflags(write=False)
    with pytest.raises(ValueError):
        _core._kernel_gru_bwd_block_f32(**{**bwd, "dh": ro})

    H = W + 1
    Hp, GX = 2 * W, 8 * W
    lnf = dict(isa=isa, n=n, H=H, ln=z(14 * Hp), gx=z(n * GX), ldgx=GX, r=z(n * GX), ldr=GX,
               xn=z(n * GX), ldxn=GX, rn=z(n * GX), ldrn=GX, gates=z(n * GX), ldgates=GX,
               c=z(n * Hp), ldc=Hp, chat=z(n * Hp), ldchat=Hp, h=z(n * Hp), ldh=Hp,
               rstd=z(n * 3), ldrstd=3)
    _core._kernel_ln_fwd_row_f32(**lnf)
    for change in (dict(ln=z(14 * Hp - 1)), dict(gx=z(n * GX - 1)), dict(ldr=GX - 1),
                   dict(xn=z(n * GX - 1)), dict(rn=z(n * GX - 1)), dict(gates=z(n * GX - 1)),
                   dict(c=z(n * Hp - 1)), dict(chat=z(n * Hp - 1)), dict(h=z(n * Hp - 1)),
                   dict(rstd=z(n * 3 - 1)), dict(ldrstd=2), dict(H=0), dict(n=-1),
                   dict(H=Hp + 1)):
        with pytest.raises(ValueError):
            _core._kernel_ln_fwd_row_f32(**{**lnf, **change})
    lnb = dict(isa=isa, n=n, H=H, ln=z(14 * Hp), gates=z(n * GX), ldgates=GX, rn=z(n * GX),
               ldrn=GX, chat=z(n * Hp), ldchat=Hp, cp=z(n * Hp), ldcp=Hp, rstd=z(n * 3),
               ldrstd=3, dh=z(n * Hp), lddh=Hp, dc=z(n * Hp), lddc=Hp, da=z(n * GX), ldda=GX,
               dr=z(n * GX), lddr=GX, du=z(n * Hp), lddu=Hp)
    _core._kernel_ln_bwd_row_f32(**lnb)
    for change in (dict(ln=z(14 * Hp - 1)), dict(gates=z(n * GX - 1)), dict(rn=z(n * GX - 1)),
                   dict(chat=z(n * Hp - 1)), dict(cp=z(n * Hp - 1)), dict(rstd=z(n * 3 - 1)),
                   dict(dh=z(n * Hp - 1)), dict(dc=z(n * Hp - 1)), dict(da=z(n * GX - 1)),
                   dict(dr=z(n * GX - 1)), dict(du=z(n * Hp - 1)), dict(lddu=Hp - 1),
                   dict(H=0)):
        with pytest.raises(ValueError):
            _core._kernel_ln_bwd_row_f32(**{**lnb, **change})
    nb = dict(isa=isa, n=n, H=H, gain=z(GX), da=z(n * GX), ldda=GX, nrm=z(n * GX), ldnrm=GX,
              rstd=z(n), out=z(n * GX), ldout=GX)
    _core._kernel_ln_norm_backward_f32(**nb)
    for change in (dict(gain=z(GX - 1)), dict(da=z(n * GX - 1)), dict(nrm=z(n * GX - 1)),
                   dict(rstd=z(n - 1)), dict(out=z(n * GX - 1)), dict(ldout=GX - 1),
                   dict(H=0), dict(n=-1)):
        with pytest.raises(ValueError):
            _core._kernel_ln_norm_backward_f32(**{**nb, **change})
    with pytest.raises(TypeError):
        _core._kernel_ln_norm_backward_f32(**{**nb, "out": z(n * GX, F64)})
