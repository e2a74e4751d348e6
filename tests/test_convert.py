"""fastlstm.convert and fastlstm.onnx: weights moved to Keras, ONNX and haste
and back, checked by running each format's own LSTM (Keras 3, onnxruntime)
or, for haste (a CUDA library), its documented equations in NumPy."""
import os

import numpy as np
import pytest

import fastlstm
from fastlstm import convert, reference as ref

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 without TensorFlow


def layer(seed=0, **kw):
    kw.setdefault("input_size", 5)
    kw.setdefault("hidden_size", 6)
    m = fastlstm.LSTM(seed=seed, **kw)
    m.eval()
    return m


def data(T=7, B=3, I=5, seed=1, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal((T, B, I)).astype(dtype)


def assert_same_arrays(a: dict, b: dict):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


CONFIGS = [dict(), dict(num_layers=2, bidirectional=True), dict(bias=False, num_layers=2),
           dict(peephole=True, bidirectional=True)]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("cfg", CONFIGS, ids=["plain", "bidir2", "nobias", "peephole"])
def test_onnx_round_trip_is_exact(cfg):
    sd = layer(**cfg).state_dict()
    back = convert.from_onnx(convert.to_onnx(sd))
    if not cfg.get("bias", True):  # ONNX without B means zero biases
        back = {k: v for k, v in back.items() if not k.startswith("bias")}
    assert_same_arrays(back, sd)


@pytest.mark.parametrize("cfg", CONFIGS[:3], ids=["plain", "bidir2", "nobias"])
def test_keras_and_haste_round_trips(cfg):
    sd = layer(**cfg).state_dict()
    ks = convert.to_keras(sd)
    assert [len(a) for a in ks] == [6 if cfg.get("bidirectional") else 3] * len(ks)
    back = convert.from_keras(ks, bidirectional=cfg.get("bidirectional", False))
    for k, v in back.items():  # one bias: b_ih + b_hh in b_ih, b_hh zero
        if k.startswith("bias_ih"):
            want = sd[k] + sd[k.replace("_ih", "_hh")] if k in sd else 0 * v
            np.testing.assert_array_equal(v, want, err_msg=k)
        elif k.startswith("bias_hh"):
            assert not v.any()
        else:
            np.testing.assert_array_equal(v, sd[k], err_msg=k)
    again = convert.to_keras(back)  # Keras -> torch -> Keras is exact
    for a, b in zip(sum(ks, []), sum(again, [])):
        np.testing.assert_array_equal(a, b)
    if not cfg:
        hw = convert.to_haste(sd)
        assert {k: v.shape for k, v in hw.items()} == {"kernel": (5, 24),
                                                       "recurrent_kernel": (6, 24),
                                                       "bias": (24,)}
        again = convert.to_haste(convert.from_haste(hw))
        for k in hw:
            np.testing.assert_array_equal(again[k], hw[k])


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    tm = torch.nn.LSTM(5, 6, num_layers=2)
    onnx_layers = convert.to_onnx(tm.state_dict())
    sd = convert.from_onnx(onnx_layers)
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(sd[k], v.numpy())


# --------------------------------------------------------------------------- each format runs


def test_haste_equations_match():
    """haste's LSTM (its docs): v = x@kernel + h@recurrent_kernel + bias, gates i,g,f,o."""
    m = layer(hidden_size=4, input_size=3, seed=3, dtype=np.float64)
    x = data(T=6, B=2, I=3, dtype=np.float64)
    hw = convert.to_haste(m.state_dict())
    H = 4
    h = np.zeros((2, H))
    c = np.zeros((2, H))
    ys = []
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    for t in range(6):
        v = x[t] @ hw["kernel"] + h @ hw["recurrent_kernel"] + hw["bias"]
        i, g, f, o = np.split(v, 4, axis=1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        ys.append(h)
    y, _, _, _ = ref.lstm_forward(x, m.state_dict(), num_layers=1, hidden_size=H)
    np.testing.assert_allclose(np.stack(ys), y, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_keras_runs_the_converted_weights(bidirectional):
    keras = pytest.importorskip("keras")
    m = layer(num_layers=2, bidirectional=bidirectional, seed=4)
    x = data(seed=5)
    y_fl, _ = m(x)
    model = keras.Sequential([keras.Input((x.shape[0], x.shape[2]))])
    for _ in range(2):
        lstm = keras.layers.LSTM(6, return_sequences=True)
        model.add(keras.layers.Bidirectional(lstm) if bidirectional else lstm)
    for kl, w in zip(model.layers, convert.to_keras(m.state_dict())):
        kl.set_weights(w)
    y_k = np.asarray(keras.ops.convert_to_numpy(model(np.swapaxes(x, 0, 1))))
    np.testing.assert_allclose(np.swapaxes(y_k, 0, 1), y_fl, rtol=0, atol=2e-6)
    # and back: Keras's weights into a fresh fastlstm layer give the same outputs
    m2 = layer(num_layers=2, bidirectional=bidirectional, seed=99)
    m2.load_state_dict(convert.from_keras([kl.get_weights() for kl in model.layers],
                                          bidirectional=bidirectional))
    np.testing.assert_allclose(m2(x)[0], y_fl, rtol=0, atol=2e-6)


@pytest.mark.parametrize("cfg", [dict(), dict(num_layers=2, bidirectional=True),
                                 dict(peephole=True), dict(bias=False, batch_first=True)],
                         ids=["plain", "bidir2", "peephole", "nobias_batch_first"])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_onnx_export_runs_in_onnxruntime(tmp_path, cfg, with_lengths):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import fastlstm.onnx

    m = layer(seed=6, **cfg)
    L, D = cfg.get("num_layers", 1), 2 if cfg.get("bidirectional") else 1
    x = data(seed=7)
    if cfg.get("batch_first"):
        x = np.ascontiguousarray(np.swapaxes(x, 0, 1))
    B = 3
    rng = np.random.default_rng(8)
    h0 = rng.standard_normal((D * L, B, 6)).astype(np.float32)
    c0 = rng.standard_normal((D * L, B, 6)).astype(np.float32)
    lengths = np.array([7, 2, 5]) if with_lengths else None
    y, (hn, cn) = m(x, (h0, c0), lengths=lengths)
    path = tmp_path / "lstm.onnx"
    fastlstm.onnx.export(m, str(path), lengths=with_lengths, initial_state=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"X": x, "initial_h": h0, "initial_c": c0}
    if with_lengths:
        feeds["sequence_lens"] = lengths.astype(np.int32)
    yo, hno, cno = sess.run(["Y", "Y_h", "Y_c"], feeds)
    for name, a, b in (("Y", yo, y), ("Y_h", hno, hn), ("Y_c", cno, cn)):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-6, err_msg=name)


def test_onnx_export_of_the_torch_adapter(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import fastlstm.onnx
    import fastlstm.torch

    tm = fastlstm.torch.LSTM(5, 6, num_layers=2, peephole=True).eval()
    x = torch.randn(7, 3, 5)
    with torch.no_grad():
        y, _ = tm(x)
    fastlstm.onnx.export(tm, str(tmp_path / "m.onnx"))
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(["Y"], {"X": x.numpy()})[0], y.numpy(), rtol=0,
                               atol=2e-6)


# --------------------------------------------------------------------------- refusals


def test_refusals():
    proj = layer(proj_size=3).state_dict()
    peep = layer(peephole=True).state_dict()
    with pytest.raises(ValueError, match="projection"):
        convert.to_onnx(proj)
    with pytest.raises(ValueError, match="projection"):
        convert.to_keras(proj)
    with pytest.raises(ValueError, match="peepholes"):
        convert.to_keras(peep)
    with pytest.raises(ValueError, match="peepholes"):
        convert.to_haste(peep)
    with pytest.raises(ValueError, match="one layer, one direction"):
        convert.to_haste(layer(num_layers=2).state_dict())
    with pytest.raises(ValueError, match="unexpected key 'foo'"):
        convert.to_onnx({"foo": np.zeros(3, np.float32)})
    sd = layer().state_dict()
    del sd["bias_hh_l0"]
    with pytest.raises(ValueError, match="missing"):
        convert.to_onnx(sd)
    with pytest.raises(ValueError, match="expected 3 arrays"):
        convert.from_keras([[np.zeros((5, 24), np.float32)]])
    with pytest.raises(ValueError, match="kernel"):
        convert.from_haste({"kernel": np.zeros((5, 24), np.float32),
                            "recurrent_kernel": np.zeros((6, 20), np.float32),
                            "bias": np.zeros(24, np.float32)})
    with pytest.raises(ValueError, match=r"B'\]: expected shape"):
        convert.from_onnx([{"W": np.zeros((1, 24, 5), np.float32),
                            "R": np.zeros((1, 24, 6), np.float32),
                            "B": np.zeros((1, 24), np.float32)}])


def test_onnx_export_refuses_projection(tmp_path):
    pytest.importorskip("onnx")
    import fastlstm.onnx

    with pytest.raises(ValueError, match="no projection"):
        fastlstm.onnx.export(layer(proj_size=3), str(tmp_path / "p.onnx"))
    with pytest.raises(TypeError, match="fastlstm.LSTM"):
        fastlstm.onnx.export(object(), str(tmp_path / "p.onnx"))
