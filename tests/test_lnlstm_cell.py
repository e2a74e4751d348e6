"""fastlstm.LayerNormLSTMCell against fastlstm.reference_lnlstm (plain NumPy
float64): one step in every mode (streaming, checked, train, unbatched), BPTT
over a series of steps, central finite differences, and the API.

Tolerances as in test_lnlstm.py: float64 1e-10 relative to max|oracle|, float32
1e-5 (the layer-norm LSTM is the most rounding-sensitive cell)."""
import numpy as np
import pytest
from _fd import sampled_fd_check
from _tolerance import assert_rel_close

import fastlstm
from fastlstm import reference_lnlstm as ref

TOL = {np.float32: 1e-5, np.float64: 1e-10}


def _cell(I, H, bias, dtype, seed=3):
    """A cell with gains around 1 and norm bias around 0, as after training."""
    c = fastlstm.LayerNormLSTMCell(I, H, bias=bias, dtype=dtype)
    rng = np.random.default_rng(seed)
    c.load_state_dict({k: (rng.uniform(-0.5, 0.5, v.shape) + ("weight_ln" in k)).astype(dtype)
                       for k, v in c.state_dict().items()})
    return c


def _layer_params(cell):
    """The cell's weights under a one-layer LayerNormLSTM's names (float64)."""
    return {f"{k}_l0": np.asarray(v, np.float64) for k, v in cell.state_dict().items()}


def _ref_step(cell, x, h, c):
    p = {k: np.asarray(v, np.float64) for k, v in cell.state_dict().items()}
    return ref.lnlstm_cell_forward(x, h, c, p["weight_ih"], p["weight_hh"], p.get("bias_ih"),
                                   p.get("bias_hh"), p["weight_ln_ih"], p["weight_ln_hh"],
                                   p["weight_ln_c"], p["bias_ln_c"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("B, I, H", [(3, 5, 7), (20, 40, 300)])  # one block; rows and units split
@pytest.mark.parametrize("threads", [1, 2])
def test_one_step_matches_the_reference(dtype, bias, B, I, H, threads, isa, restore_threads):
    fastlstm.set_num_threads(threads)
    c = _cell(I, H, bias, dtype)
    rng = np.random.default_rng(B + H)
    x = rng.standard_normal((B, I)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    c0 = rng.standard_normal((B, H)).astype(dtype)
    h_ref, c_ref = _ref_step(c, x, h0, c0)
    hz_ref, cz_ref = _ref_step(c, x, np.zeros((B, H)), np.zeros((B, H)))
    for mode in ("eval", "train"):
        getattr(c, mode)()
        h, cc = c(x, (h0, c0))  # eval: the streaming step
        assert_rel_close(h, h_ref, TOL[dtype], f"{mode} h")
        assert_rel_close(cc, c_ref, TOL[dtype], f"{mode} c")
        h, cc = c(np.asfortranarray(x), [h0, c0])  # the checked path (a list of states)
        assert_rel_close(h, h_ref, TOL[dtype], f"{mode} checked h")
        h, cc = c(x[1], (h0[1], c0[1]))  # unbatched
        assert h.shape == cc.shape == (H,)
        assert_rel_close(h, h_ref[1], TOL[dtype], f"{mode} unbatched h")
        h, cc = c(x)  # zero state
        assert_rel_close(h, hz_ref, TOL[dtype], f"{mode} zero-state h")
        assert_rel_close(cc, cz_ref, TOL[dtype], f"{mode} zero-state c")
    c.clear_saved()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_steps_backpropagate_as_the_reference_layer(dtype, bias, isa):
    T, B, I, H = 5, 4, 6, 9
    c = _cell(I, H, bias, dtype)
    rng = np.random.default_rng(11)
    xs = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((2, B, H))
    dys = rng.standard_normal((T, B, H))
    dh_n, dc_n = rng.standard_normal((2, B, H))
    y, hn, cn, cache = ref.lnlstm_forward(xs, _layer_params(c), num_layers=1, hidden_size=H,
                                          bias=bias, h0=h0[None], c0=c0[None], training=True)
    dx_ref, dh0_ref, dc0_ref, g_ref = ref.lnlstm_backward(cache, dys, dh_n[None], dc_n[None])
    h, cc = h0.astype(dtype), c0.astype(dtype)
    for t in range(T):
        h, cc = c(xs[t].astype(dtype), (h, cc))
        assert_rel_close(h, y[t], TOL[dtype], f"h{t}")
    assert_rel_close(cc, cn[0], TOL[dtype], "c_n")
    dh, dc = dh_n.astype(dtype), dc_n.astype(dtype)
    for t in reversed(range(T)):
        dx, (dh, dc) = c.backward(dh + dys[t].astype(dtype), dc)
        assert_rel_close(dx, dx_ref[t], TOL[dtype], f"dx{t}")
    assert_rel_close(dh, dh0_ref[0], TOL[dtype], "dh0")
    assert_rel_close(dc, dc0_ref[0], TOL[dtype], "dc0")
    assert set(c.grads) == set(c.state_dict())
    for k, g in c.grads.items():
        assert_rel_close(g, g_ref[f"{k}_l0"], TOL[dtype], k)


def test_finite_differences():
    B, I, H = 3, 4, 6
    c = _cell(I, H, True, np.float64)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((B, I))
    h0, c0, wh, wc = rng.standard_normal((4, B, H))

    def loss():
        c.eval()
        h, cc = c(x, (h0, c0))
        return float((h * wh).sum() + (cc * wc).sum())

    c.train()
    c(x, (h0, c0))
    dx, (dh0, dc0) = c.backward(wh, wc)
    sampled_fd_check(x, dx, loss, rng, "x", n=6)
    sampled_fd_check(h0, dh0, loss, rng, "h0", n=6)
    sampled_fd_check(c0, dc0, loss, rng, "c0", n=6)
    for k, g in c.grads.items():
        sampled_fd_check(c._params[k], g, loss, rng, k, n=4)


def test_weights_load_from_and_into_a_layer():
    cell = _cell(5, 8, True, np.float64)
    layer = fastlstm.LayerNormLSTM(5, 8, dtype=np.float64)
    layer.load_state_dict(_layer_params(cell))
    x = np.random.default_rng(2).standard_normal((1, 3, 5))
    y, (hn, cn) = layer.eval()(x)
    h, cc = cell.eval()(x[0])
    np.testing.assert_array_equal(h, hn[0])  # the same kernel on the same weights
    np.testing.assert_array_equal(cc, cn[0])


def test_api_and_errors():
    c = fastlstm.LayerNormLSTMCell(4, 6)
    assert repr(c) == "LayerNormLSTMCell(4, 6, bias=True, dtype=float32)"
    sd = c.state_dict()
    assert list(sd) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_ln_ih",
                        "weight_ln_hh", "weight_ln_c", "bias_ln_c"]
    assert sd["weight_ih"].shape == (24, 4) and sd["weight_ln_c"].shape == (6,)
    np.testing.assert_array_equal(sd["weight_ln_ih"], 1)  # the spec's init
    np.testing.assert_array_equal(sd["bias_ln_c"], 0)
    assert "bias_ih" not in fastlstm.LayerNormLSTMCell(4, 6, bias=False).state_dict()
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(RuntimeError, match="no saved training-mode step"):
        c.backward(np.zeros((2, 6), np.float32))
    with pytest.raises(TypeError, match="hx"):
        c(x, np.zeros((2, 6), np.float32))
    with pytest.raises(ValueError, match=r"hx\[1\] \(c\)"):
        c(x, (np.zeros((2, 6), np.float32), np.zeros((2, 5), np.float32)))
    with pytest.raises(ValueError, match="input_size"):
        c(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="hidden_size"):
        fastlstm.LayerNormLSTMCell(4, 0)
    with pytest.raises(TypeError):
        fastlstm.LayerNormLSTMCell(4, 6, weights_dtype="bfloat16")
