"""The NumPy GRU reference (fastlstm.reference_gru) proved against independent oracles:

- torch.nn.GRU in float64 (forward values and every gradient), with packed
  variable-length batches, bidirectional, stacked layers, without bias;
- torch.nn.GRU stacked by hand, one layer at a time, with dropout masks applied
  between layers;
- torch.nn.GRUCell driven row by row and step by step, with zoneout written here
  from its equation (training masks and eval), lengths, layers, both directions;
- central finite differences in float64 on sampled entries of every gradient.

Tolerance: float64 results agree to TOL = 1e-12 relative to max|oracle|. Both sides
round at ~1e-16 per operation over a few tens of operations per value; the
differences measured here are at most 8e-16 (forward and every gradient), so
1e-12 leaves a wide margin for the accumulation and no room for a wrong term.
"""

import importlib.util
import itertools
import pathlib

import numpy as np
import pytest
from _fd import sampled_fd_check
from _tolerance import assert_rel_close

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402


def _load(name):
    try:
        return importlib.import_module(f"fastlstm.{name}")
    except ImportError:  # compiled package not built: load the pure-NumPy file directly
        path = pathlib.Path(__file__).resolve().parents[1] / "python" / "fastlstm" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"_fastlstm_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


ref = _load("reference_gru")

TOL = 1e-12


def _lengths(kind, T, B, rng):
    if kind == "none":
        return None
    if kind == "mixed":                 # a 1, one row of full length, unsorted
        return np.array([3, T, 1, T - 1][:B], dtype=np.int64)[rng.permutation(B)]
    raise ValueError(kind)


def _random_params(rng, I, H, L, bidirectional, bias, scale=0.6):
    """Random weights keyed and shaped as torch.nn.GRU's state_dict (built here)."""
    D = 2 if bidirectional else 1
    p = {}
    for l in range(L):
        for sfx in [""] + (["_reverse"] if bidirectional else []):
            s = f"_l{l}{sfx}"
            p["weight_ih" + s] = rng.uniform(-scale, scale, (3 * H, I if l == 0 else D * H))
            p["weight_hh" + s] = rng.uniform(-scale, scale, (3 * H, H))
            if bias:
                p["bias_ih" + s] = rng.uniform(-scale, scale, 3 * H)
                p["bias_hh" + s] = rng.uniform(-scale, scale, 3 * H)
    return p


# ----------------------------------------------------------------------------
# parameter names and shapes
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("num_layers,bidirectional,bias",
                         list(itertools.product([1, 3], [False, True], [True, False])))
def test_param_shapes_are_torch_grus(num_layers, bidirectional, bias):
    mod = torch.nn.GRU(5, 4, num_layers=num_layers, bidirectional=bidirectional, bias=bias)
    want = [(k, tuple(v.shape)) for k, v in mod.state_dict().items()]
    got = list(ref.gru_param_shapes(5, 4, num_layers, bias, bidirectional).items())
    assert got == want


# ----------------------------------------------------------------------------
# torch.nn.GRU in float64
# ----------------------------------------------------------------------------

def _torch_gru_run(mod, x, h0, lengths, dy, dhn):
    """Forward + backward of a torch GRU with loss sum(y dy) + sum(hn dhn)."""
    T = x.shape[0]
    xt = torch.tensor(x, requires_grad=True)
    h0t = None if h0 is None else torch.tensor(h0, requires_grad=True)
    if lengths is not None:
        packed = pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False)
        out, hn = mod(packed, h0t)
        y, _ = pad_packed_sequence(out, total_length=T)
    else:
        y, hn = mod(xt, h0t)
    loss = (y * torch.tensor(dy)).sum() + (hn * torch.tensor(dhn)).sum()
    mod.zero_grad()
    loss.backward()
    return dict(y=y.detach().numpy(), hn=hn.detach().numpy(), dx=xt.grad.numpy(),
                dh0=None if h0t is None else h0t.grad.numpy(),
                grads={k: p.grad.numpy().copy() for k, p in mod.named_parameters()})


CASES = list(itertools.product(
    [1, 2],                        # num_layers
    [False, True],                 # bidirectional
    [True, False],                 # bias
    [False, True],                 # h0 given
    ["none", "mixed"],             # lengths
))


@pytest.mark.parametrize("num_layers,bidirectional,bias,given_h0,lengths_kind", CASES)
def test_gru_matches_torch_float64(num_layers, bidirectional, bias, given_h0, lengths_kind):
    T, B, I, H = 5, 4, 3, 4
    D = 2 if bidirectional else 1
    seed = CASES.index((num_layers, bidirectional, bias, given_h0, lengths_kind))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    mod = torch.nn.GRU(I, H, num_layers=num_layers, bias=bias,
                       bidirectional=bidirectional).double()
    params = {k: v.detach().numpy().copy() for k, v in mod.state_dict().items()}
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D * num_layers, B, H)) if given_h0 else None
    lengths = _lengths(lengths_kind, T, B, rng)
    dy = rng.standard_normal((T, B, D * H))
    dhn = rng.standard_normal((D * num_layers, B, H))

    want = _torch_gru_run(mod, x, h0, lengths, dy, dhn)

    y, hn, cache = ref.gru_forward(x, params, num_layers=num_layers, hidden_size=H,
                                   bidirectional=bidirectional, bias=bias, h0=h0,
                                   lengths=lengths)
    assert y.dtype == hn.dtype == np.float64
    dx, dh0, grads = ref.gru_backward(cache, dy, dhn)

    assert_rel_close(y, want["y"], TOL, "y")
    assert_rel_close(hn, want["hn"], TOL, "h_n")
    assert_rel_close(dx, want["dx"], TOL, "dx")
    if given_h0:
        assert_rel_close(dh0, want["dh0"], TOL, "dh0")
    assert sorted(grads) == sorted(params)
    for k in params:
        assert_rel_close(grads[k], want["grads"][k], TOL, k)
    if lengths is not None:   # padding: outputs and input gradients exactly zero
        pad = np.arange(T)[:, None] >= lengths[None, :]
        assert np.all(y[pad] == 0) and np.all(dx[pad] == 0)


def test_gru_cell_forward_matches_torch_cell():
    rng = np.random.default_rng(3)
    torch.manual_seed(3)
    B, I, H = 3, 4, 5
    for bias in (True, False):
        cell = torch.nn.GRUCell(I, H, bias=bias).double()
        sd = {k: v.detach().numpy() for k, v in cell.state_dict().items()}
        x = rng.standard_normal((B, I))
        h = rng.standard_normal((B, H))
        want = cell(torch.tensor(x), torch.tensor(h)).detach().numpy()
        got = ref.gru_cell_forward(x, h, sd["weight_ih"], sd["weight_hh"],
                                   sd.get("bias_ih"), sd.get("bias_hh"))
        assert_rel_close(got, want, TOL, "h")
        got1 = ref.gru_cell_forward(x[0], h[0], sd["weight_ih"], sd["weight_hh"],
                                    sd.get("bias_ih"), sd.get("bias_hh"))
        assert_rel_close(got1, want[0], TOL, "h unbatched")


# ----------------------------------------------------------------------------
# dropout: torch.nn.GRU stacked by hand with the masks between layers
# ----------------------------------------------------------------------------

def test_gru_dropout_masks_match_torch_stacked_by_hand():
    T, B, I, H, L = 6, 4, 3, 5, 3
    rng = np.random.default_rng(7)
    torch.manual_seed(7)
    full = torch.nn.GRU(I, H, num_layers=L, bidirectional=True).double()
    params = {k: v.detach().numpy().copy() for k, v in full.state_dict().items()}
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((2 * L, B, H))
    lengths = np.array([2, 6, 1, 4])
    p = 0.4
    masks = [(rng.random((T, B, 2 * H)) >= p) / (1 - p) for _ in range(L - 1)]
    dy = rng.standard_normal((T, B, 2 * H))
    dhn = rng.standard_normal((2 * L, B, H))

    layers = []
    for l in range(L):
        m = torch.nn.GRU(I if l == 0 else 2 * H, H, bidirectional=True).double()
        m.load_state_dict({k.replace(f"_l{l}", "_l0"): torch.tensor(v)
                           for k, v in params.items() if f"_l{l}" in k})
        layers.append(m)
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    inp, hns = xt, []
    for l, m in enumerate(layers):
        packed = pack_padded_sequence(inp, torch.tensor(lengths), enforce_sorted=False)
        out, hn = m(packed, h0t[2 * l:2 * l + 2])
        out, _ = pad_packed_sequence(out, total_length=T)
        hns.append(hn)
        inp = out * torch.tensor(masks[l]) if l < L - 1 else out
    yt, hnt = inp, torch.cat(hns)
    ((yt * torch.tensor(dy)).sum() + (hnt * torch.tensor(dhn)).sum()).backward()

    kw = dict(num_layers=L, hidden_size=H, bidirectional=True, h0=h0, lengths=lengths)
    y, hn, cache = ref.gru_forward(x, params, dropout_masks=masks, **kw)
    dx, dh0, grads = ref.gru_backward(cache, dy, dhn)
    assert_rel_close(y, yt.detach().numpy(), TOL, "y")
    assert_rel_close(hn, hnt.detach().numpy(), TOL, "h_n")
    assert_rel_close(dx, xt.grad.numpy(), TOL, "dx")
    assert_rel_close(dh0, h0t.grad.numpy(), TOL, "dh0")
    for l, m in enumerate(layers):
        for k, prm in m.named_parameters():
            assert_rel_close(grads[k.replace("_l0", f"_l{l}")], prm.grad.numpy(), TOL, k)
    # the masks did something: without them the output differs
    y_nomask = ref.gru_forward(x, params, **kw)[0]
    assert np.max(np.abs(y_nomask - y)) > 1e-3


# ----------------------------------------------------------------------------
# zoneout: torch.nn.GRUCell, one row and one step at a time, zoneout written here
# ----------------------------------------------------------------------------

def _torch_gru_rowwise(x, params, L, D, H, bias, h0, lengths, dropout_masks, keep, dy, dhn):
    """A GRU oracle built from torch.nn.GRUCell: each row runs only its own steps
    (t < lengths[b], the reverse direction from lengths[b]-1 down), and zoneout is
    h_t = k h_{t-1} + (1-k) cell(x_t, h_{t-1}) with k = keep[l][t, b, direction's units]
    (a mask) or k = p (eval). Returns numpy y, hn, dx, dh0, grads of loss
    sum(y dy) + sum(hn dhn)."""
    T, B, I = x.shape
    cells = {}
    for l in range(L):
        for d, sfx in enumerate(["", "_reverse"][:D]):
            cell = torch.nn.GRUCell(I if l == 0 else D * H, H, bias=bias).double()
            cell.load_state_dict({k.split("_l")[0]: torch.tensor(v)
                                  for k, v in params.items() if k.endswith(f"_l{l}{sfx}")})
            cells[l, d] = cell
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    zero = torch.zeros(H, dtype=torch.float64)
    inp, hn = xt, [[None] * B for _ in range(L * D)]
    for l in range(L):
        out = [[[zero] * D for _ in range(B)] for _ in range(T)]     # out[t][b][d]
        for d in range(D):
            for b in range(B):
                n = int(lengths[b])
                h = h0t[l * D + d, b]
                for t in (range(n - 1, -1, -1) if d == 1 else range(n)):
                    h_new = cells[l, d](inp[t, b][None], h[None])[0]
                    if keep is not None:
                        k = keep if np.isscalar(keep) else \
                            torch.tensor(keep[l][t, b, d * H:(d + 1) * H])
                        h_new = k * h + (1 - k) * h_new
                    h = h_new
                    out[t][b][d] = h
                hn[l * D + d][b] = h
        inp = torch.stack([torch.stack([torch.cat(out[t][b]) for b in range(B)])
                           for t in range(T)])
        if l < L - 1 and dropout_masks is not None:
            inp = inp * torch.tensor(dropout_masks[l])
    y = inp
    hn = torch.stack([torch.stack(r) for r in hn])
    ((y * torch.tensor(dy)).sum() + (hn * torch.tensor(dhn)).sum()).backward()
    grads = {}
    for (l, d), cell in cells.items():
        for k, prm in cell.named_parameters():
            grads[f"{k}_l{l}" + ("_reverse" if d else "")] = prm.grad.numpy()
    return dict(y=y.detach().numpy(), hn=hn.detach().numpy(), dx=xt.grad.numpy(),
                dh0=h0t.grad.numpy(), grads=grads)


ZONEOUT_CASES = list(itertools.product(
    [(1, False), (2, True), (2, False)],     # (num_layers, bidirectional)
    ["train", "eval"],                       # zoneout form
    [True, False],                           # bias
))


@pytest.mark.parametrize("layers_dirs,mode,bias", ZONEOUT_CASES)
def test_gru_zoneout_matches_torch_rowwise(layers_dirs, mode, bias):
    L, bidirectional = layers_dirs
    D = 2 if bidirectional else 1
    T, B, I, H = 5, 3, 3, 4
    p = 0.3
    rng = np.random.default_rng(100 + ZONEOUT_CASES.index((layers_dirs, mode, bias)))
    params = _random_params(rng, I, H, L, bidirectional, bias)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D * L, B, H))
    lengths = np.array([3, 5, 1])
    dropout = [(rng.random((T, B, D * H)) >= 0.25) / 0.75 for _ in range(L - 1)]
    zmasks = [(rng.random((T, B, D * H)) < p).astype(np.float64) for _ in range(L)]
    dy = rng.standard_normal((T, B, D * H))
    dhn = rng.standard_normal((D * L, B, H))
    if mode == "train":
        zo = dict(zoneout=p, zoneout_masks=zmasks, training=True)
        keep = zmasks
    else:
        zo = dict(zoneout=p, training=False)
        keep = p

    want = _torch_gru_rowwise(x, params, L, D, H, bias, h0, lengths, dropout, keep, dy, dhn)
    kw = dict(num_layers=L, hidden_size=H, bidirectional=bidirectional, bias=bias, h0=h0,
              lengths=lengths, dropout_masks=dropout or None)
    y, hn, cache = ref.gru_forward(x, params, **kw, **zo)
    dx, dh0, grads = ref.gru_backward(cache, dy, dhn)
    assert_rel_close(y, want["y"], TOL, "y")
    assert_rel_close(hn, want["hn"], TOL, "h_n")
    assert_rel_close(dx, want["dx"], TOL, "dx")
    assert_rel_close(dh0, want["dh0"], TOL, "dh0")
    assert sorted(grads) == sorted(want["grads"]) == sorted(params)
    for k in params:
        assert_rel_close(grads[k], want["grads"][k], TOL, k)
    # zoneout did something: without it the output differs
    y_plain = ref.gru_forward(x, params, **kw)[0]
    assert np.max(np.abs(y_plain - y)) > 1e-3


def test_gru_zoneout_mask_sense_and_limits():
    """m = 1 keeps the previous value: all-ones masks hold h0 through every valid step;
    all-zeros masks are no zoneout; eval with p = 0 is no zoneout."""
    T, B, I, H, L = 4, 3, 2, 3, 2
    rng = np.random.default_rng(11)
    params = _random_params(rng, I, H, L, True, True)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((2 * L, B, H))
    lengths = np.array([4, 2, 1])
    kw = dict(num_layers=L, hidden_size=H, bidirectional=True, h0=h0, lengths=lengths)
    ones = [np.ones((T, B, 2 * H)) for _ in range(L)]
    y, hn, _ = ref.gru_forward(x, params, zoneout=0.5, zoneout_masks=ones, training=True, **kw)
    np.testing.assert_array_equal(hn, h0)
    for b in range(B):
        for t in range(T):
            want = np.concatenate([h0[2], h0[3]], axis=1)[b] if t < lengths[b] else 0.0
            np.testing.assert_array_equal(y[t, b], want)
    plain = ref.gru_forward(x, params, **kw)
    zeros = [np.zeros((T, B, 2 * H)) for _ in range(L)]
    for got in (ref.gru_forward(x, params, zoneout=0.5, zoneout_masks=zeros, training=True,
                                **kw),
                ref.gru_forward(x, params, zoneout=0.0, training=False, **kw)):
        np.testing.assert_array_equal(got[0], plain[0])
        np.testing.assert_array_equal(got[1], plain[1])


def test_gru_zoneout_argument_errors():
    T, B, I, H = 3, 2, 2, 3
    rng = np.random.default_rng(1)
    params = _random_params(rng, I, H, 1, False, True)
    x = rng.standard_normal((T, B, I))
    kw = dict(num_layers=1, hidden_size=H)
    with pytest.raises(ValueError, match="zoneout_masks"):
        ref.gru_forward(x, params, zoneout=0.2, training=True, **kw)
    with pytest.raises(ValueError, match="zoneout_masks"):
        ref.gru_forward(x, params, zoneout=0.2, zoneout_masks=[np.ones((T, B, H))], **kw)
    with pytest.raises(ValueError, match="shape"):
        ref.gru_forward(x, params, zoneout=0.2, zoneout_masks=[np.ones((T, B, 2 * H))],
                        training=True, **kw)
    with pytest.raises(ValueError, match="expected 1 arrays"):
        ref.gru_forward(x, params, zoneout=0.2, zoneout_masks=[np.ones((T, B, H))] * 2,
                        training=True, **kw)


# ----------------------------------------------------------------------------
# central finite differences, float64, sampled entries of every gradient
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gru_backward_matches_finite_differences(mode):
    T, B, I, H, L = 5, 3, 3, 3, 2
    D = 2
    rng = np.random.default_rng(2024 if mode == "train" else 2025)
    params = _random_params(rng, I, H, L, True, True, scale=0.8)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D * L, B, H))
    lengths = np.array([5, 1, 3])
    dropout = [(rng.random((T, B, D * H)) >= 0.3) / 0.7]
    zmasks = [(rng.random((T, B, D * H)) < 0.4).astype(np.float64) for _ in range(L)]
    zo = (dict(zoneout=0.4, zoneout_masks=zmasks, training=True) if mode == "train"
          else dict(zoneout=0.4, training=False))
    dy = rng.standard_normal((T, B, D * H))
    dhn = rng.standard_normal((D * L, B, H))
    kw = dict(num_layers=L, hidden_size=H, bidirectional=True, lengths=lengths,
              dropout_masks=dropout, **zo)

    def loss():
        y, hn, _ = ref.gru_forward(x, params, h0=h0, **kw)
        return np.sum(y * dy) + np.sum(hn * dhn)

    _, _, cache = ref.gru_forward(x, params, h0=h0, **kw)
    dx, dh0, grads = ref.gru_backward(cache, dy, dhn)
    assert sorted(grads) == sorted(params)
    for k in params:
        sampled_fd_check(params[k], grads[k], loss, rng, k)
    sampled_fd_check(x, dx, loss, rng, "dx", n=8)
    sampled_fd_check(h0, dh0, loss, rng, "dh0", n=8)
    pad = np.arange(T)[:, None] >= lengths[None, :]
    assert np.all(dx[pad] == 0)


def test_gru_float32_computation():
    T, B, I, H = 4, 2, 3, 4
    rng = np.random.default_rng(9)
    params = _random_params(rng, I, H, 2, False, True)
    x = rng.standard_normal((T, B, I))
    kw = dict(num_layers=2, hidden_size=H, zoneout=0.2, training=False)
    y, hn, cache = ref.gru_forward(x, params, **kw)
    y32, hn32, cache32 = ref.gru_forward(x, params, dtype=np.float32, **kw)
    assert y32.dtype == hn32.dtype == np.float32
    assert_rel_close(y32, y, 1e-5, "y float32")
    dy = rng.standard_normal(y.shape)
    dx, _, g = ref.gru_backward(cache, dy)
    dx32, dh032, g32 = ref.gru_backward(cache32, dy)
    assert dx32.dtype == dh032.dtype == np.float32
    assert all(v.dtype == np.float32 for v in g32.values())
    assert_rel_close(dx32, dx, 1e-5, "dx float32")
