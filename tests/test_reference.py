"""The NumPy reference (fastlstm.reference) proved against independent oracles:

- torch.nn.LSTM in float64 (forward values and every gradient), with packed
  variable-length batches, projections, bidirectional, stacked layers;
- torch.nn.LSTM stacked by hand with dropout masks applied between layers;
- a pure-Python scalar implementation of the peephole equations (forward);
- central finite differences in float64 (every gradient, all options together).

The LSTM's zoneout (on h, as the GRU's) and cell_clip (ONNX's clip) against:

- a torch autograd LSTM written here from the equations (torch.clamp for the clip),
  driven row by row and step by step, with lengths, both directions, 2 layers,
  peepholes, projection, dropout masks: forward values and every gradient;
- ONNX Runtime's LSTM operator with clip (forward; where ONNX says the clip goes);
- central finite differences of every gradient, at points away from the clip's kink.
"""

import importlib.util
import itertools
import math
import pathlib
import types

import numpy as np
from _fd import central_diff
from _tolerance import assert_rel_close
import pytest


def _load_reference():
    try:
        from fastlstm import reference
        return reference
    except ImportError:  # compiled package not built: load the pure-NumPy file directly
        path = pathlib.Path(__file__).resolve().parents[1] / "python" / "fastlstm" / "reference.py"
        spec = importlib.util.spec_from_file_location("_fastlstm_reference", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


ref = _load_reference()


def _param_names(num_layers, bidirectional, bias, proj_size, peephole):
    names = []
    for l in range(num_layers):
        for sfx in ([""] + (["_reverse"] if bidirectional else [])):
            names += [f"weight_ih_l{l}{sfx}", f"weight_hh_l{l}{sfx}"]
            if bias:
                names += [f"bias_ih_l{l}{sfx}", f"bias_hh_l{l}{sfx}"]
            if proj_size > 0:
                names += [f"weight_hr_l{l}{sfx}"]
            if peephole:
                names += [f"weight_ph_l{l}{sfx}"]
    return names


def _random_params(rng, input_size, hidden_size, num_layers, bidirectional, bias,
                   proj_size, peephole, scale=0.6):
    D = 2 if bidirectional else 1
    H = hidden_size
    Hout = proj_size or H
    p = {}
    for l in range(num_layers):
        I_l = input_size if l == 0 else D * Hout
        for sfx in ([""] + (["_reverse"] if bidirectional else [])):
            s = f"_l{l}{sfx}"
            p["weight_ih" + s] = rng.uniform(-scale, scale, (4 * H, I_l))
            p["weight_hh" + s] = rng.uniform(-scale, scale, (4 * H, Hout))
            if bias:
                p["bias_ih" + s] = rng.uniform(-scale, scale, 4 * H)
                p["bias_hh" + s] = rng.uniform(-scale, scale, 4 * H)
            if proj_size:
                p["weight_hr" + s] = rng.uniform(-scale, scale, (Hout, H))
            if peephole:
                p["weight_ph" + s] = rng.uniform(-scale, scale, (3, H))
    return p


def _lengths(kind, T, B, rng):
    if kind == "none":
        return None
    if kind == "equal_full":            # all equal to T (packed anyway)
        return np.full(B, T, dtype=np.int64)
    if kind == "equal_short":           # all equal, shorter than T
        return np.full(B, T - 2, dtype=np.int64)
    if kind == "mixed":                 # a 1, one row of full length, unsorted
        lens = np.array([3, T, 1, 2, T - 1, 4][:B], dtype=np.int64)
        return lens[rng.permutation(B)]
    raise ValueError(kind)


# ----------------------------------------------------------------------------
# torch.nn.LSTM in float64
# ----------------------------------------------------------------------------

def _torch_run(mod, x, h0, c0, lengths, dy, dhn, dcn):
    """Forward + backward of a torch LSTM with loss sum(y dy) + sum(hn dhn) + sum(cn dcn).
    Returns numpy: y, hn, cn, dx, dh0, dc0 (None if no hx), param grads."""
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    T = x.shape[0]
    xt = torch.tensor(x, requires_grad=True)
    hx = None
    if h0 is not None:
        h0t = torch.tensor(h0, requires_grad=True)
        c0t = torch.tensor(c0, requires_grad=True)
        hx = (h0t, c0t)
    if lengths is not None:
        packed = pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False)
        out, (hn, cn) = mod(packed, hx)
        y, _ = pad_packed_sequence(out, total_length=T)
    else:
        y, (hn, cn) = mod(xt, hx)
    loss = ((y * torch.tensor(dy)).sum() + (hn * torch.tensor(dhn)).sum()
            + (cn * torch.tensor(dcn)).sum())
    mod.zero_grad()
    loss.backward()
    grads = {k: p.grad.detach().numpy().copy() for k, p in mod.named_parameters()}
    return dict(y=y.detach().numpy(), hn=hn.detach().numpy(), cn=cn.detach().numpy(),
                dx=xt.grad.numpy(), dh0=None if hx is None else hx[0].grad.numpy(),
                dc0=None if hx is None else hx[1].grad.numpy(), grads=grads)


CASES = list(itertools.product(
    [1, 2, 3],                     # num_layers
    [False, True],                 # bidirectional
    [True, False],                 # bias
    [0, 3],                        # proj_size
    [False, True],                 # h0/c0 given
    ["none", "equal_full", "equal_short", "mixed"],
))


@pytest.mark.parametrize("num_layers,bidirectional,bias,proj_size,given_hx,lengths_kind", CASES)
def test_reference_matches_torch_float64(num_layers, bidirectional, bias, proj_size,
                                         given_hx, lengths_kind):
    torch = pytest.importorskip("torch")
    T, B, I, H = 5, 4, 3, 4
    D = 2 if bidirectional else 1
    Hout = proj_size or H
    seed = CASES.index((num_layers, bidirectional, bias, proj_size, given_hx, lengths_kind))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    mod = torch.nn.LSTM(I, H, num_layers=num_layers, bias=bias, bidirectional=bidirectional,
                        proj_size=proj_size).double()
    params = {k: v.detach().numpy().copy() for k, v in mod.state_dict().items()}
    assert sorted(params) == sorted(_param_names(num_layers, bidirectional, bias, proj_size,
                                                 False))

    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D * num_layers, B, Hout)) if given_hx else None
    c0 = rng.standard_normal((D * num_layers, B, H)) if given_hx else None
    lengths = _lengths(lengths_kind, T, B, rng)
    dy = rng.standard_normal((T, B, D * Hout))
    dhn = rng.standard_normal((D * num_layers, B, Hout))
    dcn = rng.standard_normal((D * num_layers, B, H))

    want = _torch_run(mod, x, h0, c0, lengths, dy, dhn, dcn)

    y, hn, cn, cache = ref.lstm_forward(
        x, params, num_layers=num_layers, hidden_size=H, proj_size=proj_size,
        bidirectional=bidirectional, bias=bias, h0=h0, c0=c0, lengths=lengths)
    assert y.dtype == np.float64
    dx, dh0, dc0, grads = ref.lstm_backward(cache, dy, dhn, dcn)

    tol = 1e-10
    assert_rel_close(y, want["y"], tol, "y")
    assert_rel_close(hn, want["hn"], tol, "h_n")
    assert_rel_close(cn, want["cn"], tol, "c_n")
    assert_rel_close(dx, want["dx"], tol, "dx")
    if given_hx:
        assert_rel_close(dh0, want["dh0"], tol, "dh0")
        assert_rel_close(dc0, want["dc0"], tol, "dc0")
    assert sorted(grads) == sorted(params)
    for k in params:
        assert grads[k].shape == params[k].shape, k
        assert_rel_close(grads[k], want["grads"][k], tol, k)
    if lengths is not None:   # padding: outputs and input gradients exactly zero
        pad = np.arange(T)[:, None] >= lengths[None, :]
        assert np.all(y[pad] == 0) and np.all(dx[pad] == 0)


def test_reference_dropout_masks_match_torch_stacked_by_hand():
    """dropout_masks[k] multiplies layer k's output before layer k+1: oracle is a stack of
    one-layer torch LSTMs with the mask applied between them by hand."""
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    T, B, I, H, P, L = 6, 4, 3, 5, 3, 3
    rng = np.random.default_rng(7)
    torch.manual_seed(7)
    full = torch.nn.LSTM(I, H, num_layers=L, bidirectional=True, proj_size=P).double()
    params = {k: v.detach().numpy().copy() for k, v in full.state_dict().items()}
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((2 * L, B, P))
    c0 = rng.standard_normal((2 * L, B, H))
    lengths = np.array([2, 6, 1, 4])
    p = 0.4
    masks = [(rng.random((T, B, 2 * P)) >= p) / (1 - p) for _ in range(L - 1)]
    dy = rng.standard_normal((T, B, 2 * P))
    dhn = rng.standard_normal((2 * L, B, P))
    dcn = rng.standard_normal((2 * L, B, H))

    # oracle
    layers = []
    for l in range(L):
        m = torch.nn.LSTM(I if l == 0 else 2 * P, H, bidirectional=True, proj_size=P).double()
        m.load_state_dict({k.replace(f"_l{l}", "_l0"): torch.tensor(v)
                           for k, v in params.items() if f"_l{l}" in k})
        layers.append(m)
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    c0t = torch.tensor(c0, requires_grad=True)
    inp, hns, cns = xt, [], []
    for l, m in enumerate(layers):
        packed = pack_padded_sequence(inp, torch.tensor(lengths), enforce_sorted=False)
        out, (hn, cn) = m(packed, (h0t[2 * l:2 * l + 2], c0t[2 * l:2 * l + 2]))
        out, _ = pad_packed_sequence(out, total_length=T)
        hns.append(hn)
        cns.append(cn)
        inp = out * torch.tensor(masks[l]) if l < L - 1 else out
    yt, hnt, cnt = inp, torch.cat(hns), torch.cat(cns)
    loss = ((yt * torch.tensor(dy)).sum() + (hnt * torch.tensor(dhn)).sum()
            + (cnt * torch.tensor(dcn)).sum())
    loss.backward()

    y, hn, cn, cache = ref.lstm_forward(x, params, num_layers=L, hidden_size=H, proj_size=P,
                                        bidirectional=True, h0=h0, c0=c0, lengths=lengths,
                                        dropout_masks=masks)
    dx, dh0, dc0, grads = ref.lstm_backward(cache, dy, dhn, dcn)
    tol = 1e-10
    assert_rel_close(y, yt.detach().numpy(), tol, "y")
    assert_rel_close(hn, hnt.detach().numpy(), tol, "h_n")
    assert_rel_close(cn, cnt.detach().numpy(), tol, "c_n")
    assert_rel_close(dx, xt.grad.numpy(), tol, "dx")
    assert_rel_close(dh0, h0t.grad.numpy(), tol, "dh0")
    assert_rel_close(dc0, c0t.grad.numpy(), tol, "dc0")
    for l, m in enumerate(layers):
        for k, prm in m.named_parameters():
            assert_rel_close(grads[k.replace("_l0", f"_l{l}")], prm.grad.numpy(), tol, k)
    # the masks did something: without them the output differs
    y_nomask = ref.lstm_forward(x, params, num_layers=L, hidden_size=H, proj_size=P,
                                bidirectional=True, h0=h0, c0=c0, lengths=lengths)[0]
    assert np.max(np.abs(y_nomask - y)) > 1e-3


def test_lstm_cell_forward_matches_torch_cell():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    torch.manual_seed(3)
    B, I, H = 3, 4, 5
    for bias in (True, False):
        cell = torch.nn.LSTMCell(I, H, bias=bias).double()
        sd = {k: v.detach().numpy() for k, v in cell.state_dict().items()}
        x = rng.standard_normal((B, I))
        h = rng.standard_normal((B, H))
        c = rng.standard_normal((B, H))
        want_h, want_c = cell(torch.tensor(x), (torch.tensor(h), torch.tensor(c)))
        got_h, got_c = ref.lstm_cell_forward(x, h, c, sd["weight_ih"], sd["weight_hh"],
                                             sd.get("bias_ih"), sd.get("bias_hh"))
        assert_rel_close(got_h, want_h.detach().numpy(), 1e-12, "h")
        assert_rel_close(got_c, want_c.detach().numpy(), 1e-12, "c")
        # unbatched
        got_h1, got_c1 = ref.lstm_cell_forward(x[0], h[0], c[0], sd["weight_ih"],
                                               sd["weight_hh"], sd.get("bias_ih"),
                                               sd.get("bias_hh"))
        assert_rel_close(got_h1, want_h.detach().numpy()[0], 1e-12, "h unbatched")
        assert_rel_close(got_c1, want_c.detach().numpy()[0], 1e-12, "c unbatched")


# ----------------------------------------------------------------------------
# peephole forward against a scalar pure-Python transcription of the equations
# ----------------------------------------------------------------------------

def _scalar_peephole_lstm(x, w_ih, w_hh, b_ih, b_hh, w_ph, w_hr, h0, c0, reverse, length):
    """One direction, one batch row, pure Python floats, written from the equations."""
    sig = lambda z: 1.0 / (1.0 + math.exp(-z))
    H = len(c0)
    h, c = list(h0), list(c0)
    ys = {}
    ts = range(length - 1, -1, -1) if reverse else range(length)
    for t in ts:
        a = [b_ih[r] + b_hh[r] + sum(w_ih[r][j] * x[t][j] for j in range(len(x[t])))
             + sum(w_hh[r][j] * h[j] for j in range(len(h))) for r in range(4 * H)]
        i = [sig(a[u] + w_ph[0][u] * c[u]) for u in range(H)]
        f = [sig(a[H + u] + w_ph[1][u] * c[u]) for u in range(H)]
        g = [math.tanh(a[2 * H + u]) for u in range(H)]
        c = [f[u] * c[u] + i[u] * g[u] for u in range(H)]
        o = [sig(a[3 * H + u] + w_ph[2][u] * c[u]) for u in range(H)]
        m = [o[u] * math.tanh(c[u]) for u in range(H)]
        h = [sum(w_hr[p][u] * m[u] for u in range(H)) for p in range(len(w_hr))]
        ys[t] = h
    return ys, h, c


def test_reference_peephole_forward_matches_scalar_equations():
    T, B, I, H, P = 4, 3, 2, 3, 2
    rng = np.random.default_rng(11)
    params = _random_params(rng, I, H, 1, True, True, P, True, scale=0.9)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((2, B, P))
    c0 = rng.standard_normal((2, B, H))
    lengths = np.array([4, 1, 3])
    y, hn, cn, _ = ref.lstm_forward(x, params, num_layers=1, hidden_size=H, proj_size=P,
                                    bidirectional=True, peephole=True, h0=h0, c0=c0,
                                    lengths=lengths)
    for b in range(B):
        for d, sfx in enumerate(["", "_reverse"]):
            w = {k: params[k + "_l0" + sfx].tolist() for k in
                 ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_ph", "weight_hr"]}
            ys, h, c = _scalar_peephole_lstm(
                x[:, b].tolist(), w["weight_ih"], w["weight_hh"], w["bias_ih"], w["bias_hh"],
                w["weight_ph"], w["weight_hr"], h0[d, b].tolist(), c0[d, b].tolist(),
                reverse=d == 1, length=int(lengths[b]))
            for t in range(T):
                want = ys.get(t, [0.0] * P)
                assert_rel_close(y[t, b, d * P:(d + 1) * P], np.array(want), 1e-12, f"y[{t},{b},{d}]")
            assert_rel_close(hn[d, b], np.array(h), 1e-12, "h_n")
            assert_rel_close(cn[d, b], np.array(c), 1e-12, "c_n")


def test_peephole_with_zero_weights_is_plain_lstm():
    T, B, I, H = 5, 2, 3, 4
    rng = np.random.default_rng(5)
    params = _random_params(rng, I, H, 2, True, True, 0, True)
    plain = {k: v for k, v in params.items() if not k.startswith("weight_ph")}
    zeroed = dict(params, **{k: np.zeros_like(v) for k, v in params.items()
                             if k.startswith("weight_ph")})
    x = rng.standard_normal((T, B, I))
    kw = dict(num_layers=2, hidden_size=H, bidirectional=True, lengths=np.array([5, 3]))
    a = ref.lstm_forward(x, zeroed, peephole=True, **kw)
    b = ref.lstm_forward(x, plain, peephole=False, **kw)
    for u, v in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(u, v)
    # and with non-zero peepholes the output changes
    c = ref.lstm_forward(x, params, peephole=True, **kw)
    assert np.max(np.abs(c[0] - b[0])) > 1e-3


# ----------------------------------------------------------------------------
# central finite differences, float64, every option at once
# ----------------------------------------------------------------------------

def test_reference_gradients_match_finite_differences():
    T, B, I, H, P, L = 4, 3, 3, 3, 2, 2
    D = 2
    rng = np.random.default_rng(2024)
    params = _random_params(rng, I, H, L, True, True, P, True, scale=0.8)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D * L, B, P))
    c0 = rng.standard_normal((D * L, B, H))
    lengths = np.array([4, 1, 3])
    p = 0.3
    masks = [(rng.random((T, B, D * P)) >= p) / (1 - p)]
    dy = rng.standard_normal((T, B, D * P))
    dhn = rng.standard_normal((D * L, B, P))
    dcn = rng.standard_normal((D * L, B, H))
    kw = dict(num_layers=L, hidden_size=H, proj_size=P, bidirectional=True, bias=True,
              peephole=True, lengths=lengths, dropout_masks=masks)

    def loss(params_, x_, h0_, c0_):
        y, hn, cn, _ = ref.lstm_forward(x_, params_, h0=h0_, c0=c0_, **kw)
        return np.sum(y * dy) + np.sum(hn * dhn) + np.sum(cn * dcn)

    y, hn, cn, cache = ref.lstm_forward(x, params, h0=h0, c0=c0, **kw)
    dx, dh0, dc0, grads = ref.lstm_backward(cache, dy, dhn, dcn)

    fd = central_diff

    def check(analytic, numeric, name):
        scale = max(np.max(np.abs(numeric)), np.max(np.abs(analytic)))
        assert scale > 1e-3, f"{name}: gradient is ~0, the check would be vacuous"
        err = np.max(np.abs(analytic - numeric)) / scale
        assert err <= 1e-6, f"{name}: relative error {err:.2e}"

    assert sorted(grads) == sorted(params)
    for k in params:
        check(grads[k], fd(params[k], lambda: loss(params, x, h0, c0)), k)
    check(dx, fd(x, lambda: loss(params, x, h0, c0)), "dx")
    check(dh0, fd(h0, lambda: loss(params, x, h0, c0)), "dh0")
    check(dc0, fd(c0, lambda: loss(params, x, h0, c0)), "dc0")
    pad = np.arange(T)[:, None] >= lengths[None, :]
    assert np.all(dx[pad] == 0)


def test_reference_defaults_and_dtype():
    T, B, I, H = 4, 2, 3, 4
    rng = np.random.default_rng(9)
    params = _random_params(rng, I, H, 2, False, True, 0, False)
    x = rng.standard_normal((T, B, I))
    kw = dict(num_layers=2, hidden_size=H)
    y, hn, cn, cache = ref.lstm_forward(x, params, **kw)
    y0, hn0, cn0, cache0 = ref.lstm_forward(x, params, h0=np.zeros((2, B, H)),
                                            c0=np.zeros((2, B, H)), lengths=[T] * B, **kw)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(hn, hn0)
    np.testing.assert_array_equal(cn, cn0)
    dy = rng.standard_normal(y.shape)
    a = ref.lstm_backward(cache, dy)
    b = ref.lstm_backward(cache0, dy, np.zeros_like(hn), np.zeros_like(cn))
    for u, v in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(u, v)
    # last step of h_n / y agree for a unidirectional full-length run
    np.testing.assert_array_equal(hn[-1], y[-1])
    # float32 computation: float32 results close to float64
    y32, hn32, cn32, cache32 = ref.lstm_forward(x, params, dtype=np.float32, **kw)
    assert y32.dtype == hn32.dtype == cn32.dtype == np.float32
    assert_rel_close(y32, y, 1e-5, "y float32")
    dx32, dh032, dc032, g32 = ref.lstm_backward(cache32, dy)
    assert dx32.dtype == np.float32 and all(g.dtype == np.float32 for g in g32.values())
    assert_rel_close(dx32, a[0], 1e-5, "dx float32")


# ----------------------------------------------------------------------------
# zoneout and cell_clip: a torch autograd LSTM written here, one row and one step
# at a time
# ----------------------------------------------------------------------------

def _torch_rowwise_stack(step, x, params, L, D, state0, lengths, dropout_masks, keep,
                         d_out, d_state_n):
    """A recurrent stack in torch autograd, one row and one step at a time: each row runs
    only its own steps (t < lengths[b], the reverse direction from lengths[b]-1 down);
    step(w, x_t, state) -> new state for one row, w: the direction's tensors by stem;
    zoneout on h: h_t = k h_{t-1} + (1-k) h̃_t with k = keep[l][t, b, direction's units]
    (a mask) or k = p (eval), the other states untouched; dropout_masks between layers.
    Returns numpy y, the final states, dx, the initial states' gradients and grads of
    loss sum(y d_out) + sum over states of sum(state_n d_state_n)."""
    torch = pytest.importorskip("torch")
    T, B, _ = x.shape
    prm = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    xt = torch.tensor(x, requires_grad=True)
    s0 = [torch.tensor(s, requires_grad=True) for s in state0]
    Hh = state0[0].shape[-1]
    inp = xt
    final = [[[None] * B for _ in range(L * D)] for _ in s0]          # final[s][l*D+d][b]
    for l in range(L):
        out = [[[torch.zeros(Hh, dtype=torch.float64)] * D for _ in range(B)]
               for _ in range(T)]                                   # out[t][b][d]
        for d in range(D):
            sfx = f"_l{l}" + ("_reverse" if d else "")
            w = {k[:-len(sfx)]: v for k, v in prm.items() if k.endswith(sfx)}
            for b in range(B):
                n = int(lengths[b])
                state = tuple(s[l * D + d, b] for s in s0)
                for t in (range(n - 1, -1, -1) if d == 1 else range(n)):
                    new = step(w, inp[t, b], state)
                    h = new[0]
                    if keep is not None:
                        k = keep if np.isscalar(keep) else \
                            torch.tensor(keep[l][t, b, d * Hh:(d + 1) * Hh])
                        h = k * state[0] + (1 - k) * h
                    state = (h,) + tuple(new[1:])
                    out[t][b][d] = h
                for f, s in zip(final, state):
                    f[l * D + d][b] = s
        inp = torch.stack([torch.stack([torch.cat(out[t][b]) for b in range(B)])
                           for t in range(T)])
        if l < L - 1 and dropout_masks is not None:
            inp = inp * torch.tensor(dropout_masks[l])
    final = [torch.stack([torch.stack(r) for r in f]) for f in final]
    loss = (inp * torch.tensor(d_out)).sum()
    for f, g in zip(final, d_state_n):
        loss = loss + (f * torch.tensor(g)).sum()
    loss.backward()
    return dict(y=inp.detach().numpy(), final=[f.detach().numpy() for f in final],
                dx=xt.grad.numpy(), d_state0=[s.grad.numpy() for s in s0],
                grads={k: v.grad.numpy() for k, v in prm.items()})


def _torch_lstm_rowwise(x, params, L, D, h0, c0, lengths, dropout_masks, keep, clip,
                        dy, dhn, dcn):
    """The LSTM in _torch_rowwise_stack, from the equations: peepholes, projection and
    biases where params has them; each gate pre-activation (biases and peepholes added)
    goes through torch.clamp(-clip, clip) before its activation. Returns numpy y, hn,
    cn, dx, dh0, dc0, grads, and pre: every gate pre-activation computed, before the
    clip."""
    torch = pytest.importorskip("torch")
    pre = []

    def act(fn, a):
        pre.append(a.detach().numpy().copy())
        return fn(a if clip is None else torch.clamp(a, -clip, clip))

    def step(w, x_t, state):
        h, c = state
        a = w["weight_ih"] @ x_t + w["weight_hh"] @ h
        if "bias_ih" in w:
            a = a + w["bias_ih"] + w["bias_hh"]
        a_i, a_f, a_g, a_o = a.chunk(4)
        if "weight_ph" in w:
            a_i = a_i + w["weight_ph"][0] * c
            a_f = a_f + w["weight_ph"][1] * c
        i, f = act(torch.sigmoid, a_i), act(torch.sigmoid, a_f)
        c = f * c + i * act(torch.tanh, a_g)
        if "weight_ph" in w:
            a_o = a_o + w["weight_ph"][2] * c
        h = act(torch.sigmoid, a_o) * torch.tanh(c)
        return (w["weight_hr"] @ h if "weight_hr" in w else h), c

    r = _torch_rowwise_stack(step, x, params, L, D, (h0, c0), lengths, dropout_masks, keep,
                             dy, (dhn, dcn))
    return dict(y=r["y"], hn=r["final"][0], cn=r["final"][1], dx=r["dx"],
                dh0=r["d_state0"][0], dc0=r["d_state0"][1], grads=r["grads"],
                pre=np.concatenate([np.ravel(a) for a in pre]))


def _option_case(rng, T, B, I, H, P, L, D, bias, peephole, zoneout_mode, p):
    """Random weights, inputs and upstream gradients for the zoneout and clip tests:
    lengths [3, T, 1, 2][:B] (unsorted, a full row, a single step), dropout masks between
    layers, zoneout masks keeping h_{t-1} with probability p (or p itself in eval); zo:
    lstm_forward's zoneout keywords, keep: the oracle's."""
    Ho = P or H
    c = types.SimpleNamespace(
        params=_random_params(rng, I, H, L, D == 2, bias, P, peephole, scale=0.8),
        x=rng.standard_normal((T, B, I)), h0=rng.standard_normal((D * L, B, Ho)),
        c0=rng.standard_normal((D * L, B, H)), lengths=np.array([3, T, 1, 2][:B]),
        dropout=[(rng.random((T, B, D * Ho)) >= 0.25) / 0.75 for _ in range(L - 1)] or None,
        dy=rng.standard_normal((T, B, D * Ho)), dhn=rng.standard_normal((D * L, B, Ho)),
        dcn=rng.standard_normal((D * L, B, H)))
    zmasks = [(rng.random((T, B, D * Ho)) < p).astype(np.float64) for _ in range(L)]
    c.zo, c.keep = {
        "none": (dict(), None),
        "train": (dict(zoneout=p, zoneout_masks=zmasks, training=True), zmasks),
        "eval": (dict(zoneout=p, training=False), p)}[zoneout_mode]
    return c


OPTION_CASES = list(itertools.product(
    [(2, True), (1, False), (2, False)],             # (num_layers, bidirectional)
    ["none", "train", "eval"],                       # zoneout
    [None, 1.0],                                     # cell_clip
    [(True, 0, False), (True, 2, True), (False, 0, True)],   # (bias, proj_size, peephole)
))


@pytest.mark.parametrize("layers_dirs,zoneout_mode,clip,cell_opts", OPTION_CASES)
def test_lstm_zoneout_and_clip_match_torch_rowwise(layers_dirs, zoneout_mode, clip, cell_opts):
    """Forward values and every gradient, against the torch oracle above, to 1e-12 of
    max|oracle| (the two sides differ by ~1e-15: the same operations in another order)."""
    L, bidirectional = layers_dirs
    bias, P, peephole = cell_opts
    D = 2 if bidirectional else 1
    T, B, I, H = 5, 3, 3, 4
    rng = np.random.default_rng(
        300 + OPTION_CASES.index((layers_dirs, zoneout_mode, clip, cell_opts)))
    c = _option_case(rng, T, B, I, H, P, L, D, bias, peephole, zoneout_mode, 0.3)
    x, params, lengths = c.x, c.params, c.lengths

    want = _torch_lstm_rowwise(x, params, L, D, c.h0, c.c0, lengths, c.dropout, c.keep, clip,
                               c.dy, c.dhn, c.dcn)
    kw = dict(num_layers=L, hidden_size=H, proj_size=P, bidirectional=bidirectional,
              bias=bias, peephole=peephole, h0=c.h0, c0=c.c0, lengths=lengths,
              dropout_masks=c.dropout)
    y, hn, cn, cache = ref.lstm_forward(x, params, cell_clip=clip, **kw, **c.zo)
    dx, dh0, dc0, grads = ref.lstm_backward(cache, c.dy, c.dhn, c.dcn)
    got = dict(y=y, hn=hn, cn=cn, dx=dx, dh0=dh0, dc0=dc0)
    for k in got:
        assert_rel_close(got[k], want[k], 1e-12, k)
    assert sorted(grads) == sorted(want["grads"]) == sorted(params)
    for k in params:
        assert_rel_close(grads[k], want["grads"][k], 1e-12, k)
    pad = np.arange(T)[:, None] >= lengths[None, :]
    assert np.all(y[pad] == 0) and np.all(dx[pad] == 0)
    # the options did something: the clip cuts a good share of the pre-activations, but
    # not all, and each option changes the output
    if clip is not None:
        clipped = np.mean(np.abs(want["pre"]) > clip)
        assert 0.1 < clipped < 0.9, f"clipped share {clipped:.2f}"
        y_unclipped = ref.lstm_forward(x, params, **kw, **c.zo)[0]
        assert np.max(np.abs(y_unclipped - y)) > 1e-3
    if zoneout_mode != "none":
        y_plain = ref.lstm_forward(x, params, cell_clip=clip, **kw)[0]
        assert np.max(np.abs(y_plain - y)) > 1e-3


# ----------------------------------------------------------------------------
# cell_clip against ONNX Runtime's LSTM operator (forward)
# ----------------------------------------------------------------------------

def test_cell_clip_matches_onnxruntime_lstm():
    """ONNX defines `clip`; ONNX Runtime's LSTM runs it, with peepholes, both directions
    and sequence_lens, in float32. The reference runs in float64 on the same
    float32-rounded values; the bound 1e-5 of max|output| is ~50x the float32 rounding
    ORT commits here (2e-7), while a clip placed before the peepholes are added errs by
    far more."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    T, B, I, H, clip = 6, 4, 3, 5, 0.7
    rng = np.random.default_rng(17)
    f32 = lambda a: np.asarray(a, np.float32)
    params = {k: f32(v).astype(np.float64)
              for k, v in _random_params(rng, I, H, 1, True, True, 0, True, scale=0.9).items()}
    x = f32(rng.standard_normal((T, B, I)) * 1.5).astype(np.float64)
    h0 = f32(rng.standard_normal((2, B, H))).astype(np.float64)
    c0 = f32(rng.standard_normal((2, B, H))).astype(np.float64)
    lengths = np.array([6, 2, 4, 1])

    # ONNX layout: gate blocks i, o, f, c (torch: i, f, g, o); peepholes i, o, f
    iofc = lambda a: np.concatenate([a[0:H], a[3 * H:4 * H], a[H:2 * H], a[2 * H:3 * H]])
    sfx = ["_l0", "_l0_reverse"]
    W = np.stack([iofc(params["weight_ih" + s]) for s in sfx])
    R = np.stack([iofc(params["weight_hh" + s]) for s in sfx])
    Bias = np.stack([np.concatenate([iofc(params["bias_ih" + s]), iofc(params["bias_hh" + s])])
                     for s in sfx])
    Ph = np.stack([params["weight_ph" + s][[0, 2, 1]].reshape(-1) for s in sfx])
    inits = [numpy_helper.from_array(f32(a), n) for a, n in
             [(W, "W"), (R, "R"), (Bias, "B"), (Ph, "P")]]
    inits.append(numpy_helper.from_array(lengths.astype(np.int32), "seq"))

    def run_ort(**clip_attr):
        node = helper.make_node("LSTM", ["X", "W", "R", "B", "seq", "h0", "c0", "P"],
                                ["Y", "Y_h", "Y_c"], hidden_size=H, direction="bidirectional",
                                **clip_attr)
        graph = helper.make_graph(
            [node], "lstm",
            [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, I]),
             helper.make_tensor_value_info("h0", TensorProto.FLOAT, [2, B, H]),
             helper.make_tensor_value_info("c0", TensorProto.FLOAT, [2, B, H])],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
             for n in ("Y", "Y_h", "Y_c")], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        sess = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        Y, Yh, Yc = sess.run(None, {"X": f32(x), "h0": f32(h0), "c0": f32(c0)})
        return Y.transpose(0, 2, 1, 3).reshape(T, B, 2 * H), Yh, Yc   # [T,B,2H]

    y, hn, cn, _ = ref.lstm_forward(x, params, num_layers=1, hidden_size=H, bidirectional=True,
                                    peephole=True, h0=h0, c0=c0, lengths=lengths,
                                    cell_clip=clip)
    got = run_ort(clip=clip)
    valid = (np.arange(T)[:, None] < lengths[None, :])[:, :, None]
    tol = 1e-5
    assert_rel_close(np.where(valid, got[0], 0.0), y, tol, "y")
    assert_rel_close(got[1], hn, tol, "h_n")
    assert_rel_close(got[2], cn, tol, "c_n")
    # the clip mattered: ORT without it is far from the clipped reference
    assert np.max(np.abs(run_ort()[0] - got[0])) > 1e-2


# ----------------------------------------------------------------------------
# zoneout and cell_clip: central finite differences of every gradient
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["train", "eval"])
def test_lstm_zoneout_and_clip_gradients_match_finite_differences(mode):
    """Every entry of every gradient, all options together (2 layers, both directions,
    lengths, projection, peepholes, dropout, zoneout, clip). No gate pre-activation lies
    within 1e-3 of ±clip, so the ±1e-6 steps of the differences never cross the clip's
    kink (the torch oracle lists the pre-activations)."""
    T, B, I, H, P, L, D = 4, 3, 3, 3, 2, 2, 2
    clip = 1.0
    rng = np.random.default_rng(41 if mode == "train" else 42)
    c = _option_case(rng, T, B, I, H, P, L, D, True, True, mode, 0.4)
    x, params, h0, c0, dy, dhn, dcn = c.x, c.params, c.h0, c.c0, c.dy, c.dhn, c.dcn
    kw = dict(num_layers=L, hidden_size=H, proj_size=P, bidirectional=True, peephole=True,
              lengths=c.lengths, dropout_masks=c.dropout, cell_clip=clip, **c.zo)

    pytest.importorskip("torch")
    pre = _torch_lstm_rowwise(x, params, L, D, h0, c0, c.lengths, c.dropout, c.keep, clip,
                              dy, dhn, dcn)["pre"]
    assert np.min(np.abs(np.abs(pre) - clip)) > 1e-3, "a pre-activation sits at the kink"
    assert 0.1 < np.mean(np.abs(pre) > clip) < 0.9

    def loss():
        y, hn, cn, _ = ref.lstm_forward(x, params, h0=h0, c0=c0, **kw)
        return np.sum(y * dy) + np.sum(hn * dhn) + np.sum(cn * dcn)

    _, _, _, cache = ref.lstm_forward(x, params, h0=h0, c0=c0, **kw)
    dx, dh0, dc0, grads = ref.lstm_backward(cache, dy, dhn, dcn)
    assert sorted(grads) == sorted(params)
    for name, arr, analytic in ([(k, params[k], grads[k]) for k in params]
                                + [("dx", x, dx), ("dh0", h0, dh0), ("dc0", c0, dc0)]):
        numeric = central_diff(arr, loss)
        scale = max(np.max(np.abs(numeric)), np.max(np.abs(analytic)))
        assert scale > 1e-3, f"{name}: gradient is ~0, the check would be vacuous"
        err = np.max(np.abs(analytic - numeric)) / scale
        assert err <= 1e-6, f"{name}: relative error {err:.2e}"


# ----------------------------------------------------------------------------
# zoneout and cell_clip: limits, mask sense, argument errors
# ----------------------------------------------------------------------------

def test_lstm_zoneout_mask_sense_and_clip_limits():
    """m = 1 keeps the previous h: all-ones masks hold h0 through every valid step while
    c still evolves; all-zeros masks, eval with p = 0 and a clip no pre-activation
    reaches are the plain LSTM, bit for bit."""
    T, B, I, H, P, L = 4, 3, 2, 3, 2, 2
    rng = np.random.default_rng(12)
    params = _random_params(rng, I, H, L, True, True, P, True)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((2 * L, B, P))
    c0 = rng.standard_normal((2 * L, B, H))
    lengths = np.array([4, 2, 1])
    kw = dict(num_layers=L, hidden_size=H, proj_size=P, bidirectional=True, peephole=True,
              h0=h0, c0=c0, lengths=lengths)
    ones = [np.ones((T, B, 2 * P)) for _ in range(L)]
    y, hn, cn, _ = ref.lstm_forward(x, params, zoneout=0.5, zoneout_masks=ones, training=True,
                                    **kw)
    np.testing.assert_array_equal(hn, h0)
    assert np.min(np.abs(cn - c0)) > 0          # c is not zoned out
    valid = (np.arange(T)[:, None] < lengths[None, :])[:, :, None]
    np.testing.assert_array_equal(y, np.where(valid, np.concatenate(h0[2:], axis=1), 0.0))
    plain = ref.lstm_forward(x, params, **kw)
    zeros = [np.zeros((T, B, 2 * P)) for _ in range(L)]
    for got in (ref.lstm_forward(x, params, zoneout=0.5, zoneout_masks=zeros, training=True,
                                 **kw),
                ref.lstm_forward(x, params, zoneout=0.0, training=False, **kw),
                ref.lstm_forward(x, params, cell_clip=1e6, **kw)):
        for u, v in zip(got[:3], plain[:3]):
            np.testing.assert_array_equal(u, v)


def test_lstm_zoneout_and_clip_argument_errors():
    """The LSTM's zoneout masks cover its output h: D*proj_size wide with a projection
    (the other zoneout argument errors are the stack's, tested with the GRU's); cell_clip
    must be positive."""
    T, B, I, H, P = 3, 2, 2, 3, 2
    rng = np.random.default_rng(1)
    params = _random_params(rng, I, H, 1, True, True, P, False)
    x = rng.standard_normal((T, B, I))
    kw = dict(num_layers=1, hidden_size=H, proj_size=P, bidirectional=True, training=True)
    ref.lstm_forward(x, params, zoneout=0.2, zoneout_masks=[np.ones((T, B, 2 * P))], **kw)
    with pytest.raises(ValueError, match=r"shape \(3, 2, 4\)"):
        ref.lstm_forward(x, params, zoneout=0.2, zoneout_masks=[np.ones((T, B, 2 * H))], **kw)
    with pytest.raises(ValueError, match="zoneout_masks"):
        ref.lstm_forward(x, params, zoneout=0.2, **kw)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="cell_clip"):
            ref.lstm_forward(x, params, cell_clip=bad, **kw)
