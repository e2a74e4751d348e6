"""Bad input, misuse and odd-but-valid input for fastlstm.LSTM.

Written against the "Python API (the contract)" section of DESIGN.md:
bad input raises ValueError / TypeError whose message names the argument (and,
for dtype errors, the expected dtype); misuse of ``backward`` raises
RuntimeError; nothing crashes, hangs or returns garbage.  Non-contiguous and
read-only arrays are valid input and give the same result as a contiguous copy.
"""
import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

fastlstm = pytest.importorskip("fastlstm")

T, B, I, H = 5, 3, 4, 6


def _check(excinfo, *patterns):
    msg = str(excinfo.value)
    for p in patterns:
        assert re.search(p, msg), f"message {msg!r} does not match {p!r}"


def word(name):
    return r"\b" + re.escape(name) + r"\b"


X = word("x")
HX = r"\bhx\b|\bh0\b|\bh_0\b"
CX = r"\bhx\b|\bc0\b|\bc_0\b"
LEN = word("lengths")
DY = word("dy")


def make(dtype=np.float32, **kw):
    kw.setdefault("seed", 0)
    return fastlstm.LSTM(I, H, dtype=dtype, **kw)


def rand(shape, dtype=np.float32, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------------
# constructor


@pytest.mark.parametrize("name", ["input_size", "hidden_size"])
@pytest.mark.parametrize("value", [0, -1, -7])
def test_ctor_nonpositive_size(name, value):
    args = {"input_size": I, "hidden_size": H, name: value}
    with pytest.raises(ValueError) as ei:
        fastlstm.LSTM(**args)
    _check(ei, word(name))


@pytest.mark.parametrize("name", ["input_size", "hidden_size"])
@pytest.mark.parametrize("value", [2.5, "3", None])
def test_ctor_non_int_size(name, value):
    args = {"input_size": I, "hidden_size": H, name: value}
    with pytest.raises(TypeError) as ei:
        fastlstm.LSTM(**args)
    _check(ei, word(name))


@pytest.mark.parametrize("value", [0, -1])
def test_ctor_num_layers_below_one(value):
    with pytest.raises(ValueError) as ei:
        fastlstm.LSTM(I, H, num_layers=value)
    _check(ei, word("num_layers"))


def test_ctor_num_layers_non_int():
    with pytest.raises(TypeError) as ei:
        fastlstm.LSTM(I, H, num_layers=1.5)
    _check(ei, word("num_layers"))


@pytest.mark.parametrize("value", [-0.1, 1.01, 2.0, float("nan")])
def test_ctor_dropout_out_of_range(value):
    with pytest.raises(ValueError) as ei:
        fastlstm.LSTM(I, H, num_layers=2, dropout=value)
    _check(ei, word("dropout"))


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_ctor_dropout_in_range_is_valid(value):
    fastlstm.LSTM(I, H, num_layers=2, dropout=value)


@pytest.mark.parametrize("value", [H, H + 1, -1])
def test_ctor_bad_proj_size(value):
    with pytest.raises(ValueError) as ei:
        fastlstm.LSTM(I, H, proj_size=value)
    _check(ei, word("proj_size"))


@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.int64, np.complex64, "foo"])
def test_ctor_unsupported_dtype(dtype):
    with pytest.raises((TypeError, ValueError)) as ei:
        fastlstm.LSTM(I, H, dtype=dtype)
    _check(ei, word("dtype"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.dtype("float32"), np.dtype("float64")])
def test_ctor_supported_dtypes(dtype):
    lstm = fastlstm.LSTM(I, H, dtype=dtype, seed=0)
    assert lstm.weight_ih_l0.dtype == np.dtype(dtype)
    y, (h, c) = lstm(rand((T, B, I), np.dtype(dtype)))
    assert y.dtype == h.dtype == c.dtype == np.dtype(dtype)


# --------------------------------------------------------------------------
# sizes whose byte counts overflow: run in a subprocess with an address-space
# limit, so that a wrong implementation that tries to allocate can neither
# take the machine down nor crash this interpreter.

_OVERFLOW_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
    import fastlstm
    cases = json.loads(sys.argv[1])
    out = []
    for kw in cases:
        try:
            fastlstm.LSTM(**kw)
            out.append(["ok", ""])
        except BaseException as e:
            out.append([type(e).__name__, str(e)])
    print(json.dumps(out))
    """
)

_OVERFLOW_CASES = [
    # (kwargs, allowed exception names, name the ValueError message must contain)
    (dict(input_size=4, hidden_size=2**40), ("ValueError", "MemoryError"), "hidden_size"),
    (dict(input_size=4, hidden_size=2**62), ("ValueError",), "hidden_size"),
    (dict(input_size=2**62, hidden_size=4), ("ValueError",), "input_size"),
    (dict(input_size=2**64, hidden_size=4), ("ValueError",), "input_size"),
    (dict(input_size=4, hidden_size=2**70), ("ValueError",), "hidden_size"),
    (dict(input_size=2**40, hidden_size=2**40), ("ValueError",), "size"),
    (dict(input_size=4, hidden_size=4, num_layers=2**62), ("ValueError", "MemoryError"), "num_layers"),
]


@pytest.fixture(scope="module")
def overflow_results():
    cases = [c[0] for c in _OVERFLOW_CASES]
    proc = subprocess.run(
        [sys.executable, "-c", _OVERFLOW_SCRIPT, json.dumps(cases)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, (
        f"interpreter died (rc={proc.returncode}) on oversized LSTM sizes:\n{proc.stderr[-3000:]}"
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("k", range(len(_OVERFLOW_CASES)),
                         ids=[str(c[0]) for c in _OVERFLOW_CASES])
def test_ctor_size_overflow(overflow_results, k):
    kw, allowed, name = _OVERFLOW_CASES[k]
    exc, msg = overflow_results[k]
    assert exc in allowed, f"LSTM(**{kw}) gave {exc}: {msg!r}; expected one of {allowed}"
    if exc == "ValueError":
        assert name in msg, f"message {msg!r} does not name {name!r}"


# --------------------------------------------------------------------------
# x


@pytest.mark.parametrize("shape", [(), (3,), (T, B, I, 1), (1, T, B, I)])
def test_x_wrong_rank(shape):
    # 0-D, 1-D (of the wrong kind: an unbatched input is 2-D [T,I]), 4-D
    lstm = make()
    x = np.ones(shape, np.float32)
    with pytest.raises(ValueError) as ei:
        lstm(x)
    _check(ei, X)


def test_x_1d_of_input_size_is_rejected():
    # [I] alone is not an unbatched sequence ([T, I]); torch rejects 1-D input.
    with pytest.raises(ValueError) as ei:
        make()(np.ones(I, np.float32))
    _check(ei, X)


@pytest.mark.parametrize("shape", [(T, B, I + 1), (T, B, I - 1), (T, B, 1), (T, I + 2)])
def test_x_wrong_feature_size(shape):
    with pytest.raises(ValueError) as ei:
        make()(np.ones(shape, np.float32))
    _check(ei, X)


def test_x_wrong_feature_size_batch_first():
    lstm = make(batch_first=True)
    lstm(np.ones((B, T, I), np.float32))  # fine
    with pytest.raises(ValueError) as ei:
        lstm(np.ones((B, I, T), np.float32))
    _check(ei, X)


@pytest.mark.parametrize("shape", [(0, B, I), (T, 0, I), (0, 0, I), (0, I)])
def test_x_empty_time_or_batch(shape):
    with pytest.raises(ValueError) as ei:
        make()(np.zeros(shape, np.float32))
    _check(ei, X)


@pytest.mark.parametrize("shape", [(B, 0, I), (0, B, I)])
def test_x_empty_time_or_batch_batch_first(shape):
    with pytest.raises(ValueError) as ei:
        make(batch_first=True)(np.zeros(shape, np.float32))
    _check(ei, X)


@pytest.mark.parametrize("layer_dtype, x_dtype", [
    (np.float32, np.float64), (np.float64, np.float32),
    (np.float32, np.float16), (np.float32, np.int64), (np.float32, np.int32),
    (np.float64, np.int64), (np.float32, np.bool_), (np.float32, np.complex64),
])
def test_x_wrong_dtype(layer_dtype, x_dtype):
    lstm = make(layer_dtype)
    x = np.ones((T, B, I), dtype=x_dtype)
    with pytest.raises(TypeError) as ei:
        lstm(x)
    _check(ei, X, np.dtype(layer_dtype).name)


def test_x_unbatched_wrong_dtype():
    with pytest.raises(TypeError) as ei:
        make()(np.ones((T, I), np.float64))
    _check(ei, X, "float32")


@pytest.mark.parametrize("x", [
    [[[0.0] * I] * B] * T,          # nested list
    ((0.0,) * I,) * T,              # tuple
    1.0,
    None,
    "abc",
])
def test_x_not_an_ndarray(x):
    with pytest.raises(TypeError) as ei:
        make()(x)
    _check(ei, X)


def test_x_object_array():
    x = np.empty((T, B, I), dtype=object)
    x[...] = 1.0
    with pytest.raises(TypeError) as ei:
        make()(x)
    _check(ei, X)


# --------------------------------------------------------------------------
# hx


def _hx(num_layers=1, D=1, batch=B, hidden=H, hout=None, dtype=np.float32):
    hout = hidden if hout is None else hout
    return (rand((num_layers * D, batch, hout), dtype, 2),
            rand((num_layers * D, batch, hidden), dtype, 3))


@pytest.mark.parametrize("bad", ["array", "one", "three", "none_tuple", "dict", "str"])
def test_hx_not_a_pair(bad):
    h0, c0 = _hx()
    hx = {"array": h0, "one": (h0,), "three": (h0, c0, c0), "none_tuple": (),
          "dict": {"h0": h0, "c0": c0}, "str": "hc"}[bad]
    with pytest.raises((TypeError, ValueError)) as ei:
        make()(rand((T, B, I)), hx)
    _check(ei, word("hx"))


@pytest.mark.parametrize("which", ["h0", "c0"])
def test_hx_element_not_an_ndarray(which):
    h0, c0 = _hx()
    hx = (h0.tolist(), c0) if which == "h0" else (h0, c0.tolist())
    with pytest.raises(TypeError) as ei:
        make()(rand((T, B, I)), hx)
    _check(ei, HX if which == "h0" else CX)


@pytest.mark.parametrize("shape", [(2, B, H), (1, B + 1, H), (1, B - 1, H), (1, B, H + 1), (B, H), (1, 1, B, H)])
def test_h0_wrong_shape(shape):
    h0, c0 = _hx()
    with pytest.raises(ValueError) as ei:
        make()(rand((T, B, I)), (np.zeros(shape, np.float32), c0))
    _check(ei, HX)


@pytest.mark.parametrize("shape", [(2, B, H), (1, B + 1, H), (1, B, H - 1), (B, H)])
def test_c0_wrong_shape(shape):
    h0, c0 = _hx()
    with pytest.raises(ValueError) as ei:
        make()(rand((T, B, I)), (h0, np.zeros(shape, np.float32)))
    _check(ei, CX)


def test_hx_shapes_multilayer_bidirectional():
    lstm = make(num_layers=2, bidirectional=True)
    x = rand((T, B, I))
    lstm(x, _hx(2, 2))  # valid
    with pytest.raises(ValueError) as ei:
        lstm(x, _hx(2, 1))  # [2,B,H] where [4,B,H] is needed
    _check(ei, HX)


def test_hx_shapes_with_projection():
    P = 2
    lstm = make(proj_size=P)
    x = rand((T, B, I))
    y, (h, c) = lstm(x, _hx(hout=P))  # valid: h0 [1,B,P], c0 [1,B,H]
    assert y.shape == (T, B, P) and h.shape == (1, B, P) and c.shape == (1, B, H)
    with pytest.raises(ValueError) as ei:
        lstm(x, _hx(hout=H))  # h0 with H instead of P
    _check(ei, HX)
    with pytest.raises(ValueError) as ei:
        lstm(x, (rand((1, B, P)), rand((1, B, P))))  # c0 with P instead of H
    _check(ei, CX)


@pytest.mark.parametrize("which", ["h0", "c0"])
@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.float16])
def test_hx_wrong_dtype(which, dtype):
    h0, c0 = _hx()
    if which == "h0":
        h0 = h0.astype(dtype)
    else:
        c0 = c0.astype(dtype)
    with pytest.raises(TypeError) as ei:
        make()(rand((T, B, I)), (h0, c0))
    _check(ei, HX if which == "h0" else CX, "float32")


def test_hx_wrong_dtype_float64_layer():
    h0, c0 = _hx(dtype=np.float32)
    with pytest.raises(TypeError) as ei:
        make(np.float64)(rand((T, B, I), np.float64), (h0, c0))
    _check(ei, r"\bhx\b|\bh0\b|\bc0\b", "float64")


def test_unbatched_x_with_batched_hx():
    lstm = make()
    x = rand((T, I))
    lstm(x, (rand((1, H)), rand((1, H))))  # valid: unbatched hx is [D*L, H]
    with pytest.raises(ValueError) as ei:
        lstm(x, _hx(batch=1))
    _check(ei, HX)


def test_batched_x_with_unbatched_hx():
    with pytest.raises(ValueError) as ei:
        make()(rand((T, B, I)), (rand((1, H)), rand((1, H))))
    _check(ei, HX)


# --------------------------------------------------------------------------
# lengths


def _run_len(lengths, **kw):
    return make(**kw)(rand((T, B, I)), lengths=lengths)


@pytest.mark.parametrize("lengths", [
    np.full(B + 1, T, np.int64), np.full(B - 1, T, np.int64), np.zeros(0, np.int64),
])
def test_lengths_wrong_length(lengths):
    with pytest.raises(ValueError) as ei:
        _run_len(lengths)
    _check(ei, LEN)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, object])
def test_lengths_not_integer(dtype):
    lengths = np.full(B, T).astype(dtype)
    with pytest.raises((TypeError, ValueError)) as ei:
        _run_len(lengths)
    _check(ei, LEN)


@pytest.mark.parametrize("bad", [0, -1, -(2**31), T + 1, 2**31, 2**62])
def test_lengths_out_of_range(bad):
    lengths = np.full(B, T, np.int64)
    lengths[1] = bad
    with pytest.raises(ValueError) as ei:
        _run_len(lengths)
    _check(ei, LEN)


def test_lengths_out_of_range_batch_first():
    lengths = np.array([T, T + 1, 1][:B], np.int64)
    with pytest.raises(ValueError) as ei:
        make(batch_first=True)(rand((B, T, I)), lengths=lengths)
    _check(ei, LEN)


def test_lengths_2d():
    with pytest.raises(ValueError) as ei:
        _run_len(np.full((B, 1), T, np.int64))
    _check(ei, LEN)
    with pytest.raises(ValueError) as ei:
        _run_len(np.full((1, B), T, np.int64))
    _check(ei, LEN)


def test_lengths_0d():
    with pytest.raises((TypeError, ValueError)) as ei:
        _run_len(np.array(T, np.int64))
    _check(ei, LEN)


def test_lengths_with_unbatched_input():
    with pytest.raises(ValueError) as ei:
        make()(rand((T, I)), lengths=np.array([T], np.int64))
    _check(ei, LEN)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.int16, np.uint32])
def test_lengths_integer_dtypes_agree(dtype):
    lengths = np.array([T, 2, 1][:B])
    x = rand((T, B, I))
    ref = make()(x, lengths=lengths.astype(np.int64))
    got = make()(x, lengths=lengths.astype(dtype))
    assert np.array_equal(got[0], ref[0])
    assert np.array_equal(got[1][0], ref[1][0])
    assert np.array_equal(got[1][1], ref[1][1])


# --------------------------------------------------------------------------
# backward: dy, dh_n, dc_n


def _fwd(dtype=np.float32, **kw):
    lstm = make(dtype, **kw)
    y, (h, c) = lstm(rand((T, B, I), dtype))
    return lstm, y, h, c


@pytest.mark.parametrize("shape", [(T, B, H + 1), (T + 1, B, H), (T, B + 1, H), (B, H), (T, B, H, 1), (T, B * H)])
def test_dy_wrong_shape(shape):
    lstm, *_ = _fwd()
    with pytest.raises(ValueError) as ei:
        lstm.backward(np.ones(shape, np.float32))
    _check(ei, DY)


def test_dy_wrong_shape_bidirectional():
    lstm, y, *_ = _fwd(bidirectional=True)
    assert y.shape == (T, B, 2 * H)
    with pytest.raises(ValueError) as ei:
        lstm.backward(np.ones((T, B, H), np.float32))
    _check(ei, DY)


def test_dy_time_major_for_batch_first_layer():
    lstm = make(batch_first=True)
    lstm(rand((B, T, I)))
    with pytest.raises(ValueError) as ei:
        lstm.backward(np.ones((T, B, H), np.float32))
    _check(ei, DY)


def test_dy_unbatched_shape():
    lstm = make()
    lstm(rand((T, I)))
    with pytest.raises(ValueError) as ei:
        lstm.backward(np.ones((T, 1, H), np.float32))
    _check(ei, DY)


@pytest.mark.parametrize("layer_dtype, dy_dtype", [
    (np.float32, np.float64), (np.float64, np.float32), (np.float32, np.int64),
])
def test_dy_wrong_dtype(layer_dtype, dy_dtype):
    lstm, y, *_ = _fwd(layer_dtype)
    with pytest.raises(TypeError) as ei:
        lstm.backward(np.ones(y.shape, dy_dtype))
    _check(ei, DY, np.dtype(layer_dtype).name)


def test_dy_not_an_ndarray():
    lstm, y, *_ = _fwd()
    with pytest.raises(TypeError) as ei:
        lstm.backward(y.tolist())
    _check(ei, DY)


@pytest.mark.parametrize("name", ["dh_n", "dc_n"])
@pytest.mark.parametrize("shape", [(2, B, H), (1, B + 1, H), (1, B, H + 1), (B, H)])
def test_dhn_dcn_wrong_shape(name, shape):
    lstm, y, h, c = _fwd()
    kw = {"dh_n": np.zeros_like(h), "dc_n": np.zeros_like(c)}
    kw[name] = np.zeros(shape, np.float32)
    with pytest.raises(ValueError) as ei:
        lstm.backward(np.ones_like(y), **kw)
    _check(ei, word(name))


def test_dhn_dcn_wrong_shape_projection():
    P = 2
    lstm, y, h, c = _fwd(proj_size=P)
    assert h.shape == (1, B, P) and c.shape == (1, B, H)
    with pytest.raises(ValueError) as ei:
        lstm.backward(np.ones_like(y), dh_n=np.zeros((1, B, H), np.float32))
    _check(ei, word("dh_n"))
    lstm(rand((T, B, I)))
    with pytest.raises(ValueError) as ei:
        lstm.backward(np.ones_like(y), dc_n=np.zeros((1, B, P), np.float32))
    _check(ei, word("dc_n"))


@pytest.mark.parametrize("name", ["dh_n", "dc_n"])
def test_dhn_dcn_wrong_dtype(name):
    lstm, y, h, c = _fwd()
    kw = {name: np.zeros(h.shape, np.float64)}
    with pytest.raises(TypeError) as ei:
        lstm.backward(np.ones_like(y), **kw)
    _check(ei, word(name), "float32")


# --------------------------------------------------------------------------
# misuse of backward


def test_backward_without_forward():
    lstm = make()
    with pytest.raises(RuntimeError) as ei:
        lstm.backward(np.ones((T, B, H), np.float32))
    _check(ei, r"(?i)backward|forward")


def test_second_backward():
    lstm, y, *_ = _fwd()
    lstm.backward(np.ones_like(y))
    with pytest.raises(RuntimeError) as ei:
        lstm.backward(np.ones_like(y))
    _check(ei, r"(?i)backward|forward")


def test_backward_after_eval_forward():
    lstm = make()
    lstm.eval()
    y, _ = lstm(rand((T, B, I)))
    with pytest.raises(RuntimeError):
        lstm.backward(np.ones_like(y))


def test_backward_after_zero_grad_without_forward():
    lstm = make()
    lstm.zero_grad()
    with pytest.raises(RuntimeError):
        lstm.backward(np.ones((T, B, H), np.float32))


def test_layer_usable_after_errors():
    """A rejected call leaves the layer in a usable, unchanged state."""
    lstm = make()
    x = rand((T, B, I))
    y_ref, (h_ref, c_ref) = make()(x)
    for bad in (np.ones((T, B, I + 1), np.float32), np.ones((T, B, I), np.float64)):
        with pytest.raises((TypeError, ValueError)):
            lstm(bad)
    with pytest.raises(ValueError):
        lstm(x, lengths=np.zeros(B, np.int64))
    y, (h, c) = lstm(x)
    assert np.array_equal(y, y_ref) and np.array_equal(h, h_ref) and np.array_equal(c, c_ref)
    dx, _ = lstm.backward(np.ones_like(y))
    assert dx.shape == x.shape and np.isfinite(dx).all()


# --------------------------------------------------------------------------
# load_state_dict


@pytest.mark.parametrize("kw, key", [
    ({}, "bias_hh_l0"),
    ({"num_layers": 2, "bidirectional": True}, "weight_hh_l1_reverse"),
], ids=["missing_key", "missing_reverse_key"])
def test_load_state_dict_missing_key(kw, key):
    lstm = make(**kw)
    sd = lstm.state_dict()
    del sd[key]
    with pytest.raises(ValueError) as ei:
        lstm.load_state_dict(sd)
    _check(ei, word(key))


def test_load_state_dict_extra_key():
    lstm = make()
    sd = lstm.state_dict()
    sd["weight_ih_l1"] = np.zeros((4 * H, H), np.float32)
    with pytest.raises(ValueError) as ei:
        lstm.load_state_dict(sd)
    _check(ei, word("weight_ih_l1"))


def test_load_state_dict_peephole_key_into_plain_layer():
    lstm = make()
    sd = lstm.state_dict()
    sd["weight_ph_l0"] = np.zeros((3, H), np.float32)
    with pytest.raises(ValueError) as ei:
        lstm.load_state_dict(sd)
    _check(ei, word("weight_ph_l0"))


@pytest.mark.parametrize("key, shape", [
    ("weight_ih_l0", (4 * H, I + 1)), ("weight_ih_l0", (I, 4 * H)),
    ("weight_hh_l0", (4 * H, H - 1)), ("bias_ih_l0", (4 * H + 1,)),
    ("bias_hh_l0", (1, 4 * H)), ("weight_hh_l0", (4 * H * H,)),
])
def test_load_state_dict_wrong_shape(key, shape):
    lstm = make()
    before = lstm.state_dict()
    sd = lstm.state_dict()
    sd[key] = np.zeros(shape, np.float32)
    with pytest.raises(ValueError) as ei:
        lstm.load_state_dict(sd)
    _check(ei, word(key))
    # nothing was loaded half-way: the failed load leaves the layer as it was
    after = lstm.state_dict()
    for k in before:
        assert np.array_equal(before[k], after[k]), k


def test_load_state_dict_readonly_noncontiguous_arrays_are_copied():
    src = make(seed=5)
    dst = make(seed=6)
    sd = {}
    for k, v in src.state_dict().items():
        a = np.asfortranarray(v) if v.ndim == 2 else np.repeat(v, 2)[::2]
        a.flags.writeable = False
        sd[k] = a
    dst.load_state_dict(sd)
    x = rand((T, B, I))
    ref = src(x)
    got = dst(x)
    assert np.array_equal(got[0], ref[0])
    # the layer owns writable copies: editing them works and leaves sd alone
    w = dst.weight_hh_l0
    assert w.flags.writeable
    assert not np.shares_memory(w, sd["weight_hh_l0"])
    w[...] = 0
    assert np.array_equal(sd["weight_hh_l0"], src.weight_hh_l0)


# --------------------------------------------------------------------------
# NaN / Inf pass through


def test_nan_in_x_propagates():
    lstm = make()
    x = rand((T, B, I))
    x[1, 0, 2] = np.nan
    y, (h, c) = lstm(x)
    assert np.isfinite(y[0]).all()
    assert np.isnan(y[1:, 0]).all()
    assert np.isnan(h[:, 0]).all() and np.isnan(c[:, 0]).all()
    # other rows are unaffected
    x_clean = x.copy()
    x_clean[1, 0, 2] = 0.0
    y2, (h2, c2) = make()(x_clean)
    np.testing.assert_allclose(y[:, 1:], y2[:, 1:], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(h[:, 1:], h2[:, 1:], rtol=1e-6, atol=1e-7)
    dx, (dh0, dc0) = lstm.backward(np.ones_like(y))
    assert np.isnan(dx[:2, 0]).any()
    assert np.isfinite(dx[:, 1:]).all()


def test_nan_in_hx_and_dy():
    lstm = make()
    x = rand((T, B, I))
    h0, c0 = _hx()
    c0[0, 2, 0] = np.nan
    y, (h, c) = lstm(x, (h0, c0))
    assert np.isnan(y[0, 2, 0]) and np.isnan(y[1:, 2]).all()
    assert np.isfinite(y[:, :2]).all()
    lstm2 = make()
    y, _ = lstm2(x)
    dy = np.ones_like(y)
    dy[-1, 1, 0] = np.nan
    dx, (dh0, dc0) = lstm2.backward(dy)
    assert np.isnan(dx[:, 1]).any()
    assert np.isfinite(dx[:, [0, 2]]).all()
    assert np.isnan(lstm2.grads["weight_hh_l0"]).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("val", [np.inf, -np.inf, 1e30])
def test_inf_and_huge_in_x_like_torch(dtype, val):
    torch = pytest.importorskip("torch")
    lstm = make(dtype)
    x = rand((T, B, I), dtype)
    x[0, 1, 3] = val
    y, (h, c) = lstm(x)
    ref = torch.nn.LSTM(I, H, dtype=getattr(torch, np.dtype(dtype).name))
    with torch.no_grad():
        for k, p in ref.named_parameters():
            p.copy_(torch.from_numpy(getattr(lstm, k)))
        ry, (rh, rc) = ref(torch.from_numpy(x))
    tol = 1e-5 if dtype == np.float32 else 1e-10
    for a, b in ((y, ry), (h, rh), (c, rc)):
        b = b.numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b))
        assert np.array_equal(np.isinf(a), np.isinf(b))
        fin = np.isfinite(b)
        np.testing.assert_allclose(a[fin], b[fin], rtol=0, atol=tol * max(1.0, np.abs(b[fin]).max()))


def test_extreme_finite_inputs_saturate():
    """Large |gates| must saturate the nonlinearities, not overflow to NaN."""
    lstm = make()
    for v in (1e4, -1e4, 1e30, -1e30):
        x = np.full((T, B, I), v, np.float32)
        y, (h, c) = lstm(x)
        assert not np.isnan(y).any(), v
        assert np.all(np.abs(y) <= 1.0), v


# --------------------------------------------------------------------------
# non-contiguous and read-only input is valid


def _full_run(lstm, x, hx=None, lengths=None, dy=None, dh_n=None, dc_n=None):
    lstm.zero_grad()
    y, (h, c) = lstm(x, hx, lengths=lengths)
    if dy is None:
        dy = np.ones_like(y)
    dx, (dh0, dc0) = lstm.backward(dy, dh_n, dc_n)
    grads = {k: v.copy() for k, v in lstm.grads.items()}
    return [y, h, c, dx, dh0, dc0], grads


def _assert_same(run_a, run_b):
    (outs_a, g_a), (outs_b, g_b) = run_a, run_b
    names = ["y", "h_n", "c_n", "dx", "dh0", "dc0"]
    for n, a, b in zip(names, outs_a, outs_b):
        assert a.shape == b.shape, n
        assert np.array_equal(a, b), n
    assert g_a.keys() == g_b.keys()
    for k in g_a:
        assert np.array_equal(g_a[k], g_b[k]), k


@pytest.mark.parametrize("layout", ["strided", "fortran", "reversed", "readonly", "transposed"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_noncontiguous_and_readonly_inputs(layout, dtype):
    D, L = 2, 2
    kw = dict(num_layers=L, bidirectional=True, seed=3)
    x = rand((T, B, I), dtype, 10)
    h0 = rand((D * L, B, H), dtype, 11)
    c0 = rand((D * L, B, H), dtype, 12)
    lengths = np.array([T, 2, 4][:B], np.int64)
    dy = rand((T, B, D * H), dtype, 13)
    dhn = rand((D * L, B, H), dtype, 14)
    dcn = rand((D * L, B, H), dtype, 15)
    ref = _full_run(make(dtype, **kw), x, (h0, c0), lengths, dy, dhn, dcn)

    def odd(a):
        if layout == "strided":
            big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
            big[..., ::2] = a
            v = big[..., ::2]
        elif layout == "fortran":
            v = np.asfortranarray(a)
        elif layout == "reversed":
            v = np.ascontiguousarray(a[::-1])[::-1]
        elif layout == "transposed":
            v = np.ascontiguousarray(np.swapaxes(a, 0, -1)).swapaxes(0, -1) if a.ndim > 1 else a
        else:
            v = a.copy()
            v.flags.writeable = False
        assert np.array_equal(v, a)
        if layout not in ("readonly",) and a.ndim > 1:
            assert not v.flags.c_contiguous
        return v

    originals = [a.copy() for a in (x, h0, c0, lengths, dy, dhn, dcn)]
    args = [odd(a) for a in (x, h0, c0)]
    lens = np.repeat(lengths, 2)[::2] if layout != "readonly" else odd(lengths)
    got = _full_run(make(dtype, **kw), args[0], (args[1], args[2]), lens,
                    odd(dy), odd(dhn), odd(dcn))
    _assert_same(got, ref)
    for a, o in zip((x, h0, c0, lengths, dy, dhn, dcn), originals):
        assert np.array_equal(a, o), "an input array was modified"


def test_strided_batch_view_batch_first():
    lstm_a = make(batch_first=True, seed=4)
    lstm_b = make(batch_first=True, seed=4)
    big = rand((2 * B, T, I), np.float32, 20)
    x = big[::2]           # strided on the batch axis
    xt = rand((T, B, I), np.float32, 21).transpose(1, 0, 2)  # a transposed view
    for xv in (x, xt):
        ya, (ha, ca) = lstm_a(xv)
        yb, (hb, cb) = lstm_b(np.ascontiguousarray(xv))
        assert np.array_equal(ya, yb) and np.array_equal(ha, hb) and np.array_equal(ca, cb)
        dya = rand(ya.shape, np.float32, 25)
        dxa, _ = lstm_a.backward(np.asfortranarray(dya))
        dxb, _ = lstm_b.backward(dya)
        assert np.array_equal(dxa, dxb)


def test_unbatched_readonly_noncontiguous():
    lstm_a, lstm_b = make(seed=9), make(seed=9)
    big = rand((T, 2 * I), np.float32, 22)
    x = big[:, ::2]
    x.flags.writeable = False
    h0 = rand((1, 2 * H), np.float32, 23)[:, ::2]
    c0 = rand((1, H), np.float32, 24)
    c0.flags.writeable = False
    ya, (ha, ca) = lstm_a(x, (h0, c0))
    yb, (hb, cb) = lstm_b(x.copy(), (h0.copy(), c0.copy()))
    assert ya.shape == (T, H) and ha.shape == (1, H)
    assert np.array_equal(ya, yb) and np.array_equal(ha, hb) and np.array_equal(ca, cb)


def _unaligned(shape, dtype):
    """A C-contiguous view of `shape` whose data sit one byte off alignment."""
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buf = np.zeros(n + 1, np.uint8)[1:]
    a = buf.view(dtype).reshape(shape)
    assert not a.flags.aligned and a.flags.c_contiguous
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unaligned_inputs_give_the_aligned_result(dtype):
    """Unaligned arrays (a view at an odd byte offset) are valid input: the
    layer copies them (the kernels' loads need the element's alignment)."""
    lstm = fastlstm.LSTM(I, H, dtype=dtype, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(dtype)
    xu, h0 = _unaligned(x.shape, dtype), _unaligned((1, B, H), dtype)
    xu[...] = x
    h0[...] = 0.5
    y, (hn, cn) = lstm(xu, (h0, np.full((1, B, H), 0.5, dtype)))
    y2, (hn2, cn2) = lstm(x, (np.full((1, B, H), 0.5, dtype),) * 2)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(hn, hn2)
    cell = fastlstm.LSTMCell(I, H, dtype=dtype, seed=0).eval()
    h, c = cell(_unaligned((B, I), dtype), (_unaligned((B, H), dtype), _unaligned((B, H), dtype)))
    assert np.isfinite(h).all() and np.isfinite(c).all()


def test_the_binding_refuses_an_unaligned_buffer():
    from fastlstm import _core
    d = _core.LayerDims(T=T, B=B, I=I, H=H)
    p = _core.PackedLayerF64(d, [(np.zeros((4 * H, I)), np.zeros((4 * H, H)), None, None,
                                  None, None)], "scalar", False, 1)
    x, z = _unaligned((T, B, I), np.float64), np.zeros((1, B, H))
    with pytest.raises(ValueError, match="^x: expected an aligned array"):
        _core.layer_forward_f64(d, p, x, None, z, z, np.zeros((T, B, H)), np.zeros_like(z),
                                np.zeros_like(z), None, 1, "scalar", None)


@pytest.mark.parametrize("seed, exc", [("abc", TypeError), (-1, ValueError), (1.5, TypeError)])
@pytest.mark.parametrize("cls", [fastlstm.LSTM, fastlstm.GRU, fastlstm.LSTMCell])
def test_a_bad_seed_is_named(cls, seed, exc):
    with pytest.raises(exc, match=r"^seed: expected None or an int >= 0"):
        cls(I, H, seed=seed)
