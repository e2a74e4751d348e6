"""fastlstm.keras.LSTM / GRU against keras.layers.LSTM / GRU on the same
weights: outputs and states (float32 to its rounding; float64 to 1e-12
against fastlstm.reference),
masks, go_backwards, initial states, Bidirectional, model.fit (the weights
after SGD steps), saving, and the refusals. Runs on the Keras backend of this
process (CI: torch), and once more on JAX in a subprocess."""
import os
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")
if keras.backend.backend() not in ("torch", "jax"):
    pytest.skip(f"fastlstm.keras needs Keras's torch or jax backend, not "
                f"{keras.backend.backend()}", allow_module_level=True)
from keras import ops  # noqa: E402

from fastlstm import convert, reference, reference_gru  # noqa: E402
from fastlstm import keras as fk  # noqa: E402

B, T, I, U = 4, 7, 5, 6
LENGTHS = np.array([7, 3, 1, 5])
MASK = np.arange(T)[None] < LENGTHS[:, None]
PAIRS = {"LSTM": (fk.LSTM, keras.layers.LSTM), "GRU": (fk.GRU, keras.layers.GRU)}


def _np(t):
    return ops.convert_to_numpy(t)


def _tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _pair(name, dtype="float32", seed=0, **kw):
    """(ours, Keras's), built, with the same random weights (not the init's)."""
    ours_cls, ref_cls = PAIRS[name]
    ours, ref = ours_cls(U, dtype=dtype, **kw), ref_cls(U, dtype=dtype, **kw)
    x = np.zeros((1, T, I), dtype)
    ours(x), ref(x)
    rng = np.random.default_rng(seed)
    ws = [(0.4 * rng.standard_normal(w.shape)).astype(dtype) for w in ref.get_weights()]
    ref.set_weights(ws)
    ours.set_weights(ws)
    return ours, ref


def _inputs(dtype="float32", seed=1):
    return np.random.default_rng(seed).standard_normal((B, T, I)).astype(dtype)


CONFIGS = [dict(), dict(return_sequences=True), dict(go_backwards=True),
           dict(return_sequences=True, go_backwards=True), dict(return_state=True),
           dict(return_sequences=True, return_state=True, go_backwards=True),
           dict(return_sequences=True, zero_output_for_mask=True),
           dict(return_sequences=True, go_backwards=True, zero_output_for_mask=True),
           dict(return_sequences=True, use_bias=False)]


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(kw) or "default")
@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_matches_keras_float32(name, kw, masked):
    ours, ref = _pair(name, **kw)
    x = _inputs()
    mask = MASK if masked else None
    got, want = _tuple(ours(x, mask=mask)), _tuple(ref(x, mask=mask))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(_np(g), _np(w), rtol=1e-5, atol=1e-6)


def _reference_rows(name, weights, x, h0, lengths, go_backwards):
    """Keras's masked outputs in float64 from fastlstm.reference (NumPy) on
    each row's valid steps (reversed with go_backwards), with the weights
    converted by fastlstm.convert.from_keras: a masked step holds the carried
    state (the final one forwards; backwards, where masked steps run first,
    the initial one). Keras's own float64 layers are not float64 oracles:
    measured 2.7e-8 (torch backend, masked path) and 3.8e-8 (jax backend)
    away from float64 maths."""
    sd = convert.from_keras([weights], cell=name.lower())
    run = reference.lstm_forward if name == "LSTM" else reference_gru.gru_forward
    outs, finals = [], []
    for b, L in enumerate(lengths):
        s0 = [s[b] for s in h0]
        seq, fin = np.zeros((0, U)), s0
        if L:
            xb = x[b, :L][::-1] if go_backwards else x[b, :L]
            states = dict(zip(["h0", "c0"], [s[None, None] for s in s0]))
            got = run(np.ascontiguousarray(xb[:, None]), sd, num_layers=1, hidden_size=U,
                      **states)
            seq, fin = got[0][:, 0], [f[0, 0] for f in got[1:1 + len(s0)]]
        pad = np.repeat((s0[0] if go_backwards else fin[0])[None], T - L, axis=0)
        outs.append(np.concatenate([pad, seq] if go_backwards else [seq, pad]))
        finals.append(fin)
    return [np.stack(outs)] + [np.stack(f) for f in zip(*finals)]


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_float64_matches_the_reference_with_initial_state_and_an_empty_sequence(
        name, go_backwards):
    """float64 to 1e-12, given initial states, with and without a mask that
    has a fully masked sequence (length 0: Keras keeps the initial state;
    fastlstm's kernels need >= 1)."""
    ours, _ = _pair(name, dtype="float64", return_sequences=True, return_state=True,
                    go_backwards=go_backwards)
    x = _inputs("float64")
    rng = np.random.default_rng(2)
    h0 = [rng.standard_normal((B, U)) for _ in range(2 if name == "LSTM" else 1)]
    lengths = LENGTHS.copy()
    lengths[2] = 0
    for mask in (None, np.arange(T)[None] < lengths[:, None]):
        got = _tuple(ours(x, initial_state=h0, mask=mask))
        want = _reference_rows(name, ours.get_weights(), x, h0,
                               [T] * B if mask is None else lengths, go_backwards)
        assert _np(got[0]).dtype == np.float64
        for g, w in zip(got, want):
            np.testing.assert_allclose(_np(g), w, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(_np(got[1])[2], h0[0][2])  # the empty row kept h0


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_bidirectional_with_a_masking_layer(name):
    rng = np.random.default_rng(3)
    x = _inputs()
    x[~MASK] = 0.0  # what keras.layers.Masking masks

    def model(cls):
        inp = keras.Input((T, I))
        m = keras.layers.Masking(0.0)(inp)
        y = keras.layers.Bidirectional(cls(U, return_sequences=True))(m)
        y = keras.layers.Bidirectional(cls(U))(y)
        return keras.Model(inp, y)
    ours, ref = model(PAIRS[name][0]), model(PAIRS[name][1])
    ws = [(0.4 * rng.standard_normal(w.shape)).astype("float32") for w in ref.get_weights()]
    ref.set_weights(ws)
    ours.set_weights(ws)
    np.testing.assert_allclose(_np(ours(x)), _np(ref(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_model_fit_trains_as_keras_does(name):
    """Three epochs of SGD on the same data: the same loss history and the
    same weights after, so the gradients (fastlstm's BPTT) are Keras's."""
    rng = np.random.default_rng(4)
    x = _inputs()
    x[~MASK] = 0.0
    target = rng.standard_normal((B, 1)).astype("float32")

    def model(cls):
        inp = keras.Input((T, I))
        m = keras.layers.Masking(0.0)(inp)
        y = keras.layers.Bidirectional(cls(U, return_sequences=True))(m)
        y = cls(U, go_backwards=True)(y)
        return keras.Model(inp, keras.layers.Dense(1)(y))
    ours, ref = model(PAIRS[name][0]), model(PAIRS[name][1])
    ws = [(0.4 * rng.standard_normal(w.shape)).astype("float32") for w in ref.get_weights()]
    histories = []
    for m in (ours, ref):
        m.set_weights(ws)
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        histories.append(m.fit(x, target, batch_size=2, epochs=3, shuffle=False,
                               verbose=0).history["loss"])
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-4)
    assert histories[0][-1] < histories[0][0]  # it trains
    for a, b in zip(ours.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert max(np.abs(a - w).max() for a, w in zip(ours.get_weights(), ws)) > 1e-3


def test_dropout_masks_inputs_in_training_only():
    ours, _ = _pair("LSTM", dropout=0.5, seed=5)
    plain, _ = _pair("LSTM", seed=5)
    x = _inputs()
    np.testing.assert_array_equal(_np(ours(x, training=False)), _np(plain(x)))
    assert np.abs(_np(ours(x, training=True)) - _np(plain(x))).max() > 1e-3


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_weights_and_config_match_keras(name):
    ours, ref = _pair(name)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in ref.get_weights()]
    assert [v.name for v in ours.weights] == ["kernel", "recurrent_kernel", "bias"]
    again = type(ours).from_config(ours.get_config())
    assert again.get_config() == ours.get_config()


def test_unit_forget_bias_initializes_as_keras():
    ours = fk.LSTM(U)
    ours.build((None, T, I))
    b = _np(ours.bias)
    np.testing.assert_array_equal(b, np.r_[np.zeros(U), np.ones(U), np.zeros(2 * U)])


def test_a_saved_model_loads_and_runs(tmp_path):
    inp = keras.Input((T, I))
    model = keras.Model(inp, fk.GRU(U, return_sequences=True)(inp))
    path = tmp_path / "m.keras"
    model.save(path)
    back = keras.saving.load_model(path)
    x = _inputs()
    np.testing.assert_array_equal(_np(back(x)), _np(model(x)))
    assert isinstance(back.layers[-1], fk.GRU)


def test_a_mask_with_a_gap_is_refused():
    ours, _ = _pair("LSTM")
    gap = MASK.copy()
    gap[0, 2] = False  # step 2 masked, steps 3.. valid
    with pytest.raises(ValueError, match="right-padded masks"):
        ours(_inputs(), mask=gap)


@pytest.mark.parametrize("kw, match", [
    (dict(activation="relu"), "activation: fastlstm's kernels compute tanh"),
    (dict(recurrent_activation="hard_sigmoid"), "recurrent_activation: .* sigmoid"),
    (dict(recurrent_dropout=0.1), "recurrent_dropout: not supported"),
    (dict(stateful=True), "stateful: not supported"),
    (dict(dropout=1.0), r"dropout: expected a float in \[0, 1\)"),
])
def test_refusals(kw, match):
    with pytest.raises(ValueError, match=match):
        fk.LSTM(U, **kw)


def test_gru_reset_after_false_is_refused():
    with pytest.raises(ValueError, match="reset_after=False"):
        fk.GRU(U, reset_after=False)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "mixed_float16"])
def test_half_precision_is_refused(dtype):
    with pytest.raises(ValueError, match="float32 or float64, not (b)?float16"):
        fk.LSTM(U, dtype=dtype)


@pytest.mark.subprocess
def test_the_jax_backend_in_a_subprocess():
    """The tests above once more with KERAS_BACKEND=jax (Keras picks its
    backend at import), plus a right-padding check under jit."""
    if keras.backend.backend() == "jax":
        pytest.skip("this process runs the jax backend already")
    pytest.importorskip("jax")
    try:
        import fastlstm.jax  # noqa: F401
    except ImportError as e:
        if os.environ.get("FASTLSTM_REQUIRE_JAX"):
            raise
        pytest.skip(str(e))
    # float64 exists in jax with x64 on, under which Keras's own float32 GRU
    # fails (a float32/float64 scan carry): the float64 tests run apart.
    for select, x64 in (("not float64", "0"), ("float64", "1")):
        env = dict(os.environ, KERAS_BACKEND="jax", JAX_ENABLE_X64=x64)
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                            "-m", "not subprocess", "-k", select, __file__], env=env,
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
        last = r.stdout.strip().splitlines()[-1]
        assert " passed" in last and "skipped" not in last, last


def test_a_gap_under_jax_jit_raises():
    if keras.backend.backend() != "jax":
        pytest.skip("the jax backend's jit (run by test_the_jax_backend_in_a_subprocess)")
    import jax
    ours, _ = _pair("LSTM")
    gap = MASK.copy()
    gap[0, 2] = False
    f = jax.jit(lambda x, m: ours(x, mask=m))
    np.testing.assert_allclose(_np(f(_inputs(), MASK)), _np(ours(_inputs(), mask=MASK)),
                               rtol=1e-6, atol=1e-7)
    with pytest.raises(Exception, match="right-padded masks"):
        jax.block_until_ready(f(_inputs(), gap))


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_positional_arguments_take_keras_order(name):
    ours_cls, ref_cls = PAIRS[name]
    with pytest.raises(ValueError, match="activation: fastlstm's kernels compute tanh"):
        ours_cls(U, "relu")  # Keras's second positional argument is activation
    ours, ref = ours_cls(U, "tanh", "sigmoid", False), ref_cls(U, "tanh", "sigmoid", False)
    assert ours.use_bias is False and ref.use_bias is False
    with pytest.raises(TypeError, match="multiple values for argument 'activation'"):
        ours_cls(U, "tanh", activation="tanh")
