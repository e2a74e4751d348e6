"""Bitwise determinism across runs and thread counts; seeded init and dropout;
torch's default init U(-1/sqrt(H), 1/sqrt(H)); set/get_num_threads."""
import numpy as np
import pytest

fastlstm = pytest.importorskip("fastlstm")

T, B, I, H, L = 16, 9, 70, 130, 2


pytestmark = pytest.mark.usefixtures("restore_threads")


def rand(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


CONFIGS = {
    "bidir_lengths_dropout": dict(num_layers=L, bidirectional=True, dropout=0.3),
    "proj_peephole_batch_first": dict(num_layers=L, bidirectional=True, proj_size=50,
                                       peephole=True, batch_first=True, dropout=0.2),
}


def full_run(dtype, cfg, threads):
    fastlstm.set_num_threads(threads)
    kw = CONFIGS[cfg]
    lstm = fastlstm.LSTM(I, H, dtype=dtype, seed=1234, **kw)
    D = 2 if kw.get("bidirectional") else 1
    hout = kw.get("proj_size") or H
    xs = (B, T, I) if kw.get("batch_first") else (T, B, I)
    x = rand(xs, dtype, 1)
    h0 = rand((D * L, B, hout), dtype, 2)
    c0 = rand((D * L, B, H), dtype, 3)
    lengths = np.array([16, 1, 9, 16, 3, 12, 7, 15, 2], np.int64)
    out = {}
    y, (h, c) = lstm(x, (h0, c0), lengths=lengths)
    out.update(y=y, h_n=h, c_n=c)
    out["masks"] = [m.copy() for m in lstm.dropout_masks]
    dy = rand(y.shape, dtype, 4)
    dx, (dh0, dc0) = lstm.backward(dy, rand(h.shape, dtype, 5), rand(c.shape, dtype, 6))
    out.update(dx=dx, dh0=dh0, dc0=dc0)
    for k, v in lstm.grads.items():
        out["grad_" + k] = v.copy()
    # a second training forward (fresh masks) and an eval forward
    y2, _ = lstm(x, lengths=lengths)
    out["y_second"] = y2
    lstm.eval()
    y3, (h3, c3) = lstm(x, (h0, c0), lengths=lengths)
    out.update(y_eval=y3, h_eval=h3, c_eval=c3)
    return out


def assert_bitwise(a, b, where):
    assert a.keys() == b.keys()
    for k in a:
        if k == "masks":
            assert len(a[k]) == len(b[k])
            for i, (ma, mb) in enumerate(zip(a[k], b[k])):
                assert np.array_equal(ma, mb), f"{where}: dropout mask {i} differs"
            continue
        assert a[k].shape == b[k].shape, f"{where}: {k} shape"
        assert np.array_equal(a[k], b[k]), (
            f"{where}: {k} differs (max abs diff {np.abs(a[k].astype(np.float64) - b[k]).max():.3e})"
        )


@pytest.mark.parametrize("cfg", list(CONFIGS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_identical_across_runs_and_threads(dtype, cfg):
    ref = full_run(dtype, cfg, 1)
    assert np.isfinite(ref["dx"]).all()
    assert_bitwise(ref, full_run(dtype, cfg, 1), "repeat, 1 thread")
    r2 = full_run(dtype, cfg, 2)
    assert_bitwise(r2, full_run(dtype, cfg, 2), "repeat, 2 threads")
    assert_bitwise(ref, r2, "1 vs 2 threads")
    assert_bitwise(ref, full_run(dtype, cfg, 3), "1 vs 3 threads")
    assert_bitwise(ref, full_run(dtype, cfg, 4), "1 vs 4 threads")


CELLS = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "lnlstm": fastlstm.LayerNormLSTM}


def cell_run(cell, dims, threads):
    """Training forward + backward and an eval forward of a bidirectional
    layer with lengths and zoneout; every output and gradient."""
    fastlstm.set_num_threads(threads)
    t, b, i, h = dims
    layer = CELLS[cell](i, h, bidirectional=True, zoneout=0.2, seed=5)
    x = rand((t, b, i), np.float32, 1)
    lengths = np.maximum(1, t - np.arange(b) % t).astype(np.int64)
    y, state = layer(x, lengths=lengths)
    out = dict(y=y, dx=layer.backward(rand(y.shape, np.float32, 2))[0])
    states = state if isinstance(state, tuple) else (state,)
    out.update(("state%d" % k, v) for k, v in enumerate(states))
    out.update(("grad_" + k, v.copy()) for k, v in layer.grads.items())
    layer.eval()
    out["y_eval"] = layer(x, lengths=lengths)[0]
    return out


# B = 1, H = 256 splits the forward's units between two threads; B = 9,
# H = 130 splits the backward's too.
@pytest.mark.parametrize("dims", [(12, 1, 40, 256), (10, 9, 30, 130)], ids=["b1", "b9"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_every_cell_bitwise_identical_across_threads(cell, dims):
    ref = cell_run(cell, dims, 1)
    assert_bitwise(ref, cell_run(cell, dims, 2), "1 vs 2 threads")
    assert_bitwise(ref, cell_run(cell, dims, 3), "1 vs 3 threads")
    assert_bitwise(ref, cell_run(cell, dims, 4), "1 vs 4 threads")


def test_repeated_calls_on_one_layer_are_bitwise_identical():
    lstm = fastlstm.LSTM(I, H, num_layers=L, bidirectional=True, seed=7)
    x = rand((T, B, I), np.float32, 1)
    dy = rand((T, B, 2 * H), np.float32, 2)
    runs = []
    for _ in range(3):
        lstm.zero_grad()
        y, (h, c) = lstm(x)
        dx, (dh0, dc0) = lstm.backward(dy)
        runs.append([y, h, c, dx, dh0, dc0] + [v.copy() for v in lstm.grads.values()])
    for r in runs[1:]:
        for a, b in zip(runs[0], r):
            assert np.array_equal(a, b)


# --------------------------------------------------------------------------
# seeds


def test_same_seed_same_init_and_masks():
    kw = dict(num_layers=3, bidirectional=True, dropout=0.5, proj_size=20, peephole=True)
    a = fastlstm.LSTM(I, H, seed=42, **kw)
    b = fastlstm.LSTM(I, H, seed=42, **kw)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert np.array_equal(sa[k], sb[k]), k
    x = rand((T, B, I), np.float32, 0)
    for _ in range(3):  # each forward draws fresh masks: the sequences must match
        ya, _ = a(x)
        yb, _ = b(x)
        assert len(a.dropout_masks) == len(b.dropout_masks) == 2
        for ma, mb in zip(a.dropout_masks, b.dropout_masks):
            assert np.array_equal(ma, mb)
        assert np.array_equal(ya, yb)


def test_different_seeds_differ():
    a = fastlstm.LSTM(I, H, num_layers=2, dropout=0.5, seed=1)
    b = fastlstm.LSTM(I, H, num_layers=2, dropout=0.5, seed=2)
    sa, sb = a.state_dict(), b.state_dict()
    for k in sa:
        assert not np.array_equal(sa[k], sb[k]), k
    # same weights, different seeds: masks still differ
    b.load_state_dict(sa)
    x = rand((T, B, I), np.float32, 0)
    a(x)
    b(x)
    assert not np.array_equal(a.dropout_masks[0], b.dropout_masks[0])


def test_parameters_within_layer_differ():
    lstm = fastlstm.LSTM(I, H, num_layers=2, bidirectional=True, seed=3)
    sd = lstm.state_dict()
    flat = {k: v.ravel() for k, v in sd.items()}
    assert not np.array_equal(flat["bias_ih_l0"], flat["bias_hh_l0"])
    assert not np.array_equal(flat["weight_hh_l0"], flat["weight_hh_l0_reverse"])
    assert not np.array_equal(flat["weight_hh_l0"], flat["weight_hh_l1"])


def test_cell_seed():
    a = fastlstm.LSTMCell(I, H, seed=5, peephole=True)
    b = fastlstm.LSTMCell(I, H, seed=5, peephole=True)
    c = fastlstm.LSTMCell(I, H, seed=6, peephole=True)
    for k, v in a.state_dict().items():
        assert np.array_equal(v, b.state_dict()[k]), k
        assert not np.array_equal(v, c.state_dict()[k]), k


# --------------------------------------------------------------------------
# default init


def _check_uniform(name, v, hidden):
    k = 1.0 / np.sqrt(hidden)
    v = np.asarray(v, np.float64).ravel()
    assert np.all(v >= -k) and np.all(v <= k), f"{name}: outside [-{k:.4g}, {k:.4g}]"
    n = v.size
    # the extremes of n uniform samples approach the bounds
    gap = k * 20.0 / n  # P(max < k - gap) = (1 - 10/n)^n ~ e^-10
    assert v.max() > k - gap and v.min() < -k + gap, f"{name}: range too narrow"
    sd = k / np.sqrt(3.0)
    assert abs(v.mean()) < 6 * sd / np.sqrt(n), f"{name}: mean {v.mean():.4g}"
    # std of the sample std of U is ~ 0.45*sd/sqrt(n)
    assert abs(v.std() - sd) < 6 * 0.45 * sd / np.sqrt(n) + 1e-12, f"{name}: std {v.std():.4g} vs {sd:.4g}"
    assert len(np.unique(v)) > 0.9 * n, f"{name}: repeated values"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_default_init_lstm(dtype):
    lstm = fastlstm.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=40,
                         peephole=True, dtype=dtype, seed=11)
    sd = lstm.state_dict()
    assert any(k.startswith("weight_ph") for k in sd)
    assert any(k.startswith("weight_hr") for k in sd)
    for name, v in sd.items():
        assert v.dtype == np.dtype(dtype)
        _check_uniform(name, v, H)


def test_default_init_small_hidden_and_cell():
    lstm = fastlstm.LSTM(3, 17, peephole=True, seed=0)
    for name, v in lstm.state_dict().items():
        _check_uniform(name, v, 17)
    cell = fastlstm.LSTMCell(3, 33, peephole=True, seed=0)
    for name, v in cell.state_dict().items():
        _check_uniform(name, v, 33)


# --------------------------------------------------------------------------
# threads


def test_get_returns_what_was_set():
    for n in (1, 2, 3, 1):
        fastlstm.set_num_threads(n)
        assert fastlstm.get_num_threads() == n


@pytest.mark.parametrize("n", [0, -1, -100])
def test_set_num_threads_nonpositive(n):
    before = fastlstm.get_num_threads()
    with pytest.raises(ValueError):
        fastlstm.set_num_threads(n)
    assert fastlstm.get_num_threads() == before


def test_get_num_threads_default_positive():
    assert isinstance(fastlstm.get_num_threads(), int)
    assert fastlstm.get_num_threads() >= 1
