"""Zoneout (LSTM, GRU) and the LSTM's cell clip in fastlstm.torch.LSTM / GRU and
the ops fastlstm::lstm_layer / gru_layer.

Oracles: the float64 NumPy references (fastlstm.reference / reference_gru, fed
the masks the module drew: float64 to 1e-10, float32 to 1e-5 relative to
max|oracle|), the NumPy layers (fastlstm.LSTM / GRU and their functional
engine, given the same masks), torch.nn.LSTMCell / GRUCell stepped by hand
for eval()'s mix, finite differences (gradcheck), and onnxruntime's LSTM
``clip`` for the export. Every comparison here checks that zoneout or the
clip actually changed the result, so that none can pass by doing nothing."""
import copy
import io
import pickle
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastlstm  # noqa: E402
import fastlstm.torch as ft  # noqa: E402
from fastlstm import functional as F  # noqa: E402
from fastlstm import reference as ref  # noqa: E402
from fastlstm import reference_gru as ref_gru  # noqa: E402
from fastlstm.torch import _autodiff  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

from _tolerance import assert_rel_close, f64  # noqa: E402

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def _np_params(m):
    return {k: f64(v) for k, v in m.state_dict().items()}


def _big_weights(m, seed):
    """Weights large enough for a clip of ~0.5-1 to bite on many gates."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float64) * 1.8 - 0.9)


def _differs(a, b, what, at_least=1e-3):
    d = float(np.max(np.abs(f64(a) - f64(b))))
    assert d > at_least, f"{what}: the feature changed nothing here (max|diff| = {d:.2e})"


# --------------------------------------------------------------------- the references

LSTM_CASES = [  # T, B, I, H, layers, bidirectional, proj, peephole, clip, lengths
    (6, 4, 5, 7, 2, True, 0, False, None, True),
    (5, 3, 4, 9, 1, False, 3, True, 0.8, False),
    (7, 5, 6, 12, 2, True, 0, True, 0.6, True),
    (5, 3, 8, 10, 2, True, 4, False, 0.7, True),     # projection: zoneout after it
]


def _lstm_ids(c):
    return "T{}B{}I{}H{}-L{}-{}-P{}-{}-clip{}-{}".format(
        *c[:5], "bi" if c[5] else "uni", c[6], "peep" if c[7] else "nopeep", c[8],
        "packed" if c[9] else "full")


def _run_module(m, x, lengths, hx, dy_seed):
    """Forward (PackedSequence when lengths is given) and backward of a random
    linear loss of y and the final states -> y [T,B,*] padded, finals, the
    upstream gradients, the gradients of x, hx and the parameters."""
    x = x.clone().requires_grad_()
    hx = [h.clone().requires_grad_() for h in hx]
    state = tuple(hx) if len(hx) == 2 else hx[0]
    if lengths is not None:
        out, fin = m(pack_padded_sequence(x, lengths, enforce_sorted=False), state)
        y, _ = pad_packed_sequence(out, total_length=x.shape[0])
    else:
        y, fin = m(x, state)
    fin = list(fin) if isinstance(fin, tuple) else [fin]
    g = torch.Generator().manual_seed(dy_seed)
    ups = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in [y, *fin]]
    m.zero_grad()
    sum((t * u).sum() for t, u in zip([y, *fin], ups)).backward()
    grads = {"x": x.grad, **{f"hx{i}": h.grad for i, h in enumerate(hx)},
             **{k: p.grad for k, p in m.named_parameters()}}
    return y, fin, ups, grads


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", LSTM_CASES, ids=_lstm_ids)
def test_lstm_matches_the_reference(case, dtype):
    T, B, I, H, L, bid, P, peep, clip, with_lengths = case
    D, Ho = (2 if bid else 1), (P or H)
    m = ft.LSTM(I, H, num_layers=L, bidirectional=bid, proj_size=P, peephole=peep,
                zoneout=0.3, cell_clip=clip, dtype=torch.float64)
    _big_weights(m, T + H)
    m = m.to(dtype)
    g = torch.Generator().manual_seed(H)
    x = (2 * torch.randn(T, B, I, generator=g, dtype=torch.float64)).to(dtype)
    hx = [torch.randn(D * L, B, Ho, generator=g, dtype=torch.float64).to(dtype),
          torch.randn(D * L, B, H, generator=g, dtype=torch.float64).to(dtype)]
    lengths = torch.randint(1, T + 1, (B,), generator=g) if with_lengths else None
    if with_lengths:
        lengths[0] = T
    torch.manual_seed(11)
    y, (hn, cn), ups, grads = _run_module(m, x, lengths, hx, 5)
    masks = [f64(k) for k in m.zoneout_masks]
    assert len(masks) == L and all(k.shape == (T, B, D * Ho) for k in masks)
    assert all(set(np.unique(k)) <= {0.0, 1.0} for k in masks)
    kw = dict(num_layers=L, hidden_size=H, proj_size=P, bidirectional=bid, peephole=peep,
              h0=f64(hx[0]), c0=f64(hx[1]),
              lengths=None if lengths is None else lengths.numpy(), zoneout=0.3,
              cell_clip=clip)
    p = _np_params(m)
    yr, hr, cr, cache = ref.lstm_forward(f64(x), p, training=True, zoneout_masks=masks, **kw)
    tol = TOL[dtype]
    for name, a, b in (("y", y, yr), ("h_n", hn, hr), ("c_n", cn, cr)):
        assert_rel_close(a, b, tol, name)
    dxr, dh0r, dc0r, gr = ref.lstm_backward(cache, *[f64(u) for u in ups])
    assert_rel_close(grads["x"], dxr, tol, "dx")
    assert_rel_close(grads["hx0"], dh0r, tol, "dh0")
    assert_rel_close(grads["hx1"], dc0r, tol, "dc0")
    for k in gr:
        assert_rel_close(grads[k], gr[k], tol, k)
    # the masks matter: the same call without zoneout is another result
    y0, *_ = ref.lstm_forward(f64(x), p, **{**kw, "zoneout": 0.0})
    _differs(y, y0, "zoneout")
    if clip is not None:
        y1, *_ = ref.lstm_forward(f64(x), p, training=True, zoneout_masks=masks,
                                  **{**kw, "cell_clip": None})
        _differs(y, y1, "cell_clip")
    # eval(): the deterministic mix p*h_{t-1} + (1-p)*h~_t, no masks drawn
    m.eval()
    with torch.no_grad():
        state = (hx[0], hx[1])
        if lengths is not None:
            out, (he, ce) = m(pack_padded_sequence(x, lengths, enforce_sorted=False), state)
            ye, _ = pad_packed_sequence(out, total_length=T)
        else:
            ye, (he, ce) = m(x, state)
    yre, hre, cre, _ = ref.lstm_forward(f64(x), p, **kw)
    for name, a, b in (("y eval", ye, yre), ("h_n eval", he, hre), ("c_n eval", ce, cre)):
        assert_rel_close(a, b, tol, name)


GRU_CASES = [  # T, B, I, H, layers, bidirectional, lengths
    (6, 4, 5, 7, 2, True, True),
    (5, 3, 4, 9, 1, False, False),
    (7, 6, 3, 16, 2, False, True),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", GRU_CASES,
                         ids=lambda c: "T{}B{}I{}H{}-L{}-{}-{}".format(
                             *c[:5], "bi" if c[5] else "uni", "packed" if c[6] else "full"))
def test_gru_matches_the_reference(case, dtype):
    T, B, I, H, L, bid, with_lengths = case
    D = 2 if bid else 1
    torch.manual_seed(T)
    m = ft.GRU(I, H, num_layers=L, bidirectional=bid, zoneout=0.4, dtype=dtype)
    g = torch.Generator().manual_seed(H)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64).to(dtype)
    h0 = torch.randn(D * L, B, H, generator=g, dtype=torch.float64).to(dtype)
    lengths = torch.randint(1, T + 1, (B,), generator=g) if with_lengths else None
    if with_lengths:
        lengths[-1] = T
    y, (hn,), ups, grads = _run_module(m, x, lengths, [h0], 6)
    masks = [f64(k) for k in m.zoneout_masks]
    assert len(masks) == L and all(k.shape == (T, B, D * H) for k in masks)
    kw = dict(num_layers=L, hidden_size=H, bidirectional=bid, h0=f64(h0),
              lengths=None if lengths is None else lengths.numpy(), zoneout=0.4)
    p = _np_params(m)
    yr, hr, cache = ref_gru.gru_forward(f64(x), p, training=True, zoneout_masks=masks, **kw)
    tol = TOL[dtype]
    assert_rel_close(y, yr, tol, "y")
    assert_rel_close(hn, hr, tol, "h_n")
    dxr, dh0r, gr = ref_gru.gru_backward(cache, *[f64(u) for u in ups])
    assert_rel_close(grads["x"], dxr, tol, "dx")
    assert_rel_close(grads["hx0"], dh0r, tol, "dh0")
    for k in gr:
        assert_rel_close(grads[k], gr[k], tol, k)
    y0, *_ = ref_gru.gru_forward(f64(x), p, **{**kw, "zoneout": 0.0})
    _differs(y, y0, "zoneout")
    m.eval()
    with torch.no_grad():
        if lengths is not None:
            out, he = m(pack_padded_sequence(x, lengths, enforce_sorted=False), h0)
            ye, _ = pad_packed_sequence(out, total_length=T)
        else:
            ye, he = m(x, h0)
    yre, hre, _ = ref_gru.gru_forward(f64(x), p, **kw)
    assert_rel_close(ye, yre, tol, "y eval")
    assert_rel_close(he, hre, tol, "h_n eval")


def test_padded_steps_ignore_the_masks():
    """With lengths, a row's outputs past its length are zero and h_n is its
    last valid state whatever the masks hold there."""
    torch.manual_seed(0)
    m = ft.GRU(3, 5, bidirectional=True, zoneout=0.5, dtype=torch.float64)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    lengths = torch.tensor([6, 3])
    mask = (torch.rand(6, 2, 10, dtype=torch.float64) < 0.5).to(torch.float64)
    other = mask.clone()
    other[3:, 1] = 1 - other[3:, 1]  # only padded steps of row 1 change
    w = m._layer_weights(0)
    h0 = torch.zeros(2, 2, 5, dtype=torch.float64)
    with torch.no_grad():
        a = torch.ops.fastlstm.gru_layer(x, w, h0, lengths, 5, True, True, False, mask, 0.5)
        b = torch.ops.fastlstm.gru_layer(x, w, h0, lengths, 5, True, True, False, other, 0.5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.all(a[0][3:, 1] == 0)


# --------------------------------------------------------------------- the NumPy layers


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_module_matches_the_numpy_engine_with_its_masks(cell):
    """The torch module's training call against fastlstm.functional (the
    NumPy layers' engine) given the masks the module drew, and the module's
    eval() against the NumPy layer itself."""
    T, B, I, H, L = 5, 4, 3, 6, 2
    lengths = torch.tensor([5, 2, 4, 1])
    torch.manual_seed(3)
    if cell == "lstm":
        m = ft.LSTM(I, H, num_layers=L, bidirectional=True, zoneout=0.25, cell_clip=0.7,
                    dtype=torch.float64)
        npm = fastlstm.LSTM(I, H, num_layers=L, bidirectional=True, zoneout=0.25,
                            cell_clip=0.7, dtype=np.float64)
    else:
        m = ft.GRU(I, H, num_layers=L, bidirectional=True, zoneout=0.25, dtype=torch.float64)
        npm = fastlstm.GRU(I, H, num_layers=L, bidirectional=True, zoneout=0.25,
                           dtype=np.float64)
    _big_weights(m, 4)
    npm.load_state_dict(m.state_dict())
    x = 2 * torch.randn(T, B, I, dtype=torch.float64)
    hx = [torch.zeros(2 * L, B, H, dtype=torch.float64) for _ in range(2 if cell == "lstm"
                                                                         else 1)]
    y, fin, ups, grads = _run_module(m, x, lengths, hx, 9)
    masks = [k.numpy() for k in m.zoneout_masks]
    p = _np_params(m)
    kw = dict(num_layers=L, hidden_size=H, bidirectional=True, lengths=lengths.numpy(),
              training=True, zoneout=0.25, zoneout_masks=masks)
    if cell == "lstm":
        yn, hn, cn, ctx = F.lstm_forward(f64(x), p, cell_clip=0.7, **kw)
        dx, dh0, dc0, gn = F.lstm_backward(ctx, *[f64(u) for u in ups])
        want = [("y", y, yn), ("h_n", fin[0], hn), ("c_n", fin[1], cn), ("dx", grads["x"], dx),
                ("dh0", grads["hx0"], dh0), ("dc0", grads["hx1"], dc0)]
    else:
        yn, hn, ctx = F.gru_forward(f64(x), p, **kw)
        dx, dh0, gn = F.gru_backward(ctx, *[f64(u) for u in ups])
        want = [("y", y, yn), ("h_n", fin[0], hn), ("dx", grads["x"], dx),
                ("dh0", grads["hx0"], dh0)]
    want += [(k, grads[k], gn[k]) for k in gn]
    for name, a, b in want:
        assert_rel_close(a, b, 1e-13, name)
    m.eval()
    npm.eval()
    with torch.no_grad():
        out, _ = m(pack_padded_sequence(x, lengths, enforce_sorted=False))
        ye, _ = pad_packed_sequence(out, total_length=T)
    yne = npm(x.numpy(), lengths=lengths.numpy())[0]
    assert_rel_close(ye, yne, 1e-13, "y eval")
    _differs(ye, y, "eval mix vs training masks")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_op_matches_the_numpy_layer_given_its_masks(cell):
    """The other way round: the NumPy layer draws the masks, the op takes them."""
    T, B, I, H = 6, 3, 4, 5
    if cell == "lstm":
        npm = fastlstm.LSTM(I, H, bidirectional=True, peephole=True, zoneout=0.4, cell_clip=0.6,
                            dtype=np.float64, seed=1)
    else:
        npm = fastlstm.GRU(I, H, bidirectional=True, zoneout=0.4, dtype=np.float64, seed=1)
    rng = np.random.default_rng(2)
    x = 2 * rng.standard_normal((T, B, I))
    lengths = np.array([6, 2, 5])
    y, fin = npm(x, lengths=lengths)
    fin = list(fin) if isinstance(fin, tuple) else [fin]
    dy = rng.standard_normal(y.shape)
    dx = npm.backward(dy)[0]
    mask = torch.from_numpy(npm.zoneout_masks[0])
    names = ft.LSTM(I, H, bidirectional=True, peephole=True)._layer_names(0) if cell == "lstm" \
        else ft.GRU(I, H, bidirectional=True)._layer_names(0)
    ws = [torch.from_numpy(npm.state_dict()[n]).requires_grad_() for n in names]
    xt = torch.from_numpy(x).requires_grad_()
    h0 = torch.zeros(2, B, H, dtype=torch.float64)
    lt = torch.from_numpy(lengths)
    if cell == "lstm":
        out = torch.ops.fastlstm.lstm_layer(xt, ws, h0, h0, lt, H, 0, True, True, True, True,
                                            mask, 0.4, 0.6)
    else:
        out = torch.ops.fastlstm.gru_layer(xt, ws, h0, lt, H, True, True, True, mask,
                                           0.4)
    for a, b in zip(out[:len(fin) + 1], [y, *fin]):
        assert_rel_close(a, b, 1e-13, "forward")
    (out[0] * torch.from_numpy(dy)).sum().backward()
    assert_rel_close(xt.grad, dx, 1e-13, "dx")
    for n, w in zip(names, ws):
        assert_rel_close(w.grad, npm.grads[n], 1e-13, n)


# --------------------------------------------------------------------- eval formula


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_eval_is_the_deterministic_mix(cell):
    """eval(): h_t = p*h_{t-1} + (1-p)*h~_t, against torch.nn.LSTMCell / GRUCell
    stepped by hand with the same weights."""
    T, B, I, H, p = 7, 3, 4, 6, 0.35
    torch.manual_seed(5)
    if cell == "lstm":
        m = ft.LSTM(I, H, zoneout=p, dtype=torch.float64).eval()
        c = torch.nn.LSTMCell(I, H, dtype=torch.float64)
    else:
        m = ft.GRU(I, H, zoneout=p, dtype=torch.float64).eval()
        c = torch.nn.GRUCell(I, H, dtype=torch.float64)
    c.load_state_dict({k[:-3]: v for k, v in m.state_dict().items()})
    x = torch.randn(T, B, I, dtype=torch.float64)
    h = torch.randn(B, H, dtype=torch.float64)
    cs = torch.randn(B, H, dtype=torch.float64)
    hx = (h[None], cs[None]) if cell == "lstm" else h[None]
    state = torch.get_rng_state()
    with torch.no_grad():
        y, fin = m(x, hx)
        ys = []
        for t in range(T):
            if cell == "lstm":
                hn, cs = c(x[t], (h, cs))
            else:
                hn = c(x[t], h)
            h = p * h + (1 - p) * hn
            ys.append(h)
    assert torch.equal(torch.get_rng_state(), state), "eval() drew random numbers"
    want = torch.stack(ys)
    assert_rel_close(y, want, 1e-12, "y")
    hn_got = fin[0] if cell == "lstm" else fin
    assert_rel_close(hn_got[0], h, 1e-12, "h_n")
    if cell == "lstm":
        assert_rel_close(fin[1][0], cs, 1e-12, "c_n")
    m.zoneout = 0.0
    with torch.no_grad():
        _differs(y, m(x, hx)[0], "eval zoneout")


def test_masks_of_ones_and_zeros():
    """Through the op: a mask of ones keeps h0 at every step; zeros is no zoneout
    (torch.nn.LSTM's output)."""
    torch.manual_seed(1)
    tm = torch.nn.LSTM(3, 4, bidirectional=True, dtype=torch.float64)
    w = [getattr(tm, n) for n in ft.LSTM(3, 4, bidirectional=True)._layer_names(0)]
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    h0, c0 = torch.randn(2, 2, 4, dtype=torch.float64), torch.randn(2, 2, 4, dtype=torch.float64)
    with torch.no_grad():
        ones = torch.ops.fastlstm.lstm_layer(x, w, h0, c0, None, 4, 0, True, True, False, False,
                                             torch.ones(5, 2, 8, dtype=torch.float64), 0.5)
        zeros = torch.ops.fastlstm.lstm_layer(x, w, h0, c0, None, 4, 0, True, True, False,
                                              False, torch.zeros(5, 2, 8, dtype=torch.float64),
                                              0.5)
        want, (hw, cw) = tm(x, (h0, c0))
    assert torch.equal(ones[0], torch.cat([h0[0], h0[1]], -1).expand(5, 2, 8))
    assert torch.equal(ones[1], h0)
    assert_rel_close(zeros[0], want, 1e-12, "y")
    assert_rel_close(zeros[2], cw, 1e-12, "c_n")


# --------------------------------------------------------------------- the generator


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_manual_seed_reproduces_the_masks(cell):
    mk = (lambda: ft.LSTM(4, 50, num_layers=2, zoneout=0.25)) if cell == "lstm" else \
        (lambda: ft.GRU(4, 50, num_layers=2, zoneout=0.25))
    m = mk()
    x = torch.randn(40, 8, 4)
    torch.manual_seed(7)
    y1, _ = m(x)
    m1 = [k.clone() for k in m.zoneout_masks]
    torch.manual_seed(7)
    y2, _ = m(x)
    assert all(torch.equal(a, b) for a, b in zip(m1, m.zoneout_masks))
    assert torch.equal(y1, y2)
    torch.manual_seed(8)
    y3, _ = m(x)
    assert not torch.equal(m1[0], m.zoneout_masks[0]) and not torch.equal(y1, y3)
    # Bernoulli(p): values 0/1, rate within 5 sigma of p, layers drawn apart
    assert all(set(k.unique().tolist()) <= {0.0, 1.0} for k in m1)
    n = sum(k.numel() for k in m1)
    frac = float(sum(k.sum() for k in m1)) / n
    assert abs(frac - 0.25) < 5 * np.sqrt(0.25 * 0.75 / n), frac
    assert not torch.equal(m1[0], m1[1])
    # with no_grad (the inference path) a training-mode module still draws
    torch.manual_seed(7)
    with torch.no_grad():
        y4, _ = m(x)
    assert torch.equal(y4, y1)


def test_defaults_draw_nothing_and_are_unchanged():
    """zoneout=0.0 and cell_clip=None: no random draws, results bit-identical
    to a module built without the arguments and to the op called without them."""
    torch.manual_seed(0)
    a = ft.LSTM(3, 5, num_layers=2, dropout=0.0)
    b = ft.LSTM(3, 5, num_layers=2, zoneout=0.0, cell_clip=None)
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 2, 3, requires_grad=True)
    state = torch.get_rng_state()
    ya, _ = a(x)
    yb, _ = b(x)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(ya, yb) and b.zoneout_masks == []
    w = a._layer_weights(0)
    h = torch.zeros(1, 2, 5)
    with torch.no_grad():
        o1 = torch.ops.fastlstm.lstm_layer(x, w, h, h, None, 5, 0, False, True, False, False)
        o2 = torch.ops.fastlstm.lstm_layer(x, w, h, h, None, 5, 0, False, True, False, False,
                                           None, 0.0, 0.0)
    assert all(torch.equal(p, q) for p, q in zip(o1, o2))


# --------------------------------------------------------------------- gradients


def _rand(g, *shape):
    return torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)


def _lstm_op_args(g, T=4, B=3, I=2, H=3, peep=True):
    ws = []
    for _ in range(2):
        ws += [_rand(g, 4 * H, I), _rand(g, 4 * H, H), _rand(g, 4 * H), _rand(g, 4 * H)] + \
            ([_rand(g, 3, H)] if peep else [])
    return _rand(g, T, B, I), _rand(g, 2, B, H), _rand(g, 2, B, H), ws


@pytest.mark.parametrize("kind", ["mask", "eval_mix"])
def test_gradcheck_lstm_op(kind):
    g = torch.Generator().manual_seed(8)
    x, h0, c0, ws = _lstm_op_args(g)
    lengths = torch.tensor([4, 2, 3])
    mask = (torch.rand(4, 3, 6, generator=g, dtype=torch.float64) < 0.4).double() \
        if kind == "mask" else None

    def f(x, h0, c0, *w):
        return torch.ops.fastlstm.lstm_layer(x, list(w), h0, c0, lengths, 3, 0, True, True,
                                             True, True, mask, 0.4, 1.1)[:3]

    assert torch.autograd.gradcheck(f, (x, h0, c0, *ws))
    # the clip bites at these weights
    with torch.no_grad():
        y = f(x, h0, c0, *ws)[0]
        y0 = torch.ops.fastlstm.lstm_layer(x, ws, h0, c0, lengths, 3, 0, True, True, True,
                                           False, mask, 0.4, 0.0)[0]
    _differs(y, y0, "cell_clip")


@pytest.mark.parametrize("kind", ["mask", "eval_mix"])
def test_gradcheck_gru_op(kind):
    g = torch.Generator().manual_seed(9)
    H = 3
    ws = []
    for _ in range(2):
        ws += [_rand(g, 3 * H, 2), _rand(g, 3 * H, H), _rand(g, 3 * H), _rand(g, 3 * H)]
    x, h0 = _rand(g, 4, 3, 2), _rand(g, 2, 3, H)
    lengths = torch.tensor([2, 4, 1])
    mask = (torch.rand(4, 3, 6, generator=g, dtype=torch.float64) < 0.5).double() \
        if kind == "mask" else None

    def f(x, h0, *w):
        return torch.ops.fastlstm.gru_layer(x, list(w), h0, lengths, H, True, True, True, mask,
                                            0.3)[:2]

    assert torch.autograd.gradcheck(f, (x, h0, *ws))


def test_gradcheck_module_with_fixed_masks():
    """The module's own path (eager autograd, multi-layer, packed input): the
    masks fixed by reseeding before every call."""
    torch.manual_seed(0)
    m = ft.LSTM(2, 3, num_layers=2, bidirectional=True, zoneout=0.3, cell_clip=1.0,
                peephole=True, dtype=torch.float64)
    lengths = torch.tensor([4, 1, 3])
    g = torch.Generator().manual_seed(1)
    x = _rand(g, 4, 3, 2)

    def f(x):
        torch.manual_seed(123)
        out, (h, c) = m(pack_padded_sequence(x, lengths, enforce_sorted=False))
        return out.data, h, c

    assert torch.autograd.gradcheck(f, (x,))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_autodiff_path_is_the_kernels_maths(cell):
    """`_autodiff.layer` (double backward, jvp, empty batches) against the
    kernel op, with a mask, lengths and (LSTM) the clip; then double backward
    through the op against gradgradcheck, and its first derivatives against the
    kernels' BPTT."""
    g = torch.Generator().manual_seed(4)
    T, B, H = 5, 3, 3
    if cell == "lstm":
        x, h0, c0, ws = _lstm_op_args(g, T, B, 2, H)
        states, cfg, zo = [h0, c0], (H, 0, True, True, True), (0.3, 0.9)
    else:
        ws = []
        for _ in range(2):
            ws += [_rand(g, 3 * H, 2), _rand(g, 3 * H, H), _rand(g, 3 * H), _rand(g, 3 * H)]
        x, h0 = _rand(g, T, B, 2), _rand(g, 2, B, H)
        states, cfg, zo = [h0], (H, 0, True, True, False), (0.3, 0.0)
    lengths = torch.tensor([5, 2, 4])
    mask = (torch.rand(T, B, 2 * H, generator=g, dtype=torch.float64) < 0.5).double()
    ya, fa = _autodiff.layer(cell, x, ws, states, lengths, *cfg, mask, *zo)
    yk, fk, _ = ft._ops.call_layer(cell, x, ws, states, lengths, cfg, True, (mask, *zo))
    assert_rel_close(ya, yk, 1e-13, "y")
    for a, b in zip(fa, fk):
        assert_rel_close(a, b, 1e-13, "final state")
    ye, *_ = _autodiff.layer(cell, x, ws, states, lengths, *cfg, None, 0.3, zo[1])
    yk2, *_ = ft._ops.call_layer(cell, x, ws, states, lengths, cfg, True, (None, 0.3, zo[1]))
    assert_rel_close(ye, yk2, 1e-13, "y eval mix")
    _differs(ya, ye, "mask vs mix")

    def f(x, *rest):
        st, w = list(rest[:len(states)]), list(rest[len(states):])
        y, fin, _ = ft._ops.call_layer(cell, x, w, st, lengths, cfg, True, (mask, *zo))
        return (y, *fin)

    inputs = (x, *states, *ws)
    outs = f(*inputs)
    ups = [torch.randn(o.shape, generator=g, dtype=torch.float64) for o in outs]
    first = torch.autograd.grad(outs, inputs, ups)  # the kernels' BPTT
    outs = f(*inputs)
    again = torch.autograd.grad(outs, inputs, ups, create_graph=True)  # _autodiff
    assert again[0].grad_fn is not None
    for a, b in zip(first, again):
        assert_rel_close(a, b, 1e-12, "create_graph grads")
    assert torch.autograd.gradgradcheck(f, inputs)


def test_jvp_with_zoneout_matches_finite_differences():
    torch.manual_seed(2)
    m = ft.GRU(3, 4, zoneout=0.3, dtype=torch.float64).eval()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    t = torch.randn_like(x)
    _, jv = torch.func.jvp(lambda x: m(x)[0], (x,), (t,))
    with torch.no_grad():
        eps = 1e-6
        fd = (m(x + eps * t)[0] - m(x - eps * t)[0]) / (2 * eps)
    assert_rel_close(jv, fd, 1e-7, "jvp")


# --------------------------------------------------------------------- compile / export / opcheck


def test_opcheck_with_zoneout_and_clip():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(3, 2, 4, generator=g, requires_grad=True)
    ws = [torch.randn(s, generator=g, requires_grad=True)
          for s in [(20, 4), (20, 5), (20,), (20,), (3, 5)]]
    h0 = torch.zeros(1, 2, 5)
    lengths = torch.tensor([3, 1])
    mask = (torch.rand(3, 2, 5, generator=g) < 0.5).float()
    for m, p in ((mask, 0.5), (None, 0.3)):
        args = (x, ws, h0, h0.clone(), lengths, 5, 0, False, True, True, True, m, p, 0.8)
        torch.library.opcheck(torch.ops.fastlstm.lstm_layer.default, args)
    y, hn, cn, ws_ = torch.ops.fastlstm.lstm_layer(*args)
    bargs = (x.detach(), [w.detach() for w in ws], h0, lengths, ws_.detach(), torch.ones_like(y),
             torch.zeros_like(hn), torch.zeros_like(cn), 5, 0, False, True, True, mask, 0.5, 0.8)
    torch.library.opcheck(torch.ops.fastlstm.lstm_layer_backward.default, bargs)
    gws = [torch.randn(s, generator=g, requires_grad=True) for s in [(15, 4), (15, 5), (15,),
                                                                     (15,)]]
    for m, p in ((mask, 0.5), (None, 0.3)):
        torch.library.opcheck(torch.ops.fastlstm.gru_layer.default,
                              (x, gws, h0, lengths, 5, False, True, True, m, p))
    y, hn, ws_ = torch.ops.fastlstm.gru_layer(x, gws, h0, lengths, 5, False, True, True, mask,
                                              0.5)
    torch.library.opcheck(torch.ops.fastlstm.gru_layer_backward.default,
                          (x.detach(), [w.detach() for w in gws], lengths, ws_.detach(),
                           torch.ones_like(y), torch.zeros_like(hn), 5, False, True, mask, 0.5))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_torch_compile_fullgraph_with_zoneout(cell):
    """fullgraph compile in training (masks drawn inside the graph from the
    default generator: with inductor's fallback_random the same draws as
    eager) and in eval()."""
    import torch._inductor.config as inductor_config
    with inductor_config.patch(fallback_random=True):
        _compile_check(cell)


def _compile_check(cell):
    torch._dynamo.reset()
    torch.manual_seed(0)
    kw = dict(num_layers=2, bidirectional=True, zoneout=0.3)
    m = ft.LSTM(4, 6, cell_clip=0.5, **kw) if cell == "lstm" else ft.GRU(4, 6, **kw)
    x = torch.randn(5, 3, 4)
    explain = torch._dynamo.explain(m)(x)
    assert explain.graph_break_count == 0, explain.break_reasons
    torch._dynamo.reset()
    compiled = torch.compile(m, fullgraph=True)
    xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.manual_seed(5)
    yc = compiled(xc)[0]
    yc.sum().backward()
    torch.manual_seed(5)
    ye = m(xe)[0]
    ye.sum().backward()
    assert_rel_close(yc, ye, 1e-6, "compiled y (train)")
    assert_rel_close(xc.grad, xe.grad, 1e-6, "compiled dx (train)")
    m.eval()
    torch._dynamo.reset()
    compiled = torch.compile(m, fullgraph=True)
    with torch.no_grad():
        assert_rel_close(compiled(x)[0], m(x)[0], 1e-6, "compiled y (eval)")
    torch._dynamo.reset()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_torch_export_with_zoneout(cell):
    torch.manual_seed(0)
    kw = dict(num_layers=2, zoneout=0.3)
    m = ft.LSTM(4, 6, cell_clip=0.5, **kw) if cell == "lstm" else ft.GRU(4, 6, **kw)
    x = torch.randn(5, 3, 4)
    ep = torch.export.export(m, (x,))
    ops = [n for n in ep.graph.nodes if n.op == "call_function"
           and f"{cell}_layer" in str(n.target)]
    assert len(ops) == 2
    assert all(n.args[-2 if cell == "lstm" else -1] == 0.3 or
               n.kwargs.get("zoneout") == 0.3 for n in ops), [n.args for n in ops]
    torch.manual_seed(3)
    y_ep = ep.module()(x)[0]
    torch.manual_seed(3)
    with torch.no_grad():
        y = m(x)[0]
    assert_rel_close(y_ep, y, 1e-6, "exported y (train)")
    m.eval()
    ep = torch.export.export(m, (x,))
    with torch.no_grad():
        assert_rel_close(ep.module()(x)[0], m(x)[0], 1e-6, "exported y (eval)")


def test_vmap_with_zoneout_masks():
    """vmap over the op with per-sample masks (the rows rule) and over the module
    in eval()."""
    torch.manual_seed(0)
    m = ft.LSTM(3, 4, zoneout=0.3, cell_clip=0.6)
    w = m._layer_weights(0)
    xs = torch.randn(3, 5, 2, 3)
    masks = (torch.rand(3, 5, 2, 4) < 0.5).float()
    h = torch.zeros(1, 2, 4)

    def f(x, mask):
        return torch.ops.fastlstm.lstm_layer(x, w, h, h, None, 4, 0, False, True, False, False,
                                             mask, 0.3, 0.6)[0]

    got = torch.func.vmap(f)(xs, masks)
    for i in range(3):
        assert_rel_close(got[i], f(xs[i], masks[i]), 1e-6, f"sample {i}")
    m.eval()
    with torch.no_grad():
        got = torch.func.vmap(lambda x: m(x)[0])(xs)
        for i in range(3):
            assert_rel_close(got[i], m(xs[i])[0], 1e-6, f"eval sample {i}")


# --------------------------------------------------------------------- ONNX


def _onnx_blob(model, x, exporter):
    if exporter == "torchscript":
        f = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), f, dynamo=False, input_names=["x"])
        return f.getvalue()
    prog = torch.onnx.export(model, (x,), dynamo=True,
                             custom_translation_table=ft.onnx_translation_table(),
                             verbose=False)
    return prog.model_proto.SerializeToString()


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_onnx_export_writes_the_clip(exporter):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.manual_seed(2)
    m = ft.LSTM(5, 8, num_layers=2, bidirectional=True, peephole=True, cell_clip=0.6).eval()
    _big_weights(m, 2)
    m = m.float()
    x = 3 * torch.randn(6, 3, 5)
    blob = _onnx_blob(m, x, exporter)
    model = onnx.load_from_string(blob)
    nodes = [n for n in model.graph.node if n.op_type == "LSTM"]
    assert len(nodes) == 2
    assert all(any(a.name == "clip" and abs(a.f - 0.6) < 1e-7 for a in n.attribute)
               for n in nodes)
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        y, (hn, cn) = m(x)
        unclipped = ft.LSTM(5, 8, num_layers=2, bidirectional=True, peephole=True).eval()
        unclipped.load_state_dict(m.state_dict())
        _differs(y, unclipped(x)[0], "cell_clip")
    for a, b in zip(got, (y, hn, cn)):
        assert_rel_close(a, b, 1e-5, "onnxruntime vs module")


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_onnx_export_refuses_zoneout(cell, exporter):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    m = (ft.LSTM(4, 5, zoneout=0.2) if cell == "lstm" else ft.GRU(4, 5, zoneout=0.2)).eval()
    with pytest.raises(Exception, match="zoneout") as info:
        _onnx_blob(m, torch.randn(3, 2, 4), exporter)
    assert "no zoneout" in str(info.value) or "no zoneout" in repr(info.value.__cause__)


# --------------------------------------------------------------------- arguments


def test_arguments_are_checked_and_shown():
    with pytest.raises(ValueError, match="zoneout"):
        ft.LSTM(3, 4, zoneout=1.5)
    with pytest.raises(ValueError, match="zoneout"):
        ft.GRU(3, 4, zoneout=-0.1)
    with pytest.raises(TypeError, match="zoneout"):
        ft.GRU(3, 4, zoneout="0.1")
    with pytest.raises(TypeError, match="zoneout"):
        ft.LSTM(3, 4, zoneout=True)
    with pytest.raises(ValueError, match="cell_clip"):
        ft.LSTM(3, 4, cell_clip=0.0)
    with pytest.raises(ValueError, match="cell_clip"):
        ft.LSTM(3, 4, cell_clip=-1.0)
    with pytest.raises(TypeError, match="cell_clip"):
        ft.LSTM(3, 4, cell_clip="1")
    with pytest.raises(TypeError, match="cell_clip"):
        ft.GRU(3, 4, cell_clip=1.0)
    assert repr(ft.LSTM(3, 4)) == "LSTM(3, 4)"
    assert repr(ft.LSTM(3, 4, zoneout=0.1, cell_clip=2)) == \
        "LSTM(3, 4, zoneout=0.1, cell_clip=2.0)"
    assert repr(ft.GRU(3, 4, zoneout=0.5)) == "GRU(3, 4, zoneout=0.5)"
    # what torch's op would run instead has neither feature: refused, not dropped
    with pytest.raises(TypeError, match="zoneout"):
        ft.GRU(3, 4, zoneout=0.1).half()(torch.randn(2, 1, 3).half())
    with pytest.raises(TypeError, match="cell_clip"):
        ft.LSTM(3, 4, cell_clip=1.0).bfloat16()(torch.randn(2, 1, 3).bfloat16())
    # the ops
    x, h = torch.randn(4, 2, 3), torch.zeros(1, 2, 5)
    w = ft.LSTM(3, 5)._layer_weights(0)
    with pytest.raises(ValueError, match="zoneout_mask"):
        torch.ops.fastlstm.lstm_layer(x, w, h, h, None, 5, 0, False, True, False, True,
                                      torch.zeros(4, 2, 4), 0.2)
    with pytest.raises(TypeError, match="zoneout_mask"):
        torch.ops.fastlstm.lstm_layer(x, w, h, h, None, 5, 0, False, True, False, True,
                                      torch.zeros(4, 2, 5, dtype=torch.float64), 0.2)
    with pytest.raises(ValueError, match="zoneout"):
        torch.ops.fastlstm.lstm_layer(x, w, h, h, None, 5, 0, False, True, False, True, None,
                                      1.5)
    with pytest.raises(ValueError, match="cell_clip"):
        torch.ops.fastlstm.lstm_layer(x, w, h, h, None, 5, 0, False, True, False, True, None,
                                      0.0, -1.0)


def test_copies_and_pickles_keep_the_configuration():
    m = ft.LSTM(3, 4, zoneout=0.2, cell_clip=0.9)
    m(torch.randn(2, 1, 3))
    assert len(m.zoneout_masks) == 1
    for c in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert (c.zoneout, c.cell_clip) == (0.2, 0.9)
    assert pickle.loads(pickle.dumps(m)).zoneout_masks == []
    state = m.__getstate__()
    for k in ("zoneout", "cell_clip", "zoneout_masks"):
        state.pop(k)
    old = ft.LSTM.__new__(ft.LSTM)
    old.__setstate__(state)  # pickled before the options existed
    assert (old.zoneout, old.cell_clip) == (0.0, None)
    x = torch.randn(3, 2, 3)
    with torch.no_grad():
        ref_m = ft.LSTM(3, 4)
        ref_m.load_state_dict(m.state_dict())
        assert torch.equal(old(x)[0], ref_m(x)[0])
