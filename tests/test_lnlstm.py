"""fastlstm.LayerNormLSTM and functional.layer_norm_lstm_* (the compiled kernels)
against the three oracles:

- fastlstm.reference_lnlstm (plain NumPy float64, itself proved against a torch
  autograd implementation and finite differences in tests/test_reference_lnlstm.py):
  forward, every gradient, every ISA, 1 and 2 threads, lengths, dropout and
  zoneout masks, several layers, both directions;
- a plain torch autograd implementation of the same equations, written here
  (torch.nn.functional.layer_norm), weights carried over from the layer;
- central finite differences of the layer itself in float64.

Tolerances as in test_gru.py: float64 1e-10 relative to max|oracle| (the kernels
and the references differ only in summation order); float32 1e-5 relative.
"""
import numpy as np
import pytest
from _fd import sampled_fd_check
from _tolerance import assert_rel_close

import fastlstm
from fastlstm import functional as F
from fastlstm import reference_lnlstm as ref

CASES = [  # T, B, I, H, layers, bidirectional, bias, lengths
    (7, 4, 3, 8, 1, False, True, False),
    (6, 5, 4, 9, 2, True, True, True),
    (5, 20, 6, 33, 1, False, False, True),   # rows split between threads (B >= 16)
    (4, 3, 70, 40, 3, True, False, False),
    (9, 2, 300, 260, 1, False, True, True),  # many unit blocks: the units split
    (3, 12, 8, 401, 1, True, True, True),    # a partial last unit block
]


def _params(rng, I, H, L, bias, bid, dtype, scale=0.5):
    shapes = F.param_shapes(I, H, L, bias, bid, cell="lnlstm")
    # the gains around 1 and the norm bias around 0, as after some training
    return {k: (rng.uniform(-scale, scale, s) + (1.0 if "weight_ln" in k else 0.0)).astype(dtype)
            for k, s in shapes.items()}


def _lengths(rng, T, B):
    lens = rng.integers(1, T + 1, B)
    lens[rng.integers(B)] = T
    return lens


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
    c0 = rng.standard_normal((D * L, B, H))
    lengths = _lengths(rng, T, B) if with_lengths else None
    kw = dict(num_layers=L, hidden_size=H, bidirectional=bid, bias=bias, h0=h0, c0=c0,
              lengths=lengths)
    y, hn, cn, ctx = F.layer_norm_lstm_forward(x, p, training=True, **kw)
    yr, hr, cr, cache = ref.lnlstm_forward(x, p, **kw)
    assert_rel_close(y, yr, 1e-10, "y")
    assert_rel_close(hn, hr, 1e-10, "h_n")
    assert_rel_close(cn, cr, 1e-10, "c_n")
    if lengths is not None:  # y past each row's length is zero
        for b, n in enumerate(lengths):
            assert not y[n:, b].any()
    dy, dhn, dcn = (rng.standard_normal(a.shape) for a in (y, hn, cn))
    dx, dh0, dc0, g = F.layer_norm_lstm_backward(ctx, dy, dhn, dcn)
    dxr, dh0r, dc0r, gr = ref.lnlstm_backward(cache, dy, dhn, dcn)
    assert_rel_close(dx, dxr, 1e-10, "dx")
    assert_rel_close(dh0, dh0r, 1e-10, "dh0")
    assert_rel_close(dc0, dc0r, 1e-10, "dc0")
    assert set(g) == set(gr)
    for k in gr:
        assert_rel_close(g[k], gr[k], 1e-10, k)
    # inference gives the training forward's results bit for bit
    yi, hni, cni, none = F.layer_norm_lstm_forward(x, p, **kw)
    assert none is None
    assert np.array_equal(yi, y) and np.array_equal(hni, hn) and np.array_equal(cni, cn)


@pytest.mark.parametrize("threads", [1, 2])
def test_float32_matches_the_reference(threads, isa, restore_threads):
    fastlstm.set_num_threads(threads)
    rng = np.random.default_rng(11)
    T, B, I, H = 10, 6, 24, 70
    p = _params(rng, I, H, 2, True, True, np.float64)
    x = rng.standard_normal((T, B, I))
    lengths = _lengths(rng, T, B)
    kw = dict(num_layers=2, hidden_size=H, bidirectional=True, lengths=lengths)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    y, hn, cn, ctx = F.layer_norm_lstm_forward(x.astype(np.float32), p32, training=True, **kw)
    # the reference on the float32-rounded inputs, in float64
    yr, hr, cr, cache = ref.lnlstm_forward(x.astype(np.float32), p32, **kw)
    for a, b, n in ((y, yr, "y"), (hn, hr, "h_n"), (cn, cr, "c_n")):
        assert a.dtype == np.float32
        assert_rel_close(a, b, 1e-5, n)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dh0, dc0, g = F.layer_norm_lstm_backward(ctx, dy)
    dxr, dh0r, dc0r, gr = ref.lnlstm_backward(cache, dy)
    assert_rel_close(dx, dxr, 1e-5, "dx")
    assert_rel_close(dh0, dh0r, 1e-5, "dh0")
    for k in gr:
        assert_rel_close(g[k], gr[k], 1e-5, k)


def test_results_do_not_depend_on_the_thread_count(restore_threads):
    rng = np.random.default_rng(5)
    T, B, I, H = 12, 6, 40, 300
    p = _params(rng, I, H, 2, True, True, np.float32)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = _lengths(rng, T, B)
    out = []
    for nt in (1, 2, 3):
        fastlstm.set_num_threads(nt)
        y, hn, cn, ctx = F.layer_norm_lstm_forward(x, p, num_layers=2, hidden_size=H,
                                                   bidirectional=True, lengths=lengths,
                                                   training=True)
        dx, dh0, dc0, g = F.layer_norm_lstm_backward(ctx, np.ones_like(y))
        out.append([y, hn, cn, dx, dh0, dc0] + [g[k] for k in sorted(g)])
    for o in out[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(o, out[0]))


def test_dropout_and_zoneout_masks_are_the_ones_applied():
    rng = np.random.default_rng(2)
    T, B, I, H, L = 6, 4, 5, 7, 3
    m = fastlstm.LayerNormLSTM(I, H, num_layers=L, dropout=0.4, bidirectional=True,
                               dtype=np.float64, seed=3, zoneout=0.3)
    for k, v in _params(rng, I, H, L, True, True, np.float64).items():
        setattr(m, k, v)
    x = rng.standard_normal((T, B, I))
    y, (hn, cn) = m(x)
    assert len(m.dropout_masks) == L - 1 and len(m.zoneout_masks) == L
    assert 0.1 < np.mean(m.zoneout_masks[0]) < 0.5
    yr, hr, cr, cache = ref.lnlstm_forward(x, m.state_dict(), num_layers=L, hidden_size=H,
                                           bidirectional=True, dropout_masks=m.dropout_masks,
                                           zoneout_masks=m.zoneout_masks, training=True)
    assert_rel_close(y, yr, 1e-10, "y")
    assert_rel_close(cn, cr, 1e-10, "c_n")
    dy = rng.standard_normal(y.shape)
    dx, (dh0, dc0) = m.backward(dy)
    dxr, dh0r, dc0r, gr = ref.lnlstm_backward(cache, dy)
    assert_rel_close(dx, dxr, 1e-10, "dx")
    assert_rel_close(dc0, dc0r, 1e-10, "dc0")
    for k in gr:
        assert_rel_close(m.grads[k], gr[k], 1e-10, k)
    # eval: h_t = p h_{t-1} + (1 - p) h~_t, with no masks
    m.eval()
    ye, _ = m(x)
    yre, _, _, _ = ref.lnlstm_forward(x, m.state_dict(), num_layers=L, hidden_size=H,
                                      bidirectional=True, zoneout=0.3)
    assert_rel_close(ye, yre, 1e-10, "y (eval)")


@pytest.mark.parametrize("with_lengths", [False, True])
def test_gradients_match_finite_differences(with_lengths):
    rng = np.random.default_rng(7)
    T, B, I, H, L = 5, 3, 4, 6, 2
    p = _params(rng, I, H, L, True, True, np.float64)
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((2, 2 * L, B, H))
    lengths = np.array([5, 2, 4]) if with_lengths else None
    wy = rng.standard_normal((T, B, 2 * H))
    wc = rng.standard_normal((2 * L, B, H))
    kw = dict(num_layers=L, hidden_size=H, bidirectional=True, lengths=lengths)

    def loss():
        y, hn, cn, _ = F.layer_norm_lstm_forward(x, p, h0=h0, c0=c0, **kw)
        return float(np.sum(y * wy) + np.sum(cn * wc))

    y, hn, cn, ctx = F.layer_norm_lstm_forward(x, p, h0=h0, c0=c0, training=True, **kw)
    dx, dh0, dc0, g = F.layer_norm_lstm_backward(ctx, wy, None, wc)
    sampled_fd_check(x, dx, loss, rng, "x")
    sampled_fd_check(h0, dh0, loss, rng, "h0")
    sampled_fd_check(c0, dc0, loss, rng, "c0")
    for k in p:
        sampled_fd_check(p[k], g[k], loss, rng, k)


def test_layer_api():
    m = fastlstm.LayerNormLSTM(5, 8, num_layers=2, bidirectional=True, seed=0)
    sd = m.state_dict()
    assert list(sd) == list(F.param_shapes(5, 8, 2, True, True, cell="lnlstm"))
    for k, v in sd.items():  # the layer norms start as torch.nn.LayerNorm does
        if k.startswith("weight_ln"):
            assert np.all(v == 1.0), k
        elif k.startswith("bias_ln"):
            assert np.all(v == 0.0), k
        else:
            assert 0 < np.max(np.abs(v)) <= 1 / np.sqrt(8), k
    x = np.random.default_rng(0).standard_normal((6, 3, 5)).astype(np.float32)
    y, (hn, cn) = m(x)
    assert y.shape == (6, 3, 16) and hn.shape == cn.shape == (4, 3, 8)
    # batch_first and unbatched input are the same rows
    mb = fastlstm.LayerNormLSTM(5, 8, num_layers=2, bidirectional=True, batch_first=True)
    mb.load_state_dict(sd)
    yb, (hb, cb) = mb(x.transpose(1, 0, 2))
    assert np.array_equal(yb.transpose(1, 0, 2), y) and np.array_equal(cb, cn)
    yu, (hu, cu) = m(x[:, 1])
    assert np.allclose(yu, y[:, 1], rtol=0, atol=1e-6) and hu.shape == (4, 8)
    assert "LayerNormLSTM(5, 8, num_layers=2" in repr(m)
    with pytest.raises(TypeError):
        fastlstm.LayerNormLSTM(5, 8, proj_size=2)
    with pytest.raises(ValueError, match="weight_ln_c_l0"):
        m.load_state_dict({**sd, "weight_ln_c_l0": np.ones(7, np.float32)})
    lstm_sd = fastlstm.LSTM(5, 8, num_layers=2, bidirectional=True).state_dict()
    with pytest.raises((KeyError, ValueError), match="weight_ln"):
        m.load_state_dict(lstm_sd)


def test_functional_refusals():
    rng = np.random.default_rng(0)
    p = _params(rng, 3, 4, 1, True, False, np.float64)
    x = rng.standard_normal((2, 2, 3))
    with pytest.raises(ValueError, match="cell_clip"):
        F._checked_forward("lnlstm", x, p, 1, 4, 0, False, True, False, None, None, None,
                           0.0, False, None, None, None, 0.0, None, 1.0)
    with pytest.raises(ValueError, match="proj_size"):
        F.pack(p, input_size=3, hidden_size=4, proj_size=2, cell="lnlstm")
    with pytest.raises(ValueError, match="bfloat16"):
        F.pack(p, input_size=3, hidden_size=4, cell="lnlstm", weights_dtype="bfloat16")
    packed = F.pack(p, input_size=3, hidden_size=4, cell="lnlstm")
    y, _, _, _ = F.layer_norm_lstm_forward(x, None, num_layers=1, hidden_size=4, packed=packed)
    yr, _, _, _ = ref.lnlstm_forward(x, p, num_layers=1, hidden_size=4)
    assert_rel_close(y, yr, 1e-10, "y (packed)")
    with pytest.raises(ValueError, match="packed: built for the lnlstm cell"):
        F.lstm_forward(x, None, num_layers=1, hidden_size=4, packed=packed)


def test_haste_weights_run_on_the_layer():
    """haste's LayerNormLSTM weights (its own layout: kernel [I,4H], gamma [2,4H],
    gates i, g, f, o) through convert.from_haste into the layer, and back."""
    from fastlstm import convert
    rng = np.random.default_rng(3)
    I, H = 5, 6
    haste = {"kernel": rng.uniform(-.5, .5, (I, 4 * H)),
             "recurrent_kernel": rng.uniform(-.5, .5, (H, 4 * H)),
             "bias": rng.uniform(-.5, .5, 4 * H), "gamma": rng.uniform(.5, 1.5, (2, 4 * H)),
             "gamma_h": rng.uniform(.5, 1.5, H), "beta_h": rng.uniform(-.5, .5, H)}
    sd = convert.from_haste(haste)
    m = fastlstm.LayerNormLSTM(I, H, dtype=np.float64)
    m.load_state_dict(sd)
    x = rng.standard_normal((7, 2, I))
    y, (hn, cn) = m(x)
    yr, _, cr, _ = ref.lnlstm_forward(x, sd, num_layers=1, hidden_size=H)
    assert_rel_close(y, yr, 1e-10, "y")
    back = convert.to_haste(m.state_dict())
    for k, v in haste.items():
        assert np.array_equal(np.asarray(back[k]), v), k


def test_onnx_export_is_refused():
    pytest.importorskip("onnx")
    from fastlstm import onnx as fl_onnx
    with pytest.raises(ValueError, match="no layer-norm LSTM op"):
        fl_onnx.export(fastlstm.LayerNormLSTM(3, 4), "unused.onnx")


# ---------------------------------------------------------------------------- torch

torch = pytest.importorskip("torch")
from _lnlstm_torch import oracle  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_a_torch_autograd_implementation(dtype, torch_one_thread):
    rng = np.random.default_rng(9)
    T, B, I, H, L = 6, 3, 5, 10, 2
    m = fastlstm.LayerNormLSTM(I, H, num_layers=L, bidirectional=True, dtype=dtype)
    for k, v in _params(rng, I, H, L, True, True, dtype).items():
        setattr(m, k, v)
    m.train()
    pt = {k: torch.tensor(v, requires_grad=True) for k, v in m.state_dict().items()}
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0, c0 = rng.standard_normal((2, 2 * L, B, H)).astype(dtype)
    xt, h0t, c0t = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    yt, hnt, cnt = oracle(xt, pt, H, L, True, True, h0t, c0t)
    y, (hn, cn) = m(x, (h0, c0))
    tol = 1e-5 if dtype == np.float32 else 1e-10
    assert_rel_close(y, yt, tol, "y")
    assert_rel_close(hn, hnt, tol, "h_n")
    assert_rel_close(cn, cnt, tol, "c_n")
    dy, dhn, dcn = (rng.standard_normal(a.shape).astype(dtype) for a in (y, hn, cn))
    torch.autograd.backward([yt, hnt, cnt], [torch.tensor(a) for a in (dy, dhn, dcn)])
    dx, (dh0, dc0) = m.backward(dy, dhn, dcn)
    assert_rel_close(dx, xt.grad, tol, "dx")
    assert_rel_close(dh0, h0t.grad, tol, "dh0")
    assert_rel_close(dc0, c0t.grad, tol, "dc0")
    for k, v in pt.items():
        assert_rel_close(m.grads[k], v.grad, tol, k)
