"""fastlstm.jax: the XLA FFI op against a pure jax.lax.scan LSTM written here
(outputs and jax.grad of every input), jax.test_util.check_grads in float64,
jit and vmap."""
import os
import subprocess
import sys

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


def scan_lstm(params, x, h0, c0, lengths, *, layers, bidirectional, H, P, peephole, bias):
    """torch.nn.LSTM's equations with jax.lax.scan; rows end at their length and
    the reverse direction starts at each row's own last element."""
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    lengths = jnp.full((B,), T) if lengths is None else jnp.asarray(lengths)
    t = jnp.arange(T)[:, None]
    valid = t < lengths[None, :]                                   # [T,B]
    rev = jnp.where(valid, lengths[None, :] - 1 - t, t)            # per-row reversal
    hs, cs, inp = [], [], x
    for k in range(layers):
        outs = []
        for d, sfx in enumerate(("", "_reverse")[:D]):
            g = lambda n: params[f"{n}_l{k}{sfx}"]  # noqa: E731
            b = g("bias_ih") + g("bias_hh") if bias else 0.0
            ph = g("weight_ph") if peephole else jnp.zeros((3, H), x.dtype)
            seq = jnp.take_along_axis(inp, rev[:, :, None], 0) if d else inp

            def step(carry, xs, g=g, b=b, ph=ph):
                h, c = carry
                xt, m = xs
                z = xt @ g("weight_ih").T + h @ g("weight_hh").T + b
                zi, zf, zg, zo = jnp.split(z, 4, axis=1)
                i = jax.nn.sigmoid(zi + ph[0] * c)
                f = jax.nn.sigmoid(zf + ph[1] * c)
                c1 = f * c + i * jnp.tanh(zg)
                o = jax.nn.sigmoid(zo + ph[2] * c1)
                h1 = o * jnp.tanh(c1)
                if P:
                    h1 = h1 @ g("weight_hr").T
                m = m[:, None]
                h1, c1 = jnp.where(m, h1, h), jnp.where(m, c1, c)
                return (h1, c1), jnp.where(m, h1, 0.0)

            (hn, cn), y = jax.lax.scan(step, (h0[k * D + d], c0[k * D + d]), (seq, valid))
            if d:
                y = jnp.take_along_axis(y, rev[:, :, None], 0) * valid[:, :, None]
            outs.append(y)
            hs.append(hn)
            cs.append(cn)
        inp = jnp.concatenate(outs, axis=2)
    return inp, (jnp.stack(hs), jnp.stack(cs))


CONFIGS = {
    "plain": dict(),
    "bidir2": dict(num_layers=2, bidirectional=True),
    "proj": dict(proj_size=3),
    "peephole_bidir": dict(peephole=True, bidirectional=True),
    "nobias": dict(bias=False, num_layers=2),
}


def setup(cfg, dtype, lengths):
    m = fastlstm.LSTM(4, 5, dtype=dtype, seed=1, **cfg)
    params = {k: jnp.asarray(v) for k, v in m.state_dict().items()}
    L, D = cfg.get("num_layers", 1), 2 if cfg.get("bidirectional") else 1
    Ho = cfg.get("proj_size") or 5
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((6, 3, 4)).astype(dtype))
    h0 = jnp.asarray(rng.standard_normal((D * L, 3, Ho)).astype(dtype))
    c0 = jnp.asarray(rng.standard_normal((D * L, 3, 5)).astype(dtype))
    lens = jnp.asarray([6, 2, 4]) if lengths else None
    kw = dict(layers=L, bidirectional=D == 2, H=5, P=cfg.get("proj_size", 0),
              peephole=cfg.get("peephole", False), bias=cfg.get("bias", True))
    return params, x, h0, c0, lens, kw


def loss_of(fn):
    def loss(params, x, h0, c0):
        y, (hn, cn) = fn(params, x, h0, c0)
        w = jnp.cos(jnp.arange(y.size, dtype=y.dtype)).reshape(y.shape)
        return (y * w).sum() + (hn ** 2).sum() + cn.sum()
    return loss


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cfg", list(CONFIGS))
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
def test_matches_lax_scan(dtype, cfg, lengths):
    params, x, h0, c0, lens, kw = setup(CONFIGS[cfg], dtype, lengths)
    ours = lambda p, x, h0, c0: flj.lstm(p, x, h0, c0, lens)  # noqa: E731
    theirs = lambda p, x, h0, c0: scan_lstm(p, x, h0, c0, lens, **kw)  # noqa: E731
    tol = 2e-5 if dtype == np.float32 else 1e-11
    got, want = ours(params, x, h0, c0), jax.jit(theirs)(params, x, h0, c0)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol)
    g_got = jax.jit(jax.grad(loss_of(ours), argnums=(0, 1, 2, 3)))(params, x, h0, c0)
    g_want = jax.jit(jax.grad(loss_of(theirs), argnums=(0, 1, 2, 3)))(params, x, h0, c0)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_got), jax.tree.leaves(g_want)):
        scale = max(float(jnp.abs(b).max()), 1.0)
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale, err_msg=str(path))


@pytest.mark.parametrize("cfg", ["bidir2", "proj", "peephole_bidir"])
def test_check_grads_float64(cfg):
    from jax.test_util import check_grads
    params, x, h0, c0, lens, _ = setup(CONFIGS[cfg], np.float64, True)

    def f(params, x, h0, c0):
        y, (hn, cn) = flj.lstm(params, x, h0, c0, lens)
        return y, hn, cn

    check_grads(f, (params, x, h0, c0), order=1, modes=["rev"], eps=1e-6)


def test_batch_first_and_vmap():
    params, x, h0, c0, _, _ = setup({}, np.float64, False)
    y, _ = flj.lstm(params, x)
    yb, _ = flj.lstm(params, jnp.swapaxes(x, 0, 1), batch_first=True)
    np.testing.assert_array_equal(jnp.swapaxes(yb, 0, 1), y)
    xs = jnp.stack([x, 2 * x])
    ys = jax.vmap(lambda x: flj.lstm(params, x)[0])(xs)
    np.testing.assert_array_equal(ys[0], y)
    np.testing.assert_array_equal(ys[1], flj.lstm(params, 2 * x)[0])


def test_same_bits_as_the_numpy_layer():
    m = fastlstm.LSTM(4, 5, num_layers=2, bidirectional=True, seed=3)
    m.eval()
    x = np.random.default_rng(4).standard_normal((6, 3, 4)).astype(np.float32)
    lengths = np.array([6, 1, 3])
    y, (hn, cn) = m(x, lengths=lengths)
    yj, (hnj, cnj) = flj.lstm({k: jnp.asarray(v) for k, v in m.state_dict().items()}, x,
                              lengths=lengths)
    for a, b in ((yj, y), (hnj, hn), (cnj, cn)):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_bad_input():
    params, x, h0, c0, _, _ = setup({}, np.float64, False)
    with pytest.raises(TypeError, match="weight_ih_l0: expected float32 like x"):
        flj.lstm(params, x.astype(jnp.float32))
    with pytest.raises(ValueError, match="input_size 4"):
        flj.lstm(params, jnp.zeros((6, 3, 5)))
    with pytest.raises(ValueError, match="h0: expected shape"):
        flj.lstm(params, x, h0[:, :2])
    with pytest.raises(ValueError, match=r"lengths: every value must be in \[1, 6\]"):
        flj.lstm(params, x, lengths=np.array([7, 1, 1]))
    with pytest.raises(ValueError, match="lengths: expected an integer array"):
        flj.lstm(params, x, lengths=np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="missing"):
        flj.lstm({k: v for k, v in params.items() if k != "bias_hh_l0"}, x)
    # under jit the values are checked by the kernels
    with pytest.raises(Exception, match="lengths"):
        jax.jit(lambda l: flj.lstm(params, x, lengths=l)[0])(jnp.asarray([0, 1, 1])) \
            .block_until_ready()


def test_import_fastlstm_does_not_import_jax():
    code = "import sys, fastlstm; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------- GRU

def gru_setup(dtype, lengths, **cfg):
    m = fastlstm.GRU(4, 5, dtype=dtype, seed=5, **cfg)
    params = {k: jnp.asarray(v) for k, v in m.state_dict().items()}
    D = 2 if cfg.get("bidirectional") else 1
    rng = np.random.default_rng(6)
    x = rng.standard_normal((6, 3, 4)).astype(dtype)
    h0 = rng.standard_normal((D * cfg.get("num_layers", 1), 3, 5)).astype(dtype)
    lens = np.array([6, 2, 4]) if lengths else None
    return m, params, x, h0, lens


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("cfg", [{}, dict(num_layers=2, bidirectional=True, bias=False)],
                         ids=["uni", "bidir2_nobias"])
def test_gru_matches_the_reference(cfg, lengths):
    from fastlstm import reference_gru
    m, params, x, h0, lens = gru_setup(np.float64, lengths, **cfg)
    kw = dict(num_layers=m.num_layers, hidden_size=5, bidirectional=m.bidirectional,
              bias=m.bias)
    yr, hr, cache = reference_gru.gru_forward(x, m.state_dict(), h0=h0, lengths=lens, **kw)
    y, hn = jax.jit(lambda p, x, h0: flj.gru(p, x, h0, lens))(params, x, h0)
    np.testing.assert_allclose(y, yr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(hn, hr, rtol=0, atol=1e-12)
    w = np.cos(np.arange(y.size)).reshape(y.shape)

    def loss(p, x, h0):
        y, hn = flj.gru(p, x, h0, lens)
        return (y * w).sum() + (hn ** 2).sum()

    g = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(params, x, h0)
    dxr, dh0r, gr = reference_gru.gru_backward(cache, w, 2 * hr)
    np.testing.assert_allclose(g[1], dxr, rtol=0, atol=1e-11)
    np.testing.assert_allclose(g[2], dh0r, rtol=0, atol=1e-11)
    for k in gr:
        np.testing.assert_allclose(g[0][k], gr[k], rtol=0, atol=1e-11, err_msg=k)


def test_gru_check_grads_batch_first_vmap_and_same_bits():
    from jax.test_util import check_grads
    m, params, x, h0, lens = gru_setup(np.float64, True, num_layers=2, bidirectional=True)
    check_grads(lambda p, x, h0: flj.gru(p, x, h0, lens), (params, x, h0), order=1,
                modes=["rev"], eps=1e-6)
    y, _ = flj.gru(params, x)
    yb, _ = flj.gru(params, np.swapaxes(x, 0, 1), batch_first=True)
    np.testing.assert_array_equal(jnp.swapaxes(yb, 0, 1), y)
    ys = jax.vmap(lambda x: flj.gru(params, x)[0])(jnp.stack([x, 2 * x]))
    np.testing.assert_array_equal(ys[1], flj.gru(params, 2 * x)[0])
    m.eval()
    ym, hm = m(x, h0, lengths=lens)
    yj, hj = flj.gru(params, x, h0, lens)
    np.testing.assert_array_equal(np.asarray(yj), ym)
    np.testing.assert_array_equal(np.asarray(hj), hm)


def test_gru_bad_input():
    _, params, x, h0, _ = gru_setup(np.float64, False)
    lstm_params = {k: jnp.asarray(v) for k, v in fastlstm.LSTM(4, 5).state_dict().items()}
    with pytest.raises(ValueError, match="weight_hh_l0"):
        flj.gru(lstm_params, x)
    with pytest.raises(ValueError, match="h0: expected shape"):
        flj.gru(params, x, h0[:, :2])
    with pytest.raises(TypeError, match="expected float32 like x"):
        flj.gru(params, x.astype(np.float32))
