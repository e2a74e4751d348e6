"""fastlstm.jax.layer_norm_lstm: against the float64 reference
(fastlstm.reference_lnlstm) forward and BPTT, with and without zoneout masks,
against the NumPy layer (fastlstm.LayerNormLSTM: same kernels, same bits),
jax.test_util.check_grads in float64, vmap, batch_first, key-drawn masks, and
errors."""
import os

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

try:
    import fastlstm.jax as flj
except ImportError as e:  # built without the XLA FFI headers
    if os.environ.get("FASTLSTM_REQUIRE_JAX"):  # CI builds them: a skip would hide a bug
        raise
    pytest.skip(str(e), allow_module_level=True)
import fastlstm  # noqa: E402
from fastlstm import reference_lnlstm as ref  # noqa: E402

TOL64 = 1e-12  # float64, relative to max|reference|


def close(got, want, name, tol=TOL64):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape}"
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-300)
    err = float(np.abs(got - want).max(initial=0.0))
    assert err <= tol * scale, f"{name}: max|diff| {err:.3e} > {tol:.0e} * {scale:.3e}"


def layer(I, H, L, bid, bias=True, dtype=np.float64, seed=0, zoneout=0.0):
    """A LayerNormLSTM with every parameter random (gains around 1), so that
    a wrong norm gain or bias cannot hide behind the init's ones and zeros."""
    m = fastlstm.LayerNormLSTM(I, H, num_layers=L, bidirectional=bid, bias=bias, dtype=dtype,
                               seed=seed, zoneout=zoneout)
    rng = np.random.default_rng(seed + 100)
    for name, v in m.named_parameters():
        lo, hi = (0.5, 1.5) if "weight_ln" in name else (-0.6, 0.6)
        v[...] = rng.uniform(lo, hi, v.shape)
    return m


def jparams(m):
    return {k: jnp.asarray(v) for k, v in m.state_dict().items()}


CASES = [  # T, B, I, H, layers, bidirectional, bias, lengths
    (6, 4, 5, 7, 2, True, True, True),
    (5, 3, 4, 9, 1, False, True, False),
    (7, 5, 6, 10, 2, True, False, True),
    (4, 2, 3, 16, 1, False, True, True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "T{}B{}I{}H{}-L{}-{}-bias{}-{}".format(
    *c[:5], "bi" if c[5] else "uni", c[6], "len" if c[7] else "full"))
@pytest.mark.parametrize("mode", ["plain", "masks", "eval_mix"])
def test_matches_the_reference(case, mode):
    T, B, I, H, L, bid, bias, with_lengths = case
    p = 0.0 if mode == "plain" else 0.35
    m = layer(I, H, L, bid, bias, seed=H)
    rng = np.random.default_rng(T * H)
    D = 2 if bid else 1
    x = 2 * rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((2, D * L, B, H))
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    masks = ([(rng.random((T, B, D * H)) < p).astype(np.float64) for _ in range(L)]
             if mode == "masks" else None)
    yr, hr, cr, cache = ref.lnlstm_forward(
        x, m.state_dict(), num_layers=L, hidden_size=H, bidirectional=bid, bias=bias, h0=h0,
        c0=c0, lengths=lengths, zoneout=p, zoneout_masks=masks, training=mode == "masks")
    zkw = dict(zoneout=p, zoneout_masks=masks)
    run = jax.jit(lambda q, x, h0, c0: flj.layer_norm_lstm(q, x, h0, c0, lengths, **zkw))
    y, (hn, cn) = run(jparams(m), x, h0, c0)
    for name, a, b in (("y", y, yr), ("h_n", hn, hr), ("c_n", cn, cr)):
        close(a, b, name)
    wy, whn, wcn = (rng.standard_normal(a.shape) for a in (yr, hr, cr))

    def loss(q, x, h0, c0):
        y, (hn, cn) = flj.layer_norm_lstm(q, x, h0, c0, lengths, **zkw)
        return (y * wy).sum() + (hn * whn).sum() + (cn * wcn).sum()

    g, dx, dh0, dc0 = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(jparams(m), x, h0, c0)
    dxr, dh0r, dc0r, gr = ref.lnlstm_backward(cache, wy, whn, wcn)
    for name, a, b in (("dx", dx, dxr), ("dh0", dh0, dh0r), ("dc0", dc0, dc0r)):
        close(a, b, name)
    assert set(g) == set(gr)
    for k in gr:
        close(g[k], gr[k], k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_same_bits_as_the_numpy_layer(dtype):
    m = layer(5, 6, 2, True, dtype=dtype, seed=7, zoneout=0.25)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((7, 4, 5)).astype(dtype)
    lengths = np.array([7, 2, 5, 1])
    params = jparams(m)
    y, (hn, cn) = m(x, lengths=lengths)
    masks = m.zoneout_masks
    zkw = dict(zoneout=0.25, zoneout_masks=masks)
    yj, (hj, cj) = flj.layer_norm_lstm(params, x, lengths=lengths, **zkw)
    for a, b in ((yj, y), (hj, hn), (cj, cn)):
        np.testing.assert_array_equal(np.asarray(a), b)
    wy = rng.standard_normal(y.shape).astype(dtype)
    wcn = rng.standard_normal(cn.shape).astype(dtype)
    dx, _ = m.backward(wy, None, wcn)

    def loss(q, x):
        y, (_, cn) = flj.layer_norm_lstm(q, x, lengths=lengths, **zkw)
        return (y * wy).sum() + (cn * wcn).sum()

    g, gx = jax.grad(loss, argnums=(0, 1))(params, jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(gx), dx)
    assert set(g) == set(m.grads)
    for k, v in m.grads.items():
        np.testing.assert_array_equal(np.asarray(g[k]), v, err_msg=k)
    m.eval()  # the deterministic mix
    ye, _ = m(x, lengths=lengths)
    yj, _ = flj.layer_norm_lstm(params, x, lengths=lengths, zoneout=0.25)
    np.testing.assert_array_equal(np.asarray(yj), ye)


def test_check_grads_float64():
    from jax.test_util import check_grads
    m = layer(3, 5, 1, True, seed=3)
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.standard_normal((4, 2, 3)))
    h0, c0 = (jnp.asarray(a) for a in rng.standard_normal((2, 2, 2, 5)))
    lengths = jnp.array([4, 2])

    def f(q, x, h0, c0):
        y, (hn, cn) = flj.layer_norm_lstm(q, x, h0, c0, lengths)
        return jnp.sin(y).sum() + (hn * cn).sum()

    check_grads(f, (jparams(m), x, h0, c0), order=1, modes=["rev"], eps=1e-6)  # central FD: O(eps^2) truncation


def test_vmap_batch_first_and_key():
    m = layer(4, 6, 1, False, seed=5, zoneout=0.3)
    params = jparams(m)
    rng = np.random.default_rng(6)
    xs = jnp.asarray(rng.standard_normal((3, 5, 2, 4)))  # [N,T,B,I]
    ys, _ = jax.vmap(lambda x: flj.layer_norm_lstm(params, x))(xs)
    for n in range(3):
        yn, _ = flj.layer_norm_lstm(params, xs[n])
        np.testing.assert_array_equal(np.asarray(ys[n]), np.asarray(yn))
    x = xs[0]
    yb, (hb, _) = flj.layer_norm_lstm(params, jnp.swapaxes(x, 0, 1), batch_first=True)
    yt, (ht, _) = flj.layer_norm_lstm(params, x)
    np.testing.assert_array_equal(np.asarray(yb), np.swapaxes(np.asarray(yt), 0, 1))
    np.testing.assert_array_equal(np.asarray(hb), np.asarray(ht))
    key = jax.random.key(11)  # masks drawn from a key are flj.zoneout_masks's
    masks = flj.zoneout_masks(key, 0.3, 1, 5, 2, 6, jnp.float64)
    yk, _ = flj.layer_norm_lstm(params, x, zoneout=0.3, key=key)
    ym, _ = flj.layer_norm_lstm(params, x, zoneout=0.3, zoneout_masks=masks)
    np.testing.assert_array_equal(np.asarray(yk), np.asarray(ym))
    assert not np.array_equal(np.asarray(yk), np.asarray(yt))


def test_errors():
    m = layer(4, 6, 1, False)
    params = jparams(m)
    x = jnp.zeros((3, 2, 4))
    with pytest.raises(ValueError, match="c0: expected shape"):
        flj.layer_norm_lstm(params, x, c0=jnp.zeros((1, 2, 5)))
    lstm_params = jparams(fastlstm.LSTM(4, 6, dtype=np.float64))
    with pytest.raises(ValueError, match="missing"):
        flj.layer_norm_lstm(lstm_params, x)  # no norm parameters: not a layer-norm LSTM
    with pytest.raises(ValueError, match="unexpected"):
        flj.lstm(params, x)  # norm parameters: not a plain LSTM
    with pytest.raises(TypeError, match="cell_clip"):
        flj.layer_norm_lstm(params, x, cell_clip=1.0)
    with pytest.raises(ValueError, match="zoneout"):
        flj.layer_norm_lstm(params, x, zoneout=1.5)
