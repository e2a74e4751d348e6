"""fastlstm.jax with zoneout (LSTM, GRU) and the LSTM's cell clip: against the
float64 references (fastlstm.reference, reference_gru) given the same masks,
against the NumPy layers (fastlstm.LSTM / GRU) given the same masks (same
kernels: same bits), jax.test_util.check_grads in float64 with fixed masks,
masks drawn from a key, jit, vmap, batch_first, and errors."""
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
from fastlstm import reference as ref  # noqa: E402
from fastlstm import reference_gru as ref_gru  # noqa: E402

TOL64 = 1e-12  # float64, relative to max|reference|


def close(got, want, name, tol=TOL64):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape}"
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-300)
    err = float(np.abs(got - want).max(initial=0.0))
    assert err <= tol * scale, f"{name}: max|diff| {err:.3e} > {tol:.0e} * {scale:.3e}"


def jparams(m):
    return {k: jnp.asarray(v) for k, v in m.state_dict().items()}


def masks_for(rng, L, T, B, F, p, dtype=np.float64):
    return [(rng.random((T, B, F)) < p).astype(dtype) for _ in range(L)]


LSTM_CASES = [  # T, B, I, H, layers, bidirectional, proj, peephole, clip, lengths
    (6, 4, 5, 7, 2, True, 0, False, None, True),
    (5, 3, 4, 9, 1, False, 3, True, 0.8, False),
    (7, 5, 6, 10, 2, True, 0, True, 1.2, True),
    (4, 3, 30, 12, 1, False, 0, False, 0.5, False),  # most gates clipped
    (5, 4, 8, 11, 2, True, 4, False, 0.9, True),     # projection: zoneout after it
]


def _ids(c):
    return "T{}B{}I{}H{}-L{}-{}-P{}-{}-clip{}-{}".format(
        *c[:5], "bi" if c[5] else "uni", c[6], "peep" if c[7] else "nopeep", c[8],
        "len" if c[9] else "full")


def lstm_setup(case, p=0.3, seed=0):
    T, B, I, H, L, bid, P, peep, clip, with_lengths = case
    m = fastlstm.LSTM(I, H, num_layers=L, bidirectional=bid, proj_size=P, peephole=peep,
                      dtype=np.float64, seed=seed + H, zoneout=p, cell_clip=clip)
    rng = np.random.default_rng(seed + T * H)
    for _, v in m.named_parameters():  # weights large enough for the clip to bite
        v[...] = rng.uniform(-0.9, 0.9, v.shape)
    D, Ho = (2 if bid else 1), (P or H)
    x = 2 * rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D * L, B, Ho))
    c0 = rng.standard_normal((D * L, B, H))
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    masks = masks_for(rng, L, T, B, D * Ho, p)
    kw = dict(num_layers=L, hidden_size=H, proj_size=P, bidirectional=bid, peephole=peep,
              lengths=lengths, h0=h0, c0=c0, zoneout=p, cell_clip=clip)
    return m, x, h0, c0, lengths, masks, kw, rng


def lstm_loss(wy, whn, wcn, **kw):
    def loss(params, x, h0, c0):
        y, (hn, cn) = flj.lstm(params, x, h0, c0, **kw)
        return (y * wy).sum() + (hn * whn).sum() + (cn * wcn).sum()
    return loss


@pytest.mark.parametrize("case", LSTM_CASES, ids=_ids)
@pytest.mark.parametrize("train", [True, False], ids=["masks", "eval_mix"])
def test_lstm_matches_the_reference(case, train):
    m, x, h0, c0, lengths, masks, kw, rng = lstm_setup(case)
    p, clip = kw["zoneout"], kw["cell_clip"]
    params = jparams(m)
    zkw = dict(zoneout=p, cell_clip=clip, zoneout_masks=masks if train else None)
    yr, hr, cr, cache = ref.lstm_forward(x, m.state_dict(), training=train,
                                         zoneout_masks=masks if train else None, **kw)
    run = jax.jit(lambda p_, x, h0, c0: flj.lstm(p_, x, h0, c0, lengths, **zkw))
    y, (hn, cn) = run(params, x, h0, c0)
    for name, a, b in (("y", y, yr), ("h_n", hn, hr), ("c_n", cn, cr)):
        close(a, b, name)
    wy, whn, wcn = (rng.standard_normal(a.shape) for a in (yr, hr, cr))
    dxr, dh0r, dc0r, gr = ref.lstm_backward(cache, wy, whn, wcn)
    loss = lstm_loss(wy, whn, wcn, lengths=lengths, **zkw)
    g, dx, dh0, dc0 = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(params, x, h0, c0)
    for name, a, b in (("dx", dx, dxr), ("dh0", dh0, dh0r), ("dc0", dc0, dc0r)):
        close(a, b, name)
    assert set(g) == set(gr)
    for k in gr:
        close(g[k], gr[k], k)


GRU_CASES = [  # T, B, I, H, layers, bidirectional, bias, lengths
    (6, 4, 5, 7, 2, True, True, True),
    (5, 3, 4, 9, 1, False, True, False),
    (7, 5, 6, 10, 2, True, False, True),
]


@pytest.mark.parametrize("case", GRU_CASES, ids=lambda c: "T{}B{}I{}H{}-L{}-{}-bias{}-{}".format(
    *c[:5], "bi" if c[5] else "uni", c[6], "len" if c[7] else "full"))
@pytest.mark.parametrize("train", [True, False], ids=["masks", "eval_mix"])
def test_gru_matches_the_reference(case, train):
    T, B, I, H, L, bid, bias, with_lengths = case
    p = 0.4
    m = fastlstm.GRU(I, H, num_layers=L, bidirectional=bid, bias=bias, dtype=np.float64,
                     seed=H, zoneout=p)
    rng = np.random.default_rng(T)
    D = 2 if bid else 1
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D * L, B, H))
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    masks = masks_for(rng, L, T, B, D * H, p) if train else None
    yr, hr, cache = ref_gru.gru_forward(x, m.state_dict(), num_layers=L, hidden_size=H,
                                        bidirectional=bid, bias=bias, h0=h0, lengths=lengths,
                                        zoneout=p, zoneout_masks=masks, training=train)
    zkw = dict(zoneout=p, zoneout_masks=masks)
    y, hn = jax.jit(lambda q, x, h0: flj.gru(q, x, h0, lengths, **zkw))(jparams(m), x, h0)
    close(y, yr, "y")
    close(hn, hr, "h_n")
    wy, whn = rng.standard_normal(yr.shape), rng.standard_normal(hr.shape)

    def loss(q, x, h0):
        y, hn = flj.gru(q, x, h0, lengths, **zkw)
        return (y * wy).sum() + (hn * whn).sum()

    g, dx, dh0 = jax.grad(loss, argnums=(0, 1, 2))(jparams(m), x, h0)
    dxr, dh0r, gr = ref_gru.gru_backward(cache, wy, whn)
    close(dx, dxr, "dx")
    close(dh0, dh0r, "dh0")
    assert set(g) == set(gr)
    for k in gr:
        close(g[k], gr[k], k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_same_bits_as_the_numpy_lstm(dtype):
    m = fastlstm.LSTM(5, 6, num_layers=2, bidirectional=True, peephole=True, dtype=dtype,
                      seed=7, zoneout=0.25, cell_clip=0.7)
    rng = np.random.default_rng(8)
    x = (2 * rng.standard_normal((7, 4, 5))).astype(dtype)
    lengths = np.array([7, 2, 5, 1])
    params = jparams(m)  # before the forward: the layer's own weights
    y, (hn, cn) = m(x, lengths=lengths)
    masks = m.zoneout_masks
    zkw = dict(zoneout=0.25, cell_clip=0.7, zoneout_masks=masks)
    yj, (hj, cj) = flj.lstm(params, x, lengths=lengths, **zkw)
    for a, b in ((yj, y), (hj, hn), (cj, cn)):
        np.testing.assert_array_equal(np.asarray(a), b)
    wy = rng.standard_normal(y.shape).astype(dtype)
    whn = rng.standard_normal(hn.shape).astype(dtype)
    dx, (dh0, _) = m.backward(wy, whn)

    def loss(q, x):
        y, (hn, _) = flj.lstm(q, x, lengths=lengths, **zkw)
        return (y * wy).sum() + (hn * whn).sum()

    # (y * wy).sum() hands the kernels exactly wy; the gradients are the kernels'
    g, gx = jax.grad(loss, argnums=(0, 1))(params, jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(gx), dx)
    for k, v in m.grads.items():
        np.testing.assert_array_equal(np.asarray(g[k]), v, err_msg=k)
    m.eval()  # the deterministic mix, with the clip
    ye, (he, ce) = m(x, lengths=lengths)
    yj, (hj, cj) = flj.lstm(params, x, lengths=lengths, zoneout=0.25, cell_clip=0.7)
    for a, b in ((yj, ye), (hj, he), (cj, ce)):
        np.testing.assert_array_equal(np.asarray(a), b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_same_bits_as_the_numpy_gru(dtype):
    m = fastlstm.GRU(4, 6, num_layers=2, bidirectional=True, dtype=dtype, seed=9, zoneout=0.4)
    rng = np.random.default_rng(10)
    x = rng.standard_normal((6, 3, 4)).astype(dtype)
    h0 = rng.standard_normal((4, 3, 6)).astype(dtype)
    lengths = np.array([6, 3, 1])
    params = jparams(m)
    y, hn = m(x, h0, lengths=lengths)
    masks = m.zoneout_masks
    yj, hj = flj.gru(params, x, h0, lengths, zoneout=0.4, zoneout_masks=masks)
    np.testing.assert_array_equal(np.asarray(yj), y)
    np.testing.assert_array_equal(np.asarray(hj), hn)
    wy = rng.standard_normal(y.shape).astype(dtype)
    dx, dh0 = m.backward(wy)
    g, gx, gh0 = jax.grad(
        lambda q, x, h0: (flj.gru(q, x, h0, lengths, zoneout=0.4, zoneout_masks=masks)[0]
                          * wy).sum(), argnums=(0, 1, 2))(params, jnp.asarray(x),
                                                          jnp.asarray(h0))
    np.testing.assert_array_equal(np.asarray(gx), dx)
    np.testing.assert_array_equal(np.asarray(gh0), dh0)
    for k, v in m.grads.items():
        np.testing.assert_array_equal(np.asarray(g[k]), v, err_msg=k)
    m.eval()
    ye, he = m(x, h0, lengths=lengths)
    yj, hj = flj.gru(params, x, h0, lengths, zoneout=0.4)
    np.testing.assert_array_equal(np.asarray(yj), ye)
    np.testing.assert_array_equal(np.asarray(hj), he)


@pytest.mark.parametrize("train", [True, False], ids=["masks", "eval_mix"])
def test_check_grads_float64(train):
    from jax.test_util import check_grads
    case = (5, 3, 4, 6, 2, True, 0, True, 1.5, True)
    m, x, h0, c0, lengths, masks, _, _ = lstm_setup(case, p=0.35, seed=1)
    zkw = dict(zoneout=0.35, cell_clip=1.5, zoneout_masks=masks if train else None)

    def f(params, x, h0, c0):
        y, (hn, cn) = flj.lstm(params, x, h0, c0, lengths, **zkw)
        return y, hn, cn

    check_grads(f, (jparams(m), x, h0, c0), order=1, modes=["rev"], eps=1e-6)
    g = fastlstm.GRU(4, 5, num_layers=2, bidirectional=True, dtype=np.float64, seed=2)
    rng = np.random.default_rng(3)
    gm = masks_for(rng, 2, 5, 3, 10, 0.35) if train else None
    check_grads(lambda q, x, h0: flj.gru(q, x, h0, lengths, zoneout=0.35, zoneout_masks=gm),
                (jparams(g), x[..., :4], h0[..., :5]), order=1, modes=["rev"], eps=1e-6)


def test_key_draws_the_masks():
    m = fastlstm.LSTM(4, 50, num_layers=2, bidirectional=True, dtype=np.float64, seed=4)
    params = jparams(m)
    x = np.random.default_rng(5).standard_normal((20, 8, 4))
    key = jax.random.key(11)
    masks = flj.zoneout_masks(key, 0.25, 2, 20, 8, 100, jnp.float64)
    assert len(masks) == 2 and all(mk.shape == (20, 8, 100) for mk in masks)
    assert set(np.unique(np.concatenate([np.asarray(mk) for mk in masks]))) <= {0.0, 1.0}
    frac, n = float(np.mean([np.asarray(mk).mean() for mk in masks])), 2 * 20 * 8 * 100
    assert abs(frac - 0.25) < 5 * np.sqrt(0.25 * 0.75 / n), frac  # 5 sigma
    assert not np.array_equal(masks[0], masks[1])  # one key per layer
    y, (hn, cn) = jax.jit(lambda k: flj.lstm(params, x, zoneout=0.25, key=k))(key)
    ym, (hm, cm) = flj.lstm(params, x, zoneout=0.25, zoneout_masks=masks)
    for a, b in ((y, ym), (hn, hm), (cn, cm)):
        np.testing.assert_array_equal(a, b)
    y2, _ = flj.lstm(params, x, zoneout=0.25, key=jax.random.key(12))
    assert not np.array_equal(y, y2)
    ye, _ = flj.lstm(params, x, zoneout=0.25)  # no key: the deterministic mix
    assert not np.array_equal(y, ye)
    y0, _ = flj.lstm(params, x, key=key)  # zoneout 0: the key is unused
    np.testing.assert_array_equal(y0, flj.lstm(params, x)[0])
    yr, _ = flj.lstm(params, x, zoneout=0.25, key=jax.random.PRNGKey(11))  # raw keys too
    assert yr.shape == y.shape
    g = fastlstm.GRU(4, 6, dtype=np.float64, seed=6)  # the GRU draws them the same way
    gk = flj.zoneout_masks(key, 0.5, 1, 20, 8, 6, jnp.float64)
    np.testing.assert_array_equal(
        flj.gru(jparams(g), x, zoneout=0.5, key=key)[0],
        flj.gru(jparams(g), x, zoneout=0.5, zoneout_masks=gk)[0])


def test_vmap_jit_and_batch_first():
    case = (5, 3, 4, 6, 2, True, 0, True, 0.8, False)
    m, x, h0, c0, _, masks, _, rng = lstm_setup(case, p=0.3, seed=2)
    params = jparams(m)
    xs = np.stack([x, -x, 0.5 * x])
    ms = [np.stack([mk, 1 - mk, mk]) for mk in masks]  # per-example masks, batched
    zkw = dict(zoneout=0.3, cell_clip=0.8)

    def f(x, masks):
        return flj.lstm(params, x, zoneout_masks=masks, **zkw)[0]

    ys = jax.jit(jax.vmap(f))(xs, ms)
    for i in range(3):
        np.testing.assert_array_equal(ys[i], f(xs[i], [mk[i] for mk in ms]))
    # vmap of the gradient, masks shared (unbatched)
    gs = jax.vmap(jax.grad(lambda x: f(x, masks).sum()))(xs)
    for i in range(3):
        np.testing.assert_array_equal(gs[i], jax.grad(lambda x: f(x, masks).sum())(xs[i]))
    # vmap over keys
    keys = jax.random.split(jax.random.key(3), 3)
    yk = jax.vmap(lambda k: flj.lstm(params, x, key=k, **zkw)[0])(keys)
    for i in range(3):
        np.testing.assert_array_equal(yk[i], flj.lstm(params, x, key=keys[i], **zkw)[0])
    # batch_first: y is [B,T,...]; the masks stay time-major [T,B,D*Ho]
    yt, (ht, ct) = flj.lstm(params, x, zoneout_masks=masks, **zkw)
    yb, (hb, cb) = flj.lstm(params, np.swapaxes(x, 0, 1), batch_first=True,
                            zoneout_masks=masks, **zkw)
    np.testing.assert_array_equal(np.swapaxes(yb, 0, 1), yt)
    np.testing.assert_array_equal(hb, ht)
    # bool masks are accepted as the same 0/1 weights
    yB, _ = flj.lstm(params, x, zoneout_masks=[mk.astype(bool) for mk in masks], **zkw)
    np.testing.assert_array_equal(yB, yt)


def test_errors():
    m = fastlstm.LSTM(4, 5, num_layers=2, dtype=np.float64, seed=0)
    params = jparams(m)
    x = np.zeros((6, 3, 4))
    good = [np.zeros((6, 3, 5))] * 2
    with pytest.raises(ValueError, match="zoneout"):
        flj.lstm(params, x, zoneout=1.5)
    with pytest.raises(ValueError, match="zoneout"):
        flj.lstm(params, x, zoneout=float("nan"))
    with pytest.raises(TypeError, match="zoneout"):
        flj.lstm(params, x, zoneout="0.1")
    with pytest.raises(TypeError, match="zoneout"):  # a traced value cannot be an attribute
        jax.jit(lambda p: flj.lstm(params, x, zoneout=p)[0])(0.1)
    with pytest.raises(ValueError, match="cell_clip"):
        flj.lstm(params, x, cell_clip=0.0)
    with pytest.raises(ValueError, match="cell_clip"):
        flj.lstm(params, x, cell_clip=-1.0)
    with pytest.raises(TypeError, match="cell_clip"):
        flj.lstm(params, x, cell_clip="1")
    with pytest.raises(TypeError, match="cell_clip"):
        flj.gru(jparams(fastlstm.GRU(4, 5, dtype=np.float64)), x, cell_clip=1.0)
    with pytest.raises(ValueError, match="zoneout_masks: expected a sequence of 2"):
        flj.lstm(params, x, zoneout=0.2, zoneout_masks=good[:1])
    with pytest.raises(ValueError, match="zoneout_masks: expected a sequence of 2"):
        flj.lstm(params, x, zoneout=0.2, zoneout_masks=np.zeros((6, 3, 5)))
    with pytest.raises(ValueError, match=r"zoneout_masks\[1\]: expected shape \(6, 3, 5\)"):
        flj.lstm(params, x, zoneout=0.2, zoneout_masks=[good[0], np.zeros((6, 3, 10))])
    with pytest.raises(TypeError, match=r"zoneout_masks\[0\]: expected float64"):
        flj.lstm(params, x, zoneout=0.2, zoneout_masks=[np.zeros((6, 3, 5), np.float32)] * 2)
    with pytest.raises(ValueError, match="zoneout_masks: given, but zoneout is 0"):
        flj.lstm(params, x, zoneout_masks=good)
    with pytest.raises(ValueError, match="key: pass either"):
        flj.lstm(params, x, zoneout=0.2, zoneout_masks=good, key=jax.random.key(0))
    with pytest.raises(TypeError, match="key: expected a PRNG key"):
        flj.lstm(params, x, zoneout=0.2, key=3)
    with pytest.raises(TypeError, match="key: expected a PRNG key"):
        flj.lstm(params, x, zoneout=0.2, key=jnp.zeros(2))
    with pytest.raises(ValueError, match="zoneout"):
        flj.zoneout_masks(jax.random.key(0), 2.0, 1, 2, 2, 2)


def test_the_custom_calls_check_their_arguments():
    """The FFI handlers themselves refuse bad zoneout, cell_clip and masks with
    an error naming them (what a caller bypassing fastlstm.jax would get)."""
    m = fastlstm.LSTM(4, 5, dtype=np.float64, seed=0)
    w = tuple(jnp.asarray(v) for v in m.state_dict().values())
    x, h0, c0 = jnp.zeros((6, 3, 4)), jnp.zeros((1, 3, 5)), jnp.zeros((1, 3, 5))
    lens = jnp.zeros((0,), jnp.int32)
    out = (jax.ShapeDtypeStruct((6, 3, 5), x.dtype), jax.ShapeDtypeStruct((1, 3, 5), x.dtype),
           jax.ShapeDtypeStruct((1, 3, 5), x.dtype), jax.ShapeDtypeStruct((0,), x.dtype))
    call = jax.ffi.ffi_call("fastlstm_rnn_layer_fwd", out)
    attrs = dict(cell=np.int64(0), hidden_size=np.int64(5), proj_size=np.int64(0),
                 bidirectional=np.int64(0), bias=np.int64(1), peephole=np.int64(0),
                 training=np.int64(0), isa=np.int64(0), num_threads=np.int64(1))

    def run(keep, zoneout=0.0, cell_clip=0.0, **kw):
        a = dict(attrs, **kw)
        r = call(x, h0, c0, lens, keep, *w, zoneout=np.float64(zoneout),
                 cell_clip=np.float64(cell_clip), **a)
        return jax.block_until_ready(r)

    none = jnp.zeros((0,), x.dtype)
    run(none, 0.5, 1.0)  # fine
    run(jnp.ones((6, 3, 5)), 0.5)  # fine
    with pytest.raises(Exception, match="zoneout_keep: expected 90 elements"):
        run(jnp.ones((6, 3, 4)), 0.5)
    with pytest.raises(Exception, match="zoneout_keep: expected the dtype of x"):
        run(jnp.ones((6, 3, 5), jnp.float32), 0.5)
    with pytest.raises(Exception, match="zoneout: expected a probability"):
        run(none, 1.5)
    with pytest.raises(Exception, match="zoneout: expected a probability"):
        run(none, float("nan"))
    with pytest.raises(Exception, match="cell_clip: expected >= 0"):
        run(none, 0.0, -1.0)
    with pytest.raises(Exception, match="cell_clip"):
        run(none, 0.0, 1.0, cell=np.int64(1))  # the GRU has no cell clip
