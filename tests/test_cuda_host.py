"""The CUDA backend's drivers on the host, against fastlstm.reference.

csrc/cuda/driver.h (the layer drivers) and csrc/cuda/pointwise.h (the step
functors over csrc/cells/) are compiled for the host with a device whose GEMM
is a naive column-major BLAS reached through the backend's own row-major
mapping, and whose for_each is a loop (tests/cuda_host/emulate.cpp). That
checks, without a GPU, everything of the backend but cuBLAS and the kernel
launches: the layouts, the step indexing with lengths in both directions,
zoneout, the cell clip, projections, peepholes, and every gradient product.
"""
import ctypes

import numpy as np
import pytest

from fastlstm import reference, reference_gru

CELLS = {"lstm": 0, "gru": 1}
VP = ctypes.c_void_p


def _p(a):
    return None if a is None else a.ctypes.data_as(VP)


def _names(cell, D, bias, P, peep):
    out = []
    for d in range(D):
        sfx = "_reverse" if d else ""
        n = [f"weight_ih_l0{sfx}", f"weight_hh_l0{sfx}"]
        n += [f"bias_ih_l0{sfx}", f"bias_hh_l0{sfx}"] if bias else [None, None]
        n += [f"weight_ph_l0{sfx}" if peep else None, f"weight_hr_l0{sfx}" if P else None]
        out.append(n)
    return out


def _case(rng, cell, T, B, I, H, P, D, bias, peep, lengths, zone, clip, dtype):
    G = 4 if cell == "lstm" else 3
    Ho = P or H
    params = {}
    for d in range(D):
        sfx = "_reverse" if d else ""
        params[f"weight_ih_l0{sfx}"] = rng.uniform(-0.6, 0.6, (G * H, I))
        params[f"weight_hh_l0{sfx}"] = rng.uniform(-0.6, 0.6, (G * H, Ho))
        if bias:
            params[f"bias_ih_l0{sfx}"] = rng.uniform(-0.5, 0.5, G * H)
            params[f"bias_hh_l0{sfx}"] = rng.uniform(-0.5, 0.5, G * H)
        if peep:
            params[f"weight_ph_l0{sfx}"] = rng.uniform(-0.5, 0.5, (3, H))
        if P:
            params[f"weight_hr_l0{sfx}"] = rng.uniform(-0.6, 0.6, (P, H))
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D, B, Ho))
    c0 = rng.standard_normal((D, B, H)) if cell == "lstm" else None
    lens = None if lengths is None else np.asarray(lengths, np.int64)
    keep = None
    if zone == "mask":
        keep = (rng.random((T, B, D * Ho)) < 0.3).astype(np.float64)
    kw = dict(num_layers=1, hidden_size=H, bidirectional=D == 2, bias=bias, h0=h0,
              lengths=lens)
    if keep is not None:
        kw.update(zoneout=0.3, zoneout_masks=[keep], training=True)
    elif zone:
        kw.update(zoneout=zone)
    if cell == "lstm":
        y, hn, cn, cache = reference.lstm_forward(x, params, proj_size=P, peephole=peep, c0=c0,
                                                  cell_clip=clip or None, **kw)
    else:
        y, hn, cache = reference_gru.gru_forward(x, params, **kw)
        cn = None
    dy = rng.standard_normal(y.shape)
    dhn = rng.standard_normal(hn.shape)
    dcn = rng.standard_normal(cn.shape) if cell == "lstm" else None
    if cell == "lstm":
        dx, dh0, dc0, grads = reference.lstm_backward(cache, dy, dhn, dcn)
    else:
        dx, dh0, grads = reference_gru.gru_backward(cache, dy, dhn)
        dc0 = None
    c = lambda a: None if a is None else np.ascontiguousarray(a, dtype)  # noqa: E731
    ins = dict(params={k: c(v) for k, v in params.items()}, x=c(x), h0=c(h0), c0=c(c0),
               lens=lens, keep=c(keep), dy=c(dy), dhn=c(dhn), dcn=c(dcn),
               zoneout=0.0 if zone in (None, "mask") else zone)
    want = dict(y=y, hn=hn, cn=cn, dx=dx, dh0=dh0, dc0=dc0, grads=grads)
    return ins, want


def _run(emu, cell, T, B, I, H, P, D, bias, peep, clip, ins, dtype):
    Ho = P or H
    sfx = "f64" if dtype == np.float64 else "f32"
    dims = np.array([T, B, I, H, P, D, int(peep)], np.int64)
    names = _names(cell, D, bias, P, peep)
    wp = (VP * (6 * D))(*[_p(ins["params"][n]) if n else None for row in names for n in row])
    grads = {n: np.zeros_like(a) for n, a in ins["params"].items()}
    gp = (VP * (6 * D))(*[_p(grads[n]) if n else None for row in names for n in row])
    y = np.full((T, B, D * Ho), np.nan, dtype)
    hn = np.full((D, B, Ho), np.nan, dtype)
    lstm = cell == "lstm"
    cn = np.full((D, B, H), np.nan, dtype) if lstm else None
    ws = np.full(emu.emu_workspace_size(CELLS[cell], _p(dims)), np.nan, dtype)
    z, cl = ctypes.c_double(ins["zoneout"]), ctypes.c_double(clip)
    rc = getattr(emu, f"emu_forward_{sfx}")(CELLS[cell], _p(dims), z, cl, wp, _p(ins["x"]),
                                            _p(ins["lens"]), _p(ins["h0"]), _p(ins["c0"]),
                                            _p(y), _p(hn), _p(cn), _p(ws), _p(ins["keep"]))
    assert rc == 0
    dx = np.full(ins["x"].shape, np.nan, dtype)
    dh0 = np.full(hn.shape, np.nan, dtype)
    dc0 = np.full(cn.shape, np.nan, dtype) if lstm else None
    rc = getattr(emu, f"emu_backward_{sfx}")(CELLS[cell], _p(dims), z, cl, wp, _p(ins["x"]),
                                             _p(ins["lens"]), _p(ws), _p(ins["dy"]),
                                             _p(ins["dhn"]), _p(ins["dcn"]), _p(dx), _p(dh0),
                                             _p(dc0), gp, _p(ins["keep"]))
    assert rc == 0
    return dict(y=y, hn=hn, cn=cn, dx=dx, dh0=dh0, dc0=dc0, grads=grads)


def _close(got, want, tol, name):
    if want is None:
        assert got is None
        return
    scale = max(1.0, float(np.max(np.abs(want))))
    err = float(np.max(np.abs(got.astype(np.float64) - want)))
    assert err <= tol * scale, f"{name}: max|diff| {err:.3e} > {tol * scale:.3e}"


CASES = [  # cell, T, B, I, H, P, D, bias, peephole, lengths, zoneout, clip
    ("lstm", 5, 3, 4, 6, 0, 1, True, False, None, None, 0.0),
    ("lstm", 6, 3, 5, 4, 0, 2, True, False, [6, 2, 4], None, 0.0),
    ("lstm", 4, 2, 3, 5, 3, 2, True, True, [3, 4], None, 0.0),
    ("lstm", 5, 3, 4, 6, 2, 1, False, True, None, "mask", 0.0),
    ("lstm", 6, 4, 3, 5, 0, 2, True, True, [1, 6, 3, 5], "mask", 0.7),
    ("lstm", 5, 2, 3, 4, 0, 1, True, False, [5, 2], 0.25, 0.9),
    ("lstm", 7, 3, 2, 5, 4, 2, True, True, [7, 1, 4], "mask", 1.1),
    ("gru", 5, 3, 4, 6, 0, 1, True, False, None, None, 0.0),
    ("gru", 6, 3, 5, 4, 0, 2, True, False, [6, 2, 4], None, 0.0),
    ("gru", 5, 4, 3, 5, 0, 2, False, False, [5, 1, 3, 2], "mask", 0.0),
    ("gru", 4, 2, 3, 4, 0, 1, True, False, None, 0.4, 0.0),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_drivers_match_reference(emu, case, dtype):
    cell, T, B, I, H, P, D, bias, peep, lengths, zone, clip = case
    rng = np.random.default_rng(CASES.index(case))
    ins, want = _case(rng, cell, T, B, I, H, P, D, bias, peep, lengths, zone, clip, dtype)
    got = _run(emu, cell, T, B, I, H, P, D, bias, peep, clip, ins, dtype)
    tol = 1e-11 if dtype == np.float64 else 2e-5
    for k in ("y", "hn", "cn", "dx", "dh0", "dc0"):
        _close(got[k], want[k], tol, k)
    assert sorted(got["grads"]) == sorted(want["grads"])
    for k, g in got["grads"].items():
        _close(g, want["grads"][k], tol, k)


def test_padding_is_zero_and_saved_rows_past_lengths_stay_zero(emu):
    """y past a row's length is 0 in both directions, as the reference says."""
    rng = np.random.default_rng(3)
    case = ("lstm", 6, 3, 2, 3, 0, 2, True, False, [2, 6, 4], None, 0.0)
    ins, want = _case(rng, *case[:-3], case[-3], case[-2], case[-1], np.float64)
    got = _run(emu, "lstm", 6, 3, 2, 3, 0, 2, True, False, 0.0, ins, np.float64)
    assert np.all(got["y"][2:, 0] == 0) and np.all(got["y"][4:, 2] == 0)
    assert np.all(got["dx"][2:, 0] == 0)
