"""fastlstm.convert for the GRU: torch.nn.GRU-style state dicts to and from Keras
GRU (reset_after=True), the ONNX GRU op (linear_before_reset=1) and haste's GRU.

Keras and onnxruntime run the converted weights and are compared with the float64
NumPy GRU reference (fastlstm.reference_gru, itself proved against torch.nn.GRU);
haste (a CUDA library) is checked through its equations, written here in NumPy
from its source (frameworks/pytorch/gru.py, GRUScript; lib/gru_forward_gpu.cu.cc).

Tolerances: the inputs and weights are float32 and the reference computes on the
same values in float64, so the only difference is the framework's float32
rounding: a few ulps per operation over T steps of H-term sums. 1e-5 relative to
max|oracle| (about 80 float32 ulps) bounds that and no wrong gate or bias term
fits under it; the differences measured here are at most 1.1e-7 (Keras) and
2.6e-7 (onnxruntime). haste's equations run in float64: 1e-12 (measured: 0).
"""
import os

import numpy as np
import pytest
from _tolerance import assert_rel_close

from fastlstm import convert
from fastlstm.reference_gru import gru_forward, gru_param_shapes

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 without TensorFlow

F32_RTOL = 1e-5
F64_RTOL = 1e-12
I, H = 5, 6


def gru_dict(seed=0, num_layers=1, bidirectional=False, bias=True, dtype=np.float32):
    """Random weights keyed and shaped as torch.nn.GRU's state_dict (the reference's list)."""
    rng = np.random.default_rng(seed)
    return {k: rng.uniform(-0.6, 0.6, s).astype(dtype)
            for k, s in gru_param_shapes(I, H, num_layers, bias, bidirectional).items()}


def data(T=7, B=3, seed=1, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal((T, B, I)).astype(dtype)


def assert_same_arrays(a: dict, b: dict):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def with_zero_biases(sd: dict) -> dict:
    """sd as a format without bias gives it back: zero biases of the weights' size."""
    out = dict(sd)
    for k, v in sd.items():
        if k.startswith("weight_ih"):
            for b in ("bias_ih", "bias_hh"):
                out[k.replace("weight_ih", b)] = np.zeros(v.shape[0], v.dtype)
    return out


CONFIGS = [dict(), dict(num_layers=2, bidirectional=True), dict(bias=False, num_layers=2)]
IDS = ["plain", "bidir2", "nobias"]


def config_of(cfg):
    return dict(num_layers=cfg.get("num_layers", 1), bidirectional=cfg.get("bidirectional", False),
                bias=cfg.get("bias", True))


# --------------------------------------------------------------------------- describe


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_describe_tells_a_gru(cfg):
    got = convert.describe(gru_dict(**cfg), cell=None)
    assert got == dict(cell="gru", proj_size=0, peephole=False, hidden_size=H, input_size=I,
                       **config_of(cfg))
    assert convert.describe(gru_dict(**cfg), cell="gru") == got
    with pytest.raises(ValueError, match="looks like a gru: pass cell='gru'"):
        convert.describe(gru_dict(**cfg))  # an LSTM by default, as fastlstm.onnx expects


def test_torch_gru_state_dict_is_a_gru():
    torch = pytest.importorskip("torch")
    tm = torch.nn.GRU(I, H, num_layers=2, bidirectional=True)
    assert convert.describe(tm.state_dict(), cell=None)["cell"] == "gru"
    back = convert.from_onnx(convert.to_onnx(tm.state_dict()))
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(back[k], v.numpy(), err_msg=k)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_onnx_round_trips_are_exact(cfg, dtype):
    sd = gru_dict(dtype=dtype, **cfg)
    layers = convert.to_onnx(sd)
    D = 2 if cfg.get("bidirectional") else 1
    assert [{k: v.shape for k, v in lw.items()} for lw in layers][0] == \
        {"W": (D, 3 * H, I), "R": (D, 3 * H, H), "B": (D, 6 * H)}
    want = sd if cfg.get("bias", True) else with_zero_biases(sd)
    assert_same_arrays(convert.from_onnx(layers), want)
    again = convert.to_onnx(convert.from_onnx(layers))
    for a, b in zip(layers, again):
        assert_same_arrays(a, b)
    # ONNX without B: zero biases
    no_b = convert.from_onnx([{k: v for k, v in lw.items() if k != "B"} for lw in layers])
    assert_same_arrays(no_b, with_zero_biases({k: v for k, v in sd.items()
                                               if not k.startswith("bias")}))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_keras_round_trips_are_exact(cfg, dtype):
    sd = gru_dict(dtype=dtype, **cfg)
    bidirectional = cfg.get("bidirectional", False)
    ks = convert.to_keras(sd)
    assert [[a.shape for a in lw] for lw in ks][0] == \
        [(I, 3 * H), (H, 3 * H), (2, 3 * H)] * (2 if bidirectional else 1)
    want = sd if cfg.get("bias", True) else with_zero_biases(sd)
    assert_same_arrays(convert.from_keras(ks, bidirectional=bidirectional), want)
    again = convert.to_keras(convert.from_keras(ks, bidirectional=bidirectional, cell="gru"))
    for a, b in zip(sum(ks, []), sum(again, [])):
        assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_haste_round_trips_are_exact(bias, dtype):
    sd = gru_dict(bias=bias, dtype=dtype)
    hw = convert.to_haste(sd)
    assert {k: v.shape for k, v in hw.items()} == {
        "kernel": (I, 3 * H), "recurrent_kernel": (H, 3 * H), "bias": (3 * H,),
        "recurrent_bias": (3 * H,)}
    assert_same_arrays(convert.from_haste(hw), sd if bias else with_zero_biases(sd))
    assert_same_arrays(convert.to_haste(convert.from_haste(hw, cell="gru")), hw)


# --------------------------------------------------------------------------- each format runs


def test_haste_equations_match():
    """haste's GRU (GRUScript, and the CUDA kernel's PointwiseOperations):
    Wx = x@kernel + bias, Rh = h@recurrent_kernel + recurrent_bias, gates z, r, g;
    z = σ(Wx_z + Rh_z), r = σ(Wx_r + Rh_r), g = tanh(Wx_g + r ⊙ Rh_g),
    h = z ⊙ h + (1 − z) ⊙ g."""
    sd = gru_dict(seed=3, dtype=np.float64)
    x = data(seed=4, dtype=np.float64)
    h0 = np.random.default_rng(5).standard_normal((1, 3, H))
    hw = convert.to_haste(sd)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h, ys = h0[0], []
    for t in range(x.shape[0]):
        vx = np.split(x[t] @ hw["kernel"] + hw["bias"], 3, axis=1)
        vh = np.split(h @ hw["recurrent_kernel"] + hw["recurrent_bias"], 3, axis=1)
        z, r = sig(vx[0] + vh[0]), sig(vx[1] + vh[1])
        g = np.tanh(vx[2] + r * vh[2])
        h = z * h + (1 - z) * g
        ys.append(h)
    y, h_n, _ = gru_forward(x, sd, num_layers=1, hidden_size=H, h0=h0)
    assert_rel_close(np.stack(ys), y, F64_RTOL, "y")
    assert_rel_close(h[None], h_n, F64_RTOL, "h_n")


def run_keras_gru(keras, layers_weights, x, bidirectional):
    """A stack of Keras GRU layers (reset_after=True) with these weights:
    y [T,B,D*H] and h_n [D*L,B,H], torch's layouts; and each layer's get_weights()."""
    y, hs, kls = np.swapaxes(x, 0, 1), [], []
    for w in layers_weights:
        gru = keras.layers.GRU(H, return_sequences=True, return_state=True, reset_after=True)
        kl = keras.layers.Bidirectional(gru) if bidirectional else gru
        kl(y)  # build
        kl.set_weights(w)
        y, *h = (keras.ops.convert_to_numpy(o) for o in kl(y))
        hs += h
        kls.append(kl)
    return np.swapaxes(y, 0, 1), np.stack(hs), [kl.get_weights() for kl in kls]


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_keras_runs_the_converted_weights(cfg):
    keras = pytest.importorskip("keras")
    sd = gru_dict(seed=6, **cfg)
    x = data(seed=7)
    y_k, hn_k, got = run_keras_gru(keras, convert.to_keras(sd), x, cfg.get("bidirectional",
                                                                          False))
    kw = config_of(cfg)
    y, h_n, _ = gru_forward(x, sd, hidden_size=H, **kw)
    assert_rel_close(y_k, y, F32_RTOL, "y")
    assert_rel_close(hn_k, h_n, F32_RTOL, "h_n")
    # Keras's own weights come back exactly as they went
    want = sd if kw["bias"] else with_zero_biases(sd)
    assert_same_arrays(convert.from_keras(got, bidirectional=kw["bidirectional"]), want)


def run_onnx_gru(layers, x, h0=None, lengths=None):
    """One ONNX GRU node (linear_before_reset=1) per layer, run in onnxruntime one
    after the other: y [T,B,D*H] and h_n [D*L,B,H], torch's layouts."""
    from onnx import TensorProto, checker, helper, numpy_helper
    ort = pytest.importorskip("onnxruntime")
    T, B = x.shape[:2]
    hs = []
    for k, lw in enumerate(layers):
        D = lw["W"].shape[0]
        feeds = {"X": x}
        if lengths is not None:
            feeds["sequence_lens"] = lengths.astype(np.int32)
        if h0 is not None:
            feeds["initial_h"] = np.ascontiguousarray(h0[k * D:(k + 1) * D])
        elem = {"sequence_lens": TensorProto.INT32}
        inputs = [helper.make_tensor_value_info(n, elem.get(n, TensorProto.FLOAT), a.shape)
                  for n, a in feeds.items()]
        ins = ["X", "W", "R", "B", "sequence_lens" if lengths is not None else "",
               "initial_h" if h0 is not None else ""]
        while not ins[-1]:
            ins.pop()
        node = helper.make_node("GRU", ins, ["Y", "Y_h"], hidden_size=H, linear_before_reset=1,
                                direction="bidirectional" if D == 2 else "forward")
        outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [T, D, B, H]),
                   helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [D, B, H])]
        graph = helper.make_graph([node], "gru", inputs, outputs,
                                  [numpy_helper.from_array(lw[n], n) for n in ("W", "R", "B")])
        ops = helper.make_opsetid("", 14)
        model = helper.make_model(graph, opset_imports=[ops],
                                  ir_version=helper.find_min_ir_version_for([ops]))
        checker.check_model(model, full_check=True)
        sess = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        y, h_n = sess.run(["Y", "Y_h"], feeds)
        x = np.ascontiguousarray(y.transpose(0, 2, 1, 3).reshape(T, B, D * H))
        hs.append(h_n)
    return x, np.concatenate(hs)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "h0_lengths"])
def test_onnxruntime_runs_the_converted_weights(cfg, with_state):
    pytest.importorskip("onnx")
    sd = gru_dict(seed=8, **cfg)
    kw = config_of(cfg)
    D = 2 if kw["bidirectional"] else 1
    x = data(seed=9)
    h0 = np.random.default_rng(10).standard_normal((D * kw["num_layers"], 3, H)).astype(
        np.float32) if with_state else None
    lengths = np.array([7, 2, 5]) if with_state else None
    y_o, hn_o = run_onnx_gru(convert.to_onnx(sd), x, h0, lengths)
    y, h_n, _ = gru_forward(x, sd, hidden_size=H, h0=h0, lengths=lengths, **kw)
    assert_rel_close(y_o, y, F32_RTOL, "Y")
    assert_rel_close(hn_o, h_n, F32_RTOL, "Y_h")


# --------------------------------------------------------------------------- refusals


def lstm_dict():
    """torch.nn.LSTM's one-layer state dict, written out: 4H rows."""
    return {"weight_ih_l0": np.zeros((4 * H, I), np.float32),
            "weight_hh_l0": np.zeros((4 * H, H), np.float32),
            "bias_ih_l0": np.zeros(4 * H, np.float32), "bias_hh_l0": np.zeros(4 * H, np.float32)}


def test_refusals_of_the_wrong_cell():
    lstm = lstm_dict()
    for fn in (convert.to_keras, convert.to_onnx, convert.to_haste):
        with pytest.raises(ValueError, match=r"weight_hh_l0: expected shape \[3H, H\] \(gru\)"):
            fn(lstm, cell="gru")
        with pytest.raises(ValueError, match="expected shape"):
            fn(gru_dict(), cell="lstm")
    with pytest.raises(ValueError, match=r"kernel \[I,3H\] and recurrent_kernel \[H,3H\]"):
        convert.from_keras(convert.to_keras(lstm), cell="gru")
    with pytest.raises(ValueError, match=r"W \[D,3H,I\] and R \[D,3H,H\]"):
        convert.from_onnx(convert.to_onnx(lstm), cell="gru")
    with pytest.raises(ValueError, match="exactly kernel, recurrent_kernel, bias, recurrent_bias"):
        convert.from_haste(convert.to_haste(lstm), cell="gru")
    with pytest.raises(ValueError, match="exactly kernel, recurrent_kernel, bias;"):
        convert.from_haste(convert.to_haste(gru_dict()), cell="lstm")
    with pytest.raises(ValueError, match="cell: expected None or one of"):
        convert.describe(gru_dict(), cell="rnn")


def test_keras_reset_after_false_is_refused():
    bias = np.zeros(3 * H, np.float32)  # reset_after=False: one bias [3H]
    weights = [np.zeros((I, 3 * H), np.float32), np.zeros((H, 3 * H), np.float32), bias]
    keras = None
    try:
        import keras
    except ImportError:
        pass
    if keras is not None:  # the real layer's weights have exactly those shapes
        gru = keras.layers.GRU(H, reset_after=False)
        gru(np.zeros((1, 2, I), np.float32))
        weights = gru.get_weights()
        assert weights[2].shape == (3 * H,)
    with pytest.raises(ValueError, match="reset_after=False"):
        convert.from_keras([weights])


def test_the_lstm_onnx_exporter_refuses_a_gru():
    """fastlstm.onnx writes LSTM nodes; describe's LSTM default keeps a GRU out."""
    pytest.importorskip("onnx")
    import fastlstm.onnx

    with pytest.raises(ValueError, match="looks like a gru"):
        fastlstm.onnx.model_from_state_dict(gru_dict())


def test_refusals_of_wrong_shapes():
    z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    with pytest.raises(ValueError, match=r"expected a gru bias of shape \(2, 18\)"):
        convert.from_keras([[z(I, 18), z(H, 18), z(3, 18)]])
    with pytest.raises(ValueError, match="G = 4 \\(lstm\\) or 3 \\(gru\\)"):
        convert.from_keras([[z(I, 30), z(H, 30), z(30)]])
    with pytest.raises(ValueError, match=r"B'\]: expected shape \(1, 36\)"):
        convert.from_onnx([{"W": z(1, 18, I), "R": z(1, 18, H), "B": z(1, 48)}])
    with pytest.raises(ValueError, match="an LSTM's peepholes"):
        convert.from_onnx([{"W": z(1, 18, I), "R": z(1, 18, H), "P": z(1, 18)}])
    with pytest.raises(ValueError, match=r"recurrent_bias: expected shape \(18,\)"):
        convert.from_haste({"kernel": z(I, 18), "recurrent_kernel": z(H, 18), "bias": z(18),
                            "recurrent_bias": z(24)})
    with pytest.raises(ValueError, match="one layer, one direction"):
        convert.to_haste(gru_dict(bidirectional=True))
    sd = gru_dict()
    del sd["bias_hh_l0"]
    with pytest.raises(ValueError, match=r"one gru; missing \['bias_hh_l0'\]"):
        convert.to_onnx(sd)
    with pytest.raises(ValueError, match="pass cell="):  # 20 rows: neither 3H nor 4H
        convert.describe({"weight_ih_l0": z(20, I), "weight_hh_l0": z(20, H)}, cell=None)


@pytest.mark.parametrize("cfg", [dict(), dict(num_layers=2, bidirectional=True),
                                 dict(bias=False, batch_first=True)],
                         ids=["plain", "bidir2", "nobias_batch_first"])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_onnx_export_of_a_gru_runs_in_onnxruntime(tmp_path, cfg, with_lengths):
    """fastlstm.onnx.export writes GRU nodes (linear_before_reset=1) that onnxruntime
    runs to the compiled fastlstm.GRU's results."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import fastlstm.onnx

    m = fastlstm.GRU(4, 6, seed=6, **cfg)
    m.eval()
    L, D, B = cfg.get("num_layers", 1), 2 if cfg.get("bidirectional") else 1, 3
    rng = np.random.default_rng(7)
    x = rng.standard_normal((B, 7, 4) if cfg.get("batch_first") else (7, B, 4))
    x = x.astype(np.float32)
    h0 = rng.standard_normal((D * L, B, 6)).astype(np.float32)
    lengths = np.array([7, 2, 5]) if with_lengths else None
    y, hn = m(x, h0, lengths=lengths)
    path = tmp_path / "gru.onnx"
    model = fastlstm.onnx.export(m, str(path), lengths=with_lengths, initial_state=True)
    assert {n.op_type for n in model.graph.node} >= {"GRU"}
    assert [o.name for o in model.graph.output] == ["Y", "Y_h"]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"X": x, "initial_h": h0}
    if with_lengths:
        feeds["sequence_lens"] = lengths.astype(np.int32)
    yo, hno = sess.run(["Y", "Y_h"], feeds)
    np.testing.assert_allclose(yo, y, rtol=0, atol=2e-6)
    np.testing.assert_allclose(hno, hn, rtol=0, atol=2e-6)
