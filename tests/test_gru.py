"""fastlstm.GRU / GRUCell (the compiled kernels) against the three oracles:

- fastlstm.reference_gru (plain NumPy float64, itself proved against torch.nn.GRU
  and finite differences in tests/test_reference_gru.py): forward, every gradient,
  every ISA, lengths, dropout masks, several layers and both directions;
- torch.nn.GRU / GRUCell, weights carried both ways, with pack_padded_sequence;
- central finite differences of the layer itself in float64.

Tolerances as in test_lstm_oracles.py: float64 1e-10 relative to max|oracle|
(the kernels and the reference differ only in summation order); float32 against
torch 1e-5 relative (float32 rounding of sums over a few hundred terms).
"""
import numpy as np
import pytest
from _fd import sampled_fd_check
from _tolerance import assert_rel_close

import fastlstm
from fastlstm import functional as F
from fastlstm import reference_gru as ref

TORCH_TOL = {np.float32: 1e-5, np.float64: 1e-10}

CASES = [  # T, B, I, H, layers, bidirectional, bias, lengths
    (7, 4, 3, 8, 1, False, True, False),
    (6, 5, 4, 9, 2, True, True, True),
    (5, 20, 6, 33, 1, False, False, True),   # rows split between threads (B >= 16)
    (4, 3, 70, 40, 3, True, False, False),
    (9, 2, 300, 260, 1, False, True, True),  # many unit blocks, long k
    (3, 12, 8, 400, 1, True, True, True),    # k in slices (rows > MR, K > 2 slices)
]


def _params(rng, I, H, L, bias, bid, dtype, scale=0.5):
    shapes = F.param_shapes(I, H, L, bias, bid, cell="gru")
    return {k: rng.uniform(-scale, scale, s).astype(dtype) for k, s in shapes.items()}


def _lengths(rng, T, B):
    lens = rng.integers(1, T + 1, B)
    lens[rng.integers(B)] = T
    return lens


def _f64(d):
    return {k: np.asarray(v, np.float64) for k, v in d.items()}


@pytest.mark.parametrize("case", CASES, ids=lambda c: "T{}B{}I{}H{}-L{}-{}-{}-{}".format(
    *c[:5], "bi" if c[5] else "uni", "bias" if c[6] else "nobias", "len" if c[7] else "full"))
@pytest.mark.parametrize("threads", [1, 2])
def test_kernels_match_the_reference(case, threads, isa, restore_threads):
    T, B, I, H, L, bid, bias, with_lengths = case
    fastlstm.set_num_threads(threads)
    rng = np.random.default_rng(T * 100 + H)
    D = 2 if bid else 1
    p = _params(rng, I, H, L, bias, bid, np.float64)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D * L, B, H))
    lengths = _lengths(rng, T, B) if with_lengths else None
    y, hn, ctx = F.gru_forward(x, p, num_layers=L, hidden_size=H, bidirectional=bid,
                               bias=bias, h0=h0, lengths=lengths, training=True)
    yr, hr, cache = ref.gru_forward(x, p, num_layers=L, hidden_size=H, bidirectional=bid,
                                    bias=bias, h0=h0, lengths=lengths)
    assert_rel_close(y, yr, 1e-10, "y")
    assert_rel_close(hn, hr, 1e-10, "h_n")
    if lengths is not None:  # y past each row's length is zero
        for b, n in enumerate(lengths):
            assert not y[n:, b].any()
    dy, dhn = rng.standard_normal(y.shape), rng.standard_normal(hn.shape)
    dx, dh0, g = F.gru_backward(ctx, dy, dhn)
    dxr, dh0r, gr = ref.gru_backward(cache, dy, dhn)
    assert_rel_close(dx, dxr, 1e-10, "dx")
    assert_rel_close(dh0, dh0r, 1e-10, "dh0")
    assert set(g) == set(gr)
    for k in gr:
        assert_rel_close(g[k], gr[k], 1e-10, k)
    # inference gives the training forward's results bit for bit
    yi, hni, none = F.gru_forward(x, p, num_layers=L, hidden_size=H, bidirectional=bid,
                                  bias=bias, h0=h0, lengths=lengths)
    assert none is None and np.array_equal(yi, y) and np.array_equal(hni, hn)


def test_results_do_not_depend_on_the_thread_count(restore_threads):
    rng = np.random.default_rng(5)
    T, B, I, H = 12, 6, 40, 300
    p = _params(rng, I, H, 2, True, True, np.float32)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = _lengths(rng, T, B)
    out = []
    for nt in (1, 2, 3):
        fastlstm.set_num_threads(nt)
        y, hn, ctx = F.gru_forward(x, p, num_layers=2, hidden_size=H, bidirectional=True,
                                   lengths=lengths, training=True)
        dx, dh0, g = F.gru_backward(ctx, np.ones_like(y))
        out.append([y, hn, dx, dh0] + [g[k] for k in sorted(g)])
    for o in out[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(o, out[0]))


def test_dropout_masks_are_the_ones_applied():
    rng = np.random.default_rng(2)
    T, B, I, H, L = 6, 4, 5, 7, 3
    gru = fastlstm.GRU(I, H, num_layers=L, dropout=0.4, bidirectional=True, dtype=np.float64,
                       seed=3)
    x = rng.standard_normal((T, B, I))
    y, hn = gru(x)
    assert len(gru.dropout_masks) == L - 1
    yr, hr, cache = ref.gru_forward(x, gru.state_dict(), num_layers=L, hidden_size=H,
                                    bidirectional=True, dropout_masks=gru.dropout_masks)
    assert_rel_close(y, yr, 1e-10, "y")
    dy = rng.standard_normal(y.shape)
    dx, dh0 = gru.backward(dy)
    dxr, dh0r, gr = ref.gru_backward(cache, dy)
    assert_rel_close(dx, dxr, 1e-10, "dx")
    for k in gr:
        assert_rel_close(gru.grads[k], gr[k], 1e-10, k)


# ---------------------------------------------------------------------------- torch

torch = pytest.importorskip("torch")


def _pair(I, H, L, bid, bias, batch_first, dtype, from_torch=True, seed=0):
    torch.manual_seed(seed)
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    t = torch.nn.GRU(I, H, num_layers=L, bias=bias, batch_first=batch_first,
                     bidirectional=bid).to(tdt)
    f = fastlstm.GRU(I, H, num_layers=L, bias=bias, batch_first=batch_first,
                     bidirectional=bid, dtype=dtype, seed=seed + 1)
    if from_torch:
        f.load_state_dict(t.state_dict())
    else:
        t.load_state_dict({k: torch.from_numpy(v) for k, v in f.state_dict().items()})
    return t, f


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("from_torch", [True, False])
@pytest.mark.parametrize("layout", ["time_major", "batch_first", "unbatched"])
def test_matches_torch(dtype, from_torch, layout, torch_one_thread):
    I, H, L, bid = 6, 11, 2, True
    t, f = _pair(I, H, L, bid, True, layout == "batch_first", dtype, from_torch)
    tol = TORCH_TOL[dtype]
    rng = np.random.default_rng(4)
    shape = {"time_major": (7, 3, I), "batch_first": (3, 7, I), "unbatched": (7, I)}[layout]
    hshape = (2 * L, H) if layout == "unbatched" else (2 * L, 3, H)
    x = rng.standard_normal(shape).astype(dtype)
    h0 = rng.standard_normal(hshape).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    yt, hnt = t(xt, h0t)
    y, hn = f(x, h0)
    assert_rel_close(y, yt, tol, "y")
    assert_rel_close(hn, hnt, tol, "h_n")
    dy = rng.standard_normal(y.shape).astype(dtype)
    dhn = rng.standard_normal(hn.shape).astype(dtype)
    torch.autograd.backward([yt, hnt], [torch.tensor(dy), torch.tensor(dhn)])
    dx, dh0 = f.backward(dy, dhn)
    assert_rel_close(dx, xt.grad, tol, "dx")
    assert_rel_close(dh0, h0t.grad, tol, "dh0")
    for k, prm in t.named_parameters():
        assert_rel_close(f.grads[k], prm.grad, tol, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lengths_match_pack_padded_sequence(dtype, torch_one_thread):
    I, H, L, T, B = 5, 9, 2, 8, 6
    t, f = _pair(I, H, L, True, True, False, dtype)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    lengths = np.array([8, 3, 1, 8, 5, 2])
    xt = torch.tensor(x, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths),
                                                     enforce_sorted=False)
    yp, hnt = t(packed)
    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yp, total_length=T)
    y, hn = f(x, lengths=lengths)
    tol = TORCH_TOL[dtype]
    assert_rel_close(y, yt, tol, "y")
    assert_rel_close(hn, hnt, tol, "h_n")
    dy = rng.standard_normal(y.shape).astype(dtype)
    for b, n in enumerate(lengths):
        dy[n:, b] = 0
    torch.autograd.backward([yt, hnt], [torch.tensor(dy), torch.ones_like(hnt)])
    dx, dh0 = f.backward(dy, np.ones_like(hn))
    assert_rel_close(dx, xt.grad, tol, "dx")
    for k, prm in t.named_parameters():
        assert_rel_close(f.grads[k], prm.grad, tol, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cell_matches_torch_and_its_steps_backpropagate(dtype, torch_one_thread):
    I, H, B, T = 5, 7, 3, 4
    torch.manual_seed(1)
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    tc = torch.nn.GRUCell(I, H).to(tdt)
    c = fastlstm.GRUCell(I, H, dtype=dtype)
    c.load_state_dict(tc.state_dict())
    rng = np.random.default_rng(7)
    xs = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    tol = TORCH_TOL[dtype]
    c.eval()  # the streaming path and the checked path
    assert_rel_close(c(xs[0], h0), tc(torch.tensor(xs[0]), torch.tensor(h0)), tol, "h eval")
    assert_rel_close(c(xs[0][0], h0[0]), tc(torch.tensor(xs[0][0]), torch.tensor(h0[0])), tol,
                     "h unbatched")
    c.train()
    xts = [torch.tensor(x, requires_grad=True) for x in xs]
    ht = torch.tensor(h0, requires_grad=True)
    h, hts = h0, [ht]
    for k in range(T):
        h = c(xs[k], h)
        hts.append(tc(xts[k], hts[-1]))
        assert_rel_close(h, hts[-1], tol, f"h{k}")
    hts[-1].sum().backward()
    dh = np.ones((B, H), dtype)
    for k in reversed(range(T)):
        dx, dh = c.backward(dh)
        assert_rel_close(dx, xts[k].grad, tol, f"dx{k}")
    assert_rel_close(dh, ht.grad, tol, "dh0")
    for k, prm in tc.named_parameters():
        assert_rel_close(c.grads[k], prm.grad, tol, k)


# ---------------------------------------------------------------------------- finite differences

def test_finite_differences_with_lengths():
    rng = np.random.default_rng(8)
    T, B, I, H, L = 5, 3, 4, 6, 2
    p = _params(rng, I, H, L, True, True, np.float64)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((2 * L, B, H))
    lengths = np.array([5, 2, 4])
    wy = rng.standard_normal((T, B, 2 * H))
    wh = rng.standard_normal((2 * L, B, H))

    def loss():
        y, hn, _ = F.gru_forward(x, p, num_layers=L, hidden_size=H, bidirectional=True,
                                 h0=h0, lengths=lengths)
        return float((y * wy).sum() + (hn * wh).sum())

    _, _, ctx = F.gru_forward(x, p, num_layers=L, hidden_size=H, bidirectional=True, h0=h0,
                              lengths=lengths, training=True)
    dx, dh0, g = F.gru_backward(ctx, wy, wh)
    sampled_fd_check(x, dx, loss, rng, "x", n=6)
    sampled_fd_check(h0, dh0, loss, rng, "h0", n=6)
    for k in p:
        sampled_fd_check(p[k], g[k], loss, rng, k, n=3)


# ---------------------------------------------------------------------------- API

def test_api_and_errors():
    gru = fastlstm.GRU(4, 5, num_layers=2, bidirectional=True)
    assert list(gru.state_dict()) == list(F.param_shapes(4, 5, 2, True, True, cell="gru"))
    assert gru.weight_hh_l1_reverse.shape == (15, 5)
    x = np.zeros((3, 2, 4), np.float32)
    y, hn = gru(x)
    assert y.shape == (3, 2, 10) and hn.shape == (4, 2, 5)
    with pytest.raises(TypeError, match="hx"):
        gru(x, (np.zeros((4, 2, 5), np.float32), np.zeros((4, 2, 5), np.float32)))
    with pytest.raises(ValueError, match="hx"):
        gru(x, np.zeros((4, 2, 6), np.float32))
    with pytest.raises(TypeError):
        fastlstm.GRU(4, 5, proj_size=2)
    with pytest.raises(ValueError, match="bfloat16.*float32"):
        fastlstm.GRU(4, 5, weights_dtype="bfloat16", dtype=np.float64)
    with pytest.raises(ValueError, match="peephole"):
        F.pack(F.init_params(F.param_shapes(4, 5, cell="gru"), 5, np.float32,
                             np.random.default_rng(0)),
               input_size=4, hidden_size=5, peephole=True, cell="gru")
    gru.train()
    gru(x)
    with pytest.raises(ValueError, match="dh_n"):
        gru.backward(np.zeros_like(y), np.zeros((4, 2, 6), np.float32))
    lstm_ctx = F.lstm_forward(x, F.init_params(F.param_shapes(4, 5), 5, np.float32,
                                               np.random.default_rng(0)),
                              num_layers=1, hidden_size=5, training=True)[3]
    with pytest.raises(ValueError, match="lstm forward"):
        F.gru_backward(lstm_ctx, np.zeros((3, 2, 5), np.float32))
    packed = F.pack(dict(gru.state_dict()), input_size=4, hidden_size=5, num_layers=2,
                    bidirectional=True, cell="gru")
    with pytest.raises(ValueError, match="gru cell"):
        F.lstm_forward(x, None, num_layers=2, hidden_size=5, bidirectional=True, packed=packed)
    with pytest.raises(ValueError, match="c0"):
        fastlstm._core.layer_forward_f32(
            fastlstm._core.LayerDims(T=3, B=2, I=4, H=5, cell="gru"), packed.layers[0], x,
            None, np.zeros((1, 2, 5), np.float32), np.zeros((1, 2, 5), np.float32),
            np.zeros((3, 2, 5), np.float32), np.zeros((1, 2, 5), np.float32), None, None, 1,
            packed.isa)
    # the layer-norm LSTM saves its normalised rows too (Geometry::saved_per_row)
    ws = {c: fastlstm._core.workspace_size(fastlstm._core.LayerDims(T=3, B=2, I=4, H=5, cell=c),
                                           None, "scalar", 4) for c in ("lstm", "lnlstm")}
    assert ws["lnlstm"] > ws["lstm"]
