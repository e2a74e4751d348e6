"""fastlstm.LSTMCell: parity with torch.nn.LSTMCell, peephole gradients against
finite differences of a NumPy reference written here, BPTT through a stack of
saved steps, and the train/eval contract."""
import numpy as np
from _fd import central_diff
import pytest

fastlstm = pytest.importorskip("fastlstm")

I, H, B = 5, 7, 3
PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
TOL = {np.float32: 1e-5, np.float64: 1e-10}


def rand(shape, dtype=np.float64, seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def assert_close(got, ref, dtype, what=""):
    ref = np.asarray(ref)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}"
    bound = TOL[dtype] * max(np.abs(ref).max(), 1e-30)
    err = np.abs(got.astype(np.float64) - ref).max()
    assert err <= bound, f"{what}: max abs err {err:.3e} > {bound:.3e}"


def torch_dtype(torch, dtype):
    return torch.float32 if dtype == np.float32 else torch.float64


def copy_from_torch(cell, tcell):
    for k, p in tcell.named_parameters():
        getattr(cell, k)[...] = p.detach().numpy()


# --------------------------------------------------------------------------
# torch parity


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_hx", [True, False])
def test_torch_parity_one_step(dtype, bias, with_hx):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tcell = torch.nn.LSTMCell(I, H, bias=bias, dtype=torch_dtype(torch, dtype))
    cell = fastlstm.LSTMCell(I, H, bias=bias, dtype=dtype, seed=1)
    copy_from_torch(cell, tcell)

    x = rand((B, I), dtype, 1)
    h0 = rand((B, H), dtype, 2) if with_hx else np.zeros((B, H), dtype)
    c0 = rand((B, H), dtype, 3) if with_hx else np.zeros((B, H), dtype)
    dh = rand((B, H), dtype, 4)
    dc = rand((B, H), dtype, 5)

    tx, th0, tc0 = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    th, tc = tcell(tx, (th0, tc0))
    (th * torch.from_numpy(dh)).sum().add((tc * torch.from_numpy(dc)).sum()).backward()

    h, c = cell(x, (h0, c0) if with_hx else None)
    assert_close(h, th.detach().numpy(), dtype, "h")
    assert_close(c, tc.detach().numpy(), dtype, "c")
    dx, (dh0, dc0) = cell.backward(dh, dc)
    assert_close(dx, tx.grad.numpy(), dtype, "dx")
    assert_close(dh0, th0.grad.numpy(), dtype, "dh0")
    assert_close(dc0, tc0.grad.numpy(), dtype, "dc0")
    assert set(cell.grads) == {k for k, _ in tcell.named_parameters()}
    for k, p in tcell.named_parameters():
        assert_close(cell.grads[k], p.grad.numpy(), dtype, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_parity_dc_none_means_zero(dtype):
    cell_a = fastlstm.LSTMCell(I, H, dtype=dtype, seed=3)
    cell_b = fastlstm.LSTMCell(I, H, dtype=dtype, seed=3)
    x, h0, c0 = rand((B, I), dtype, 1), rand((B, H), dtype, 2), rand((B, H), dtype, 3)
    dh = rand((B, H), dtype, 4)
    cell_a(x, (h0, c0))
    cell_b(x, (h0, c0))
    ra = cell_a.backward(dh)
    rb = cell_b.backward(dh, np.zeros((B, H), dtype))
    assert np.array_equal(ra[0], rb[0])
    assert np.array_equal(ra[1][0], rb[1][0]) and np.array_equal(ra[1][1], rb[1][1])
    for k in cell_a.grads:
        assert np.array_equal(cell_a.grads[k], cell_b.grads[k]), k


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unbatched_matches_torch_and_batched(dtype):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    tcell = torch.nn.LSTMCell(I, H, dtype=torch_dtype(torch, dtype))
    cell = fastlstm.LSTMCell(I, H, dtype=dtype, seed=1)
    copy_from_torch(cell, tcell)
    x, h0, c0 = rand(I, dtype, 1), rand(H, dtype, 2), rand(H, dtype, 3)
    dh, dc = rand(H, dtype, 4), rand(H, dtype, 5)

    tx, th0, tc0 = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    th, tc = tcell(tx, (th0, tc0))
    ((th * torch.from_numpy(dh)).sum() + (tc * torch.from_numpy(dc)).sum()).backward()

    h, c = cell(x, (h0, c0))
    assert h.shape == (H,) and c.shape == (H,)
    assert_close(h, th.detach().numpy(), dtype, "h")
    assert_close(c, tc.detach().numpy(), dtype, "c")
    dx, (dh0, dc0) = cell.backward(dh, dc)
    assert dx.shape == (I,) and dh0.shape == (H,) and dc0.shape == (H,)
    assert_close(dx, tx.grad.numpy(), dtype, "dx")
    assert_close(dh0, th0.grad.numpy(), dtype, "dh0")
    assert_close(dc0, tc0.grad.numpy(), dtype, "dc0")
    for k, p in tcell.named_parameters():
        assert_close(cell.grads[k], p.grad.numpy(), dtype, k)

    # unbatched == B=1 batched, squeezed
    cell1 = fastlstm.LSTMCell(I, H, dtype=dtype, seed=1)
    copy_from_torch(cell1, tcell)
    h1, c1 = cell1(x[None], (h0[None], c0[None]))
    np.testing.assert_array_equal(h1[0], h)
    np.testing.assert_array_equal(c1[0], c)
    dx1, (dh01, dc01) = cell1.backward(dh[None], dc[None])
    np.testing.assert_array_equal(dx1[0], dx)
    np.testing.assert_array_equal(dh01[0], dh0)
    np.testing.assert_array_equal(dc01[0], dc0)


# --------------------------------------------------------------------------
# BPTT through the stack


def _cell_bptt(cell, xs, h0, c0, dys, dh_n, dc_n):
    """Run len(xs) steps forward, then backward in reverse order."""
    hx = (h0, c0)
    hs, cs = [], []
    for x in xs:
        hx = cell(x, hx)
        hs.append(hx[0])
        cs.append(hx[1])
    dh, dc = dh_n, dc_n
    dxs = [None] * len(xs)
    for t in reversed(range(len(xs))):
        dxs[t], (dh, dc) = cell.backward(dys[t] + dh, dc)
    return np.stack(hs), hx, np.stack(dxs), (dh, dc)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_multi_step_bptt_matches_torch_unrolled(dtype):
    torch = pytest.importorskip("torch")
    T = 6
    torch.manual_seed(2)
    tcell = torch.nn.LSTMCell(I, H, dtype=torch_dtype(torch, dtype))
    cell = fastlstm.LSTMCell(I, H, dtype=dtype, seed=0)
    copy_from_torch(cell, tcell)
    xs = rand((T, B, I), dtype, 10)
    h0, c0 = rand((B, H), dtype, 11), rand((B, H), dtype, 12)
    dys = rand((T, B, H), dtype, 13)
    dhn, dcn = rand((B, H), dtype, 14), rand((B, H), dtype, 15)

    tx, th0, tc0 = (torch.tensor(a, requires_grad=True) for a in (xs, h0, c0))
    hx = (th0, tc0)
    outs = []
    for t in range(T):
        hx = tcell(tx[t], hx)
        outs.append(hx[0])
    loss = (torch.stack(outs) * torch.from_numpy(dys)).sum()
    loss = loss + (hx[0] * torch.from_numpy(dhn)).sum() + (hx[1] * torch.from_numpy(dcn)).sum()
    loss.backward()

    hs, (hT, cT), dx, (dh0, dc0) = _cell_bptt(cell, xs, h0, c0, dys, dhn, dcn)
    assert_close(hs, torch.stack(outs).detach().numpy(), dtype, "hs")
    assert_close(cT, hx[1].detach().numpy(), dtype, "c_T")
    assert_close(dx, tx.grad.numpy(), dtype, "dx")
    assert_close(dh0, th0.grad.numpy(), dtype, "dh0")
    assert_close(dc0, tc0.grad.numpy(), dtype, "dc0")
    for k, p in tcell.named_parameters():
        assert_close(cell.grads[k], p.grad.numpy(), dtype, k)


@pytest.mark.parametrize("peephole", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_multi_step_bptt_matches_lstm_layer(peephole, bias):
    dtype = np.float64
    T = 7
    cell = fastlstm.LSTMCell(I, H, bias=bias, peephole=peephole, dtype=dtype, seed=4)
    lstm = fastlstm.LSTM(I, H, bias=bias, peephole=peephole, dtype=dtype, seed=99)
    names = list(PARAMS if bias else PARAMS[:2]) + (["weight_ph"] if peephole else [])
    lstm.load_state_dict({k + "_l0": getattr(cell, k).copy() for k in names})
    xs = rand((T, B, I), dtype, 20)
    h0, c0 = rand((B, H), dtype, 21), rand((B, H), dtype, 22)
    dys = rand((T, B, H), dtype, 23)
    dhn, dcn = rand((B, H), dtype, 24), rand((B, H), dtype, 25)

    y, (h_n, c_n) = lstm(xs, (h0[None], c0[None]))
    dx_l, (dh0_l, dc0_l) = lstm.backward(dys, dhn[None], dcn[None])
    hs, (hT, cT), dx, (dh0, dc0) = _cell_bptt(cell, xs, h0, c0, dys, dhn, dcn)

    assert_close(hs, y, dtype, "y")
    assert_close(hT, h_n[0], dtype, "h_n")
    assert_close(cT, c_n[0], dtype, "c_n")
    assert_close(dx, dx_l, dtype, "dx")
    assert_close(dh0, dh0_l[0], dtype, "dh0")
    assert_close(dc0, dc0_l[0], dtype, "dc0")
    for k in names:
        assert_close(cell.grads[k], lstm.grads[k + "_l0"], dtype, k)


# --------------------------------------------------------------------------
# peephole: against a NumPy reference of DESIGN.md's equations


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def ref_peephole_step(x, h, c, p):
    gates = x @ p["weight_ih"].T + h @ p["weight_hh"].T
    if "bias_ih" in p:
        gates = gates + p["bias_ih"] + p["bias_hh"]
    gi, gf, gg, go = np.split(gates, 4, axis=-1)
    ph = p["weight_ph"]
    i = _sig(gi + ph[0] * c)
    f = _sig(gf + ph[1] * c)
    g = np.tanh(gg)
    c2 = f * c + i * g
    o = _sig(go + ph[2] * c2)
    return o * np.tanh(c2), c2


def test_peephole_forward_and_grads_vs_finite_differences():
    dtype = np.float64
    cell = fastlstm.LSTMCell(I, H, peephole=True, dtype=dtype, seed=5)
    assert cell.weight_ph.shape == (3, H)
    # make peepholes matter
    cell.weight_ph[...] = rand((3, H), dtype, 30)
    p = {k: getattr(cell, k).copy() for k in PARAMS + ("weight_ph",)}
    x, h0, c0 = rand((B, I), dtype, 31), rand((B, H), dtype, 32), rand((B, H), dtype, 33, 2.0)
    dh, dc = rand((B, H), dtype, 34), rand((B, H), dtype, 35)

    h, c = cell(x, (h0, c0))
    rh, rc = ref_peephole_step(x, h0, c0, p)
    assert_close(h, rh, dtype, "h")
    assert_close(c, rc, dtype, "c")
    dx, (dh0, dc0) = cell.backward(dh, dc)

    def loss(x_, h_, c_, p_):
        hh, cc = ref_peephole_step(x_, h_, c_, p_)
        return float((hh * dh).sum() + (cc * dc).sum())

    numgrad = central_diff

    def check(got, ref, what):
        err = np.abs(got - ref).max()
        assert err <= 1e-6 * max(1.0, np.abs(ref).max()), f"{what}: err {err:.3e}"

    check(dx, numgrad(x, lambda: loss(x, h0, c0, p)), "dx")
    check(dh0, numgrad(h0, lambda: loss(x, h0, c0, p)), "dh0")
    check(dc0, numgrad(c0, lambda: loss(x, h0, c0, p)), "dc0")
    for k in p:
        check(cell.grads[k], numgrad(p[k], lambda: loss(x, h0, c0, p)), k)


def test_peephole_zero_equals_plain_cell():
    dtype = np.float64
    plain = fastlstm.LSTMCell(I, H, dtype=dtype, seed=6)
    peep = fastlstm.LSTMCell(I, H, peephole=True, dtype=dtype, seed=7)
    for k in PARAMS:
        getattr(peep, k)[...] = getattr(plain, k)
    peep.weight_ph[...] = 0
    x, h0, c0 = rand((B, I), dtype, 1), rand((B, H), dtype, 2), rand((B, H), dtype, 3)
    a = plain(x, (h0, c0))
    b = peep(x, (h0, c0))
    assert_close(b[0], a[0], dtype, "h")
    assert_close(b[1], a[1], dtype, "c")
    peep.weight_ph[...] = 0.5
    b2 = peep(x, (h0, c0))
    assert not np.allclose(b2[0], a[0]), "peephole weights are ignored"


# --------------------------------------------------------------------------
# state_dict, modes, stack


@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_keys_match_torch(bias):
    torch = pytest.importorskip("torch")
    tcell = torch.nn.LSTMCell(I, H, bias=bias)
    cell = fastlstm.LSTMCell(I, H, bias=bias, seed=0)
    tsd = tcell.state_dict()
    sd = cell.state_dict()
    assert set(sd) == set(tsd)
    for k in tsd:
        assert sd[k].shape == tuple(tsd[k].shape), k
        assert getattr(cell, k).shape == tuple(tsd[k].shape), k
    assert set(cell.grads) == set(tsd)


def test_state_dict_keys_expected_names():
    cell = fastlstm.LSTMCell(I, H, seed=0)
    assert set(cell.state_dict()) == set(PARAMS)
    shapes = {"weight_ih": (4 * H, I), "weight_hh": (4 * H, H), "bias_ih": (4 * H,), "bias_hh": (4 * H,)}
    for k, s in shapes.items():
        assert getattr(cell, k).shape == s
    pcell = fastlstm.LSTMCell(I, H, peephole=True, seed=0)
    assert set(pcell.state_dict()) == set(PARAMS) | {"weight_ph"}
    assert pcell.weight_ph.shape == (3, H)


def test_load_state_dict_from_torch_cell():
    torch = pytest.importorskip("torch")
    tcell = torch.nn.LSTMCell(I, H)
    cell = fastlstm.LSTMCell(I, H, seed=0)
    cell.load_state_dict(tcell.state_dict())
    for k, v in tcell.state_dict().items():
        np.testing.assert_array_equal(getattr(cell, k), v.numpy())


def test_backward_with_empty_stack_raises():
    cell = fastlstm.LSTMCell(I, H, seed=0)
    with pytest.raises(RuntimeError):
        cell.backward(np.ones((B, H), np.float32))
    x = rand((B, I), np.float32, 1)
    cell(x)
    cell(x)
    cell.backward(np.ones((B, H), np.float32))
    cell.backward(np.ones((B, H), np.float32))
    with pytest.raises(RuntimeError):
        cell.backward(np.ones((B, H), np.float32))


def test_training_is_default_and_eval_saves_nothing():
    cell = fastlstm.LSTMCell(I, H, seed=0)
    assert cell.training is True
    cell.eval()
    assert cell.training is False
    x = rand((B, I), np.float32, 1)
    for _ in range(3):
        cell(x)
    with pytest.raises(RuntimeError):
        cell.backward(np.ones((B, H), np.float32))
    cell.train()
    assert cell.training is True


def test_eval_steps_are_not_pushed_between_training_steps():
    dtype = np.float64
    a = fastlstm.LSTMCell(I, H, dtype=dtype, seed=8)
    b = fastlstm.LSTMCell(I, H, dtype=dtype, seed=8)
    x1, x2 = rand((B, I), dtype, 1), rand((B, I), dtype, 2)
    dh = rand((B, H), dtype, 3)
    a(x1)
    a.eval()
    a(x2)
    a.train()
    b(x1)
    ra = a.backward(dh)
    rb = b.backward(dh)
    np.testing.assert_array_equal(ra[0], rb[0])
    for k in a.grads:
        np.testing.assert_array_equal(a.grads[k], b.grads[k])
    with pytest.raises(RuntimeError):
        a.backward(dh)


def test_eval_output_equals_train_output():
    dtype = np.float64
    cell = fastlstm.LSTMCell(I, H, dtype=dtype, seed=9)
    x, h0, c0 = rand((B, I), dtype, 1), rand((B, H), dtype, 2), rand((B, H), dtype, 3)
    ht, ct = cell(x, (h0, c0))
    cell.eval()
    he, ce = cell(x, (h0, c0))
    np.testing.assert_allclose(he, ht, rtol=0, atol=1e-14)
    np.testing.assert_allclose(ce, ct, rtol=0, atol=1e-14)


def test_grads_accumulate_and_zero_grad():
    dtype = np.float64
    cell = fastlstm.LSTMCell(I, H, dtype=dtype, seed=10)
    x1, x2 = rand((B, I), dtype, 1), rand((B, I), dtype, 2)
    dh1, dh2 = rand((B, H), dtype, 3), rand((B, H), dtype, 4)
    hx = (rand((B, H), dtype, 5), rand((B, H), dtype, 6))
    cell(x1, hx)
    cell.backward(dh1)
    g1 = {k: v.copy() for k, v in cell.grads.items()}
    cell.zero_grad()
    for v in cell.grads.values():
        assert not v.any()
    cell(x2, hx)
    cell.backward(dh2)
    g2 = {k: v.copy() for k, v in cell.grads.items()}
    cell.zero_grad()
    cell(x1, hx)
    cell.backward(dh1)
    cell(x2, hx)
    cell.backward(dh2)
    for k in g1:
        assert np.abs(g1[k]).max() > 0, k
        np.testing.assert_allclose(cell.grads[k], g1[k] + g2[k], rtol=1e-13, atol=1e-14)


def test_outputs_are_not_overwritten_by_later_calls():
    cell = fastlstm.LSTMCell(I, H, seed=11)
    x = rand((B, I), np.float32, 1)
    h, c = cell(x)
    h_copy, c_copy = h.copy(), c.copy()
    cell(rand((B, I), np.float32, 2), (h, c))
    cell(rand((B, I), np.float32, 3))
    np.testing.assert_array_equal(h, h_copy)
    np.testing.assert_array_equal(c, c_copy)


def test_inplace_param_edit_is_seen():
    cell = fastlstm.LSTMCell(I, H, dtype=np.float64, seed=12)
    x = rand((B, I), np.float64, 1)
    h_before, _ = cell(x)
    cell.weight_ih[...] = 0
    cell.bias_ih[...] = 0
    cell.bias_hh[...] = 0
    h_after, c_after = cell(x)
    # with no input weights, no bias and a zero state every gate is 0:
    # c = 0.5 * tanh(0) = 0 and h = 0
    assert not np.array_equal(h_before, h_after)
    np.testing.assert_array_equal(h_after, 0)
    np.testing.assert_array_equal(c_after, 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cell_input_validation(dtype):
    cell = fastlstm.LSTMCell(I, H, dtype=dtype, seed=0)
    other = np.float64 if dtype == np.float32 else np.float32
    with pytest.raises(TypeError, match=np.dtype(dtype).name):
        cell(np.ones((B, I), other))
    with pytest.raises(ValueError, match=r"\bx\b"):
        cell(np.ones((B, I + 1), dtype))
    with pytest.raises(ValueError, match=r"\bx\b"):
        cell(np.ones((1, B, I), dtype))
    with pytest.raises(ValueError, match=r"\bhx\b|\bh0\b|\bh\b"):
        cell(np.ones((B, I), dtype), (np.ones((B + 1, H), dtype), np.ones((B, H), dtype)))
    with pytest.raises(ValueError, match=r"\bhx\b|\bc0\b|\bc\b"):
        cell(np.ones((B, I), dtype), (np.ones((B, H), dtype), np.ones((B, H + 1), dtype)))
    cell(np.ones((B, I), dtype))
    with pytest.raises(ValueError, match=r"\bdh\b"):
        cell.backward(np.ones((B, H + 1), dtype))
    cell(np.ones((B, I), dtype))
    with pytest.raises(TypeError, match=r"\bdh\b"):
        cell.backward(np.ones((B, H), other))


@pytest.mark.parametrize("kw, name", [
    (dict(input_size=0, hidden_size=H), "input_size"),
    (dict(input_size=I, hidden_size=-1), "hidden_size"),
])
def test_cell_ctor_validation(kw, name):
    with pytest.raises(ValueError, match=name):
        fastlstm.LSTMCell(**kw)
    with pytest.raises((TypeError, ValueError), match="dtype"):
        fastlstm.LSTMCell(I, H, dtype=np.float16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streaming_step_matches_the_general_path(dtype):
    """eval() calls with a tuple of C-contiguous [B,H] arrays take the lean path;
    any other spelling of the same call takes the general one: same bits."""
    cell = fastlstm.LSTMCell(7, 11, seed=3, dtype=dtype).eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 7)).astype(dtype)
    h0 = rng.standard_normal((4, 11)).astype(dtype)
    c0 = rng.standard_normal((4, 11)).astype(dtype)
    h_fast, c_fast = cell(x, (h0, c0))
    h_gen, c_gen = cell(x, [h0, c0])                        # a list: general path
    h_nc, c_nc = cell(np.asfortranarray(x), (h0, c0))       # not C-contiguous: general path
    for h, c in ((h_gen, c_gen), (h_nc, c_nc)):
        np.testing.assert_array_equal(h_fast, h)
        np.testing.assert_array_equal(c_fast, c)
    with pytest.raises(ValueError, match="hx"):
        cell(x, (h0.T.copy(), c0))                           # wrong shape: general path's check
    with pytest.raises(TypeError, match="dtype"):
        cell(x.astype(np.float16), (h0, c0))
