"""fastlstm.convert for the layer-norm LSTM: its state dicts to and from haste's
LayerNormLSTM, the one format that has such a layer.

haste (a CUDA library) is checked through its equations, written here in NumPy
from its source: frameworks/pytorch/layer_norm_lstm.py (LayerNormLSTMScript, the
CPU path) and lib/layer_norm_lstm_forward_gpu.cu.cc with lib/layer_norm_forward_gpu.cu.cc
(the CUDA path): LN over the last axis with the biased variance and epsilon 1e-5
inside the root, as fastlstm's (reference_lnlstm.LN_EPS) and torch's LayerNorm.
The two compute the same function, so the check runs in float64 and the only
difference is rounding (haste adds one bias b_ih + b_hh): 1e-12 relative to
max|oracle| bounds it and leaves no room for a wrong gate, gain or bias (the
differences measured here are at most 9e-16).
"""
import numpy as np
import pytest
from _tolerance import assert_rel_close

from fastlstm import convert
from fastlstm.reference_lnlstm import lnlstm_forward, lnlstm_param_shapes

F64_RTOL = 1e-12
I, H = 5, 6
HASTE_LN_EPS = 1e-5   # lib/layer_norm_forward_gpu.cu.cc: rsqrt(sum_sq / n + 1e-5)


def lnlstm_dict(seed=0, num_layers=1, bidirectional=False, bias=True, dtype=np.float32):
    """Random weights, gains and biases (none left at its init, so a misplaced one shows)."""
    rng = np.random.default_rng(seed)
    return {k: (rng.uniform(0.5, 1.5, s) if k.startswith("weight_ln")
                else rng.uniform(-0.6, 0.6, s)).astype(dtype)
            for k, s in lnlstm_param_shapes(I, H, num_layers, bias, bidirectional).items()}


def assert_same_arrays(a: dict, b: dict):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("bias", [True, False])
def test_describe_tells_a_layer_norm_lstm(bias):
    sd = lnlstm_dict(num_layers=2, bidirectional=True, bias=bias)
    assert convert.describe(sd, cell=None) == dict(
        cell="lnlstm", num_layers=2, bidirectional=True, bias=bias, proj_size=0,
        peephole=False, hidden_size=H, input_size=I)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_haste_round_trips(bias, dtype):
    sd = lnlstm_dict(bias=bias, dtype=dtype)
    hw = convert.to_haste(sd)
    assert {k: v.shape for k, v in hw.items()} == {
        "kernel": (I, 4 * H), "recurrent_kernel": (H, 4 * H), "bias": (4 * H,),
        "gamma": (2, 4 * H), "gamma_h": (H,), "beta_h": (H,)}
    back = convert.from_haste(hw)
    for k, v in back.items():  # one bias: b_ih + b_hh in b_ih, b_hh zero; the rest exact
        if k == "bias_ih_l0":
            want = sd[k] + sd["bias_hh_l0"] if bias else np.zeros_like(v)
            np.testing.assert_array_equal(v, want)
        elif k == "bias_hh_l0":
            assert not v.any()
        else:
            np.testing.assert_array_equal(v, sd[k], err_msg=k)
        assert v.dtype == dtype, k
    assert_same_arrays(convert.to_haste(convert.from_haste(hw, cell="lnlstm")), hw)  # exact


def haste_layer_norm(v, gamma, beta=0.0):
    mean = v.mean(axis=-1, keepdims=True)
    var = ((v - mean) ** 2).mean(axis=-1, keepdims=True)  # biased, as haste's kernel
    return (v - mean) / np.sqrt(var + HASTE_LN_EPS) * gamma + beta


@pytest.mark.parametrize("bias", [True, False])
def test_haste_equations_match(bias):
    """haste's LayerNormLSTM (LayerNormLSTMScript): Wx = LN(x@kernel)·gamma[0];
    v = LN(h@recurrent_kernel)·gamma[1] + Wx + bias, gates i, g, f, o;
    c = σ(f) c + σ(i) tanh(g); h = σ(o) tanh(LN(c)·gamma_h + beta_h)."""
    sd = lnlstm_dict(seed=3, bias=bias, dtype=np.float64)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((7, 3, I))
    h0, c0 = rng.standard_normal((2, 1, 3, H))
    hw = convert.to_haste(sd)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h, c, ys = h0[0], c0[0], []
    wx = haste_layer_norm(x @ hw["kernel"], hw["gamma"][0])
    for t in range(x.shape[0]):
        v = haste_layer_norm(h @ hw["recurrent_kernel"], hw["gamma"][1]) + wx[t] + hw["bias"]
        i, g, f, o = np.split(v, 4, axis=1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(haste_layer_norm(c, hw["gamma_h"], hw["beta_h"]))
        ys.append(h)
    y, h_n, c_n, _ = lnlstm_forward(x, sd, num_layers=1, hidden_size=H, bias=bias, h0=h0,
                                    c0=c0)
    assert_rel_close(np.stack(ys), y, F64_RTOL, "y")
    assert_rel_close(h[None], h_n, F64_RTOL, "h_n")
    assert_rel_close(c[None], c_n, F64_RTOL, "c_n")


def test_refusals():
    sd = lnlstm_dict()
    for fn in (convert.to_keras, convert.to_onnx):
        with pytest.raises(ValueError, match="has no 'lnlstm' layer"):
            fn(sd)
    with pytest.raises(ValueError, match="Keras has no 'lnlstm' layer"):
        convert.from_keras([[]], cell="lnlstm")
    with pytest.raises(ValueError, match="one layer, one direction"):
        convert.to_haste(lnlstm_dict(num_layers=2))
    hw = convert.to_haste(sd)
    with pytest.raises(ValueError, match=r"gamma: expected shape \(2, 24\)"):
        convert.from_haste({**hw, "gamma": hw["gamma"][:1]})
    with pytest.raises(ValueError, match=r"beta_h: expected shape \(6,\)"):
        convert.from_haste({**hw, "beta_h": np.zeros(24, np.float32)})
    lstm_hw = {k: hw[k] for k in ("kernel", "recurrent_kernel", "bias")}
    with pytest.raises(ValueError, match="exactly kernel, recurrent_kernel, bias, gamma, "
                                         "gamma_h, beta_h"):
        convert.from_haste(lstm_hw, cell="lnlstm")
    assert convert.describe(convert.from_haste(lstm_hw), cell=None)["cell"] == "lstm"
    with pytest.raises(ValueError, match=r"one lnlstm; missing \['weight_ln_c_l0'\]"):
        convert.to_haste({k: v for k, v in sd.items() if k != "weight_ln_c_l0"})
    with pytest.raises(ValueError, match=r"weight_ln_ih_l0: expected shape \(24,\)"):
        convert.describe({**sd, "weight_ln_ih_l0": np.ones(6, np.float32)}, cell="lnlstm")
    with pytest.raises(ValueError, match="expected shape"):  # an LN-LSTM is no GRU
        convert.to_haste(sd, cell="gru")
