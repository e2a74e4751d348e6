"""fastlstm.torch.GRU and GRUCell: drop-ins for torch.nn.GRU / GRUCell on the
GRU kernels, through the custom ops ``fastlstm::gru_layer`` /
``gru_layer_backward``.

Oracles: torch.nn.GRU / GRUCell themselves (same state_dict, outputs and every
.grad, weights loaded in both directions), torch.autograd.gradcheck and
gradgradcheck in float64, a per-sample loop where torch.nn.GRU fails under a
transform, and torch.library.opcheck for the op registrations (schema, fake
kernel, autograd). Tolerances: float32 1e-5 and float64 1e-10 of max|torch|.
"""
import copy
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
flt = pytest.importorskip("fastlstm.torch")

from _tolerance import assert_rel_close  # noqa: E402
from _torch_pair import gru_pair  # noqa: E402

import torch.autograd.forward_ad as fwAD  # noqa: E402
from torch.func import functional_call, grad, jacfwd, jvp, vmap  # noqa: E402
from torch.nn.utils.rnn import (pack_padded_sequence, pack_sequence,  # noqa: E402
                                pad_packed_sequence)

F32, F64 = torch.float32, torch.float64
TOL = {F32: 1e-5, F64: 1e-10}  # relative to max|torch|, as the LSTM's tests

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def close(got, want, dtype, name):
    assert_rel_close(got, want, TOL[dtype], name)


def rand(*shape, seed=1, dtype=F64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def run_and_grad(m, x, h0=None):
    """Outputs and the gradients of a fixed random loss w.r.t. x, h0 and params."""
    x = x.detach().clone().requires_grad_()
    h0 = None if h0 is None else h0.detach().clone().requires_grad_()
    m.zero_grad()
    y, hn = m(x, h0)
    g = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in (y, hn))
    loss.backward()
    out = {"y": y, "h_n": hn, "dx": x.grad}
    if h0 is not None:
        out["dh0"] = h0.grad
    out.update({"grad " + k: p.grad for k, p in m.named_parameters()})
    return out


CONFIGS = {
    "plain": dict(input_size=5, hidden_size=7),
    "stacked_bidir": dict(input_size=6, hidden_size=8, num_layers=2, bidirectional=True),
    "batch_first": dict(input_size=4, hidden_size=9, batch_first=True),
    "no_bias_2layer": dict(input_size=3, hidden_size=5, num_layers=2, bias=False),
    "wide": dict(input_size=33, hidden_size=40, num_layers=2, bidirectional=True),
    "dropout_3layer": dict(input_size=4, hidden_size=6, num_layers=3, dropout=0.5,
                           bidirectional=True, batch_first=True),
}

# the largest error of each parity check, by dtype (printed at the end of the run)
MAX_ERR = {F32: 0.0, F64: 0.0}


def record(got, want, dtype, name):
    err = ((got - want).abs().max() / max(want.abs().max().item(), 1e-300)).item()
    MAX_ERR[dtype] = max(MAX_ERR[dtype], err)
    close(got, want, dtype, name)


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("cfg", list(CONFIGS))
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("from_fastlstm", [False, True], ids=["torch->fl", "fl->torch"])
def test_parity_with_torch(dtype, cfg, with_hx, from_fastlstm):
    """Outputs, dx, dh0 and every parameter's .grad; dropout configurations
    run in eval() (no dropout), as torch's."""
    kw = CONFIGS[cfg]
    tm, fm = gru_pair(dtype, from_fastlstm=from_fastlstm, **kw)
    if kw.get("dropout"):
        tm.eval()
        fm.eval()
    T, B = 6, 3
    D, L = 2 if kw.get("bidirectional") else 1, kw.get("num_layers", 1)
    shape = (B, T, kw["input_size"]) if kw.get("batch_first") else (T, B, kw["input_size"])
    x = rand(*shape, seed=2, dtype=dtype)
    h0 = rand(D * L, B, kw["hidden_size"], seed=3, dtype=dtype) if with_hx else None
    want, got = run_and_grad(tm, x, h0), run_and_grad(fm, x, h0)
    assert set(got) == set(want)
    for k in want:
        record(got[k], want[k], dtype, k)


def test_report_max_errors():
    """Runs after the parity tests (file order): their largest relative errors."""
    print(f"\nmax relative error vs torch.nn.GRU: float32 {MAX_ERR[F32]:.3g}, "
          f"float64 {MAX_ERR[F64]:.3g}")


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_sequence_in_and_out(dtype, bidirectional):
    """pack_sequence (unsorted) and pack_padded_sequence, with an initial state
    in the caller's batch order: the same PackedSequence, states and grads."""
    tm, fm = gru_pair(dtype, input_size=4, hidden_size=6, num_layers=2,
                      bidirectional=bidirectional)
    D = 2 if bidirectional else 1
    seqs = [rand(n, 4, seed=10 + n, dtype=dtype) for n in (3, 7, 1, 5)]
    h0 = rand(2 * D, 4, 6, seed=4, dtype=dtype)
    results = []
    for m in (tm, fm):
        xs = [s.clone().requires_grad_() for s in seqs]
        h = h0.clone().requires_grad_()
        out, hn = m(pack_sequence(xs, enforce_sorted=False), h)
        assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
        y, lens = pad_packed_sequence(out)
        (y.square().sum() + 2 * hn.sum()).backward()
        results.append((out, y, lens, hn, [s.grad for s in xs] + [h.grad],
                        [p.grad for p in m.parameters()]))
    (to, ty, tl, thn, tdx, tgw), (fo, fy, fl_, fhn, fdx, fgw) = results
    assert torch.equal(to.batch_sizes, fo.batch_sizes)
    assert torch.equal(to.sorted_indices, fo.sorted_indices)
    assert torch.equal(to.unsorted_indices, fo.unsorted_indices)
    assert torch.equal(tl, fl_)
    for name, a, b in [("data", fo.data, to.data), ("y", fy, ty), ("h_n", fhn, thn)] + \
            [(f"dx{i}", a, b) for i, (a, b) in enumerate(zip(fdx, tdx))] + \
            [(f"dw{i}", a, b) for i, (a, b) in enumerate(zip(fgw, tgw))]:
        record(a, b, dtype, name)
    # pack_padded_sequence, batch_first
    tm.batch_first = fm.batch_first = True
    x = rand(4, 7, 4, seed=5, dtype=dtype)
    lens = torch.tensor([7, 2, 5, 1])
    with torch.no_grad():
        outs = [m(pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False))
                for m in (tm, fm)]
    (tp, th), (fp, fh) = outs
    record(fp.data, tp.data, dtype, "packed_padded data")
    record(fh, th, dtype, "packed_padded h_n")


def test_unbatched_input():
    tm, fm = gru_pair(F64, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x, h0 = rand(5, 3, seed=4), rand(4, 4, seed=5)
    want, got = run_and_grad(tm, x, h0), run_and_grad(fm, x, h0)
    for k in want:
        record(got[k], want[k], F64, k)
    assert got["h_n"].shape == (4, 4) and got["y"].shape == (5, 8)


def test_eval_dropout_is_off_and_train_dropout_is_torchs():
    """dropout between layers: none in eval(); in train() torch's
    functional dropout on torch's RNG (masks differ from the fused op's, so
    the oracle is a layer-by-layer torch.nn.GRU with the same masks)."""
    tm, fm = gru_pair(F64, input_size=3, hidden_size=5, num_layers=3, dropout=0.4)
    x = rand(4, 2, 3)
    fm.eval()
    tm.eval()
    close(fm(x)[0], tm(x)[0], F64, "eval")
    fm.train()
    torch.manual_seed(5)
    y1, h1 = fm(x)
    layers = []  # (built first: their init draws on the RNG)
    for k in range(3):
        one = torch.nn.GRU(3 if k == 0 else 5, 5).double()
        one.load_state_dict({n.replace(f"_l{k}", "_l0"): v for n, v in tm.state_dict().items()
                             if f"_l{k}" in n})
        layers.append(one)
    torch.manual_seed(5)
    masks_input = x
    hs = []
    for k, one in enumerate(layers):
        masks_input, h = one(masks_input)
        hs.append(h)
        if k < 2:
            masks_input = torch.nn.functional.dropout(masks_input, 0.4, training=True)
    close(y1, masks_input, F64, "train-mode dropout")
    close(h1, torch.cat(hs), F64, "train-mode h_n")


def test_mirrors_torch_gru_and_state_dicts_interchange():
    tm, fm = gru_pair(F32, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    assert list(fm.state_dict()) == list(tm.state_dict())
    assert [(k, v.shape) for k, v in fm.state_dict().items()] == \
        [(k, v.shape) for k, v in tm.state_dict().items()]
    assert fm._flat_weights_names == tm._flat_weights_names
    assert fm._all_weights == tm._all_weights
    for a in ("mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first",
              "dropout", "bidirectional", "proj_size"):
        assert getattr(fm, a) == getattr(tm, a), a
    assert repr(fm).replace("fastlstm.torch.", "") == repr(tm)
    torch.manual_seed(3)
    t3 = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True, bias=False)
    torch.manual_seed(3)
    f3 = flt.GRU(3, 4, num_layers=2, bidirectional=True, bias=False)
    for k, v in t3.state_dict().items():  # the same seed gives torch's initial weights
        assert torch.equal(f3.state_dict()[k], v), k
    torch.nn.GRU(3, 4, num_layers=2, bidirectional=True).load_state_dict(fm.state_dict())
    fm.flatten_parameters()
    assert fm.double() is fm and all(p.dtype == F64 for p in fm.parameters())
    y, h = fm(torch.randn(4, 2, 3, dtype=F64))
    assert y.dtype == F64 and y.shape == (4, 2, 8) and h.shape == (4, 2, 4)


@pytest.mark.parametrize("bad, match", [
    (lambda m: m(torch.randn(3, 2, 5)), r"input.size\(-1\) must be equal to input_size"),
    (lambda m: m(torch.randn(3, 4)[None, None]), "GRU: Expected input to be 2D or 3D, got 4D"),
    (lambda m: m(torch.randn(3, 2, 4), torch.zeros(1, 2, 5)),
     r"Expected hidden size \(1, 2, 6\), got \[1, 2, 5\]"),
    (lambda m: m(torch.randn(3, 2, 4), torch.zeros(2, 6)),
     "For batched 3-D input, hx should also be 3-D but got 2-D tensor"),
    (lambda m: m(torch.randn(3, 4), torch.zeros(1, 1, 6)),
     "For unbatched 2-D input, hx should also be 2-D but got 3-D tensor"),
    (lambda m: m(torch.randn(0, 2, 4)), "sequence length to be larger than 0"),
    (lambda m: m(torch.randn(3, 2, 4, dtype=F64)),
     r"Convert input: input.to\(torch.float32\), or convert model"),
])
def test_bad_input_raises_as_torch(bad, match):
    tm, fm = gru_pair(F32, input_size=4, hidden_size=6)
    with pytest.raises(Exception, match=match) as want:
        bad(tm)
    with pytest.raises(want.type, match=match):
        bad(fm)


def test_constructor_errors_as_torch():
    for kw in (dict(proj_size=2), dict(bias=0), dict(dropout=2.0), dict(num_layers=0)):
        with pytest.raises(Exception) as want:
            torch.nn.GRU(3, 4, **kw)
        with pytest.raises(want.type, match=str(want.value)[:30].replace("(", r"\(")):
            flt.GRU(3, 4, **kw)
    with pytest.raises(TypeError, match="peephole"):
        flt.GRU(3, 4, peephole=True)
    with pytest.raises(RuntimeError, match=r"hx: expected torch.float32"):
        flt.GRU(3, 4)(torch.randn(2, 1, 3), torch.zeros(1, 1, 4, dtype=F64))


def test_other_dtypes_defer_to_torch():
    torch.manual_seed(0)
    fm = flt.GRU(3, 4, num_layers=2).to(torch.bfloat16)
    tm = torch.nn.GRU(3, 4, num_layers=2).to(torch.bfloat16)
    tm.load_state_dict(fm.state_dict())
    x = torch.randn(2, 1, 3, dtype=torch.bfloat16)
    for a, b in zip(fm(x), tm(x)):
        assert torch.equal(a, b)
    packed = pack_sequence([x[:, 0], x[:1, 0]], enforce_sorted=False)
    (fp, fh), (tp, th) = fm(packed), tm(packed)
    assert torch.equal(fp.data, tp.data) and torch.equal(fh, th)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_defers_to_torch():
    tm, fm = gru_pair(F32, input_size=3, hidden_size=4)
    tm, fm = tm.cuda(), fm.cuda()
    x = torch.randn(5, 2, 3, device="cuda")
    for a, b in zip(fm(x), tm(x)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_eager_path_equals_the_ops(dtype):
    """Eager autograd packs once for forward and backward; the op pair (what
    torch.compile runs) packs in each. Both give the same bits."""
    _, fm = gru_pair(dtype, input_size=5, hidden_size=6, bidirectional=True)
    x, h0 = rand(4, 3, 5, seed=6, dtype=dtype), rand(2, 3, 6, seed=7, dtype=dtype)
    lengths = torch.tensor([4, 1, 3])
    dy = rand(4, 3, 12, seed=8, dtype=dtype)
    w = fm._layer_weights(0)
    results = []
    for eager in (True, False):
        xs = x.clone().requires_grad_()
        ws = [t.detach().clone().requires_grad_() for t in w]
        if eager:
            y, hn = flt._EagerLayer.apply(xs, lengths, ("gru", 6, 0, True, True, False), h0,
                                          *ws)
        else:
            y, hn, _ = torch.ops.fastlstm.gru_layer(xs, ws, h0, lengths, 6, True, True, True)
        ((y * dy).sum() + hn.sum()).backward()
        results.append([y, hn, xs.grad] + [t.grad for t in ws])
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("variant", ["plain", "bidir_lengths", "no_bias_lengths"])
def test_op_gradcheck_and_gradgradcheck(variant):
    H, I, T, B = 3, 2, 4, 2
    bidir, bias = variant == "bidir_lengths", variant != "no_bias_lengths"
    D = 2 if bidir else 1
    g = torch.Generator().manual_seed(8)

    def r(*shape):
        return torch.randn(shape, generator=g, dtype=F64, requires_grad=True)

    ws = []
    for _ in range(D):
        ws += [r(3 * H, I), r(3 * H, H)] + ([r(3 * H), r(3 * H)] if bias else [])
    lengths = None if variant == "plain" else torch.tensor([4, 2])

    def f(x, h0, *w):
        return torch.ops.fastlstm.gru_layer(x, list(w), h0, lengths, H, bidir, bias, True)[:2]

    args = (r(T, B, I), r(D, B, H), *ws)
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)


def module_fn(m):
    names = [n for n, _ in m.named_parameters()]
    return lambda x, *w: functional_call(m, dict(zip(names, w)), (x,))[0]


def test_module_gradcheck_gradgradcheck_and_batched_grad():
    _, fm = gru_pair(F64, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x = rand(2, 3, 3).requires_grad_()
    params = [p.detach().clone().requires_grad_() for p in fm.parameters()]
    f = module_fn(fm)
    assert torch.autograd.gradcheck(f, (x, *params), check_batched_grad=True)
    assert torch.autograd.gradgradcheck(f, (x, *params))


def test_opcheck():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(3, 2, 4, generator=g, requires_grad=True)
    ws = [torch.randn(s, generator=g, requires_grad=True) for s in [(15, 4), (15, 5), (15,), (15,)]]
    h0 = torch.randn(1, 2, 5, generator=g, requires_grad=True)
    for lengths in (torch.tensor([3, 1]), None):
        torch.library.opcheck(torch.ops.fastlstm.gru_layer.default,
                              (x, ws, h0, lengths, 5, False, True, True))
        # an inference call (training=False) saves no workspace: no autograd through it
        torch.library.opcheck(torch.ops.fastlstm.gru_layer.default,
                              (x.detach(), [w.detach() for w in ws], h0.detach(), lengths, 5,
                               False, True, False))
    y, hn, ws_ = torch.ops.fastlstm.gru_layer(x, ws, h0, None, 5, False, True, True)
    torch.library.opcheck(torch.ops.fastlstm.gru_layer_backward.default,
                          (x.detach(), [w.detach() for w in ws], None, ws_,
                           torch.randn_like(y), torch.randn_like(hn), 5, False, True))


def test_backward_op_is_not_differentiable_and_eval_calls_cannot_backprop():
    x = rand(3, 2, 4).requires_grad_()
    ws = [rand(15, 4, seed=3).requires_grad_(), rand(15, 5, seed=4).requires_grad_()]
    h = torch.zeros(1, 2, 5, dtype=F64)
    y, hn, ws_ = torch.ops.fastlstm.gru_layer(x, ws, h, None, 5, False, False, True)
    dy = torch.ones_like(y, requires_grad=True)
    out = torch.ops.fastlstm.gru_layer_backward(x, ws, None, ws_, dy, torch.zeros_like(hn), 5,
                                                False, False)
    with pytest.raises(RuntimeError, match="not differentiable"):
        out[0].sum().backward()
    y, _, _ = torch.ops.fastlstm.gru_layer(x, ws, h, None, 5, False, False, False)
    with pytest.raises(RuntimeError, match="training=True"):
        y.sum().backward()


def test_op_validates_its_arguments():
    x, h = torch.randn(3, 2, 4), torch.zeros(1, 2, 5)
    ws = [torch.randn(15, 4), torch.randn(15, 5)]
    with pytest.raises(ValueError, match="weights: expected 4"):
        torch.ops.fastlstm.gru_layer(x, ws, h, None, 5, False, True, False)
    with pytest.raises(ValueError, match="weight_hh_l0"):
        torch.ops.fastlstm.gru_layer(x, [ws[0], torch.randn(20, 5)], h, None, 5, False, False,
                                     False)
    with pytest.raises(ValueError, match="lengths"):
        torch.ops.fastlstm.gru_layer(x, ws, h, torch.tensor([4, 1]), 5, False, False, False)
    with pytest.raises(ValueError, match="h0"):
        torch.ops.fastlstm.gru_layer(x, ws, torch.zeros(1, 3, 5), None, 5, False, False, False)


def test_torch_compile_has_no_graph_break():
    tm, fm = gru_pair(F32, input_size=4, hidden_size=6, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3, 4)
    explain = torch._dynamo.explain(fm)(x)
    assert explain.graph_break_count == 0, explain.break_reasons
    torch._dynamo.reset()
    compiled = torch.compile(fm, fullgraph=True)  # inductor, as a user would call it
    xc = x.clone().requires_grad_()
    y, hn = compiled(xc)
    (y.sum() + hn.sum()).backward()
    gc = [p.grad.clone() for p in fm.parameters()]
    fm.zero_grad()
    xe = x.clone().requires_grad_()
    ye, hne = fm(xe)
    (ye.sum() + hne.sum()).backward()
    assert torch.equal(y, ye) and torch.equal(hn, hne) and torch.equal(xc.grad, xe.grad)
    assert all(torch.equal(a, p.grad) for a, p in zip(gc, fm.parameters()))
    close(y, tm(x)[0], F32, "compiled y vs torch.nn.GRU")
    with torch.no_grad():
        fm.eval()
        yi, hi = torch.compile(fm, fullgraph=True)(x)
        close(yi, tm(x)[0], F32, "compiled inference y")
        close(hi, tm(x)[1], F32, "compiled inference h_n")


def test_torch_compile_dynamic_shapes():
    _, fm = gru_pair(F32, input_size=3, hidden_size=5, batch_first=True)
    compiled = torch.compile(fm, fullgraph=True, dynamic=True, backend="aot_eager")
    for B, T in ((4, 2), (7, 3)):
        x = torch.randn(B, T, 3)
        xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
        yc, _ = compiled(xc)
        ye, _ = fm(xe)
        yc.square().sum().backward()
        ye.square().sum().backward()
        assert torch.equal(yc, ye) and torch.equal(xc.grad, xe.grad)


def test_torch_export_sees_the_op():
    tm, fm = gru_pair(F32, input_size=4, hidden_size=6, num_layers=2, bidirectional=True)
    fm.eval()
    x = torch.randn(5, 3, 4)
    ep = torch.export.export(fm, (x,))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert "fastlstm.gru_layer.default" in targets, targets
    y, h = ep.module()(x)
    close(y, tm(x)[0], F32, "exported y")
    close(h, tm(x)[1], F32, "exported h_n")


def test_jit_trace_records_the_op_and_follows_new_inputs():
    tm, fm = gru_pair(F64, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    fm.eval()
    tm.eval()
    traced = torch.jit.trace(fm, (rand(5, 2, 3),))
    assert "fastlstm::gru_layer" in str(traced.graph)
    for T, B, seed in ((5, 2, 20), (7, 3, 21)):
        x = rand(T, B, 3, seed=seed)
        (y, h), (yt, ht) = traced(x), tm(x)
        close(y, yt, F64, "y")
        close(h, ht, F64, "h_n")


def test_jit_trace_in_train_mode_backpropagates():
    tm, fm = gru_pair(F64, input_size=4, hidden_size=5)
    traced = torch.jit.trace(fm, (rand(4, 2, 4),), check_trace=False)
    x = rand(6, 3, 4, seed=3)
    for m in (traced, tm):
        m.zero_grad()
        m(x)[0].square().sum().backward()
    for (n, a), b in zip(fm.named_parameters(), tm.parameters()):
        close(a.grad, b.grad, F64, n)


def test_jit_script_raises_a_clear_error():
    _, fm = gru_pair(F32, input_size=4, hidden_size=5)
    with pytest.raises(RuntimeError, match="torch.jit.script.*torch.jit.trace"):
        torch.jit.script(fm)


def penalty_grads(m, x, packed_lengths=None):
    """WGAN-GP style: loss = |y|^2 + |dL/dx|^2, both through the layer."""
    m.zero_grad()
    x = x.detach().clone().requires_grad_()
    if packed_lengths is None:
        y, hn = m(x)
    else:
        seqs = [x[:n, b] for b, n in enumerate(packed_lengths)]
        out, hn = m(pack_sequence(seqs, enforce_sorted=False))
        y = pad_packed_sequence(out)[0]
    inner = (y * rand(*y.shape, seed=2)).sum() + 0.5 * hn.square().sum()
    gx, = torch.autograd.grad(inner, x, create_graph=True)
    assert gx.requires_grad
    (y.square().sum() + gx.square().sum()).backward()
    return [x.grad] + [p.grad for p in m.parameters()]


@pytest.mark.parametrize("lengths", [None, [6, 2, 4]])
def test_double_backward_matches_torch(lengths):
    tm, fm = gru_pair(F64, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x = rand(6, 3, 3)
    for i, (a, b) in enumerate(zip(penalty_grads(fm, x, lengths),
                                   penalty_grads(tm, x, lengths))):
        record(a, b, F64, f"grad {i}")


def test_vmap_inference_matches_a_loop():
    tm, fm = gru_pair(F64, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    xs = rand(4, 5, 2, 3)
    with torch.no_grad():
        got_y, got_h = vmap(fm)(xs)
        for i, x in enumerate(xs):
            y, h = tm(x)
            close(got_y[i], y, F64, f"y[{i}]")
            close(got_h[i], h, F64, f"h[{i}]")


def test_vmap_with_ensembled_weights_and_batched_state():
    tms = [gru_pair(F64, seed=s, input_size=4, hidden_size=5)[0] for s in range(3)]
    fms = [gru_pair(F64, seed=s, input_size=4, hidden_size=5)[1] for s in range(3)]
    params, _ = torch.func.stack_module_state(fms)
    x, h0 = rand(5, 2, 4), rand(3, 1, 2, 5, seed=5)
    with torch.no_grad():
        got = vmap(lambda p, h: functional_call(fms[0], p, (x, h))[0])(params, h0)
        for i, tm in enumerate(tms):
            close(got[i], tm(x, h0[i])[0], F64, f"member {i}")


def test_vmap_over_the_backward_and_per_sample_grads():
    tm, fm = gru_pair(F64, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x = rand(5, 2, 3).requires_grad_()
    y, _ = fm(x)
    vs = rand(4, *y.shape, seed=7)

    def vjp(v):
        return torch.autograd.grad(y, (x, fm.weight_hh_l1), v, retain_graph=True)

    got = vmap(vjp)(vs)
    for i, v in enumerate(vs):
        for name, a, b in zip(("dx", "dW"), (got[0][i], got[1][i]), vjp(v)):
            close(a, b, F64, f"{name}[{i}]")
    params = {k: v.detach() for k, v in fm.named_parameters()}
    xs = rand(4, 6, 3, seed=8)

    def loss(m):
        return lambda p, xi: functional_call(m, p, (xi[:, None],))[0].square().sum()

    per_sample = vmap(grad(loss(fm)), in_dims=(None, 0))(params, xs)
    for i in range(4):  # a loop of torch.func.grad over torch.nn.GRU is the oracle
        want = grad(loss(tm))(params, xs[i])
        for k in params:
            close(per_sample[k][i], want[k], F64, f"{k}[{i}]")


def test_jvp_jacfwd_and_forward_ad_match_torch():
    tm, fm = gru_pair(F64, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x, t = rand(4, 2, 3), rand(4, 2, 3, seed=9)
    (yf, tf), (yt, tt) = [jvp(lambda x: m(x)[0], (x,), (t,)) for m in (fm, tm)]
    close(yf, yt, F64, "jvp primal")
    close(tf, tt, F64, "jvp tangent")
    close(jacfwd(lambda x: fm(x)[1].sum())(x), jacfwd(lambda x: tm(x)[1].sum())(x), F64,
          "jacfwd")
    with fwAD.dual_level():
        tf = fwAD.unpack_dual(fm(fwAD.make_dual(x, t))[0]).tangent
        tt = fwAD.unpack_dual(tm(fwAD.make_dual(x, t))[0]).tangent
    close(tf, tt, F64, "forward_ad tangent")


@pytest.mark.parametrize("batch_first", [False, True])
def test_empty_batch_returns_torch_shapes(batch_first):
    tm, fm = gru_pair(F64, input_size=3, hidden_size=4, num_layers=2, bidirectional=True,
                      batch_first=batch_first)
    x = torch.zeros((0, 5, 3) if batch_first else (5, 0, 3), dtype=F64, requires_grad=True)
    outs = []
    for m in (fm, tm):
        y, h = m(x)
        (y.sum() + h.sum()).backward()
        outs.append((y, h, [p.grad for p in m.parameters()]))
    (yf, hf, gf), (yt, ht, gt) = outs
    assert yf.shape == yt.shape and hf.shape == ht.shape
    for a, b in zip(gf, gt):
        close(a, b, F64, "param grad")


def test_training_loop_matches_torch():
    """A sequence tagger written for torch.nn.GRU: the same loss curve with the
    class swapped."""
    def tagger(cls):
        torch.manual_seed(11)
        return torch.nn.ModuleList([torch.nn.Embedding(30, 8),
                                    cls(8, 16, num_layers=2, bidirectional=True,
                                        batch_first=True),
                                    torch.nn.Linear(32, 5)])

    def train(model):
        gen = torch.Generator().manual_seed(12)
        opt = torch.optim.Adam(model.parameters(), lr=3e-2)
        losses = []
        for _ in range(40):
            tokens = torch.randint(0, 30, (6, 10), generator=gen)
            emb, gru, head = model
            out, _ = gru(emb(tokens))
            loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, 5),
                                                     (tokens % 5).reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return np.array(losses)

    want, got = train(tagger(torch.nn.GRU)), train(tagger(flt.GRU))
    assert want[-1] < 0.5 * want[0]
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_inference_sees_in_place_weight_updates_and_copies_drop_the_cache():
    tm, fm = gru_pair(F32, input_size=3, hidden_size=4)
    fm.eval()
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        y0, _ = fm(x)
        assert torch.equal(fm(x)[0], y0)
        fm.weight_hh_l0.mul_(0.5)
        tm.weight_hh_l0.mul_(0.5)
        close(fm(x)[0], tm(x)[0], F32, "after mul_")
        fm.weight_ih_l0.data.zero_()
        tm.weight_ih_l0.data.zero_()
        fm.params_changed()
        close(fm(x)[0], tm(x)[0], F32, "after .data + params_changed")
        y = fm(x)[0]
        for clone in (copy.deepcopy(fm), pickle.loads(pickle.dumps(fm))):
            assert clone._fl_cache is None
            assert torch.equal(clone(x)[0], y)


# --------------------------------------------------------------------------- GRUCell


def cell_pair(dtype=F64, seed=0, from_fastlstm=False, **kw):
    torch.manual_seed(seed)
    tc = torch.nn.GRUCell(**kw).to(dtype)
    torch.manual_seed(seed + 1000)
    fc = flt.GRUCell(**kw).to(dtype)
    if from_fastlstm:
        tc.load_state_dict(fc.state_dict())
    else:
        fc.load_state_dict(tc.state_dict())
    return tc, fc


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("from_fastlstm", [False, True], ids=["torch->fl", "fl->torch"])
def test_cell_parity_with_torch(dtype, batched, with_hx, bias, from_fastlstm):
    tc, fc = cell_pair(dtype, input_size=5, hidden_size=7, bias=bias,
                       from_fastlstm=from_fastlstm)
    shape = (3,) if batched else ()
    x = rand(*shape, 5, seed=2, dtype=dtype)
    h = rand(*shape, 7, seed=3, dtype=dtype) if with_hx else None
    outs = []
    for c in (tc, fc):
        c.zero_grad()
        xs = x.clone().requires_grad_()
        hs = None if h is None else h.clone().requires_grad_()
        h1 = c(xs, hs)
        (h1 * rand(*h1.shape, seed=4, dtype=dtype)).sum().backward()
        outs.append([h1, xs.grad] + ([hs.grad] if hs is not None else [])
                    + [p.grad for p in c.parameters()])
        with torch.no_grad():
            outs[-1].append(c(x, h))  # the streaming / inference path
            outs[-1].append(c(x, h))  # (with the packed weights cached)
    for i, (a, b) in enumerate(zip(*reversed(outs))):
        record(a, b, dtype, f"cell output {i}")


def test_cell_mirrors_torch():
    tc, fc = cell_pair(F32, input_size=3, hidden_size=4, bias=False)
    assert list(fc.state_dict()) == list(tc.state_dict())
    assert repr(fc).replace("fastlstm.torch.", "") == repr(tc)
    torch.manual_seed(2)
    t2 = torch.nn.GRUCell(3, 4)
    torch.manual_seed(2)
    f2 = flt.GRUCell(3, 4)
    for k, v in t2.state_dict().items():
        assert torch.equal(f2.state_dict()[k], v), k


def test_cell_bptt_loop_double_backward_and_gradgradcheck():
    tc, fc = cell_pair(F64, input_size=3, hidden_size=4)
    xs = rand(6, 2, 3)
    results = []
    for c in (tc, fc):
        c.zero_grad()
        x = xs.clone().requires_grad_()
        h = None
        for t in range(6):
            h = c(x[t], h)
        gx, = torch.autograd.grad(h.square().sum(), x, create_graph=True)
        (h.sum() + gx.square().sum()).backward()
        results.append([x.grad] + [p.grad for p in c.parameters()])
    for i, (a, b) in enumerate(zip(*results)):
        record(a, b, F64, f"bptt grad {i}")
    names = [n for n, _ in fc.named_parameters()]

    def f(x, h, *w):
        return functional_call(fc, dict(zip(names, w)), (x, h))

    args = (rand(2, 3, seed=5).requires_grad_(), rand(2, 4, seed=6).requires_grad_(),
            *[p.detach().clone().requires_grad_() for p in fc.parameters()])
    assert torch.autograd.gradcheck(f, args, check_batched_grad=True)
    assert torch.autograd.gradgradcheck(f, args)


def test_cell_compile_export_trace_and_vmap():
    tc, fc = cell_pair(F32, input_size=3, hidden_size=4)
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    explain = torch._dynamo.explain(fc)(x, h)
    assert explain.graph_break_count == 0, explain.break_reasons
    torch._dynamo.reset()
    compiled = torch.compile(fc, fullgraph=True, backend="aot_eager")
    xc = x.clone().requires_grad_()
    out = compiled(xc, h)
    out.sum().backward()
    xe = x.clone().requires_grad_()
    fc(xe, h).sum().backward()
    assert torch.equal(out, fc(x, h)) and torch.equal(xc.grad, xe.grad)
    close(out, tc(x, h), F32, "compiled cell")
    fc.eval()
    ep = torch.export.export(fc, (x, h))
    assert "fastlstm.gru_layer.default" in {str(n.target) for n in ep.graph.nodes}
    close(ep.module()(x, h), tc(x, h), F32, "exported cell")
    traced = torch.jit.trace(fc, (x, h))
    assert "fastlstm::gru_layer" in str(traced.graph)
    close(traced(x, h), tc(x, h), F32, "traced cell")
    xs, hs = torch.randn(5, 2, 3), torch.randn(5, 2, 4)
    with torch.no_grad():
        got = vmap(fc)(xs, hs)
        for i in range(5):
            close(got[i], tc(xs[i], hs[i]), F32, f"vmap[{i}]")
    t = torch.randn(2, 3)
    xd = x.double()
    fc.double()
    tc.double()
    (_, tf), (_, tt) = [jvp(lambda x: c(x, h.double()), (xd,), (t.double(),)) for c in (fc, tc)]
    close(tf, tt, F64, "cell jvp")


@pytest.mark.parametrize("case", [
    lambda c: c(torch.randn(2, 4), torch.randn(2, 6)),
    lambda c: c(torch.randn(2, 3), torch.randn(2, 5)),
    lambda c: c(torch.randn(2, 3), torch.randn(4, 6)),
    lambda c: c(torch.randn(2, 3)[None, None], None),
    lambda c: c(torch.randn(2, 3), torch.randn(1, 1, 2, 6)),
    lambda c: c(torch.randn(2, 3, dtype=F64), torch.randn(2, 6)),
], ids=["input_size", "hidden_size", "batch", "input_rank", "hidden_rank", "dtype"])
@pytest.mark.parametrize("streaming", [False, True])
def test_cell_bad_input_raises_as_torch(case, streaming):
    tc, fc = cell_pair(F32, input_size=3, hidden_size=6)
    ctx = torch.no_grad() if streaming else torch.enable_grad()
    with ctx:
        if streaming:
            fc(torch.randn(2, 3), torch.randn(2, 6))  # fills the packed-weights cache
        with pytest.raises(Exception) as want:
            case(tc)
        with pytest.raises(want.type) as got:
            case(fc)
    assert str(got.value).split("\n")[0] == str(want.value).split("\n")[0]


def test_cell_streaming_sees_weight_updates_and_other_dtypes_defer():
    tc, fc = cell_pair(F32, input_size=3, hidden_size=4)
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    with torch.no_grad():
        fc(x, h)
        fc.weight_hh.mul_(0.5)
        tc.weight_hh.mul_(0.5)
        close(fc(x, h), tc(x, h), F32, "after mul_")
    fb, tb = copy.deepcopy(fc).to(torch.bfloat16), copy.deepcopy(tc).to(torch.bfloat16)
    xb, hb = x.to(torch.bfloat16), h.to(torch.bfloat16)
    assert torch.equal(fb(xb, hb), tb(xb, hb))



def test_bfloat16_weights_for_inference():
    """weights_dtype="bfloat16": eager inference rounds W_ih and W_hh to
    bfloat16 (oracle: torch.nn.GRU on weights torch rounded itself); autograd
    calls keep float32 weights (torch's gradients); float64 is refused."""
    kw = dict(input_size=6, hidden_size=8, num_layers=2, bidirectional=True)
    tm, fm32 = gru_pair(F32, **kw)
    fm = flt.GRU(**kw, weights_dtype="bfloat16")
    fm.load_state_dict(tm.state_dict())
    assert "weights_dtype='bfloat16'" in repr(fm)
    rounded = torch.nn.GRU(**kw)
    rounded.load_state_dict({k: v.to(torch.bfloat16).float()
                             if k.startswith(("weight_ih", "weight_hh")) else v
                             for k, v in tm.state_dict().items()})
    x = rand(7, 3, 6, seed=5, dtype=F32)
    fm.eval()
    with torch.no_grad():
        y, h = fm(x)
        close(y, rounded(x)[0], F32, "y")
        close(h, rounded(x)[1], F32, "h_n")
        assert not torch.equal(y, fm32.eval()(x)[0])  # the rounding is really there
    fm.train()
    want, got = run_and_grad(tm, x), run_and_grad(fm, x)
    for k in want:
        close(got[k], want[k], F32, k)
    fm.double().eval()
    with pytest.raises(TypeError, match="bfloat16"), torch.no_grad():
        fm(x.double())
    with pytest.raises(ValueError, match="weights_dtype"):
        flt.GRU(3, 4, weights_dtype="float16")
    tc, _ = cell_pair(F32, input_size=6, hidden_size=8)
    fc = flt.GRUCell(6, 8, weights_dtype="bfloat16")
    fc.load_state_dict(tc.state_dict())
    rc = torch.nn.GRUCell(6, 8)
    rc.load_state_dict({k: v.to(torch.bfloat16).float() if k.startswith("weight") else v
                        for k, v in tc.state_dict().items()})
    xc, hc = rand(3, 6, seed=6, dtype=F32), rand(3, 8, seed=7, dtype=F32)
    with torch.no_grad():
        close(fc(xc, hc), rc(xc, hc), F32, "cell bf16")
        close(fc(xc, hc), rc(xc, hc), F32, "cell bf16 streaming")
