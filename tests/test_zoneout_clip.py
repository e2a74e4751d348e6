"""Zoneout (LSTM, GRU) and the LSTM's cell clip in the compiled layers, against
the float64 references (themselves checked against torch autograd
implementations, onnxruntime's LSTM clip and finite differences in
tests/test_reference*.py), finite differences of the layer itself, and
onnxruntime running the exported clip. Tolerance: 1e-10 relative to
max|oracle| in float64, as test_lstm_oracles.py."""
import numpy as np
import pytest
from _fd import sampled_fd_check
from _tolerance import assert_rel_close

import fastlstm
from fastlstm import functional as F
from fastlstm import reference as ref
from fastlstm import reference_gru as ref_gru

CASES = [  # T, B, I, H, layers, bidirectional, proj, peephole, clip, lengths
    (6, 4, 5, 7, 2, True, 0, False, None, True),
    (5, 3, 4, 9, 1, False, 3, True, 0.8, False),
    (7, 20, 6, 33, 2, True, 0, True, 1.2, True),    # rows split between threads
    (4, 3, 70, 40, 1, False, 0, False, 0.5, False),  # most gates clipped
    (5, 5, 8, 40, 2, True, 16, False, None, True),   # projection: zoneout after it
]


def _ids(c):
    return "T{}B{}I{}H{}-L{}-{}-P{}-{}-clip{}-{}".format(
        *c[:5], "bi" if c[5] else "uni", c[6], "peep" if c[7] else "nopeep", c[8],
        "len" if c[9] else "full")


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("threads", [1, 2])
def test_lstm_zoneout_and_clip_match_the_reference(case, threads, isa, restore_threads):
    T, B, I, H, L, bid, P, peep, clip, with_lengths = case
    fastlstm.set_num_threads(threads)
    lstm = fastlstm.LSTM(I, H, num_layers=L, bidirectional=bid, proj_size=P, peephole=peep,
                         dtype=np.float64, seed=T + H, zoneout=0.3, cell_clip=clip)
    rng = np.random.default_rng(H)
    for k, v in lstm.named_parameters():  # weights large enough for the clip to bite
        v[...] = rng.uniform(-0.9, 0.9, v.shape)
    x = 2 * rng.standard_normal((T, B, I))
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    kw = dict(num_layers=L, hidden_size=H, proj_size=P, bidirectional=bid, peephole=peep,
              lengths=lengths, zoneout=0.3, cell_clip=clip)
    y, (hn, cn) = lstm(x, lengths=lengths)
    masks = lstm.zoneout_masks
    assert len(masks) == L and all(m.shape == (T, B, (2 if bid else 1) * (P or H))
                                   for m in masks)
    yr, hr, cr, cache = ref.lstm_forward(x, lstm.state_dict(), training=True,
                                         zoneout_masks=masks, **kw)
    for name, a, b in (("y", y, yr), ("h_n", hn, hr), ("c_n", cn, cr)):
        assert_rel_close(a, b, 1e-10, name)
    dy = rng.standard_normal(y.shape)
    dx, (dh0, dc0) = lstm.backward(dy)
    dxr, dh0r, dc0r, gr = ref.lstm_backward(cache, dy)
    for name, a, b in (("dx", dx, dxr), ("dh0", dh0, dh0r), ("dc0", dc0, dc0r)):
        assert_rel_close(a, b, 1e-10, name)
    for k in gr:
        assert_rel_close(lstm.grads[k], gr[k], 1e-10, k)
    lstm.eval()  # inference mixes p·h_{t-1} + (1-p)·h̃_t
    ye, (he, ce) = lstm(x, lengths=lengths)
    yre, hre, cre, _ = ref.lstm_forward(x, lstm.state_dict(), **kw)
    for name, a, b in (("y eval", ye, yre), ("h_n eval", he, hre), ("c_n eval", ce, cre)):
        assert_rel_close(a, b, 1e-10, name)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_gru_zoneout_matches_the_reference(case, isa):
    T, B, I, H, L, bid, _, _, _, with_lengths = case
    gru = fastlstm.GRU(I, H, num_layers=L, bidirectional=bid, dtype=np.float64, seed=H,
                       zoneout=0.4)
    rng = np.random.default_rng(T)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal(((2 if bid else 1) * L, B, H))
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    kw = dict(num_layers=L, hidden_size=H, bidirectional=bid, h0=h0, lengths=lengths,
              zoneout=0.4)
    y, hn = gru(x, h0, lengths=lengths)
    yr, hr, cache = ref_gru.gru_forward(x, gru.state_dict(), training=True,
                                        zoneout_masks=gru.zoneout_masks, **kw)
    assert_rel_close(y, yr, 1e-10, "y")
    assert_rel_close(hn, hr, 1e-10, "h_n")
    dy, dhn = rng.standard_normal(y.shape), rng.standard_normal(hn.shape)
    dx, dh0 = gru.backward(dy, dhn)
    dxr, dh0r, gr = ref_gru.gru_backward(cache, dy, dhn)
    assert_rel_close(dx, dxr, 1e-10, "dx")
    assert_rel_close(dh0, dh0r, 1e-10, "dh0")
    for k in gr:
        assert_rel_close(gru.grads[k], gr[k], 1e-10, k)
    gru.eval()
    ye, he = gru(x, h0, lengths=lengths)
    yre, hre, _ = ref_gru.gru_forward(x, gru.state_dict(), **kw)
    assert_rel_close(ye, yre, 1e-10, "y eval")
    assert_rel_close(he, hre, 1e-10, "h_n eval")


def test_masks_are_bernoulli_and_seeded():
    a = fastlstm.GRU(8, 50, num_layers=2, zoneout=0.25, seed=1)
    b = fastlstm.GRU(8, 50, num_layers=2, zoneout=0.25, seed=1)
    x = np.ones((40, 8, 8), np.float32)
    a(x)
    b(x)
    for ma, mb in zip(a.zoneout_masks, b.zoneout_masks):
        assert np.array_equal(ma, mb) and set(np.unique(ma)) <= {0.0, 1.0}
    frac = float(np.mean(a.zoneout_masks))
    n = a.zoneout_masks[0].size * 2
    assert abs(frac - 0.25) < 5 * np.sqrt(0.25 * 0.75 / n), frac  # 5 sigma
    a.eval()
    a(x)
    assert len(a.zoneout_masks) == 2  # eval draws nothing (the last training masks stay)


def test_finite_differences_through_zoneout_and_clip():
    rng = np.random.default_rng(3)
    T, B, I, H = 5, 3, 4, 6
    p = {k: rng.uniform(-0.8, 0.8, s)
         for k, s in F.param_shapes(I, H, 1, True, True, 0, True).items()}
    x = 2 * rng.standard_normal((T, B, I))
    masks = [(rng.random((T, B, 2 * H)) < 0.3).astype(np.float64)]
    lengths = np.array([5, 2, 4])
    w = rng.standard_normal((T, B, 2 * H))
    kw = dict(num_layers=1, hidden_size=H, bidirectional=True, peephole=True, lengths=lengths,
              cell_clip=0.7)

    def loss():
        y, *_ = F.lstm_forward(x, p, training=True, zoneout=0.3, zoneout_masks=masks, **kw)
        return float((y * w).sum())

    *_, ctx = F.lstm_forward(x, p, training=True, zoneout=0.3, zoneout_masks=masks, **kw)
    dx, _, _, g = F.lstm_backward(ctx, w)
    sampled_fd_check(x, dx, loss, rng, "x", n=6)
    for k in p:
        sampled_fd_check(p[k], g[k], loss, rng, k, n=3)


def test_exported_clip_runs_in_onnxruntime(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import fastlstm.onnx

    lstm = fastlstm.LSTM(5, 8, num_layers=2, bidirectional=True, peephole=True, seed=2,
                         cell_clip=0.6)
    lstm.eval()
    x = (3 * np.random.default_rng(4).standard_normal((6, 3, 5))).astype(np.float32)
    y, (hn, cn) = lstm(x)
    path = tmp_path / "clip.onnx"
    model = fastlstm.onnx.export(lstm, str(path))
    assert all(any(a.name == "clip" and abs(a.f - 0.6) < 1e-7 for a in n.attribute)
               for n in model.graph.node if n.op_type == "LSTM")
    yo, hno, cno = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        ["Y", "Y_h", "Y_c"], {"X": x})
    unclipped = fastlstm.LSTM(5, 8, num_layers=2, bidirectional=True, peephole=True)
    unclipped.load_state_dict(lstm.state_dict())
    unclipped.eval()
    assert np.abs(unclipped(x)[0] - y).max() > 1e-3  # the clip changes the result here
    for a, b in ((yo, y), (hno, hn), (cno, cn)):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-6)


def test_errors():
    with pytest.raises(ValueError, match="zoneout"):
        fastlstm.LSTM(3, 4, zoneout=1.5)
    with pytest.raises(TypeError, match="zoneout"):
        fastlstm.GRU(3, 4, zoneout="0.1")
    with pytest.raises(ValueError, match="cell_clip"):
        fastlstm.LSTM(3, 4, cell_clip=0.0)
    with pytest.raises(TypeError):
        fastlstm.GRU(3, 4, cell_clip=1.0)
    pytest.importorskip("onnx")
    from fastlstm import onnx as fl_onnx
    with pytest.raises(ValueError, match="zoneout"):
        fl_onnx.export(fastlstm.GRU(3, 4, zoneout=0.1), "unused.onnx")
    x = np.zeros((4, 2, 3))
    p = F.init_params(F.param_shapes(3, 4), 4, np.float64, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"zoneout_masks\[0\]"):
        F.lstm_forward(x, p, num_layers=1, hidden_size=4, training=True, zoneout=0.2,
                       zoneout_masks=[np.zeros((4, 2, 5))])
    with pytest.raises(ValueError, match="rng"):
        F.lstm_forward(x, p, num_layers=1, hidden_size=4, training=True, zoneout=0.2)
    with pytest.raises(ValueError, match="zoneout_masks"):
        F.lstm_forward(x, p, num_layers=1, hidden_size=4, zoneout=0.2,
                       zoneout_masks=[np.zeros((4, 2, 4))])
    pg = F.init_params(F.param_shapes(3, 4, cell="gru"), 4, np.float64,
                       np.random.default_rng(0))
    with pytest.raises(ValueError, match="no cell clip"):
        F._checked_forward("gru", x, pg, 1, 4, 0, False, True, False, None, None, None, 0.0,
                           False, None, None, None, 0.0, None, 0.5)
