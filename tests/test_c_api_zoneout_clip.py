"""The C ABI's second generation (fastlstm_c.h, the *_ex entry points) through
ctypes: zoneout (LSTM, GRU, layer-norm LSTM) with masks and the deterministic
mix, the LSTM's cell clip, the layer-norm LSTM's extra weights, against the
float64 references (fastlstm.reference, reference_gru, reference_lnlstm) and
the NumPy layers; the versioned structs (a leading `size`: shorter,
longer, garbage); every bad argument a status and a message naming it; the
ABI 1 entry points unchanged beside them.

The shared library is built from this checkout with CMake (only the library
target), or taken from $FASTLSTM_C_LIBRARY when that names one already built."""
import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import fastlstm
from fastlstm import reference as ref
from fastlstm import reference_gru as ref_gru
from fastlstm import reference_lnlstm as ref_ln

ROOT = Path(__file__).resolve().parent.parent
TOL64 = 1e-12  # float64, relative to max|reference|
OK, INVALID = 0, 1
CELL = {"lstm": 0, "gru": 1, "lnlstm": 2}


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    path = os.environ.get("FASTLSTM_C_LIBRARY")
    if not path:
        if shutil.which("cmake") is None or (shutil.which("cc") is None
                                             and shutil.which("gcc") is None):
            pytest.skip("needs cmake and a C/C++ compiler")
        build = tmp_path_factory.mktemp("fastlstm-c") / "build"
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        for cmd in (["cmake", "-S", ROOT, "-B", build, *gen, "-DCMAKE_BUILD_TYPE=Release",
                     "-DBUILD_SHARED_LIBS=ON", "-DFASTLSTM_PYTHON=OFF", "-DFASTLSTM_INSTALL=OFF",
                     # compiled as the package under test is (.ci/sanitize): the same bits
                     "-DFASTLSTM_SANITIZE=" + os.environ.get("FASTLSTM_TEST_SANITIZE", "")],
                    ["cmake", "--build", build, "--target", "fastlstm_core", "--parallel",
                     str(os.cpu_count() or 1)]):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            assert r.returncode == 0, f"{cmd} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
        libs = sorted(build.glob("libfastlstm.so*")) or sorted(build.glob("*fastlstm*.dylib")) \
            or sorted(build.glob("**/*fastlstm*.dll"))
        assert libs, f"no shared library in {build}"
        path = libs[0]
    lib = ctypes.CDLL(str(path))
    p = ctypes.c_void_p
    lib.fastlstm_last_error.restype = ctypes.c_char_p
    lib.fastlstm_abi_version.restype = ctypes.c_int
    lib.fastlstm_packed_free.argtypes = [p]
    for t in ("f32", "f64"):
        getattr(lib, f"fastlstm_pack_ex_{t}").argtypes = [p, p, p, ctypes.c_int, ctypes.c_int,
                                                         ctypes.c_int, p]
        getattr(lib, f"fastlstm_pack_{t}").argtypes = [p, p, ctypes.c_int, ctypes.c_int,
                                                      ctypes.c_int, p]
        getattr(lib, f"fastlstm_forward_ex_{t}").argtypes = [p] * 12 + [ctypes.c_int]
        getattr(lib, f"fastlstm_forward_{t}").argtypes = [p] * 10 + [ctypes.c_int]
        getattr(lib, f"fastlstm_backward_ex_{t}").argtypes = [p] * 15 + [ctypes.c_int]
        getattr(lib, f"fastlstm_backward_{t}").argtypes = [p] * 13 + [ctypes.c_int]
    lib.fastlstm_workspace_size_ex.argtypes = [p, p, p, ctypes.c_int, ctypes.c_int, p]
    lib.fastlstm_workspace_size.argtypes = [p, p, ctypes.c_int, ctypes.c_int, p]
    return lib


i64, vp = ctypes.c_int64, ctypes.c_void_p


class Dims(ctypes.Structure):
    _fields_ = [(n, i64) for n in "T B I H P D".split()] + [("peephole", ctypes.c_int),
                                                             ("cell", ctypes.c_int)]


class Options(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("zoneout", ctypes.c_double),
                ("cell_clip", ctypes.c_double)]


BASE = ["w_ih", "w_hh", "b_ih", "b_hh", "w_ph", "w_hr"]
LN = ["ln_ih", "ln_hh", "ln_c", "ln_cb"]


class Base(ctypes.Structure):
    _fields_ = [(n, vp) for n in BASE]


class WeightsEx(ctypes.Structure):  # fastlstm_weights_ex_* and fastlstm_grads_ex_* alike
    _fields_ = [("size", ctypes.c_size_t), ("base", Base)] + [(n, vp) for n in LN]


class WeightsExNewer(ctypes.Structure):  # as a newer header might declare it: one more field
    _fields_ = WeightsEx._fields_ + [("future", vp)]


class OptionsNewer(ctypes.Structure):
    _fields_ = Options._fields_ + [("future", ctypes.c_double)]


def options(zoneout=0.0, cell_clip=0.0):
    return Options(ctypes.sizeof(Options), zoneout, cell_clip)


def ptr(a):
    return None if a is None else a.ctypes.data


def err(lib):
    return lib.fastlstm_last_error().decode()


# torch's names of one direction's parameters, in the struct's order
NAMES = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh",
         "w_ph": "weight_ph", "w_hr": "weight_hr"}
LN_NAMES = {"ln_ih": "weight_ln_ih", "ln_hh": "weight_ln_hh", "ln_c": "weight_ln_c",
            "ln_cb": "bias_ln_c"}


def ex_array(params, D, cls=WeightsEx, zeros=False):
    """[D] extended structs pointing at params' arrays (or at zeroed gradient
    buffers like them: returned as the second value)."""
    arr, bufs = (cls * D)(), {}
    for d in range(D):
        sfx = "_reverse" if d else ""
        arr[d].size = ctypes.sizeof(cls)
        for f, stem in list(NAMES.items()) + list(LN_NAMES.items()):
            k = f"{stem}_l0{sfx}"
            if k in params:
                a = np.zeros_like(params[k]) if zeros else np.ascontiguousarray(params[k])
                bufs[k] = a
                setattr(arr[d].base if f in NAMES else arr[d], f, a.ctypes.data)
    return arr, bufs


class Layer:
    """One layer through the C ABI (pack_ex, forward_ex, backward_ex)."""

    def __init__(self, lib, cell, params, T, B, I, H, P=0, D=1, peephole=False, dtype=np.float64,
                 cls=WeightsEx):
        self.lib, self.t = lib, "f64" if dtype == np.float64 else "f32"
        self.dtype, self.cell, self.D, self.H, self.Ho = dtype, cell, D, H, P or H
        self.params = {k: np.ascontiguousarray(v, dtype) for k, v in params.items()}
        self.dims = Dims(T, B, I, H, P, D, int(peephole), CELL[cell])
        self.w, self._keep = ex_array(self.params, D, cls)
        self.packed = vp()
        s = getattr(lib, f"fastlstm_pack_ex_{self.t}")(ctypes.byref(self.dims), None, self.w, -1,
                                                       1, 2, ctypes.byref(self.packed))
        assert s == OK, err(lib)

    def __del__(self):
        self.lib.fastlstm_packed_free(self.packed)

    def forward(self, x, h0, c0, lengths, opts, keep, training=True):
        T, B = x.shape[:2]
        D, Ho, H, dt = self.D, self.Ho, self.H, self.dtype
        y, hn = np.full((T, B, D * Ho), np.nan, dt), np.full((D, B, Ho), np.nan, dt)
        cn = np.full((D, B, H), np.nan, dt) if self.cell != "gru" else None
        ws = None
        if training:
            n = i64()
            s = self.lib.fastlstm_workspace_size_ex(ctypes.byref(self.dims), opts, ptr(lengths),
                                                    -1, np.dtype(dt).itemsize, ctypes.byref(n))
            assert s == OK, err(self.lib)
            ws = np.empty(n.value, dt)
        s = getattr(self.lib, f"fastlstm_forward_ex_{self.t}")(
            ctypes.byref(self.dims), opts, self.packed, ptr(x), ptr(lengths), ptr(h0), ptr(c0),
            ptr(keep), ptr(y), ptr(hn), ptr(cn), ptr(ws), 2)
        assert s == OK, err(self.lib)
        self.saved = (x, c0, lengths, opts, keep, ws)
        return y, hn, cn

    def backward(self, dy, dhn, dcn):
        x, c0, lengths, opts, keep, ws = self.saved
        dx, dh0 = np.empty_like(x), np.empty_like(dhn)
        dc0 = np.empty_like(dcn) if dcn is not None else None
        g, bufs = ex_array(self.params, self.D, zeros=True)
        s = getattr(self.lib, f"fastlstm_backward_ex_{self.t}")(
            ctypes.byref(self.dims), opts, self.packed, ptr(x), ptr(lengths), ptr(c0), ptr(keep),
            ptr(ws), ptr(dy), ptr(dhn), ptr(dcn), ptr(dx), ptr(dh0), ptr(dc0), g, 2)
        assert s == OK, err(self.lib)
        return dx, dh0, dc0, bufs


def close(got, want, name, tol=TOL64):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape}"
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-300)
    e = float(np.abs(got - want).max(initial=0.0))
    assert e <= tol * scale, f"{name}: max|diff| {e:.3e} > {tol:.0e} * {scale:.3e}"


def test_abi_version(lib):
    assert lib.fastlstm_abi_version() == 2


LSTM_CASES = [  # T, B, I, H, bidirectional, proj, peephole, clip, lengths
    (6, 4, 5, 7, True, 0, False, 0.0, True),
    (5, 3, 4, 9, False, 3, True, 0.8, False),
    (7, 20, 6, 33, True, 0, True, 1.2, True),    # rows split between threads
    (4, 3, 30, 12, False, 0, False, 0.5, False),  # most gates clipped
    (5, 5, 8, 16, True, 6, False, 0.9, True),     # projection: zoneout after it
]


def _ids(c):
    return "T{}B{}I{}H{}-{}-P{}-{}-clip{}-{}".format(
        *c[:4], "bi" if c[4] else "uni", c[5], "peep" if c[6] else "nopeep", c[7],
        "len" if c[8] else "full")


def lstm_case(case, seed=0, p=0.3):
    T, B, I, H, bid, P, peep, clip, with_lengths = case
    D, Ho = (2 if bid else 1), (P or H)
    rng = np.random.default_rng(seed + T * H)
    shapes = {"weight_ih": (4 * H, I), "weight_hh": (4 * H, Ho), "bias_ih": (4 * H,),
              "bias_hh": (4 * H,)}
    if P:
        shapes["weight_hr"] = (P, H)
    if peep:
        shapes["weight_ph"] = (3, H)
    params = {f"{k}_l0{s}": rng.uniform(-0.9, 0.9, v) for k, v in shapes.items()
              for s in ("", "_reverse")[:D]}
    x = 2 * rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((D, B, Ho)), rng.standard_normal((D, B, H))
    lengths = rng.integers(1, T + 1, B).astype(np.int64) if with_lengths else None
    keep = (rng.random((T, B, D * Ho)) < p).astype(np.float64)
    kw = dict(num_layers=1, hidden_size=H, proj_size=P, bidirectional=bid, peephole=peep,
              lengths=lengths, h0=h0, c0=c0, zoneout=p, cell_clip=clip or None)
    return params, x, h0, c0, lengths, keep, kw, rng


@pytest.mark.parametrize("case", LSTM_CASES, ids=_ids)
@pytest.mark.parametrize("train", [True, False], ids=["masks", "eval_mix"])
def test_lstm_matches_the_reference(lib, case, train):
    T, B, I, H, bid, P, peep, clip, _ = case
    params, x, h0, c0, lengths, keep, kw, rng = lstm_case(case)
    layer = Layer(lib, "lstm", params, T, B, I, H, P, 2 if bid else 1, peep)
    opts = options(0.3, clip)
    y, hn, cn = layer.forward(x, h0, c0, lengths, ctypes.byref(opts), keep if train else None)
    yr, hr, cr, cache = ref.lstm_forward(x, params, training=train,
                                         zoneout_masks=[keep] if train else None, **kw)
    for name, a, b in (("y", y, yr), ("h_n", hn, hr), ("c_n", cn, cr)):
        close(a, b, name)
    dy, dhn, dcn = (rng.standard_normal(a.shape) for a in (yr, hr, cr))
    dx, dh0, dc0, g = layer.backward(dy, dhn, dcn)
    dxr, dh0r, dc0r, gr = ref.lstm_backward(cache, dy, dhn, dcn)
    for name, a, b in (("dx", dx, dxr), ("dh0", dh0, dh0r), ("dc0", dc0, dc0r)):
        close(a, b, name)
    assert set(g) == set(gr)
    for k in gr:
        close(g[k], gr[k], k)


@pytest.mark.parametrize("bid, with_lengths", [(False, False), (True, True)],
                         ids=["uni-full", "bi-len"])
@pytest.mark.parametrize("train", [True, False], ids=["masks", "eval_mix"])
def test_gru_matches_the_reference(lib, bid, with_lengths, train):
    T, B, I, H, p = 6, 4, 5, 9, 0.4
    D = 2 if bid else 1
    rng = np.random.default_rng(7)
    params = {f"{k}_l0{s}": rng.uniform(-0.7, 0.7, v)
              for k, v in {"weight_ih": (3 * H, I), "weight_hh": (3 * H, H),
                           "bias_ih": (3 * H,), "bias_hh": (3 * H,)}.items()
              for s in ("", "_reverse")[:D]}
    x, h0 = rng.standard_normal((T, B, I)), rng.standard_normal((D, B, H))
    lengths = rng.integers(1, T + 1, B).astype(np.int64) if with_lengths else None
    keep = (rng.random((T, B, D * H)) < p).astype(np.float64) if train else None
    layer = Layer(lib, "gru", params, T, B, I, H, 0, D)
    opts = options(p)
    y, hn, _ = layer.forward(x, h0, None, lengths, ctypes.byref(opts), keep)
    yr, hr, cache = ref_gru.gru_forward(x, params, num_layers=1, hidden_size=H,
                                        bidirectional=bid, h0=h0, lengths=lengths, zoneout=p,
                                        zoneout_masks=[keep] if train else None, training=train)
    close(y, yr, "y")
    close(hn, hr, "h_n")
    dy, dhn = rng.standard_normal(yr.shape), rng.standard_normal(hr.shape)
    dx, dh0, _, g = layer.backward(dy, dhn, None)
    dxr, dh0r, gr = ref_gru.gru_backward(cache, dy, dhn)
    close(dx, dxr, "dx")
    close(dh0, dh0r, "dh0")
    assert set(g) == set(gr)
    for k in gr:
        close(g[k], gr[k], k)


@pytest.mark.parametrize("bid, with_lengths", [(False, False), (True, True)],
                         ids=["uni-full", "bi-len"])
@pytest.mark.parametrize("train", [True, False], ids=["masks", "eval_mix"])
def test_layer_norm_lstm_matches_the_reference(lib, bid, with_lengths, train):
    """The layer-norm LSTM's gains and norm bias come through
    fastlstm_weights_ex_* (and their gradients through fastlstm_grads_ex_*)."""
    T, B, I, H, p = 6, 4, 5, 8, 0.35
    D = 2 if bid else 1
    rng = np.random.default_rng(9)
    params = {k: rng.uniform(-0.8, 0.8, v) if "ln" not in k else
              (1 if k.startswith("weight") else 0) + 0.3 * rng.standard_normal(v)
              for k, v in ref_ln.lnlstm_param_shapes(I, H, 1, True, bid).items()}
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((D, B, H)), rng.standard_normal((D, B, H))
    lengths = rng.integers(1, T + 1, B).astype(np.int64) if with_lengths else None
    keep = (rng.random((T, B, D * H)) < p).astype(np.float64) if train else None
    layer = Layer(lib, "lnlstm", params, T, B, I, H, 0, D)
    opts = options(p)
    y, hn, cn = layer.forward(x, h0, c0, lengths, ctypes.byref(opts), keep)
    yr, hr, cr, cache = ref_ln.lnlstm_forward(x, params, num_layers=1, hidden_size=H,
                                              bidirectional=bid, h0=h0, c0=c0, lengths=lengths,
                                              zoneout=p, zoneout_masks=[keep] if train else None,
                                              training=train)
    for name, a, b in (("y", y, yr), ("h_n", hn, hr), ("c_n", cn, cr)):
        close(a, b, name)
    dy, dhn, dcn = (rng.standard_normal(a.shape) for a in (yr, hr, cr))
    dx, dh0, dc0, g = layer.backward(dy, dhn, dcn)
    dxr, dh0r, dc0r, gr = ref_ln.lnlstm_backward(cache, dy, dhn, dcn)
    for name, a, b in (("dx", dx, dxr), ("dh0", dh0, dh0r), ("dc0", dc0, dc0r)):
        close(a, b, name)
    assert set(g) == set(gr) and any("ln" in k for k in g)
    for k in gr:
        close(g[k], gr[k], k, tol=1e-11)


def test_float32_same_bits_as_the_numpy_layer(lib):
    """The float32 entry points run the kernels fastlstm.LSTM runs: same masks,
    same bits (forward and backward)."""
    m = fastlstm.LSTM(5, 8, bidirectional=True, peephole=True, seed=3, zoneout=0.25,
                      cell_clip=0.7)
    rng = np.random.default_rng(4)
    x = (2 * rng.standard_normal((6, 3, 5))).astype(np.float32)
    lengths = np.array([6, 2, 4], np.int64)
    params = m.state_dict()
    y, (hn, cn) = m(x, lengths=lengths)
    keep = m.zoneout_masks[0]
    layer = Layer(lib, "lstm", params, 6, 3, 5, 8, 0, 2, True, dtype=np.float32)
    h0 = np.zeros((2, 3, 8), np.float32)
    opts = options(0.25, 0.7)
    yc, hc, cc = layer.forward(x, h0, h0.copy(), lengths, ctypes.byref(opts), keep)
    for a, b in ((yc, y), (hc, hn), (cc, cn)):
        np.testing.assert_array_equal(a, b)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, (dh0, dc0) = m.backward(dy)
    z = np.zeros_like(h0)
    dxc, dh0c, dc0c, g = layer.backward(dy, z, z.copy())
    for a, b in ((dxc, dx), (dh0c, dh0), (dc0c, dc0)):
        np.testing.assert_array_equal(a, b)
    for k, v in m.grads.items():
        np.testing.assert_array_equal(g[k], v, err_msg=k)


def test_abi1_entry_points_unchanged(lib):
    """pack/forward/backward of ABI 1 equal the *_ex ones with NULL options."""
    params, x, h0, c0, _, _, _, rng = lstm_case(LSTM_CASES[1])
    T, B, I, H, _, P, peep, _, _ = LSTM_CASES[1]
    layer = Layer(lib, "lstm", params, T, B, I, H, P, 1, peep)
    y, hn, cn = layer.forward(x, h0, c0, None, None, None)
    dy, dhn, dcn = (rng.standard_normal(a.shape) for a in (y, hn, cn))
    dx, dh0, dc0, g = layer.backward(dy, dhn, dcn)
    base = Base(*[params.get(f"{NAMES[f]}_l0") is not None and
                  params[f"{NAMES[f]}_l0"].ctypes.data or None for f in BASE])
    p1 = vp()
    assert lib.fastlstm_pack_f64(ctypes.byref(layer.dims), ctypes.byref(base), -1, 1, 1,
                                 ctypes.byref(p1)) == OK, err(lib)
    n = i64()
    assert lib.fastlstm_workspace_size(ctypes.byref(layer.dims), None, -1, 8,
                                       ctypes.byref(n)) == OK
    ws = np.empty(n.value)
    y1, hn1, cn1 = np.empty_like(y), np.empty_like(hn), np.empty_like(cn)
    assert lib.fastlstm_forward_f64(ctypes.byref(layer.dims), p1, ptr(x), None, ptr(h0),
                                    ptr(c0), ptr(y1), ptr(hn1), ptr(cn1), ptr(ws), 1) == OK
    for a, b in ((y1, y), (hn1, hn), (cn1, cn)):
        np.testing.assert_array_equal(a, b)
    gb = {k: np.zeros_like(v) for k, v in params.items()}
    gbase = Base(*[gb[f"{NAMES[f]}_l0"].ctypes.data if f"{NAMES[f]}_l0" in gb else None
                   for f in BASE])
    dx1, dh01, dc01 = np.empty_like(dx), np.empty_like(dh0), np.empty_like(dc0)
    assert lib.fastlstm_backward_f64(ctypes.byref(layer.dims), p1, ptr(x), None, ptr(c0),
                                     ptr(ws), ptr(dy), ptr(dhn), ptr(dcn), ptr(dx1), ptr(dh01),
                                     ptr(dc01), ctypes.byref(gbase), 1) == OK, err(lib)
    for a, b in ((dx1, dx), (dh01, dh0), (dc01, dc0)):
        np.testing.assert_array_equal(a, b)
    for k in gb:
        np.testing.assert_array_equal(gb[k], g[k], err_msg=k)
    lib.fastlstm_packed_free(p1)


def test_versioned_structs(lib):
    """Shorter sizes and garbage are refused; a newer caller's larger structs
    work while their unknown fields stay zero, and are refused otherwise;
    NULL options are the defaults."""
    case = LSTM_CASES[0]
    T, B, I, H, bid, P, peep, _, _ = case
    params, x, h0, c0, lengths, keep, kw, _ = lstm_case(case)
    layer = Layer(lib, "lstm", params, T, B, I, H, P, 2, peep)
    y0, _, _ = layer.forward(x, h0, c0, lengths, None, None, training=False)
    yz, _, _ = layer.forward(x, h0, c0, lengths, ctypes.byref(options()), None, training=False)
    np.testing.assert_array_equal(y0, yz)
    newer = OptionsNewer(ctypes.sizeof(OptionsNewer), 0.3, 0.0, 0.0)
    yn, _, _ = layer.forward(x, h0, c0, lengths, ctypes.byref(newer), keep, training=False)
    ym, _, _ = layer.forward(x, h0, c0, lengths, ctypes.byref(options(0.3)), keep,
                             training=False)
    np.testing.assert_array_equal(yn, ym)
    fwd = lib.fastlstm_forward_ex_f64
    out = [np.empty((T, B, 2 * H)), np.empty((2, B, H)), np.empty((2, B, H))]

    def status(opts):
        s = fwd(ctypes.byref(layer.dims), ctypes.byref(opts), layer.packed, ptr(x), ptr(lengths),
                ptr(h0), ptr(c0), None, *map(ptr, out), None, 1)
        return s, err(lib)

    newer.future = 1.0
    s, m = status(newer)
    assert s == INVALID and "opts: sets fields that this library" in m, m
    for size in (0, 8, ctypes.sizeof(Options) - 8, 1 << 40):
        s, m = status(Options(size, 0.3, 0.0))
        assert s == INVALID and (f"opts.size: expected sizeof(fastlstm_options) = "
                                 f"{ctypes.sizeof(Options)}, got {size}") in m, m
    # weights: a newer caller's larger per-direction structs, walked by their size
    wn, _ = ex_array(layer.params, 2, WeightsExNewer)
    pn = vp()
    assert lib.fastlstm_pack_ex_f64(ctypes.byref(layer.dims), None, wn, -1, 0, 1,
                                    ctypes.byref(pn)) == OK, err(lib)
    yw = np.empty_like(y0)
    assert fwd(ctypes.byref(layer.dims), None, pn, ptr(x), ptr(lengths), ptr(h0), ptr(c0), None,
               ptr(yw), ptr(out[1]), ptr(out[2]), None, 1) == OK, err(lib)
    np.testing.assert_array_equal(yw, y0)
    lib.fastlstm_packed_free(pn)

    def pack_status(w):
        q = vp()
        s = lib.fastlstm_pack_ex_f64(ctypes.byref(layer.dims), None, w, -1, 0, 1,
                                     ctypes.byref(q))
        assert s != OK and not q.value
        return s, err(lib)

    size = ctypes.sizeof(WeightsEx)
    wn[1].future = 8
    assert pack_status(wn) == (INVALID, f"w[1]: sets fields that this library (C ABI 2, "
                                        f"sizeof(fastlstm_weights_ex_f64) = {size}) does not know")
    w, _ = ex_array(layer.params, 2)
    w[1].size = size + 8
    s, m = pack_status(w)
    assert s == INVALID and f"w[1].size: expected {size} as w[0].size, got {size + 8}" in m, m
    w[0].size = w[1].size = 0
    s, m = pack_status(w)
    assert s == INVALID and "w[0].size: expected sizeof(fastlstm_weights_ex_f64)" in m, m


def test_bad_arguments(lib):
    """Every bad argument of the *_ex entry points is a status and a message
    naming it."""
    case = LSTM_CASES[0]
    T, B, I, H, bid, P, peep, _, _ = case
    params, x, h0, c0, lengths, keep, kw, rng = lstm_case(case)
    layer = Layer(lib, "lstm", params, T, B, I, H, P, 2, peep)
    dims = layer.dims
    y, hn, cn = np.empty((T, B, 2 * H)), np.empty((2, B, H)), np.empty((2, B, H))
    by = ctypes.byref

    def fwd(opts=None, d=dims, packed=None, keep_=None):
        s = lib.fastlstm_forward_ex_f64(by(d), opts, packed or layer.packed, ptr(x),
                                        ptr(lengths), ptr(h0), ptr(c0), ptr(keep_), ptr(y),
                                        ptr(hn), ptr(cn), None, 1)
        return s, err(lib)

    for opts, msg in ((options(1.5), "opts.zoneout: expected a probability in [0, 1], got 1.5"),
                      (options(-0.1), "opts.zoneout: expected a probability in [0, 1], got -0.1"),
                      (options(float("nan")), "opts.zoneout: expected a probability in [0, 1], got nan"),
                      (options(0.1, -1.0), "opts.cell_clip: expected >= 0 (0 = none), got -1"),
                      (options(0.1, float("nan")), "opts.cell_clip: expected >= 0 (0 = none), got nan")):
        assert fwd(by(opts)) == (INVALID, msg)
    assert fwd(by(options(0.0, float("inf"))))[0] == OK  # an infinite clip clips nothing
    # the GRU has no cell clip
    gdims = Dims(T, B, I, H, 0, 1, 0, CELL["gru"])
    n = i64()
    s = lib.fastlstm_workspace_size_ex(by(gdims), by(options(0.1, 1.0)), None, -1, 8, by(n))
    assert (s, err(lib)) == (INVALID, "opts.cell_clip: the gru cell has no cell clip "
                                      "(leave it 0)")
    # the layer-norm LSTM: its gains only through pack_ex, each one required; no clip
    ldims = Dims(T, B, I, H, 0, 2, 0, CELL["lnlstm"])
    s = lib.fastlstm_workspace_size_ex(by(ldims), by(options(0.1, 1.0)), None, -1, 8, by(n))
    assert (s, err(lib)) == (INVALID, "opts.cell_clip: the lnlstm cell has no cell clip "
                                      "(leave it 0)")
    lparams = {k: np.ones(v) for k, v in ref_ln.lnlstm_param_shapes(I, H, 1, True, True).items()}
    lw, _ = ex_array(lparams, 2)
    q = vp()
    assert lib.fastlstm_pack_ex_f64(by(ldims), None, lw, -1, 0, 1, by(q)) == OK, err(lib)
    lib.fastlstm_packed_free(q)
    q = vp()
    for f in ("ln_ih", "ln_hh", "ln_c", "ln_cb"):
        lw, _ = ex_array(lparams, 2)
        setattr(lw[1], f, None)
        s = lib.fastlstm_pack_ex_f64(by(ldims), None, lw, -1, 0, 1, by(q))
        assert (s, err(lib)) == (INVALID, f"w[1].{f}: must not be NULL (a required weight pointer)")
        assert not q.value
    s = lib.fastlstm_pack_f64(by(ldims), by(lw[0].base), -1, 0, 1, by(q))
    assert (s, err(lib)) == (INVALID, "dims.cell: the layer-norm LSTM's weights need "
                                      "fastlstm_pack_ex_*")
    w, _ = ex_array(layer.params, 2)
    w[0].base.w_hh = None
    s = lib.fastlstm_pack_ex_f64(by(dims), None, w, -1, 0, 1, by(q))
    assert (s, err(lib)) == (INVALID, "w[0].w_hh: must not be NULL (a required weight pointer)")
    bad = Dims(T, B, I, H, 0, 2, 0, 7)
    s = lib.fastlstm_pack_ex_f64(by(bad), None, layer.w, -1, 0, 1, by(q))
    assert s == INVALID and "dims.cell: expected FASTLSTM_CELL_LSTM" in err(lib) and "got 7" \
        in err(lib)
    s = lib.fastlstm_pack_ex_f64(by(dims), None, None, -1, 0, 1, by(q))
    assert (s, err(lib)) == (INVALID, "w: must not be NULL")
    s = lib.fastlstm_pack_ex_f64(by(dims), by(Options(3, 0, 0)), layer.w, -1, 0, 1, by(q))
    assert s == INVALID and "opts.size" in err(lib)
    s = lib.fastlstm_pack_ex_f64(by(dims), None, layer.w, -1, 0, 1, None)
    assert (s, err(lib)) == (INVALID, "out: must not be NULL")
    # dtype of the packing
    s = lib.fastlstm_forward_ex_f32(by(dims), None, layer.packed, ptr(x), None, ptr(h0),
                                    ptr(c0), None, ptr(y), ptr(hn), ptr(cn), None, 1)
    assert s == INVALID and "packed from float64 weights" in err(lib)
    # a training forward, then bad gradient structs for the backward
    opts = options(0.3)
    layer.forward(x, h0, c0, lengths, by(opts), keep)
    ws = layer.saved[-1]
    dy, dhn, dcn = rng.standard_normal(y.shape), rng.standard_normal(hn.shape), \
        rng.standard_normal(cn.shape)
    dx, dh0, dc0 = np.empty_like(x), np.empty_like(hn), np.empty_like(cn)

    def bwd(g, opts_=by(opts)):
        s = lib.fastlstm_backward_ex_f64(by(dims), opts_, layer.packed, ptr(x), ptr(lengths),
                                         ptr(c0), ptr(keep), ptr(ws), ptr(dy), ptr(dhn),
                                         ptr(dcn), ptr(dx), ptr(dh0), ptr(dc0), g, 1)
        return s, err(lib)

    g, _ = ex_array(layer.params, 2, zeros=True)
    g[1].base.w_hh = None
    assert bwd(g) == (INVALID, "g[1].w_hh: must not be NULL (a required gradient pointer)")
    assert bwd(None) == (INVALID, "g: must not be NULL")
    g, _ = ex_array(layer.params, 2, zeros=True)
    g[0].size = 7
    s, m = bwd(g)
    assert s == INVALID and "g[0].size: expected sizeof(fastlstm_grads_ex_f64)" in m, m
    g, _ = ex_array(layer.params, 2, zeros=True)
    # each NULL array is named
    args = dict(x=x, lengths=lengths, c0=c0, keep=keep, ws=ws, dy=dy, dhn=dhn, dcn=dcn, dx=dx,
                dh0=dh0, dc0=dc0)
    for name in ("x", "ws", "dy", "dhn", "dx", "dh0", "c0", "dcn", "dc0"):
        a = [None if k == name else ptr(v) for k, v in args.items()]
        s = lib.fastlstm_backward_ex_f64(by(dims), by(opts), layer.packed, *a, g, 1)
        assert s == INVALID and err(lib).startswith(f"{name}: must not be NULL"), err(lib)
    fargs = dict(x=x, lengths=lengths, h0=h0, c0=c0, keep=None, y=y, hn=hn, cn=cn, ws=None)
    for name in ("x", "h0", "c0", "y", "hn", "cn"):
        a = [None if k == name else ptr(v) for k, v in fargs.items()]
        s = lib.fastlstm_forward_ex_f64(by(dims), None, layer.packed, *a, 1)
        assert s == INVALID and err(lib).startswith(f"{name}: must not be NULL"), err(lib)
    s = lib.fastlstm_forward_ex_f64(by(dims), None, None, *[ptr(v) for v in fargs.values()], 1)
    assert (s, err(lib)) == (INVALID, "packed: must not be NULL")
    assert bwd(g, by(options(2.0))) == (INVALID, "opts.zoneout: expected a probability in "
                                                 "[0, 1], got 2")
    assert bwd(g)[0] == OK
