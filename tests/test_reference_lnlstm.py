"""The NumPy layer-norm LSTM reference (fastlstm.reference_lnlstm) proved against
independent oracles:

- a torch autograd implementation of the equations written here with
  torch.nn.functional.layer_norm, driven row by row and step by step (each row
  runs only its own steps), with zoneout (training masks and eval), dropout
  masks, lengths, stacked layers, both directions, with and without bias:
  forward values and every gradient;
- central finite differences in float64 on sampled entries of every gradient.

Tolerance: float64 results agree to TOL = 1e-12 relative to max|oracle|. A layer
norm divides the rounding of its input by the input's standard deviation, and the
recurrence compounds that over steps, so the float64 error is larger than the
plain LSTM's: against a long-double run of the same equations, each side errs by
up to 5e-14 (forward and gradients) on these cases, and the two sides differ by at
most 8e-14. 1e-12 is >10x that and leaves no room for a wrong term (a wrong
epsilon, an unbiased variance or a missing term errs by >1e-6).
"""

import importlib.util
import itertools
import pathlib

import numpy as np
import pytest
from _fd import sampled_fd_check
from _tolerance import assert_rel_close

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _load(name):
    try:
        return importlib.import_module(f"fastlstm.{name}")
    except ImportError:  # compiled package not built: load the pure-NumPy file directly
        path = pathlib.Path(__file__).resolve().parents[1] / "python" / "fastlstm" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"_fastlstm_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


ref = _load("reference_lnlstm")

TOL = 1e-12
EPS = 1e-5              # torch.nn.LayerNorm's default, the model's epsilon


def _random_params(rng, I, H, L, bidirectional, bias, scale=0.6):
    """Random weights; the layer-norm gains around 1 and β_c around 0, away from
    their initial values so that a gain or a bias used in the wrong place shows."""
    D = 2 if bidirectional else 1
    p = {}
    for l in range(L):
        for sfx in [""] + (["_reverse"] if bidirectional else []):
            s = f"_l{l}{sfx}"
            p["weight_ih" + s] = rng.uniform(-scale, scale, (4 * H, I if l == 0 else D * H))
            p["weight_hh" + s] = rng.uniform(-scale, scale, (4 * H, H))
            if bias:
                p["bias_ih" + s] = rng.uniform(-scale, scale, 4 * H)
                p["bias_hh" + s] = rng.uniform(-scale, scale, 4 * H)
            p["weight_ln_ih" + s] = rng.uniform(0.5, 1.5, 4 * H)
            p["weight_ln_hh" + s] = rng.uniform(0.5, 1.5, 4 * H)
            p["weight_ln_c" + s] = rng.uniform(0.5, 1.5, H)
            p["bias_ln_c" + s] = rng.uniform(-0.5, 0.5, H)
    return p


# ----------------------------------------------------------------------------
# parameter names and shapes
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("num_layers,bidirectional,bias",
                         list(itertools.product([1, 3], [False, True], [True, False])))
def test_param_shapes_are_torch_lstms_plus_layer_norm(num_layers, bidirectional, bias):
    """The LSTM's parameters keep torch.nn.LSTM's names, shapes and order; each direction's
    four layer-norm parameters follow its LSTM ones."""
    I, H = 5, 4
    lstm = torch.nn.LSTM(I, H, num_layers=num_layers, bidirectional=bidirectional, bias=bias)
    want = []
    for k, v in lstm.state_dict().items():
        want.append((k, tuple(v.shape)))
        if k.startswith("bias_hh") or (not bias and k.startswith("weight_hh")):
            sfx = k[len("weight_hh"):] if not bias else k[len("bias_hh"):]
            want += [("weight_ln_ih" + sfx, (4 * H,)), ("weight_ln_hh" + sfx, (4 * H,)),
                     ("weight_ln_c" + sfx, (H,)), ("bias_ln_c" + sfx, (H,))]
    got = list(ref.lnlstm_param_shapes(I, H, num_layers, bias, bidirectional).items())
    assert got == want


# ----------------------------------------------------------------------------
# torch autograd oracle, written from the equations
# ----------------------------------------------------------------------------

def _torch_step(x, h, c, w, H):
    """One step for one row: x [1,I], h [1,H], c [1,H]; w: this direction's tensors."""
    a = (F.layer_norm(x @ w["weight_ih"].T, (4 * H,), weight=w["weight_ln_ih"], eps=EPS)
         + F.layer_norm(h @ w["weight_hh"].T, (4 * H,), weight=w["weight_ln_hh"], eps=EPS))
    if "bias_ih" in w:
        a = a + w["bias_ih"] + w["bias_hh"]
    a_i, a_f, a_g, a_o = a.chunk(4, dim=1)
    c = torch.sigmoid(a_f) * c + torch.sigmoid(a_i) * torch.tanh(a_g)
    h = torch.sigmoid(a_o) * torch.tanh(
        F.layer_norm(c, (H,), weight=w["weight_ln_c"], bias=w["bias_ln_c"], eps=EPS))
    return h, c


def _torch_lnlstm_rowwise(x, params, L, D, H, h0, c0, lengths, dropout_masks, keep,
                          dy, dhn, dcn):
    """Each row runs only its own steps (t < lengths[b], the reverse direction from
    lengths[b]-1 down); zoneout is h_t = k h_{t-1} + (1-k) h̃_t with k = keep[l][t, b,
    direction's units] (a mask) or k = p (eval), c untouched. Returns numpy y, hn, cn,
    dx, dh0, dc0, grads of loss sum(y dy) + sum(hn dhn) + sum(cn dcn)."""
    T, B, _ = x.shape
    P = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    c0t = torch.tensor(c0, requires_grad=True)
    zero = torch.zeros(H, dtype=torch.float64)
    inp = xt
    hn = [[None] * B for _ in range(L * D)]
    cn = [[None] * B for _ in range(L * D)]
    for l in range(L):
        out = [[[zero] * D for _ in range(B)] for _ in range(T)]     # out[t][b][d]
        for d in range(D):
            sfx = f"_l{l}" + ("_reverse" if d else "")
            w = {k[:-len(sfx)]: v for k, v in P.items() if k.endswith(sfx)}
            for b in range(B):
                n = int(lengths[b])
                h, c = h0t[l * D + d, b][None], c0t[l * D + d, b][None]
                for t in (range(n - 1, -1, -1) if d == 1 else range(n)):
                    h_new, c = _torch_step(inp[t, b][None], h, c, w, H)
                    if keep is not None:
                        k = keep if np.isscalar(keep) else \
                            torch.tensor(keep[l][t, b, d * H:(d + 1) * H])
                        h_new = k * h + (1 - k) * h_new
                    h = h_new
                    out[t][b][d] = h[0]
                hn[l * D + d][b], cn[l * D + d][b] = h[0], c[0]
        inp = torch.stack([torch.stack([torch.cat(out[t][b]) for b in range(B)])
                           for t in range(T)])
        if l < L - 1 and dropout_masks is not None:
            inp = inp * torch.tensor(dropout_masks[l])
    y = inp
    hn = torch.stack([torch.stack(r) for r in hn])
    cn = torch.stack([torch.stack(r) for r in cn])
    ((y * torch.tensor(dy)).sum() + (hn * torch.tensor(dhn)).sum()
     + (cn * torch.tensor(dcn)).sum()).backward()
    return dict(y=y.detach().numpy(), hn=hn.detach().numpy(), cn=cn.detach().numpy(),
                dx=xt.grad.numpy(), dh0=h0t.grad.numpy(), dc0=c0t.grad.numpy(),
                grads={k: v.grad.numpy() for k, v in P.items()})


CASES = list(itertools.product(
    [(1, False), (1, True), (2, True), (2, False)],    # (num_layers, bidirectional)
    ["none", "train", "eval"],                         # zoneout
    [True, False],                                     # bias
    [True],                                            # lengths
)) + [((2, True), zo, True, False) for zo in ["none", "train", "eval"]]   # full length


@pytest.mark.parametrize("layers_dirs,zoneout_mode,bias,with_lengths", CASES)
def test_lnlstm_matches_torch_equations(layers_dirs, zoneout_mode, bias, with_lengths):
    L, bidirectional = layers_dirs
    D = 2 if bidirectional else 1
    T, B, I, H = 5, 3, 3, 4
    p = 0.3
    rng = np.random.default_rng(CASES.index((layers_dirs, zoneout_mode, bias, with_lengths)))
    params = _random_params(rng, I, H, L, bidirectional, bias)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D * L, B, H))
    c0 = rng.standard_normal((D * L, B, H))
    lengths = np.array([3, 5, 1]) if with_lengths else None
    dropout = [(rng.random((T, B, D * H)) >= 0.25) / 0.75 for _ in range(L - 1)]
    zmasks = [(rng.random((T, B, D * H)) < p).astype(np.float64) for _ in range(L)]
    dy = rng.standard_normal((T, B, D * H))
    dhn = rng.standard_normal((D * L, B, H))
    dcn = rng.standard_normal((D * L, B, H))
    zo, keep = {
        "none": (dict(), None),
        "train": (dict(zoneout=p, zoneout_masks=zmasks, training=True), zmasks),
        "eval": (dict(zoneout=p, training=False), p)}[zoneout_mode]

    want = _torch_lnlstm_rowwise(x, params, L, D, H, h0, c0,
                                 np.full(B, T) if lengths is None else lengths,
                                 dropout, keep, dy, dhn, dcn)
    kw = dict(num_layers=L, hidden_size=H, bidirectional=bidirectional, bias=bias, h0=h0,
              c0=c0, lengths=lengths, dropout_masks=dropout or None)
    y, hn, cn, cache = ref.lnlstm_forward(x, params, **kw, **zo)
    assert y.dtype == hn.dtype == cn.dtype == np.float64
    dx, dh0, dc0, grads = ref.lnlstm_backward(cache, dy, dhn, dcn)
    assert_rel_close(y, want["y"], TOL, "y")
    assert_rel_close(hn, want["hn"], TOL, "h_n")
    assert_rel_close(cn, want["cn"], TOL, "c_n")
    assert_rel_close(dx, want["dx"], TOL, "dx")
    assert_rel_close(dh0, want["dh0"], TOL, "dh0")
    assert_rel_close(dc0, want["dc0"], TOL, "dc0")
    assert sorted(grads) == sorted(params)
    for k in params:
        assert_rel_close(grads[k], want["grads"][k], TOL, k)
    if lengths is not None:   # padding: outputs and input gradients exactly zero
        pad = np.arange(T)[:, None] >= lengths[None, :]
        assert np.all(y[pad] == 0) and np.all(dx[pad] == 0)
    if zoneout_mode != "none":   # zoneout did something
        y_plain = ref.lnlstm_forward(x, params, **kw)[0]
        assert np.max(np.abs(y_plain - y)) > 1e-3


def test_lnlstm_cell_forward_matches_torch_step():
    rng = np.random.default_rng(3)
    B, I, H = 3, 4, 5
    for bias in (True, False):
        p = {k[:-3]: v for k, v in _random_params(rng, I, H, 1, False, bias).items()}
        w = {k: torch.tensor(v) for k, v in p.items()}
        x, h, c = (rng.standard_normal((B, n)) for n in (I, H, H))
        want_h, want_c = _torch_step(torch.tensor(x), torch.tensor(h), torch.tensor(c), w, H)
        args = (p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh"),
                p["weight_ln_ih"], p["weight_ln_hh"], p["weight_ln_c"], p["bias_ln_c"])
        got_h, got_c = ref.lnlstm_cell_forward(x, h, c, *args)
        assert_rel_close(got_h, want_h.numpy(), TOL, "h")
        assert_rel_close(got_c, want_c.numpy(), TOL, "c")
        got_h1, got_c1 = ref.lnlstm_cell_forward(x[0], h[0], c[0], *args)
        assert_rel_close(got_h1, want_h.numpy()[0], TOL, "h unbatched")
        assert_rel_close(got_c1, want_c.numpy()[0], TOL, "c unbatched")


def test_lnlstm_zoneout_mask_sense():
    """m = 1 keeps the previous h: all-ones masks hold h0 through every step while c
    still evolves; all-zeros masks are no zoneout."""
    T, B, I, H, L = 4, 3, 2, 3, 2
    rng = np.random.default_rng(11)
    params = _random_params(rng, I, H, L, True, True)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((2 * L, B, H))
    c0 = rng.standard_normal((2 * L, B, H))
    kw = dict(num_layers=L, hidden_size=H, bidirectional=True, h0=h0, c0=c0,
              lengths=np.array([4, 2, 1]))
    ones = [np.ones((T, B, 2 * H)) for _ in range(L)]
    y, hn, cn, _ = ref.lnlstm_forward(x, params, zoneout_masks=ones, training=True, **kw)
    np.testing.assert_array_equal(hn, h0)
    assert np.min(np.abs(cn - c0)) > 0          # c is not zoned out
    plain = ref.lnlstm_forward(x, params, **kw)
    zeros = [np.zeros((T, B, 2 * H)) for _ in range(L)]
    got = ref.lnlstm_forward(x, params, zoneout=0.5, zoneout_masks=zeros, training=True, **kw)
    for u, v in zip(got[:3], plain[:3]):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match="zoneout_masks"):
        ref.lnlstm_forward(x, params, zoneout=0.5, training=True, **kw)
    with pytest.raises(ValueError, match="zoneout_masks"):
        ref.lnlstm_forward(x, params, zoneout=0.5, zoneout_masks=ones, **kw)


# ----------------------------------------------------------------------------
# central finite differences, float64, sampled entries of every gradient
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["train", "eval"])
def test_lnlstm_backward_matches_finite_differences(mode):
    T, B, I, H, L = 5, 3, 3, 3, 2
    D = 2
    rng = np.random.default_rng(2024 if mode == "train" else 2025)
    params = _random_params(rng, I, H, L, True, True, scale=0.8)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D * L, B, H))
    c0 = rng.standard_normal((D * L, B, H))
    lengths = np.array([5, 1, 3])
    dropout = [(rng.random((T, B, D * H)) >= 0.3) / 0.7]
    zmasks = [(rng.random((T, B, D * H)) < 0.4).astype(np.float64) for _ in range(L)]
    zo = (dict(zoneout=0.4, zoneout_masks=zmasks, training=True) if mode == "train"
          else dict(zoneout=0.4, training=False))
    dy = rng.standard_normal((T, B, D * H))
    dhn = rng.standard_normal((D * L, B, H))
    dcn = rng.standard_normal((D * L, B, H))
    kw = dict(num_layers=L, hidden_size=H, bidirectional=True, lengths=lengths,
              dropout_masks=dropout, **zo)

    def loss():
        y, hn, cn, _ = ref.lnlstm_forward(x, params, h0=h0, c0=c0, **kw)
        return np.sum(y * dy) + np.sum(hn * dhn) + np.sum(cn * dcn)

    _, _, _, cache = ref.lnlstm_forward(x, params, h0=h0, c0=c0, **kw)
    dx, dh0, dc0, grads = ref.lnlstm_backward(cache, dy, dhn, dcn)
    assert sorted(grads) == sorted(params)
    for k in params:
        sampled_fd_check(params[k], grads[k], loss, rng, k)
    sampled_fd_check(x, dx, loss, rng, "dx", n=8)
    sampled_fd_check(h0, dh0, loss, rng, "dh0", n=8)
    sampled_fd_check(c0, dc0, loss, rng, "dc0", n=8)
    pad = np.arange(T)[:, None] >= lengths[None, :]
    assert np.all(dx[pad] == 0)


def test_lnlstm_float32_computation():
    T, B, I, H = 4, 2, 3, 4
    rng = np.random.default_rng(9)
    params = _random_params(rng, I, H, 2, False, True)
    x = rng.standard_normal((T, B, I))
    kw = dict(num_layers=2, hidden_size=H, zoneout=0.2, training=False)
    y, hn, cn, cache = ref.lnlstm_forward(x, params, **kw)
    y32, hn32, cn32, cache32 = ref.lnlstm_forward(x, params, dtype=np.float32, **kw)
    assert y32.dtype == hn32.dtype == cn32.dtype == np.float32
    assert_rel_close(y32, y, 1e-5, "y float32")
    dy = rng.standard_normal(y.shape)
    dx, _, _, g = ref.lnlstm_backward(cache, dy)
    dx32, dh032, dc032, g32 = ref.lnlstm_backward(cache32, dy)
    assert dx32.dtype == dh032.dtype == dc032.dtype == np.float32
    assert all(v.dtype == np.float32 for v in g32.values())
    assert_rel_close(dx32, dx, 1e-5, "dx float32")
