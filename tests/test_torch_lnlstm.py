"""fastlstm.torch.LayerNormLSTM: the layer-norm LSTM (Ba et al. 2016, as
haste's LayerNormLSTM) with torch.nn.LSTM's interface, on the layer-norm LSTM
kernels through the custom ops ``fastlstm::lnlstm_layer`` /
``lnlstm_layer_backward``.

Torch has no layer-norm LSTM, so the oracles are:
- fastlstm.reference_lnlstm (plain NumPy float64, itself proved against
  torch autograd and finite differences in tests/test_reference_lnlstm.py):
  outputs, final states and every gradient, with lengths, both directions,
  several layers, zoneout and dropout masks;
- a plain torch implementation of the same equations (`oracle`, in _lnlstm_torch.py,
  torch.nn.functional.layer_norm, not fastlstm's `_autodiff`) where the
  reference has no counterpart: second derivatives, forward-mode AD, vmap;
- torch.autograd.gradcheck / gradgradcheck (finite differences) in float64;
- torch.nn.LSTM for what the two layers share: the exceptions on bad input,
  the initial weights of the LSTM parameters and the output shapes;
- the NumPy fastlstm.LayerNormLSTM for the state_dict round trip.

The layer-norm gains and bias are moved off their init (ones, zeros) before
the parity checks, so a gain or bias that is dropped or misplaced shows.
Tolerances as the other torch tests: float64 1e-10 and float32 1e-5 relative
to max|oracle| (short sequences: the layer-norm LSTM's float32 rounding grows
with T, README "Limits").
"""
import copy
import io
import pickle
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
flt = pytest.importorskip("fastlstm.torch")

import fastlstm  # noqa: E402
from _lnlstm_torch import oracle  # noqa: E402
from _tolerance import assert_rel_close  # noqa: E402
from fastlstm import reference_lnlstm as ref  # noqa: E402

import torch.autograd.forward_ad as fwAD  # noqa: E402
from torch.func import functional_call, grad, jacfwd, jvp, vmap  # noqa: E402
from torch.nn.utils.rnn import (PackedSequence, pack_padded_sequence,  # noqa: E402
                                pack_sequence, pad_packed_sequence)

F32, F64 = torch.float32, torch.float64
TOL = {F32: 1e-5, F64: 1e-10}

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def close(got, want, dtype, name, tol=None):
    assert_rel_close(got, want, TOL[dtype] if tol is None else tol, name)


def rand(*shape, seed=1, dtype=F64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def make(dtype=F64, seed=0, **kw):
    """A LayerNormLSTM whose layer norms are moved off their init (gains
    1 ± 0.3, biases ± 0.3)."""
    torch.manual_seed(seed)
    m = flt.LayerNormLSTM(**kw).to(dtype)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "_ln_" in n:
                p.add_(((torch.rand(p.shape, generator=g, dtype=F64) - 0.5) * 0.6).to(dtype))
    return m


def np64(t):
    return None if t is None else t.detach().double().numpy()


def reference(m, x, h0=None, c0=None, lengths=None, training=False, zoneout_masks=None,
              dropout_masks=None):
    """fastlstm.reference_lnlstm on m's weights: x time-major [T,B,I]."""
    p = {k: np64(v) for k, v in m.state_dict().items()}
    zoneout = m.zoneout if (not training or zoneout_masks is not None) else 0.0
    return ref.lnlstm_forward(np64(x), p, num_layers=m.num_layers, hidden_size=m.hidden_size,
                              bidirectional=m.bidirectional, bias=m.bias, h0=np64(h0),
                              c0=np64(c0), lengths=None if lengths is None else
                              np.asarray(lengths), zoneout=zoneout,
                              zoneout_masks=None if zoneout_masks is None else
                              [np64(z) for z in zoneout_masks],
                              dropout_masks=None if dropout_masks is None else
                              [np64(z) for z in dropout_masks], training=training)


def oracle_of(m, x, hx=None, lengths=None, params=None):
    """`oracle` with m's configuration (time-major x; zero states by default)."""
    D, L, H = 2 if m.bidirectional else 1, m.num_layers, m.hidden_size
    B = x.shape[1]
    h0, c0 = hx if hx is not None else [x.new_zeros(D * L, B, H)] * 2
    p = dict(m.named_parameters()) if params is None else params
    return oracle(x, p, H, L, m.bidirectional, m.bias, h0, c0, lengths)


CONFIGS = {
    "plain": dict(input_size=5, hidden_size=7),
    "stacked_bidir": dict(input_size=6, hidden_size=8, num_layers=2, bidirectional=True),
    "batch_first": dict(input_size=4, hidden_size=9, batch_first=True),
    "no_bias_2layer": dict(input_size=3, hidden_size=5, num_layers=2, bias=False),
    "wide_bidir": dict(input_size=33, hidden_size=40, bidirectional=True),
}


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("cfg", list(CONFIGS))
@pytest.mark.parametrize("with_hx", [False, True])
def test_matches_the_reference(dtype, cfg, with_hx):
    """Eager training (autograd over the kernels) and eager inference: y,
    h_n, c_n, dx, dh0, dc0 and every parameter's .grad against the float64
    reference's forward and BPTT."""
    kw = CONFIGS[cfg]
    m = make(dtype, **kw)
    D, L, H = 2 if m.bidirectional else 1, m.num_layers, m.hidden_size
    T, B = 5, 3
    x = rand(T, B, kw["input_size"], seed=2)
    h0, c0 = rand(D * L, B, H, seed=3), rand(D * L, B, H, seed=4)
    xin = x.transpose(0, 1) if m.batch_first else x
    xs = xin.to(dtype).clone().requires_grad_()
    hs, cs = h0.to(dtype).requires_grad_(), c0.to(dtype).requires_grad_()
    y, (hn, cn) = m(xs, (hs, cs) if with_hx else None)
    dy = rand(*y.shape, seed=5)
    dhn, dcn = rand(*hn.shape, seed=6), rand(*cn.shape, seed=7)
    torch.autograd.backward([y, hn, cn], [dy.to(dtype), dhn.to(dtype), dcn.to(dtype)])

    yr, hr, cr, cache = reference(m, x, h0 if with_hx else None, c0 if with_hx else None,
                                  training=True)
    dy_tm = dy.transpose(0, 1) if m.batch_first else dy
    dxr, dh0r, dc0r, gr = ref.lnlstm_backward(cache, np64(dy_tm), np64(dhn), np64(dcn))
    y_tm = y.transpose(0, 1) if m.batch_first else y
    dx = xs.grad.transpose(0, 1) if m.batch_first else xs.grad
    for name, got, want in [("y", y_tm, yr), ("h_n", hn, hr), ("c_n", cn, cr), ("dx", dx, dxr)]:
        close(got, want, dtype, name)
    if with_hx:
        close(hs.grad, dh0r, dtype, "dh0")
        close(cs.grad, dc0r, dtype, "dc0")
    for k, p in m.named_parameters():
        close(p.grad, gr[k], dtype, f"grad {k}")
    with torch.no_grad():  # the inference path (packed weights cached)
        yi, (hi, ci) = m(xin.to(dtype), (h0.to(dtype), c0.to(dtype)) if with_hx else None)
    close(yi.transpose(0, 1) if m.batch_first else yi, yr, dtype, "inference y")
    close(ci, cr, dtype, "inference c_n")


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_sequence_with_lengths(dtype, bidirectional):
    """pack_sequence (unsorted) with an initial state in the caller's batch
    order, two layers: the same PackedSequence layout out, outputs, states and
    gradients as the reference with lengths."""
    m = make(dtype, input_size=4, hidden_size=6, num_layers=2, bidirectional=bidirectional)
    D = 2 if bidirectional else 1
    lens = [3, 7, 1, 5]
    T, B = max(lens), len(lens)
    x = rand(T, B, 4, seed=9)
    for b, n in enumerate(lens):
        x[n:, b] = 0.0
    h0, c0 = rand(2 * D, B, 6, seed=10), rand(2 * D, B, 6, seed=11)
    xs = [x[:n, b].to(dtype).clone().requires_grad_() for b, n in enumerate(lens)]
    hs, cs = h0.to(dtype).requires_grad_(), c0.to(dtype).requires_grad_()
    packed_in = pack_sequence(xs, enforce_sorted=False)
    out, (hn, cn) = m(packed_in, (hs, cs))
    assert isinstance(out, PackedSequence)
    assert torch.equal(out.batch_sizes, packed_in.batch_sizes)
    assert torch.equal(out.sorted_indices, packed_in.sorted_indices)
    assert torch.equal(out.unsorted_indices, packed_in.unsorted_indices)
    y, got_lens = pad_packed_sequence(out)
    assert got_lens.tolist() == lens
    valid = (torch.arange(T)[:, None] < torch.tensor(lens)[None, :])[..., None]
    dy = rand(*y.shape, seed=12) * valid  # past a row's length y is padding
    dhn, dcn = rand(*hn.shape, seed=13), rand(*cn.shape, seed=14)
    torch.autograd.backward([y, hn, cn], [dy.to(dtype), dhn.to(dtype), dcn.to(dtype)])
    yr, hr, cr, cache = reference(m, x, h0, c0, lengths=lens, training=True)
    dxr, dh0r, dc0r, gr = ref.lnlstm_backward(cache, np64(dy), np64(dhn), np64(dcn))
    close(y, yr, dtype, "y")
    close(hn, hr, dtype, "h_n")
    close(cn, cr, dtype, "c_n")
    for b, n in enumerate(lens):
        close(xs[b].grad, dxr[:n, b], dtype, f"dx[{b}]")
    close(hs.grad, dh0r, dtype, "dh0")
    close(cs.grad, dc0r, dtype, "dc0")
    for k, p in m.named_parameters():
        close(p.grad, gr[k], dtype, f"grad {k}")
    # pack_padded_sequence, batch_first, no grad
    m.batch_first = True
    with torch.no_grad():
        out, (hn, cn) = m(pack_padded_sequence(x.transpose(0, 1).to(dtype), torch.tensor(lens),
                                               batch_first=True, enforce_sorted=False))
    yr, hr, cr, _ = reference(m, x, lengths=lens)
    close(pad_packed_sequence(out)[0], yr, dtype, "packed_padded y")
    close(hn, hr, dtype, "packed_padded h_n")


def test_unbatched_input():
    m = make(F64, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x, h0, c0 = rand(5, 3, seed=4), rand(4, 4, seed=5), rand(4, 4, seed=6)
    y, (hn, cn) = m(x, (h0, c0))
    assert y.shape == (5, 8) and hn.shape == (4, 4) and cn.shape == (4, 4)
    yr, hr, cr, _ = reference(m, x[:, None], h0[:, None], c0[:, None])
    close(y, yr[:, 0], F64, "y")
    close(hn, hr[:, 0], F64, "h_n")
    close(cn, cr[:, 0], F64, "c_n")


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_zoneout_in_training_and_eval(dtype):
    """zoneout=p: in training the module's own Bernoulli(p) keep masks (one
    per layer, kept as zoneout_masks) given to the reference give its outputs
    and gradients, with lengths; in eval() the deterministic mix
    p*h_{t-1} + (1-p)*h_t; reproducible from torch.manual_seed."""
    m = make(dtype, input_size=3, hidden_size=5, num_layers=2, bidirectional=True,
             zoneout=0.3)
    assert "zoneout=0.3" in repr(m)
    lens = [6, 2, 4]
    x = rand(6, 3, 3, seed=20)
    xs = x.to(dtype).clone().requires_grad_()
    torch.manual_seed(21)
    out, (hn, cn) = m(pack_padded_sequence(xs, torch.tensor(lens), enforce_sorted=False))
    masks = [z.clone() for z in m.zoneout_masks]
    assert len(masks) == 2 and all(z.shape == (6, 3, 10) and z.dtype == dtype for z in masks)
    assert all(set(z.unique().tolist()) <= {0.0, 1.0} for z in masks)
    kept = torch.cat([z.flatten() for z in masks]).mean().item()
    assert 0.15 < kept < 0.45, kept  # Bernoulli(0.3) over 360 draws
    y = pad_packed_sequence(out)[0]
    dy = rand(*y.shape, seed=22)
    (y * dy.to(dtype)).sum().backward()
    yr, hr, cr, cache = reference(m, x, lengths=lens, training=True, zoneout_masks=masks)
    valid = (torch.arange(6)[:, None] < torch.tensor(lens)[None, :])[..., None]
    dxr, _, _, gr = ref.lnlstm_backward(cache, np64(dy * valid))
    close(y, yr, dtype, "train y")
    close(hn, hr, dtype, "train h_n")
    close(cn, cr, dtype, "train c_n")
    close(xs.grad, dxr, dtype, "train dx")
    for k, p in m.named_parameters():
        close(p.grad, gr[k], dtype, f"train grad {k}")
    torch.manual_seed(21)  # the same seed draws the same masks
    m(pack_padded_sequence(x.to(dtype), torch.tensor(lens), enforce_sorted=False))
    assert all(torch.equal(a, b) for a, b in zip(m.zoneout_masks, masks))
    # without the masks the reference differs: they are really applied
    assert np.abs(reference(m, x, lengths=lens, training=True)[0] - yr).max() > 1e-3
    m.eval()
    with torch.no_grad():
        y, (hn, cn) = m(x.to(dtype))
    yr, hr, cr, _ = reference(m, x, training=False)
    close(y, yr, dtype, "eval y")
    close(hn, hr, dtype, "eval h_n")
    close(cn, cr, dtype, "eval c_n")


def test_dropout_between_layers():
    """dropout=p: off in eval(); in train() torch's functional dropout on
    torch's RNG between layers (its masks, drawn again from the same seed,
    given to the reference)."""
    m = make(F64, input_size=3, hidden_size=4, num_layers=3, dropout=0.4)
    x = rand(5, 2, 3, seed=30)
    m.eval()
    close(m(x)[0], reference(m, x)[0], F64, "eval")
    m.train()
    torch.manual_seed(31)
    y, (hn, cn) = m(x)
    torch.manual_seed(31)
    masks = [torch.nn.functional.dropout(torch.ones(5, 2, 4, dtype=F64), 0.4, training=True)
             for _ in range(2)]
    assert all((z == 0).any() for z in masks)
    yr, hr, cr, _ = reference(m, x, training=True, dropout_masks=masks)
    close(y, yr, F64, "train y")
    close(hn, hr, F64, "train h_n")
    close(cn, cr, F64, "train c_n")


# --------------------------------------------------------------------------- parameters


def test_parameters_init_and_state_dict_round_trip_with_the_numpy_layer():
    """Names, shapes and order from the cell spec, as the NumPy
    fastlstm.LayerNormLSTM has them; init: the LSTM parameters as
    torch.nn.LSTM draws them from the same seed, layer-norm gains 1, bias 0;
    state_dicts load both ways and give the same numbers."""
    kw = dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    for bias in (True, False):
        nm = fastlstm.LayerNormLSTM(**kw, bias=bias, dtype=np.float64, seed=0)
        fm = flt.LayerNormLSTM(**kw, bias=bias, dtype=F64)
        assert list(fm.state_dict()) == list(nm.state_dict())
        assert [tuple(v.shape) for v in fm.state_dict().values()] == \
            [v.shape for v in nm.state_dict().values()]
        assert [n for n, _ in fm.named_parameters()] == list(nm.state_dict())
    torch.manual_seed(3)
    tm = torch.nn.LSTM(**kw)
    torch.manual_seed(3)
    fm = flt.LayerNormLSTM(**kw)
    tsd, fsd = tm.state_dict(), fm.state_dict()
    assert set(tsd) < set(fsd)
    assert fm._flat_weights_names == list(fsd)
    assert [[n for n in ws] for ws in fm._all_weights] == \
        [[n for n in fsd if n.endswith(f"_l{k}{s}")] for k in range(2) for s in ("", "_reverse")]
    for k, v in fsd.items():
        if k in tsd:
            assert torch.equal(v, tsd[k]), k
        elif k.startswith("bias_ln_c"):
            assert torch.equal(v, torch.zeros_like(v)), k
        else:
            assert k.startswith("weight_ln_") and torch.equal(v, torch.ones_like(v)), k
    fm.reset_parameters()
    assert torch.equal(fm.weight_ln_hh_l1, torch.ones(16))
    assert not torch.equal(fm.weight_ih_l0, tm.weight_ih_l0)
    assert fm.weight_hh_l1_reverse.abs().max() <= 0.5  # U(-1/sqrt(H), 1/sqrt(H))
    # torch -> NumPy (tensors load as they are), the same numbers
    fm = make(F64, **kw)
    nm = fastlstm.LayerNormLSTM(**kw, dtype=np.float64, seed=1)
    nm.load_state_dict(fm.state_dict())
    nm.eval()
    x, h0, c0 = rand(5, 2, 3, seed=40), rand(4, 2, 4, seed=41), rand(4, 2, 4, seed=42)
    yn, (hnn, cnn) = nm(x.numpy(), (h0.numpy(), c0.numpy()))
    with torch.no_grad():
        y, (hn, cn) = fm(x, (h0, c0))
    close(y, yn, F64, "torch vs numpy y")
    close(cn, cnn, F64, "torch vs numpy c_n")
    # NumPy -> torch
    nm2 = fastlstm.LayerNormLSTM(**kw, dtype=np.float64, seed=7)
    for k, v in nm2.state_dict().items():
        if "_ln_" in k:
            getattr(nm2, k)[...] += np.random.default_rng(8).uniform(-0.3, 0.3, v.shape)
    fm2 = flt.LayerNormLSTM(**kw, dtype=F64)
    fm2.load_state_dict({k: torch.from_numpy(v) for k, v in nm2.state_dict().items()})
    nm2.eval()
    with torch.no_grad():
        close(fm2(x)[0], nm2(x.numpy())[0], F64, "numpy -> torch y")
        close(fm2(x)[0], reference(fm2, x)[0], F64, "numpy -> torch vs reference")
    # and back again: the NumPy layer gets what it gave
    nm3 = fastlstm.LayerNormLSTM(**kw, dtype=np.float64, seed=9)
    nm3.load_state_dict(fm2.state_dict())
    for k, v in nm2.state_dict().items():
        np.testing.assert_array_equal(nm3.state_dict()[k], v)


def test_module_attributes_repr_and_conversion():
    m = flt.LayerNormLSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    assert repr(m) == "LayerNormLSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)"
    assert m.mode == "LayerNormLSTM" and m.proj_size == 0 and not m.peephole
    assert m.cell_clip is None and m.weights_dtype is None
    assert not isinstance(m, flt.LSTM)
    m.flatten_parameters()
    assert m.double() is m and all(p.dtype == F64 for p in m.parameters())
    y, (h, c) = m(torch.randn(2, 5, 3, dtype=F64))
    assert y.shape == (2, 5, 8) and h.shape == c.shape == (4, 2, 4)
    m2 = flt.LayerNormLSTM(3, 4, device="cpu", dtype=F64)
    assert all(p.dtype == F64 for p in m2.parameters())


# --------------------------------------------------------------------------- ops


@pytest.mark.parametrize("variant", ["plain", "bidir_lengths", "no_bias_lengths"])
def test_op_gradcheck_and_gradgradcheck(variant):
    H, I, T, B = 3, 2, 4, 2
    bidir, bias = variant == "bidir_lengths", variant != "no_bias_lengths"
    D = 2 if bidir else 1
    g = torch.Generator().manual_seed(8)

    def r(*shape, offset=0.0):
        return (torch.randn(shape, generator=g, dtype=F64) + offset).requires_grad_()

    ws = []
    for _ in range(D):
        ws += [r(4 * H, I), r(4 * H, H)] + ([r(4 * H), r(4 * H)] if bias else [])
        ws += [r(4 * H, offset=1.0), r(4 * H, offset=1.0), r(H, offset=1.0), r(H)]
    lengths = None if variant == "plain" else torch.tensor([4, 2])

    def f(x, h0, c0, *w):
        return torch.ops.fastlstm.lnlstm_layer(x, list(w), h0, c0, lengths, H, bidir, bias,
                                               True)[:3]

    args = (r(T, B, I), r(D, B, H), r(D, B, H), *ws)
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)


def module_fn(m, out=0):
    names = [n for n, _ in m.named_parameters()]
    return lambda x, *w: functional_call(m, dict(zip(names, w)), (x,))[out]


def test_module_gradcheck_gradgradcheck_and_batched_grad():
    m = make(F64, input_size=3, hidden_size=3, num_layers=2, bidirectional=True)
    x = rand(3, 2, 3).requires_grad_()
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    assert torch.autograd.gradcheck(module_fn(m), (x, *params), check_batched_grad=True)
    assert torch.autograd.gradcheck(lambda *a: module_fn(m, 1)(*a)[1], (x, *params))  # c_n
    assert torch.autograd.gradgradcheck(module_fn(m), (x, *params))


def test_opcheck():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(3, 2, 4, generator=g, requires_grad=True)
    shapes = [(20, 4), (20, 5), (20,), (20,), (20,), (20,), (5,), (5,)]
    ws = [torch.randn(s, generator=g, requires_grad=True) for s in shapes]
    h0 = torch.randn(1, 2, 5, generator=g, requires_grad=True)
    c0 = torch.randn(1, 2, 5, generator=g, requires_grad=True)
    for lengths in (torch.tensor([3, 1]), None):
        torch.library.opcheck(torch.ops.fastlstm.lnlstm_layer.default,
                              (x, ws, h0, c0, lengths, 5, False, True, True))
        torch.library.opcheck(torch.ops.fastlstm.lnlstm_layer.default,
                              (x.detach(), [w.detach() for w in ws], h0.detach(), c0.detach(),
                               lengths, 5, False, True, False))
    mask = (torch.rand(3, 2, 5, generator=g) < 0.3).float()
    torch.library.opcheck(torch.ops.fastlstm.lnlstm_layer.default,
                          (x, ws, h0, c0, None, 5, False, True, True, mask, 0.3))
    y, hn, cn, ws_ = torch.ops.fastlstm.lnlstm_layer(x, ws, h0, c0, None, 5, False, True, True)
    torch.library.opcheck(torch.ops.fastlstm.lnlstm_layer_backward.default,
                          (x.detach(), [w.detach() for w in ws], c0.detach(), None, ws_,
                           torch.randn_like(y), torch.randn_like(hn), torch.randn_like(cn), 5,
                           False, True))


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_eager_path_equals_the_ops(dtype):
    """Eager autograd packs once for forward and backward; the op pair (what
    torch.compile runs) packs in each. Both give the same bits."""
    m = make(dtype, input_size=5, hidden_size=6, bidirectional=True)
    x = rand(4, 3, 5, seed=6, dtype=dtype)
    h0, c0 = rand(2, 3, 6, seed=7, dtype=dtype), rand(2, 3, 6, seed=8, dtype=dtype)
    lengths = torch.tensor([4, 1, 3])
    dy = rand(4, 3, 12, seed=9, dtype=dtype)
    w = m._layer_weights(0)
    results = []
    for eager in (True, False):
        xs = x.clone().requires_grad_()
        ws = [t.detach().clone().requires_grad_() for t in w]
        if eager:
            y, hn, cn = flt._EagerLayer.apply(xs, lengths, ("lnlstm", 6, 0, True, True, False),
                                              h0, c0, *ws)
        else:
            y, hn, cn, _ = torch.ops.fastlstm.lnlstm_layer(xs, ws, h0, c0, lengths, 6, True,
                                                           True, True)
        ((y * dy).sum() + hn.sum() + cn.square().sum()).backward()
        results.append([y, hn, cn, xs.grad] + [t.grad for t in ws])
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_op_validates_its_arguments_and_eval_calls_cannot_backprop():
    x, h, c = torch.randn(3, 2, 4), torch.zeros(1, 2, 5), torch.zeros(1, 2, 5)
    ws = [torch.randn(s) for s in [(20, 4), (20, 5), (20,), (20,), (5,), (5,)]]
    with pytest.raises(ValueError, match="weights: expected 8"):
        torch.ops.fastlstm.lnlstm_layer(x, ws, h, c, None, 5, False, True, False)
    with pytest.raises(ValueError, match="weight_ln_c_l0"):
        torch.ops.fastlstm.lnlstm_layer(x, ws[:2] + [torch.ones(20), torch.ones(20),
                                                     torch.ones(4), torch.zeros(5)],
                                        h, c, None, 5, False, False, False)
    good = ws[:2] + [torch.ones(20), torch.ones(20), torch.ones(5), torch.zeros(5)]
    with pytest.raises(ValueError, match="lengths"):
        torch.ops.fastlstm.lnlstm_layer(x, good, h, c, torch.tensor([4, 1]), 5, False, False,
                                        False)
    with pytest.raises(ValueError, match="c0"):
        torch.ops.fastlstm.lnlstm_layer(x, good, h, torch.zeros(1, 2, 4), None, 5, False,
                                        False, False)
    xg = x.clone().requires_grad_()
    y, _, _, _ = torch.ops.fastlstm.lnlstm_layer(xg, good, h, c, None, 5, False, False, False)
    with pytest.raises(RuntimeError, match="training=True"):
        y.sum().backward()
    y, hn, cn, ws_ = torch.ops.fastlstm.lnlstm_layer(xg, good, h, c, None, 5, False, False,
                                                     True)
    dy = torch.ones_like(y, requires_grad=True)
    out = torch.ops.fastlstm.lnlstm_layer_backward(xg, good, c, None, ws_, dy,
                                                   torch.zeros_like(hn), torch.zeros_like(cn),
                                                   5, False, False)
    with pytest.raises(RuntimeError, match="not differentiable"):
        out[0].sum().backward()


# --------------------------------------------------------------------------- compile, export


def test_torch_compile_fullgraph_training_and_inference():
    m = make(F32, input_size=4, hidden_size=6, num_layers=2, bidirectional=True)
    x = rand(5, 3, 4, seed=50, dtype=F32)
    explain = torch._dynamo.explain(m)(x)
    assert explain.graph_break_count == 0, explain.break_reasons
    torch._dynamo.reset()
    compiled = torch.compile(m, fullgraph=True)  # inductor, as a user would call it
    xc = x.clone().requires_grad_()
    y, (hn, cn) = compiled(xc)
    (y.sum() + hn.sum() + cn.sum()).backward()
    gc = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    xe = x.clone().requires_grad_()
    ye, (hne, cne) = m(xe)
    (ye.sum() + hne.sum() + cne.sum()).backward()
    assert torch.equal(y, ye) and torch.equal(cn, cne) and torch.equal(xc.grad, xe.grad)
    assert all(torch.equal(a, p.grad) for a, p in zip(gc, m.parameters()))
    close(y, reference(m, x)[0], F32, "compiled y vs reference")
    m.eval()
    with torch.no_grad():
        yi, (hi, ci) = torch.compile(m, fullgraph=True)(x)
    yr, hr, cr, _ = reference(m, x)
    close(yi, yr, F32, "compiled inference y")
    close(ci, cr, F32, "compiled inference c_n")


def test_torch_compile_dynamic_shapes_with_zoneout():
    m = make(F64, input_size=3, hidden_size=5, batch_first=True, zoneout=0.2)
    compiled = torch.compile(m, fullgraph=True, dynamic=True, backend="aot_eager")
    for B, T in ((4, 2), (7, 3)):
        x = rand(B, T, 3, seed=B)
        xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
        torch.manual_seed(B)
        yc, _ = compiled(xc)
        torch.manual_seed(B)
        ye, _ = m(xe)
        yc.square().sum().backward()
        ye.square().sum().backward()
        assert torch.equal(yc, ye) and torch.equal(xc.grad, xe.grad)


def test_torch_export_jit_trace_and_script():
    m = make(F32, input_size=4, hidden_size=6, num_layers=2, bidirectional=True).eval()
    x = rand(5, 3, 4, seed=51, dtype=F32)
    ep = torch.export.export(m, (x,))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert targets.count("fastlstm.lnlstm_layer.default") == 2, targets
    yr, hr, cr, _ = reference(m, x)
    y, (h, c) = ep.module()(x)
    close(y, yr, F32, "exported y")
    close(c, cr, F32, "exported c_n")
    traced = torch.jit.trace(m, (x,))
    assert "fastlstm::lnlstm_layer" in str(traced.graph)
    x2 = rand(7, 2, 4, seed=52, dtype=F32)  # new shapes
    close(traced(x2)[0], reference(m, x2)[0], F32, "traced y")
    with pytest.raises(RuntimeError, match="torch.jit.script.*torch.ops.fastlstm.lnlstm_layer"):
        torch.jit.script(m)


# --------------------------------------------------------------------------- transforms


def penalty_grads(m, x, lengths=None, use_oracle=False):
    """WGAN-GP style: loss = |y|^2 + |dL/dx|^2, both through the layer (or
    through `oracle` with m's parameters)."""
    m.zero_grad()
    x = x.detach().clone().requires_grad_()
    if use_oracle:
        y, hn, cn = oracle_of(m, x, lengths=lengths)
    elif lengths is None:
        y, (hn, cn) = m(x)
    else:
        seqs = [x[:n, b] for b, n in enumerate(lengths)]
        out, (hn, cn) = m(pack_sequence(seqs, enforce_sorted=False))
        y = pad_packed_sequence(out, total_length=x.shape[0])[0]
    inner = (y * rand(*y.shape, seed=2)).sum() + hn.sum() + 0.5 * cn.square().sum()
    gx, = torch.autograd.grad(inner, x, create_graph=True)
    assert gx.requires_grad
    (y.square().sum() + gx.square().sum()).backward()
    return [x.grad] + [p.grad for p in m.parameters()]


@pytest.mark.parametrize("lengths", [None, [6, 2, 4]])
def test_double_backward_matches_the_oracle(lengths):
    m = make(F64, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x = rand(6, 3, 3)
    got = penalty_grads(m, x, lengths)
    want = penalty_grads(m, x, lengths, use_oracle=True)
    for i, (a, b) in enumerate(zip(got, want)):
        close(a, b, F64, f"grad {i}")


def test_vmap_inference_and_ensembles_match_a_loop():
    m = make(F64, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    xs = rand(4, 5, 2, 3)
    with torch.no_grad():
        got_y, (got_h, got_c) = vmap(m)(xs)
        for i, x in enumerate(xs):
            yr, hr, cr, _ = reference(m, x)
            close(got_y[i], yr, F64, f"y[{i}]")
            close(got_c[i], cr, F64, f"c[{i}]")
    members = [make(F64, seed=s, input_size=4, hidden_size=5) for s in range(3)]
    params, _ = torch.func.stack_module_state(members)
    x = rand(5, 2, 4)
    with torch.no_grad():
        got = vmap(lambda p: functional_call(members[0], p, (x,))[0])(params)
    for i, mi in enumerate(members):
        close(got[i], reference(mi, x)[0], F64, f"member {i}")


def test_vmap_over_the_backward_and_per_sample_grads():
    m = make(F64, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x = rand(5, 2, 3).requires_grad_()
    y, _ = m(x)
    vs = rand(3, *y.shape, seed=7)

    def vjp(v):
        return torch.autograd.grad(y, (x, m.weight_ln_hh_l1), v, retain_graph=True)

    got = vmap(vjp)(vs)
    for i, v in enumerate(vs):
        for name, a, b in zip(("dx", "dgain"), (got[0][i], got[1][i]), vjp(v)):
            close(a, b, F64, f"{name}[{i}]")
    params = {k: v.detach() for k, v in m.named_parameters()}
    xs = rand(3, 6, 3, seed=8)

    def loss(p, xi):
        return functional_call(m, p, (xi[:, None],))[0].square().sum()

    def oracle_loss(p, xi):
        return oracle_of(m, xi[:, None], params=p)[0].square().sum()

    per_sample = vmap(grad(loss), in_dims=(None, 0))(params, xs)
    for i in range(3):  # torch.func.grad of the oracle, sample by sample
        want = grad(oracle_loss)(params, xs[i])
        for k in params:
            close(per_sample[k][i], want[k], F64, f"{k}[{i}]")


def test_jvp_jacfwd_and_forward_ad_match_the_oracle():
    m = make(F64, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x, t = rand(4, 2, 3), rand(4, 2, 3, seed=9)
    (yf, tf), (yo, to) = [jvp(f, (x,), (t,)) for f in
                          (lambda x: m(x)[0], lambda x: oracle_of(m, x)[0])]
    close(yf, yo, F64, "jvp primal")
    close(tf, to, F64, "jvp tangent")
    close(jacfwd(lambda x: m(x)[1][1].sum())(x), jacfwd(lambda x: oracle_of(m, x)[2].sum())(x),
          F64, "jacfwd of c_n")
    with fwAD.dual_level():
        tf = fwAD.unpack_dual(m(fwAD.make_dual(x, t))[0]).tangent
    close(tf, to, F64, "forward_ad tangent")


def test_forward_ad_with_zoneout_masks_matches_the_reference():
    """Forward AD runs `_autodiff`'s torch ops: with zoneout in training they
    take the module's masks, as the kernels do."""
    m = make(F64, input_size=3, hidden_size=4, num_layers=2, bidirectional=True, zoneout=0.4)
    x, t = rand(5, 2, 3), rand(5, 2, 3, seed=10)
    with fwAD.dual_level():
        y = fwAD.unpack_dual(m(fwAD.make_dual(x, t))[0]).primal
    yr = reference(m, x, training=True, zoneout_masks=m.zoneout_masks)[0]
    close(y, yr, F64, "forward_ad primal with zoneout")


@pytest.mark.parametrize("batch_first", [False, True])
def test_empty_batch_returns_torch_shapes(batch_first):
    kw = dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True,
              batch_first=batch_first)
    fm, tm = make(F64, **kw), torch.nn.LSTM(**kw).double()
    x = torch.zeros((0, 5, 3) if batch_first else (5, 0, 3), dtype=F64, requires_grad=True)
    outs = []
    for m in (fm, tm):
        y, (h, c) = m(x)
        (y.sum() + h.sum() + c.sum()).backward()
        outs.append((y, h, c))
    for a, b in zip(*outs):
        assert a.shape == b.shape
    assert all(p.grad is not None and not p.grad.any() for p in fm.parameters())


# --------------------------------------------------------------------------- other dtypes


def test_fallback_maths_match_the_reference(monkeypatch):
    """Where the kernels cannot run (CUDA, float16, bfloat16) the module runs
    `_autodiff`'s torch ops, torch having no layer-norm LSTM op: that path,
    forced here in float64 with the kernels made unreachable, gives the
    reference's outputs and gradients with PackedSequence lengths, initial
    states, zoneout masks and dropout between layers."""
    from fastlstm.torch import _module, _ops

    def no_kernels(*args, **kwargs):
        raise AssertionError("the kernels ran")

    m = make(F64, input_size=3, hidden_size=4, num_layers=2, bidirectional=True, zoneout=0.3)
    monkeypatch.setattr(_module.LayerNormLSTM, "_path", lambda self, x: "autodiff")
    monkeypatch.setattr(_ops, "_run_forward", no_kernels)
    monkeypatch.setattr(_ops, "_run_backward", no_kernels)
    lens = [5, 2, 4]
    x = rand(5, 3, 3, seed=62)
    h0, c0 = rand(4, 3, 4, seed=63), rand(4, 3, 4, seed=64)
    xs = x.clone().requires_grad_()
    hs, cs = h0.clone().requires_grad_(), c0.clone().requires_grad_()
    torch.manual_seed(65)
    out, (hn, cn) = m(pack_padded_sequence(xs, torch.tensor(lens), enforce_sorted=False),
                      (hs, cs))
    y = pad_packed_sequence(out)[0]
    valid = (torch.arange(5)[:, None] < torch.tensor(lens)[None, :])[..., None]
    dy = rand(*y.shape, seed=66) * valid
    dhn, dcn = rand(*hn.shape, seed=67), rand(*cn.shape, seed=68)
    torch.autograd.backward([y, hn, cn], [dy, dhn, dcn])
    assert len(m.zoneout_masks) == 2
    yr, hr, cr, cache = reference(m, x, h0, c0, lengths=lens, training=True,
                                  zoneout_masks=m.zoneout_masks)
    dxr, dh0r, dc0r, gr = ref.lnlstm_backward(cache, np64(dy), np64(dhn), np64(dcn))
    for name, got, want in [("y", y, yr), ("h_n", hn, hr), ("c_n", cn, cr), ("dx", xs.grad, dxr),
                            ("dh0", hs.grad, dh0r), ("dc0", cs.grad, dc0r)]:
        close(got, want, F64, name)
    for k, p in m.named_parameters():
        close(p.grad, gr[k], F64, f"grad {k}")
    m.zoneout, m.dropout = 0.0, 1.0  # dropout between layers: all zero
    m.train()
    yr = reference(m, x, training=True, dropout_masks=[torch.zeros(5, 3, 8, dtype=F64)])[0]
    close(m(x)[0], yr, F64, "y with dropout=1")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_other_dtypes_run_the_torch_op_maths(dtype):
    """float16 / bfloat16 input and parameters run that path in the dtype
    (forward, backward, PackedSequence, zoneout). Bound: 8 times the error
    the plain torch `oracle` commits in that dtype, against the float64
    reference."""
    m = make(F64, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x = rand(5, 2, 3, seed=60)
    yr, hr, cr, cache = reference(m, x, training=True)
    dxr = ref.lnlstm_backward(cache, np.ones(yr.shape))[0]
    low = copy.deepcopy(m).to(dtype)
    xo = x.to(dtype).requires_grad_()
    yo, _, co = oracle_of(low, xo)
    yo.sum().backward()

    def bound(oracle_value, want):
        err = np.abs(np64(oracle_value) - want).max()
        return 8 * err / np.abs(want).max()

    xl = x.to(dtype).requires_grad_()
    y, (hn, cn) = low(xl)
    assert y.dtype == cn.dtype == dtype
    y.sum().backward()
    assert xl.grad.dtype == dtype and low.weight_ln_ih_l1.grad.dtype == dtype
    close(y, yr, F64, "y", bound(yo, yr))
    close(cn, cr, F64, "c_n", bound(co, cr))
    close(xl.grad, dxr, F64, "dx", bound(xo.grad, dxr))
    out, _ = low(pack_sequence([x[:, 0].to(dtype), x[:3, 1].to(dtype)], enforce_sorted=False))
    yp = reference(m, x, lengths=[5, 3])[0]
    close(pad_packed_sequence(out)[0], yp, F64, "packed y", bound(yo, yr))
    low.zoneout = m.zoneout = 0.5
    low.eval()
    with torch.no_grad():
        close(low(x.to(dtype))[0], reference(m, x)[0], F64, "eval zoneout y", bound(yo, yr))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_runs_the_torch_op_maths():
    m = make(F32, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x = rand(5, 2, 3, seed=61, dtype=F32)
    want = reference(m, x)
    mc = copy.deepcopy(m).cuda()
    y, (h, c) = mc(x.cuda())
    close(y.cpu(), want[0], F32, "cuda y", 1e-4)
    close(c.cpu(), want[2], F32, "cuda c_n", 1e-4)
    out, _ = mc(pack_sequence([x[:, 0].cuda(), x[:3, 1].cuda()], enforce_sorted=False))
    close(pad_packed_sequence(out)[0].cpu(), reference(m, x, lengths=[5, 3])[0], F32,
          "cuda packed y", 1e-4)


# --------------------------------------------------------------------------- ONNX


def _chain(err) -> str:
    text = []
    while err is not None:
        text.append(str(err))
        err = err.__cause__ or err.__context__
    return "\n".join(text)


class Tagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(20, 4)
        self.rnn = flt.LayerNormLSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.out = torch.nn.Linear(12, 3)

    def forward(self, tokens):
        y, (h, c) = self.rnn(self.emb(tokens))
        return self.out(y), h, c


def _refused(text):
    return "cannot be exported to ONNX" in text and "layer-norm LSTM" in text


def test_onnx_torchscript_exporter_refuses():
    model = Tagger().eval()
    tok = torch.randint(0, 20, (2, 5))
    with pytest.raises(Exception) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (tok,), io.BytesIO(), dynamo=False)
    assert _refused(_chain(info.value)), _chain(info.value)
    # a graph traced before the export: the op's symbolic refuses
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (tok,), check_trace=False)
        with pytest.raises(Exception) as info:
            torch.onnx.export(traced, (tok,), io.BytesIO(), dynamo=False)
    assert _refused(_chain(info.value)), _chain(info.value)
    # outside an export the model runs as before
    assert model(tok)[0].shape == (2, 5, 3)


def test_onnx_dynamo_exporter_refuses():
    """With fastlstm's translation table: refused while the exporter
    captures the model, and by the table's layer-norm entry for an
    ExportedProgram captured before."""
    pytest.importorskip("onnxscript")
    table = flt.onnx_translation_table()
    model = Tagger().eval()
    tok = torch.randint(0, 20, (2, 5))
    with pytest.raises(Exception) as info:
        torch.onnx.export(model, (tok,), dynamo=True, custom_translation_table=table,
                          verbose=False)
    assert _refused(_chain(info.value)), _chain(info.value)
    ep = torch.export.export(model, (tok,))  # outside an ONNX export: captured as usual
    with pytest.raises(Exception) as info:
        torch.onnx.export(ep, (tok,), dynamo=True, custom_translation_table=table,
                          verbose=False)
    assert _refused(_chain(info.value)), _chain(info.value)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("bad, match", [
    (lambda m: m(torch.randn(3, 2, 5)), r"input.size\(-1\) must be equal to input_size"),
    (lambda m: m(torch.randn(3, 4)[None, None]), "Expected input to be 2D or 3D, got 4D"),
    (lambda m: m(torch.randn(3, 2, 4), (torch.zeros(1, 2, 5), torch.zeros(1, 2, 6))),
     r"Expected hidden\[0\] size \(1, 2, 6\), got \[1, 2, 5\]"),
    (lambda m: m(torch.randn(3, 2, 4), (torch.zeros(1, 2, 6), torch.zeros(1, 3, 6))),
     r"Expected hidden\[1\] size \(1, 2, 6\), got \[1, 3, 6\]"),
    (lambda m: m(torch.randn(3, 2, 4), (torch.zeros(2, 6), torch.zeros(2, 6))),
     "For batched 3-D input, hx and cx should also be 3-D"),
    (lambda m: m(torch.randn(3, 4), (torch.zeros(1, 1, 6), torch.zeros(1, 1, 6))),
     "For unbatched 2-D input, hx and cx should also be 2-D"),
    (lambda m: m(torch.randn(0, 2, 4)), "sequence length to be larger than 0"),
    (lambda m: m(torch.randn(3, 2, 4, dtype=F64)),
     r"Convert input: input.to\(torch.float32\), or convert model"),
], ids=["input_size", "rank4", "h0_shape", "c0_shape", "hx_rank", "unbatched_hx_rank",
        "zero_length", "dtype"])
def test_bad_input_raises_as_torch_lstm(bad, match):
    """The same input to torch.nn.LSTM of the same sizes: the same exception
    type and message."""
    tm, fm = torch.nn.LSTM(4, 6), flt.LayerNormLSTM(4, 6)
    with pytest.raises(Exception, match=match) as want:
        bad(tm)
    with pytest.raises(want.type, match=match):
        bad(fm)


def test_constructor_errors():
    for kw in (dict(bias=0), dict(batch_first="no"), dict(dropout=2.0), dict(num_layers=0),
               dict(input_size=3.0), dict(hidden_size=0)):
        args = dict(input_size=3, hidden_size=4) | kw
        with pytest.raises(Exception) as want:
            torch.nn.LSTM(**args)
        with pytest.raises(want.type, match=str(want.value)[:30].replace("(", r"\(")):
            flt.LayerNormLSTM(**args)
    # what the cell has not: a TypeError, as the NumPy fastlstm.LayerNormLSTM raises
    for kw, why in ((dict(proj_size=2), "projection"), (dict(peephole=True), "peepholes"),
                    (dict(cell_clip=1.0), "cell clip"),
                    (dict(weights_dtype="bfloat16"), "bfloat16")):
        with pytest.raises(TypeError) as want:
            fastlstm.LayerNormLSTM(3, 4, **kw)
        with pytest.raises(TypeError, match=why) as got:
            flt.LayerNormLSTM(3, 4, **kw)
        name = next(iter(kw))
        assert f"unexpected keyword argument '{name}'" in str(want.value)
        assert f"unexpected keyword argument '{name}'" in str(got.value)
    with pytest.raises(ValueError, match="zoneout"):
        flt.LayerNormLSTM(3, 4, zoneout=1.5)
    with pytest.raises(RuntimeError, match=r"hx\[1\]: expected torch.float32"):
        flt.LayerNormLSTM(3, 4)(torch.randn(2, 1, 3),
                                (torch.zeros(1, 1, 4), torch.zeros(1, 1, 4, dtype=F64)))
    with pytest.raises(TypeError, match=r"hx: expected a tuple \(h_0, c_0\)"):
        flt.LayerNormLSTM(3, 4)(torch.randn(2, 1, 3), torch.zeros(1, 1, 4))


# --------------------------------------------------------------------------- caching


def test_inference_sees_in_place_weight_updates_and_copies_drop_the_cache():
    m = make(F64, input_size=3, hidden_size=4).eval()
    x = rand(5, 2, 3, seed=70)
    with torch.no_grad():
        y0 = m(x)[0]
        assert torch.equal(m(x)[0], y0)
        m.weight_ln_c_l0.mul_(0.5)
        m.bias_ln_c_l0.add_(0.25)
        y1 = m(x)[0]
        assert not torch.equal(y1, y0)
        close(y1, reference(m, x)[0], F64, "after in-place gain/bias updates")
        m.weight_ln_hh_l0.data.mul_(2.0)
        m.params_changed()
        close(m(x)[0], reference(m, x)[0], F64, "after .data + params_changed")
        y = m(x)[0]
        for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
            assert clone._fl_cache is None
            assert torch.equal(clone(x)[0], y)
