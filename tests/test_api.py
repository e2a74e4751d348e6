"""The module surface of fastlstm.LSTM: modes, parameters as owned writable
arrays, state_dict semantics and torch compatibility, dropout, lengths,
unbatched and batch_first input, truncated BPTT, lazy torch import."""
import subprocess
import sys

import numpy as np
from _expected import param_shapes
import pytest

fastlstm = pytest.importorskip("fastlstm")

T, B, I, H = 6, 4, 5, 7
TOL = {np.float32: 1e-5, np.float64: 1e-10}


def rand(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def assert_close(got, ref, dtype, what="", scale=None):
    ref = np.asarray(ref, np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    bound = TOL[dtype] * (scale if scale is not None else max(np.abs(ref).max(), 1e-30))
    err = np.abs(got.astype(np.float64) - ref).max() if ref.size else 0.0
    assert err <= bound, f"{what}: max abs err {err:.3e} > {bound:.3e}"


def run(lstm, x, hx=None, lengths=None, dy=None, dh_n=None, dc_n=None, seed=100):
    """forward + backward from a clean gradient state; returns a dict."""
    lstm.zero_grad()
    y, (h, c) = lstm(x, hx, lengths=lengths)
    if dy is None:
        dy = rand(y.shape, y.dtype, seed)
    dx, (dh0, dc0) = lstm.backward(dy, dh_n, dc_n)
    out = dict(y=y, h_n=h, c_n=c, dx=dx, dh0=dh0, dc0=dc0)
    out.update({"g_" + k: v.copy() for k, v in lstm.grads.items()})
    return out


# --------------------------------------------------------------------------
# modes


def test_train_is_default_and_mode_switches():
    lstm = fastlstm.LSTM(I, H, seed=0)
    assert lstm.training is True
    lstm.eval()
    assert lstm.training is False
    lstm.train()
    assert lstm.training is True


def test_eval_forward_saves_nothing():
    lstm = fastlstm.LSTM(I, H, seed=0)
    lstm.eval()
    y, _ = lstm(rand((T, B, I), np.float32))
    with pytest.raises(RuntimeError):
        lstm.backward(np.ones_like(y))


def test_eval_and_train_forward_agree_without_dropout():
    lstm = fastlstm.LSTM(I, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    x = rand((T, B, I))
    yt, (ht, ct) = lstm(x)
    lstm.eval()
    ye, (he, ce) = lstm(x)
    for a, b in ((ye, yt), (he, ht), (ce, ct)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)


# --------------------------------------------------------------------------
# parameters


def _expected_shapes(I_, H_, L, D, P, bias=True, peephole=False):
    return param_shapes(I_, H_, L, D, bias, P, peephole)


@pytest.mark.parametrize("L, bidir, P, bias", [
    (1, False, 0, True), (2, True, 0, True), (2, False, 3, True), (3, True, 3, False), (2, True, 0, False),
])
def test_parameter_names_and_shapes_match_torch(L, bidir, P, bias):
    torch = pytest.importorskip("torch")
    ref = torch.nn.LSTM(I, H, num_layers=L, bidirectional=bidir, proj_size=P, bias=bias)
    lstm = fastlstm.LSTM(I, H, num_layers=L, bidirectional=bidir, proj_size=P, bias=bias, seed=0)
    tsd = ref.state_dict()
    sd = lstm.state_dict()
    assert set(sd) == set(tsd)
    for k, v in tsd.items():
        assert sd[k].shape == tuple(v.shape), k
        assert getattr(lstm, k).shape == tuple(v.shape), k
    assert set(lstm.grads) == set(tsd)


@pytest.mark.parametrize("L, bidir, P, bias, peephole", [
    (2, True, 3, True, True), (1, False, 0, False, True), (2, False, 0, True, False),
])
def test_parameter_names_and_shapes_contract(L, bidir, P, bias, peephole):
    lstm = fastlstm.LSTM(I, H, num_layers=L, bidirectional=bidir, proj_size=P, bias=bias,
                         peephole=peephole, seed=0)
    exp = _expected_shapes(I, H, L, 2 if bidir else 1, P, bias, peephole)
    sd = lstm.state_dict()
    assert set(sd) == set(exp)
    for k, s in exp.items():
        a = getattr(lstm, k)
        assert isinstance(a, np.ndarray)
        assert a.shape == s and sd[k].shape == s, k
        assert a.dtype == np.float32 and a.flags.writeable, k
    assert set(lstm.grads) == set(exp)
    for k, s in exp.items():
        assert lstm.grads[k].shape == s


@pytest.mark.parametrize("edit", ["zero_hh", "double_ih", "bias", "proj", "peephole"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inplace_edit_is_seen_by_next_call(edit, dtype):
    kw = dict(num_layers=2, bidirectional=True, proj_size=3 if edit == "proj" else 0,
              peephole=edit == "peephole", dtype=dtype)
    lstm = fastlstm.LSTM(I, H, seed=0, **kw)
    x = rand((T, B, I), dtype, 1)
    y0, _ = lstm(x)  # packs / caches whatever it caches
    if edit == "zero_hh":
        lstm.weight_hh_l0[...] = 0
    elif edit == "double_ih":
        w = lstm.weight_ih_l1_reverse
        w *= 2
    elif edit == "bias":
        lstm.bias_hh_l1[:H] += 1.0
    elif edit == "proj":
        lstm.weight_hr_l0[...] *= -1
    else:
        lstm.weight_ph_l0_reverse[...] = 3.0
    sd = lstm.state_dict()
    y1, (h1, c1) = lstm(x)
    assert not np.array_equal(y0, y1), "the edit was not seen"
    fresh = fastlstm.LSTM(I, H, seed=123, **kw)
    fresh.load_state_dict(sd)
    y2, (h2, c2) = fresh(x)
    assert np.array_equal(y1, y2)
    assert np.array_equal(h1, h2) and np.array_equal(c1, c2)
    # the edit also reaches backward
    r1 = run(lstm, x)
    r2 = run(fresh, x)
    for k in r1:
        assert np.array_equal(r1[k], r2[k]), k


def test_attribute_is_the_layers_array():
    lstm = fastlstm.LSTM(I, H, seed=0)
    w = lstm.weight_hh_l0
    orig = w.copy()
    w *= 2
    np.testing.assert_array_equal(lstm.weight_hh_l0, orig * 2)
    np.testing.assert_array_equal(lstm.state_dict()["weight_hh_l0"], orig * 2)


def test_load_state_dict_updates_held_references():
    """As torch: load_state_dict copies into the existing parameter arrays,
    so references held elsewhere (an optimizer) stay valid."""
    a = fastlstm.LSTM(I, H, seed=0)
    b = fastlstm.LSTM(I, H, seed=1)
    w = a.weight_ih_l0
    a.load_state_dict(b.state_dict())
    np.testing.assert_array_equal(w, b.weight_ih_l0)
    w[...] = 0
    y, _ = a(rand((T, B, I), np.float32))
    a2 = fastlstm.LSTM(I, H, seed=2)
    sd = b.state_dict()
    sd["weight_ih_l0"][...] = 0
    a2.load_state_dict(sd)
    np.testing.assert_array_equal(y, a2(rand((T, B, I), np.float32))[0])


def test_state_dict_returns_copies():
    lstm = fastlstm.LSTM(I, H, num_layers=2, seed=0)
    x = rand((T, B, I), np.float32)
    y0, _ = lstm(x)
    sd = lstm.state_dict()
    for k, v in sd.items():
        assert not np.shares_memory(v, getattr(lstm, k)), k
        v[...] = 0
    y1, _ = lstm(x)
    assert np.array_equal(y0, y1)
    assert np.abs(lstm.weight_hh_l1).max() > 0


def test_loaded_arrays_are_copied():
    src = fastlstm.LSTM(I, H, seed=0)
    dst = fastlstm.LSTM(I, H, seed=1)
    sd = src.state_dict()
    dst.load_state_dict(sd)
    x = rand((T, B, I), np.float32)
    y0, _ = dst(x)
    for v in sd.values():
        v[...] = 0
    y1, _ = dst(x)
    assert np.array_equal(y0, y1)


def test_outputs_and_grads_do_not_alias_internal_buffers():
    lstm = fastlstm.LSTM(I, H, num_layers=2, bidirectional=True, seed=0)
    r1 = run(lstm, rand((T, B, I), np.float32, 1))
    saved = {k: v.copy() for k, v in r1.items()}
    run(lstm, rand((T, B, I), np.float32, 2), seed=200)
    for k in r1:
        if not k.startswith("g_"):
            assert np.array_equal(r1[k], saved[k]), f"{k} was overwritten by a later call"


def test_zero_grad_and_grads_dict():
    lstm = fastlstm.LSTM(I, H, num_layers=2, seed=0)
    assert set(lstm.grads) == set(lstm.state_dict())
    for v in lstm.grads.values():
        assert not v.any()
    run(lstm, rand((T, B, I), np.float32))
    assert all(np.abs(v).max() > 0 for v in lstm.grads.values())
    lstm.zero_grad()
    for v in lstm.grads.values():
        assert not v.any()


def test_none_defaults_equal_explicit_zeros():
    dtype = np.float64
    kw = dict(num_layers=2, bidirectional=True, proj_size=3, dtype=dtype)
    a = fastlstm.LSTM(I, H, seed=0, **kw)
    b = fastlstm.LSTM(I, H, seed=0, **kw)
    x = rand((T, B, I))
    dy = rand((T, B, 6), dtype, 5)
    ra = run(a, x, dy=dy)
    rb = run(b, x, (np.zeros((4, B, 3)), np.zeros((4, B, H))), dy=dy,
             dh_n=np.zeros((4, B, 3)), dc_n=np.zeros((4, B, H)))
    for k in ra:
        assert np.array_equal(ra[k], rb[k]), k


# --------------------------------------------------------------------------
# torch parity through load_state_dict


def _torch_run(torch, ref, x, hx, lengths, dy, dhn, dcn, batch_first):
    tx = torch.tensor(x, requires_grad=True)
    th0 = torch.tensor(hx[0], requires_grad=True)
    tc0 = torch.tensor(hx[1], requires_grad=True)
    if lengths is None:
        ty, (th, tc) = ref(tx, (th0, tc0))
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            tx, torch.from_numpy(lengths), batch_first=batch_first, enforce_sorted=False)
        py, (th, tc) = ref(packed, (th0, tc0))
        ty, _ = torch.nn.utils.rnn.pad_packed_sequence(
            py, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0])
    loss = (ty * torch.from_numpy(dy)).sum() + (th * torch.from_numpy(dhn)).sum() + (tc * torch.from_numpy(dcn)).sum()
    loss.backward()
    out = dict(y=ty, h_n=th, c_n=tc, dx=tx.grad, dh0=th0.grad, dc0=tc0.grad)
    out = {k: v.detach().numpy() for k, v in out.items()}
    out.update({"g_" + k: p.grad.numpy() for k, p in ref.named_parameters()})
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("L, bidir, P, batch_first, use_lengths", [
    (1, False, 0, False, False),
    (2, True, 0, False, False),
    (2, False, 3, True, False),
    (2, True, 3, False, True),
    (1, True, 0, True, True),
])
def test_torch_state_dict_loads_and_matches(dtype, L, bidir, P, batch_first, use_lengths):
    torch = pytest.importorskip("torch")
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    torch.manual_seed(L * 10 + P)
    ref = torch.nn.LSTM(I, H, num_layers=L, bidirectional=bidir, proj_size=P,
                        batch_first=batch_first, dtype=tdt)
    lstm = fastlstm.LSTM(I, H, num_layers=L, bidirectional=bidir, proj_size=P,
                         batch_first=batch_first, dtype=dtype, seed=0)
    lstm.load_state_dict(ref.state_dict())  # tensors, as is
    for k, v in ref.state_dict().items():
        assert np.array_equal(getattr(lstm, k), v.numpy()), k
    D = 2 if bidir else 1
    hout = P or H
    x = rand((B, T, I) if batch_first else (T, B, I), dtype, 1)
    hx = (rand((D * L, B, hout), dtype, 2), rand((D * L, B, H), dtype, 3))
    lengths = np.array([T, 2, 5, 1], np.int64) if use_lengths else None
    y_shape = (B, T, D * hout) if batch_first else (T, B, D * hout)
    dy = rand(y_shape, dtype, 4)
    if use_lengths:  # torch's padded outputs have no gradient: keep dy honest
        tmask = np.arange(T)[:, None] < lengths[None, :]
        dy *= (tmask.T[:, :, None] if batch_first else tmask[:, :, None])
    dhn, dcn = rand(hx[0].shape, dtype, 5), rand(hx[1].shape, dtype, 6)
    exp = _torch_run(torch, ref, x, hx, lengths, dy, dhn, dcn, batch_first)
    got = run(lstm, x, hx, lengths, dy, dhn, dcn)
    assert set(got) == set(exp)
    for k in exp:
        assert_close(got[k], exp[k], dtype, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("P, threads", [(0, 2), (50, 2), (0, 1)])
def test_torch_parity_at_a_size_that_splits_work(dtype, P, threads):
    """Sizes that are not multiples of any SIMD width and big enough for the
    threads to split the hidden units."""
    torch = pytest.importorskip("torch")
    n_before = fastlstm.get_num_threads()
    fastlstm.set_num_threads(threads)
    try:
        Tn, Bn, In, Hn, L = 16, 9, 70, 130, 2
        tdt = torch.float32 if dtype == np.float32 else torch.float64
        torch.manual_seed(5)
        ref = torch.nn.LSTM(In, Hn, num_layers=L, bidirectional=True, proj_size=P, dtype=tdt)
        lstm = fastlstm.LSTM(In, Hn, num_layers=L, bidirectional=True, proj_size=P, dtype=dtype, seed=0)
        lstm.load_state_dict(ref.state_dict())
        hout = P or Hn
        x = rand((Tn, Bn, In), dtype, 1)
        hx = (rand((2 * L, Bn, hout), dtype, 2), rand((2 * L, Bn, Hn), dtype, 3))
        lengths = np.array([16, 1, 9, 16, 3, 12, 7, 15, 2], np.int64)
        tmask = (np.arange(Tn)[:, None] < lengths[None, :])[:, :, None]
        dy = rand((Tn, Bn, 2 * hout), dtype, 4) * tmask
        dhn, dcn = rand(hx[0].shape, dtype, 5), rand(hx[1].shape, dtype, 6)
        exp = _torch_run(torch, ref, x, hx, lengths, dy, dhn, dcn, False)
        got = run(lstm, x, hx, lengths, dy, dhn, dcn)
        for k in exp:
            assert_close(got[k], exp[k], dtype, k)
    finally:
        fastlstm.set_num_threads(n_before)


def test_torch_state_dict_of_numpy_arrays_loads():
    torch = pytest.importorskip("torch")
    ref = torch.nn.LSTM(I, H, num_layers=2)
    lstm = fastlstm.LSTM(I, H, num_layers=2, seed=0)
    lstm.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    x = rand((T, B, I), np.float32)
    with torch.no_grad():
        ty, _ = ref(torch.from_numpy(x))
    assert_close(lstm(x)[0], ty.numpy(), np.float32, "y")


# --------------------------------------------------------------------------
# dropout


def test_dropout_train_vs_eval():
    kw = dict(num_layers=3, bidirectional=True, dtype=np.float64)
    lstm = fastlstm.LSTM(I, H, dropout=0.5, seed=0, **kw)
    plain = fastlstm.LSTM(I, H, dropout=0.0, seed=1, **kw)
    plain.load_state_dict(lstm.state_dict())
    x = rand((T, B, I))
    y1, (h1, _) = lstm(x)
    y2, (h2, _) = lstm(x)
    assert not np.array_equal(y1, y2), "two training forwards used the same dropout masks"
    # dropout never applies to the first layer's state
    assert np.array_equal(h1[:2], h2[:2])
    lstm.eval()
    ye1, _ = lstm(x)
    ye2, _ = lstm(x)
    assert np.array_equal(ye1, ye2)
    plain.eval()
    yp, _ = plain(x)
    np.testing.assert_allclose(ye1, yp, rtol=0, atol=1e-14)
    plain.train()
    ypt, _ = plain(x)
    np.testing.assert_allclose(ypt, yp, rtol=0, atol=1e-13)


@pytest.mark.parametrize("p", [0.3, 0.5])
@pytest.mark.parametrize("batch_first", [False, True])
def test_dropout_masks_exposed(p, batch_first):
    L, D, P = 3, 2, 3
    lstm = fastlstm.LSTM(I, H, num_layers=L, bidirectional=True, proj_size=P, dropout=p,
                         batch_first=batch_first, seed=0)
    Tb, Bb = 20, 16
    x = rand((Bb, Tb, I) if batch_first else (Tb, Bb, I), np.float32)
    lstm(x)
    masks = lstm.dropout_masks
    assert len(masks) == L - 1
    scale = 1.0 / (1.0 - p)
    for m in masks:
        assert m.shape == (Tb, Bb, D * P)  # time-major even with batch_first
        vals = np.unique(m)
        assert np.all(np.isclose(vals, 0) | np.isclose(vals, scale, rtol=1e-6)), vals
        frac = np.mean(m == 0)
        assert abs(frac - p) < 0.08, frac  # n = 1920 per mask
    assert not np.array_equal(masks[0], masks[1])
    first = [m.copy() for m in masks]
    lstm(x)
    assert not np.array_equal(first[0], lstm.dropout_masks[0])


def test_dropout_mask_is_what_is_applied_forward_and_backward():
    dtype = np.float64
    lstm = fastlstm.LSTM(I, H, num_layers=2, bidirectional=True, dropout=0.4, dtype=dtype, seed=3)
    sd = lstm.state_dict()
    l0 = fastlstm.LSTM(I, H, bidirectional=True, dtype=dtype, seed=0)
    l1 = fastlstm.LSTM(2 * H, H, bidirectional=True, dtype=dtype, seed=0)
    l0.load_state_dict({k.replace("_l0", "_l0"): v for k, v in sd.items() if "_l0" in k})
    l1.load_state_dict({k.replace("_l1", "_l0"): v for k, v in sd.items() if "_l1" in k})
    x = rand((T, B, I))
    h0 = rand((4, B, H), dtype, 1)
    c0 = rand((4, B, H), dtype, 2)
    y, (h, c) = lstm(x, (h0, c0))
    (mask,) = lstm.dropout_masks
    assert mask.shape == (T, B, 2 * H)
    assert (mask == 0).any()
    y0, (h_a, c_a) = l0(x, (h0[:2], c0[:2]))
    y1, (h_b, c_b) = l1(y0 * mask, (h0[2:], c0[2:]))
    np.testing.assert_allclose(y, y1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(h, np.concatenate([h_a, h_b]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(c, np.concatenate([c_a, c_b]), rtol=0, atol=1e-12)

    dy = rand(y.shape, dtype, 3)
    dhn, dcn = rand(h.shape, dtype, 4), rand(c.shape, dtype, 5)
    dx, (dh0, dc0) = lstm.backward(dy, dhn, dcn)
    dy0, (dh0_b, dc0_b) = l1.backward(dy, dhn[2:], dcn[2:])
    dx_ref, (dh0_a, dc0_a) = l0.backward(dy0 * mask, dhn[:2], dcn[:2])
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dh0, np.concatenate([dh0_a, dh0_b]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(dc0, np.concatenate([dc0_a, dc0_b]), rtol=0, atol=1e-12)
    for k, g in lstm.grads.items():
        src = l0.grads[k] if "_l0" in k else l1.grads[k.replace("_l1", "_l0")]
        np.testing.assert_allclose(g, src, rtol=0, atol=1e-12 * max(1, np.abs(src).max()), err_msg=k)


# --------------------------------------------------------------------------
# lengths


@pytest.mark.parametrize("bidir", [False, True])
@pytest.mark.parametrize("P", [0, 3])
def test_lengths_match_per_row_runs(bidir, P):
    dtype = np.float64
    L = 2
    D = 2 if bidir else 1
    hout = P or H
    kw = dict(num_layers=L, bidirectional=bidir, proj_size=P, dtype=dtype)
    lstm = fastlstm.LSTM(I, H, seed=0, **kw)
    single = fastlstm.LSTM(I, H, seed=1, **kw)
    single.load_state_dict(lstm.state_dict())
    lengths = np.array([T, 1, 4, 2], np.int64)
    x = rand((T, B, I))
    x_garbage = x.copy()
    for b in range(B):  # values past the length must not matter
        x_garbage[lengths[b]:, b] = 1e3
    h0 = rand((D * L, B, hout), dtype, 1)
    c0 = rand((D * L, B, H), dtype, 2)
    dy = rand((T, B, D * hout), dtype, 3)
    dhn, dcn = rand(h0.shape, dtype, 4), rand(c0.shape, dtype, 5)

    got = run(lstm, x_garbage, (h0, c0), lengths, dy, dhn, dcn)
    for b in range(B):
        n = lengths[b]
        assert not got["y"][n:, b].any(), "outputs past the row's length must be exactly zero"
        assert not got["dx"][n:, b].any(), "dx past the row's length must be exactly zero"

    gsum = {k: 0.0 for k in got if k.startswith("g_")}
    for b in range(B):
        n = lengths[b]
        r = run(single, x[:n, b:b + 1], (h0[:, b:b + 1], c0[:, b:b + 1]), None,
                dy[:n, b:b + 1], dhn[:, b:b + 1], dcn[:, b:b + 1])
        for k in ("y", "dx"):
            np.testing.assert_allclose(got[k][:n, b], r[k][:, 0], rtol=0, atol=1e-12, err_msg=k)
        for k in ("h_n", "c_n", "dh0", "dc0"):
            np.testing.assert_allclose(got[k][:, b], r[k][:, 0], rtol=0, atol=1e-12, err_msg=k)
        for k in gsum:
            gsum[k] = gsum[k] + r[k]
    for k in gsum:
        np.testing.assert_allclose(got[k], gsum[k], rtol=0, atol=1e-11 * max(1, np.abs(gsum[k]).max()), err_msg=k)


def test_full_lengths_equal_no_lengths():
    lstm = fastlstm.LSTM(I, H, num_layers=2, bidirectional=True, seed=0, dtype=np.float64)
    x = rand((T, B, I))
    a = run(lstm, x, dy=rand((T, B, 2 * H), np.float64, 1))
    b = run(lstm, x, lengths=np.full(B, T, np.int64), dy=rand((T, B, 2 * H), np.float64, 1))
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-12 * max(1, np.abs(a[k]).max()), err_msg=k)


# --------------------------------------------------------------------------
# unbatched and batch_first


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unbatched_equals_b1_squeezed(dtype):
    kw = dict(num_layers=2, bidirectional=True, proj_size=3, peephole=True, dtype=dtype)
    a = fastlstm.LSTM(I, H, seed=0, **kw)
    b = fastlstm.LSTM(I, H, seed=0, **kw)
    x = rand((T, I), dtype, 1)
    h0, c0 = rand((4, 3), dtype, 2), rand((4, H), dtype, 3)
    dy = rand((T, 6), dtype, 4)
    dhn, dcn = rand((4, 3), dtype, 5), rand((4, H), dtype, 6)
    ru = run(a, x, (h0, c0), None, dy, dhn, dcn)
    rb = run(b, x[:, None], (h0[:, None], c0[:, None]), None, dy[:, None], dhn[:, None], dcn[:, None])
    assert ru["y"].shape == (T, 6) and ru["h_n"].shape == (4, 3) and ru["c_n"].shape == (4, H)
    assert ru["dx"].shape == (T, I) and ru["dh0"].shape == (4, 3) and ru["dc0"].shape == (4, H)
    for k in ("y", "dx"):
        assert np.array_equal(ru[k], rb[k][:, 0]), k
    for k in ("h_n", "c_n", "dh0", "dc0"):
        assert np.array_equal(ru[k], rb[k][:, 0]), k
    for k in ru:
        if k.startswith("g_"):
            assert np.array_equal(ru[k], rb[k]), k


def test_unbatched_with_batch_first_is_still_time_major():
    a = fastlstm.LSTM(I, H, batch_first=True, seed=0)
    b = fastlstm.LSTM(I, H, batch_first=False, seed=0)
    x = rand((T, I), np.float32)
    ya, _ = a(x)
    yb, _ = b(x)
    assert ya.shape == (T, H)
    assert np.array_equal(ya, yb)


@pytest.mark.parametrize("use_lengths", [False, True])
def test_batch_first_is_transposed_time_major(use_lengths):
    kw = dict(num_layers=2, bidirectional=True, dtype=np.float64)
    tm = fastlstm.LSTM(I, H, seed=0, **kw)
    bf = fastlstm.LSTM(I, H, batch_first=True, seed=0, **kw)
    x = rand((T, B, I))
    hx = (rand((4, B, H), np.float64, 1), rand((4, B, H), np.float64, 2))
    dy = rand((T, B, 2 * H), np.float64, 3)
    lengths = np.array([T, 3, 1, 5]) if use_lengths else None
    rt = run(tm, x, hx, lengths, dy)
    rb = run(bf, np.ascontiguousarray(x.transpose(1, 0, 2)), hx, lengths,
             np.ascontiguousarray(dy.transpose(1, 0, 2)))
    assert rb["y"].shape == (B, T, 2 * H)
    assert rb["h_n"].shape == (4, B, H)  # states are never batch-first
    for k in rt:
        ref = rt[k].transpose(1, 0, 2) if k in ("y", "dx") else rt[k]
        np.testing.assert_allclose(rb[k], ref, rtol=0, atol=1e-12 * max(1, np.abs(ref).max()), err_msg=k)


# --------------------------------------------------------------------------
# truncated BPTT


def test_grads_accumulate_across_chunks():
    dtype = np.float64
    kw = dict(num_layers=2, bidirectional=False, dtype=dtype)
    lstm = fastlstm.LSTM(I, H, seed=0, **kw)
    x = rand((2 * T, B, I))
    dy = rand((2 * T, B, H), dtype, 1)

    def chunks(zero_between):
        lstm.zero_grad()
        y1, (h1, c1) = lstm(x[:T])
        lstm.backward(dy[:T])
        g1 = {k: v.copy() for k, v in lstm.grads.items()}
        if zero_between:
            lstm.zero_grad()
        y2, (h2, c2) = lstm(x[T:], (h1, c1))  # carried state, detached
        lstm.backward(dy[T:])
        return g1, {k: v.copy() for k, v in lstm.grads.items()}

    g1, g2 = chunks(True)
    _, acc = chunks(False)
    for k in g1:
        assert np.abs(g2[k]).max() > 0
        np.testing.assert_allclose(acc[k], g1[k] + g2[k], rtol=1e-13, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("P", [0, 3])
def test_chunked_bptt_with_state_gradients_equals_full_sequence(P):
    """Two layers run the two halves; passing the second half's dh0/dc0 as the
    first half's dh_n/dc_n reproduces full-sequence BPTT exactly."""
    dtype = np.float64
    kw = dict(num_layers=2, proj_size=P, dtype=dtype)
    full = fastlstm.LSTM(I, H, seed=0, **kw)
    a = fastlstm.LSTM(I, H, seed=1, **kw)
    b = fastlstm.LSTM(I, H, seed=2, **kw)
    a.load_state_dict(full.state_dict())
    b.load_state_dict(full.state_dict())
    hout = P or H
    x = rand((2 * T, B, I))
    dy = rand((2 * T, B, hout), dtype, 1)
    dhn, dcn = rand((2, B, hout), dtype, 2), rand((2, B, H), dtype, 3)

    rf = run(full, x, None, None, dy, dhn, dcn)
    ya, (ha, ca) = a(x[:T])
    yb, (hb, cb) = b(x[T:], (ha, ca))
    np.testing.assert_allclose(np.concatenate([ya, yb]), rf["y"], rtol=0, atol=1e-13)
    np.testing.assert_allclose(hb, rf["h_n"], rtol=0, atol=1e-13)
    dxb, (dhb, dcb) = b.backward(dy[T:], dhn, dcn)
    dxa, (dha, dca) = a.backward(dy[:T], dhb, dcb)
    np.testing.assert_allclose(np.concatenate([dxa, dxb]), rf["dx"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(dha, rf["dh0"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(dca, rf["dc0"], rtol=0, atol=1e-12)
    for k in a.grads:
        ref = rf["g_" + k]
        np.testing.assert_allclose(a.grads[k] + b.grads[k], ref, rtol=0,
                                   atol=1e-12 * max(1, np.abs(ref).max()), err_msg=k)


# --------------------------------------------------------------------------
# import


def test_import_does_not_import_torch():
    code = "import sys, fastlstm; fastlstm.LSTM(2, 3)(__import__('numpy').ones((2, 1, 2), 'float32')); " \
           "print('torch' in sys.modules, 'jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
