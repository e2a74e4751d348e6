"""fastlstm.torch.LSTMCell, the drop-in torch.nn.LSTMCell.

Oracles: torch.nn.LSTMCell itself (same state_dict: outputs, every .grad,
losses and exceptions), a loop of torch cells where torch has no rule
(vmap), finite differences (gradcheck, gradgradcheck) in float64, the
float64 NumPy reference for peepholes (torch has none), and for bfloat16
weights torch's cell in float64 on independently rounded weights plus a
first-order bound of the rounding derived from the data.
"""
import contextlib
import copy
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
flt = pytest.importorskip("fastlstm.torch")

from _tolerance import assert_rel_close  # noqa: E402

import fastlstm  # noqa: E402
from fastlstm import reference as ref  # noqa: E402
from torch.func import functional_call, grad, jvp, vmap  # noqa: E402

F32, F64 = torch.float32, torch.float64
TOL = {F32: 1e-5, F64: 1e-10}  # relative to max|torch|, as the layer's parity tests


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def pair(dtype=F32, seed=0, *args, **kw):
    """(torch.nn.LSTMCell, fastlstm.torch.LSTMCell) with the same weights."""
    torch.manual_seed(seed)
    tm = torch.nn.LSTMCell(*args, **kw).to(dtype)
    torch.manual_seed(seed + 100)  # different init: load_state_dict must do the work
    fm = flt.LSTMCell(*args, **kw).to(dtype)
    fm.load_state_dict(tm.state_dict())
    return tm, fm


def rand(*shape, dtype=F64, seed=1):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def assert_close(got, want, dtype, name, tol=None):
    assert_rel_close(got, want, TOL[dtype] if tol is None else tol, name)


def run_and_grad(m, x, hx=None):
    """h_1, c_1 and the gradients of a fixed random loss w.r.t. x, hx and params."""
    x = x.detach().clone().requires_grad_()
    hx = None if hx is None else tuple(t.detach().clone().requires_grad_() for t in hx)
    m.zero_grad()
    h, c = m(x, hx)
    loss = (h * rand(*h.shape, dtype=h.dtype, seed=7)).sum() + \
        (c * rand(*c.shape, dtype=c.dtype, seed=8)).sum()
    loss.backward()
    out = {"h": h, "c": c, "dx": x.grad}
    if hx is not None:
        out.update({"dh0": hx[0].grad, "dc0": hx[1].grad})
    out.update({"grad " + k: p.grad for k, p in m.named_parameters()})
    return out


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["no_hx", "hx"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_parity_with_torch(dtype, batched, with_hx, bias):
    I, H, B = 5, 7, 3
    tm, fm = pair(dtype, 0, I, H, bias=bias)
    lead = (B,) if batched else ()
    x = rand(*lead, I, dtype=dtype, seed=2)
    hx = (rand(*lead, H, dtype=dtype, seed=3), rand(*lead, H, dtype=dtype, seed=4)) \
        if with_hx else None
    want, got = run_and_grad(tm, x, hx), run_and_grad(fm, x, hx)
    assert set(got) == set(want)
    for k in want:
        assert_close(got[k], want[k], dtype, k)
    with torch.no_grad():  # the streaming path
        for name, a, b in zip(("h", "c"), fm(x, hx), tm(x, hx)):
            assert_close(a, b, dtype, f"no_grad {name}")


def test_mirrors_torch_cell_and_state_dicts_interchange():
    torch.manual_seed(3)
    tm = torch.nn.LSTMCell(4, 6)
    torch.manual_seed(3)
    fm = flt.LSTMCell(4, 6)
    assert list(fm.state_dict()) == list(tm.state_dict())
    for k, v in tm.state_dict().items():  # the same seed gives torch's initial weights
        assert torch.equal(fm.state_dict()[k], v), k
    assert [n for n, _ in fm.named_parameters()] == [n for n, _ in tm.named_parameters()]
    for a in ("input_size", "hidden_size", "bias"):
        assert getattr(fm, a) == getattr(tm, a), a
    assert repr(fm) == repr(tm)
    assert repr(flt.LSTMCell(4, 6, bias=False)) == repr(torch.nn.LSTMCell(4, 6, bias=False))
    nb = flt.LSTMCell(4, 6, bias=False)
    assert nb.bias_ih is None and nb.bias_hh is None and list(nb.state_dict()) == \
        ["weight_ih", "weight_hh"]
    torch.nn.LSTMCell(4, 6).load_state_dict(fm.state_dict())  # strict, both ways
    assert "peephole=True" in repr(flt.LSTMCell(4, 6, peephole=True))
    assert "weights_dtype='bfloat16'" in repr(flt.LSTMCell(4, 6, weights_dtype="bfloat16"))
    fm2 = fm.double()
    assert fm2 is fm and all(p.dtype == F64 for p in fm.parameters())
    h, c = fm(torch.randn(2, 4, dtype=F64))
    assert h.dtype == F64 and h.shape == (2, 6) and c.shape == (2, 6)
    tm.double()
    x = rand(2, 4)
    assert_close(fm(x)[0], tm(x)[0], F64, "after .double()")


def test_peephole_matches_the_reference():
    I, H, B = 4, 5, 3
    torch.manual_seed(7)
    fm = flt.LSTMCell(I, H, peephole=True).double()
    names = [n for n, _ in fm.named_parameters()]
    assert names == ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_ph"]
    assert fm.weight_ph.shape == (3, H) and fm.weight_ph.abs().max() <= 1 / np.sqrt(H)
    x, h0, c0 = rand(B, I, seed=1), rand(B, H, seed=2), rand(B, H, seed=3)
    dh, dc = rand(B, H, seed=4), rand(B, H, seed=5)
    params = {f"{k}_l0": v.detach().numpy() for k, v in fm.state_dict().items()}
    _, hr, cr, cache = ref.lstm_forward(x.numpy()[None], params, num_layers=1, hidden_size=H,
                                        peephole=True, h0=h0.numpy()[None],
                                        c0=c0.numpy()[None])
    dxr, dh0r, dc0r, gr = ref.lstm_backward(cache, np.zeros((1, B, H)), dh.numpy()[None],
                                            dc.numpy()[None])
    with torch.no_grad():
        h, c = fm(x, (h0, c0))
    np.testing.assert_allclose(h.numpy(), hr[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(c.numpy(), cr[0], rtol=0, atol=1e-12)
    xs, hs, cs = (t.clone().requires_grad_() for t in (x, h0, c0))
    h, c = fm(xs, (hs, cs))
    ((h * dh).sum() + (c * dc).sum()).backward()
    np.testing.assert_allclose(h.detach().numpy(), hr[0], rtol=0, atol=1e-12)
    for name, got, want in (("dx", xs.grad, dxr), ("dh0", hs.grad, dh0r), ("dc0", cs.grad, dc0r)):
        np.testing.assert_allclose(got.numpy(), want[0], rtol=0, atol=1e-12, err_msg=name)
    for k, p in fm.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), gr[f"{k}_l0"], rtol=0, atol=1e-12, err_msg=k)


def bptt(m, xs, h0, c0):
    """A 20-step loop with the state carried: loss and the grads of x, h0, c0, params."""
    m.zero_grad()
    xs, h0, c0 = (t.detach().clone().requires_grad_() for t in (xs, h0, c0))
    h, c = h0, c0
    loss = 0
    for t in range(xs.shape[0]):
        h, c = m(xs[t], (h, c))
        loss = loss + (h * rand(*h.shape, dtype=h.dtype, seed=100 + t)).sum()
    loss = loss + c.square().sum()
    loss.backward()
    return [loss, xs.grad, h0.grad, c0.grad] + [p.grad for p in m.parameters()]


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_bptt_loop_matches_torch(dtype):
    tm, fm = pair(dtype, 1, 6, 8)
    xs, h0, c0 = (rand(20, 3, 6, dtype=dtype, seed=9), rand(3, 8, dtype=dtype, seed=10),
                  rand(3, 8, dtype=dtype, seed=11))
    names = ["loss", "dx", "dh0", "dc0"] + [n for n, _ in tm.named_parameters()]
    got, want = bptt(fm, xs, h0, c0), bptt(tm, xs, h0, c0)
    assert len(got) == len(want) == len(names)
    for name, a, b in zip(names, got, want):
        assert_close(a, b, dtype, name)


def test_training_loop_matches_torch():
    """A step-by-step regressor trained with Adam: the same losses as torch."""
    def train(cell_cls):
        torch.manual_seed(11)
        cell, head = cell_cls(3, 12), torch.nn.Linear(12, 1)
        params = list(cell.parameters()) + list(head.parameters())
        opt = torch.optim.Adam(params, lr=2e-2)
        gen = torch.Generator().manual_seed(12)
        losses = []
        for _ in range(30):
            xs = torch.randn(10, 4, 3, generator=gen)
            target = xs.cumsum(0)[..., :1].tanh()
            h = c = torch.zeros(4, 12)
            loss = 0
            for t in range(10):
                h, c = cell(xs[t], (h, c))
                loss = loss + (head(h) - target[t]).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return np.array(losses)

    want, got = train(torch.nn.LSTMCell), train(flt.LSTMCell)
    assert want[-1] < 0.5 * want[0]  # it learns
    np.testing.assert_allclose(got, want, rtol=1e-4)


def penalty_grads(m, x, hx, steps=3):
    """loss = |h|^2 + |dL/dx|^2 + |dL/dW_hh|^2 through `steps` carried steps."""
    m.zero_grad()
    x = x.detach().clone().requires_grad_()
    h, c = hx
    for _ in range(steps):
        h, c = m(x, (h, c))
    inner = (h * rand(*h.shape, seed=2)).sum() + 0.5 * c.square().sum()
    gx, gw = torch.autograd.grad(inner, (x, m.weight_hh), create_graph=True)
    assert gx.requires_grad and gw.requires_grad
    loss = h.square().sum() + gx.square().sum() + gw.square().sum()
    loss.backward()
    return [x.grad] + [p.grad for p in m.parameters()]


def test_double_backward_matches_torch():
    """Through 3 steps that share the weights: each step's differentiable backward
    must count only its own use of them."""
    tm, fm = pair(F64, 2, 4, 5)
    x, hx = rand(3, 4), (rand(3, 5, seed=3), rand(3, 5, seed=4))
    names = ["dx"] + [n for n, _ in tm.named_parameters()]
    got, want = penalty_grads(fm, x, hx), penalty_grads(tm, x, hx)
    assert len(got) == len(want) == len(names)
    for name, a, b in zip(names, got, want):
        assert_close(a, b, F64, name)


def cell_fn(m):
    names = [n for n, _ in m.named_parameters()]
    return lambda x, h, c, *w: functional_call(m, dict(zip(names, w)), (x, (h, c)))


@pytest.mark.parametrize("kw", [{}, {"bias": False}, {"peephole": True}],
                         ids=["plain", "no_bias", "peephole"])
def test_gradcheck_and_gradgradcheck_float64(kw):
    torch.manual_seed(5)
    fm = flt.LSTMCell(3, 4, **kw).double()
    args = [rand(2, 3, seed=1), rand(2, 4, seed=2), rand(2, 4, seed=3)] + \
        [p.detach().clone() for p in fm.parameters()]
    args = [a.requires_grad_() for a in args]
    f = cell_fn(fm)
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)


def test_torch_compile_has_no_graph_break():
    tm, fm = pair(F32, 0, 4, 6)
    x, hx = rand(3, 4, dtype=F32), (rand(3, 6, dtype=F32, seed=2), rand(3, 6, dtype=F32, seed=3))
    explain = torch._dynamo.explain(fm)(x, hx)
    assert explain.graph_break_count == 0, explain.break_reasons
    torch._dynamo.reset()
    compiled = torch.compile(fm, fullgraph=True)  # inductor, as a user would call it
    xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    h, c = compiled(xc, hx)
    (h.sum() + c.square().sum()).backward()
    gc = [p.grad.clone() for p in fm.parameters()]
    fm.zero_grad()
    he, ce = fm(xe, hx)
    (he.sum() + ce.square().sum()).backward()
    assert torch.equal(h, he) and torch.equal(c, ce)
    assert torch.equal(xc.grad, xe.grad)
    assert all(torch.equal(a, p.grad) for a, p in zip(gc, fm.parameters()))
    assert_close(h, tm(x, hx)[0], F32, "compiled h vs torch.nn.LSTMCell")


def test_compiled_step_loop_matches_eager():
    tm, fm = pair(F64, 0, 3, 5)

    def unroll(m, xs):
        h = c = torch.zeros(xs.shape[1], 5, dtype=xs.dtype)
        for t in range(xs.shape[0]):
            h, c = m(xs[t], (h, c))
        return h, c

    compiled = torch.compile(lambda xs: unroll(fm, xs), fullgraph=True, backend="aot_eager")
    xs = rand(6, 2, 3)
    for (a, b) in zip(compiled(xs), unroll(tm, xs)):
        assert_close(a, b, F64, "compiled loop")
    with torch.no_grad():
        for (a, b) in zip(compiled(xs), unroll(fm, xs)):  # ops vs the streaming path
            assert_close(a, b, F64, "compiled no_grad loop", tol=1e-14)


def test_torch_export_and_jit_trace_record_the_op():
    tm, fm = pair(F64, 0, 4, 6)
    fm.eval()
    x, hx = rand(3, 4), (rand(3, 6, seed=2), rand(3, 6, seed=3))
    ep = torch.export.export(fm, (x, hx))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert "fastlstm.lstm_layer.default" in targets, targets
    traced = torch.jit.trace(fm, (x, hx))
    assert "fastlstm::lstm_layer" in str(traced.graph)
    x2, hx2 = rand(5, 4, seed=4), (rand(5, 6, seed=5), rand(5, 6, seed=6))  # a new batch
    for a, b in zip(traced(x2, hx2), tm(x2, hx2)):
        assert_close(a, b, F64, "traced")
    with pytest.raises(RuntimeError, match="torch.jit.script.*torch.jit.trace"):
        torch.jit.script(fm)


def test_streaming_path_equals_the_grad_path_and_sees_weight_updates():
    tm, fm = pair(F32, 0, 6, 8)
    fm.eval()
    x, hx = rand(2, 6, dtype=F32), (rand(2, 8, dtype=F32, seed=2), rand(2, 8, dtype=F32, seed=3))
    eps = torch.finfo(F32).eps
    hg, cg = fm(x, hx)                      # autograd (parameters require grad)
    assert hg.requires_grad and fm._fl_cache is None
    with torch.no_grad():
        h0, c0 = fm(x, hx)                  # the streaming kernel entry
        packed = fm._fl_cache[2]
        assert_close(h0, hg, F32, "streaming h vs grad path", tol=4 * eps)
        assert_close(c0, cg, F32, "streaming c vs grad path", tol=4 * eps)
        assert torch.equal(fm(x, hx)[0], h0) and fm._fl_cache[2] is packed  # cached
        fm.weight_hh.mul_(0.5)              # an in-place op: seen
        tm.weight_hh.mul_(0.5)
        h1, _ = fm(x, hx)
        assert not torch.equal(h1, h0)
        assert_close(h1, tm(x, hx)[0], F32, "after mul_")
        fm.load_state_dict({k: v * 2 for k, v in fm.state_dict().items()})
        tm.load_state_dict(fm.state_dict())
        assert_close(fm(x, hx)[0], tm(x, hx)[0], F32, "after load_state_dict")
        fm.weight_ih.data.zero_()           # through .data: needs params_changed()
        tm.weight_ih.data.zero_()
        fm.params_changed()
        assert_close(fm(x, hx)[0], tm(x, hx)[0], F32, "after .data + params_changed")
    for m in (fm, tm):                      # an optimizer step
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        h, c = m(x, hx)
        (h.square().sum() + c.sum()).backward()
        opt.step()
    with torch.no_grad():
        for name, a, b in zip(("h", "c"), fm(x, hx), tm(x, hx)):
            assert_close(a, b, F32, f"after optimizer step: {name}")


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
def test_streaming_loop_matches_torch(dtype, batched):
    """20 carried steps under no_grad: after the first call every step is the
    streaming step (checked), and the states track torch's."""
    tm, fm = pair(dtype, 4, 6, 9)
    lead = (2,) if batched else ()
    xs = rand(20, *lead, 6, dtype=dtype, seed=5)

    def general_path(*args):
        raise AssertionError("a streaming step ran the general path")

    with torch.no_grad():
        got = want = (torch.zeros(*lead, 9, dtype=dtype), torch.zeros(*lead, 9, dtype=dtype))
        for t in range(20):
            if t == 1:  # packed by step 0
                fm._infer = general_path
            got, want = fm(xs[t], got), tm(xs[t], want)
            for name, a, b in zip(("h", "c"), got, want):
                assert_close(a, b, dtype, f"step {t} {name}")
    with torch.inference_mode():
        for name, a, b in zip(("h", "c"), fm(xs[0], got), tm(xs[0], want)):
            assert_close(a, b, dtype, f"inference_mode {name}")


def test_streaming_step_sees_replaced_weights(monkeypatch):
    """Whatever replaces a weight (functional_call, a new Parameter, `.data =`,
    another ISA) sends the next step through a repack, with no stale result."""
    tm, fm = pair(F64, 0, 3, 4)
    x, hx = rand(2, 3), (rand(2, 4, seed=2), rand(2, 4, seed=3))
    other = {"weight_hh": rand(16, 4, seed=4)}

    def check(name):
        for a, b in zip(fm(x, hx), tm(x, hx)):
            assert_close(a, b, F64, name)

    with torch.no_grad():
        check("first")
        for a, b in zip(functional_call(fm, other, (x, hx)), functional_call(tm, other, (x, hx))):
            assert_close(a, b, F64, "functional_call")
        check("after functional_call")
        new = torch.nn.Parameter(rand(16, 3, seed=5))
        fm.weight_ih, tm.weight_ih = new, torch.nn.Parameter(new.detach().clone())
        check("new Parameter")
        fm.bias_hh.data = rand(16, seed=6)
        tm.bias_hh.data = fm.bias_hh.detach().clone()
        check(".data assignment")
        if "scalar" in fastlstm.available_isas():
            monkeypatch.setenv("FASTLSTM_ISA", "scalar")
            check("FASTLSTM_ISA=scalar")
            assert fm._fl_cache[2].isa == "scalar"


def test_non_contiguous_input_and_state():
    tm, fm = pair(F64, 0, 4, 5)
    x = rand(4, 3).t()                     # [3,4], not contiguous
    h, c = rand(5, 3, seed=2).t(), rand(3, 10, seed=3)[:, ::2]
    assert not (x.is_contiguous() or h.is_contiguous() or c.is_contiguous())
    want, got = run_and_grad(tm, x, (h, c)), run_and_grad(fm, x, (h, c))
    for k in want:
        assert_close(got[k], want[k], F64, k)
    with torch.no_grad():
        for _ in range(2):  # packs, then the streaming step
            for a, b in zip(fm(x, (h, c)), tm(x, (h, c))):
                assert a.is_contiguous()
                assert_close(a, b, F64, "no_grad")


def test_vmap_matches_a_loop_of_torch_cells():
    """torch.nn.LSTMCell has no vmap rule: one torch call per sample is the oracle."""
    tm, fm = pair(F64, 0, 3, 4)
    xs, hs, cs = rand(5, 2, 3), rand(5, 2, 4, seed=2), rand(5, 2, 4, seed=3)
    with torch.no_grad():
        got = vmap(fm)(xs, (hs, cs))
    grad_mode = vmap(fm)(xs, (hs, cs))      # parameters require grad: the autodiff path
    for i in range(5):
        want = tm(xs[i], (hs[i], cs[i]))
        for name, a, b, g in zip(("h", "c"), got, want, grad_mode):
            assert_close(a[i], b, F64, f"{name}[{i}]")
            assert_close(g[i], b, F64, f"grad-mode {name}[{i}]")


def test_per_sample_gradients_match_a_loop():
    tm, fm = pair(F64, 0, 3, 4)
    params = {k: v.detach() for k, v in fm.named_parameters()}
    xs = rand(4, 3)  # 4 samples, unbatched [I] each

    def loss(m):
        return lambda p, x: functional_call(m, p, (x,))[0].square().sum()

    got = vmap(grad(loss(fm)), in_dims=(None, 0))(params, xs)
    for i in range(4):
        want = grad(loss(tm))(params, xs[i])
        for k in params:
            assert_close(got[k][i], want[k], F64, f"{k}[{i}]")


def test_jvp_matches_torch():
    tm, fm = pair(F64, 0, 3, 4)
    x, hx = rand(2, 3), (rand(2, 4, seed=2), rand(2, 4, seed=3))
    tx, th = rand(2, 3, seed=4), (rand(2, 4, seed=5), rand(2, 4, seed=6))
    (pf, tf), (pt, tt) = [jvp(lambda x, h, c: m(x, (h, c)), (x, *hx), (tx, *th))
                          for m in (fm, tm)]
    for name, a, b in zip(("h", "c", "dh", "dc"), pf + tf, pt + tt):
        assert_close(a, b, F64, f"jvp {name}")


def test_empty_batch_returns_torch_shapes():
    tm, fm = pair(F64, 0, 3, 4)
    outs = []
    for m in (fm, tm):
        x = torch.zeros(0, 3, dtype=F64, requires_grad=True)
        h, c = m(x)
        (h.sum() + c.sum()).backward()
        outs.append((h, c, [p.grad for p in m.parameters()]))
    (hf, cf, gf), (ht, ct, gt) = outs
    assert hf.shape == ht.shape == (0, 4) and cf.shape == ct.shape
    assert len(gf) == len(gt)
    for a, b in zip(gf, gt):
        assert torch.equal(a, b)


@pytest.mark.parametrize("sizes", [(0, 4), (3, 0)])
def test_zero_sizes_run_as_torch(sizes):
    tm, fm = pair(F32, 0, *sizes)
    x = torch.randn(2, sizes[0])
    for a, b in zip(fm(x), tm(x)):
        assert a.shape == b.shape and torch.equal(a, b)


def z(*shape, dtype=F32):
    return torch.zeros(shape, dtype=dtype)


BAD = {  # cell (10, 20)
    "input_size": lambda m: m(z(3, 11), (z(3, 20), z(3, 20))),
    "input_size_unbatched": lambda m: m(z(11)),
    "hidden0_size": lambda m: m(z(3, 10), (z(3, 21), z(3, 21))),
    "hidden1_size": lambda m: m(z(3, 10), (z(3, 20), z(3, 21))),
    "hidden0_batch": lambda m: m(z(3, 10), (z(5, 20), z(5, 20))),
    "hidden1_batch": lambda m: m(z(3, 10), (z(3, 20), z(5, 20))),
    "hx0_4d": lambda m: m(z(3, 10), (z(3, 1, 1, 20), z(3, 1, 1, 20))),
    "hx1_4d": lambda m: m(z(3, 10), (z(3, 20), z(3, 1, 1, 20))),
    "input_3d": lambda m: m(z(2, 3, 10)),
    "unbatched_input_batched_hx": lambda m: m(z(10), (z(3, 20), z(3, 20))),
    "batched_input_unbatched_hx": lambda m: m(z(3, 10), (z(20), z(20))),
    "input_dtype": lambda m: m(z(3, 10, dtype=F64)),
    "hx_dtype": lambda m: m(z(3, 10), (z(3, 20, dtype=F64), z(3, 20))),
    "input_bf16": lambda m: m(z(3, 10, dtype=torch.bfloat16)),
    "one_state": lambda m: m(z(3, 10), (z(3, 20),)),
    "three_states": lambda m: m(z(3, 10), (z(3, 20), z(3, 20), z(3, 20))),
    "hx_tensor": lambda m: m(z(3, 10), z(2, 3, 20)),
}


@pytest.mark.parametrize("streaming", [False, True], ids=["grad", "no_grad_cached"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_as_torch(case, streaming):
    """The same exception type and message as torch.nn.LSTMCell, also from a
    cell whose streaming step is armed (no_grad, packed weights cached)."""
    tm, fm = pair(F32, 0, 10, 20)
    with torch.no_grad() if streaming else contextlib.nullcontext():
        if streaming:
            fm(z(3, 10), (z(3, 20), z(3, 20)))
            assert fm._fl_cache is not None
        with pytest.raises(Exception) as want:
            BAD[case](tm)
        with pytest.raises(want.type) as got:
            BAD[case](fm)
    assert str(got.value) == str(want.value)


@pytest.mark.parametrize("args, kw", [
    ((10.5, 20), {}), ((10, 20.0), {}), ((-1, 20), {}), ((10, -2), {}),
    ((10, 20), {"dtype": torch.int32}),
])
def test_constructor_errors_as_torch(args, kw):
    with pytest.raises(Exception) as want:
        torch.nn.LSTMCell(*args, **kw)
    with pytest.raises(want.type) as got:
        flt.LSTMCell(*args, **kw)
    assert str(got.value) == str(want.value)


def test_constructor_checks_its_own_keywords():
    with pytest.raises(TypeError, match="peephole should be of type bool"):
        flt.LSTMCell(3, 4, peephole=1)
    with pytest.raises(ValueError, match="weights_dtype"):
        flt.LSTMCell(3, 4, weights_dtype="float16")
    with pytest.raises(ValueError, match="peephole=True needs"):
        flt.LSTMCell(0, 4, peephole=True)


def test_peephole_shape_and_dtype_errors():
    torch.manual_seed(0)
    pm = flt.LSTMCell(10, 20, peephole=True)
    with pytest.raises(RuntimeError, match="hidden0 has inconsistent hidden_size") as e:
        pm(z(3, 10), (z(3, 21), z(3, 21)))
    assert isinstance(e.value, ValueError)
    with pytest.raises(ValueError, match=r"unbatched 1-D input, hx\[0\] and hx\[1\] should be "
                                         r"1-D, got \(2-D, 2-D\)"):
        pm(z(10), (z(3, 20), z(3, 20)))
    with pytest.raises(ValueError, match=r"batched 2-D input, hx\[0\] and hx\[1\] should be "
                                         r"2-D, got \(1-D, 1-D\)"):
        pm(z(3, 10), (z(20), z(20)))
    with pytest.raises(TypeError, match="peepholes need") as e:
        pm(z(3, 10, dtype=F64))
    assert isinstance(e.value, RuntimeError)
    with pytest.raises(TypeError, match="two Tensors"):
        pm(z(3, 10), (z(3, 20),))


def test_other_dtypes_defer_to_torch():
    tm, fm = pair(torch.bfloat16, 0, 3, 4)
    x = torch.randn(2, 3, dtype=torch.bfloat16)
    for a, b in zip(fm(x), tm(x)):
        assert a.dtype == torch.bfloat16 and torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_defers_to_torch():
    tm, fm = pair(F32, 0, 3, 4)
    tm, fm = tm.cuda(), fm.cuda()
    x = torch.randn(2, 3, device="cuda")
    for a, b in zip(fm(x), tm(x)):
        assert a.is_cuda and torch.equal(a, b)


def test_copy_and_pickle_drop_the_packed_weights():
    _, fm = pair(F32, 0, 3, 4)
    fm.eval()
    x = torch.randn(2, 3)
    with torch.no_grad():
        h = fm(x)[0]
        assert fm._fl_cache is not None
        for clone in (copy.deepcopy(fm), pickle.loads(pickle.dumps(fm))):
            assert clone._fl_cache is None
            assert torch.equal(clone(x)[0], h)
            clone.weight_ih.mul_(2)  # the clone owns its weights
        assert torch.equal(fm(x)[0], h)


def bf16(t):
    """Round to the nearest bfloat16 (torch's cast, independent of the kernels)."""
    return t.to(torch.bfloat16).to(t.dtype)


def test_bfloat16_weights_error_within_the_rounding_bound():
    I = H = 64
    B = 8
    torch.manual_seed(3)
    m32 = flt.LSTMCell(I, H).eval()
    m16 = flt.LSTMCell(I, H, weights_dtype="bfloat16").eval()
    m16.load_state_dict(m32.state_dict())
    x = rand(B, I, dtype=F32, seed=4)
    h0 = (torch.rand(B, H, generator=torch.Generator().manual_seed(5)) * 2 - 1)
    c0 = (torch.rand(B, H, generator=torch.Generator().manual_seed(6)) * 4 - 2)
    with torch.no_grad():
        h32, c32 = m32(x, (h0, c0))
        h16, c16 = m16(x, (h0, c0))
    assert not torch.equal(h16, h32)  # the weights really were rounded
    # oracle 1: torch's cell in float64 on weights rounded here: float32 agreement
    t64 = torch.nn.LSTMCell(I, H).double()
    t64.load_state_dict({k: (bf16(v) if k.startswith("weight") else v).double()
                         for k, v in m32.state_dict().items()})
    with torch.no_grad():
        hr, cr = t64(x.double(), (h0.double(), c0.double()))
    assert_close(h16, hr, F32, "h vs torch on rounded weights")
    assert_close(c16, cr, F32, "c vs torch on rounded weights")
    # oracle 2, a first-order bound: round-to-nearest moves each weight by at most
    # 2^-9 of itself (8 significant bits); sigmoid' <= 1/4, tanh' <= 1
    sd = {k: v.double() for k, v in m32.state_dict().items()}
    xd, hd, cd = x.double(), h0.double(), c0.double()
    dpre = 2.0**-9 * (xd.abs() @ sd["weight_ih"].abs().t() + hd.abs() @ sd["weight_hh"].abs().t())
    pre = xd @ sd["weight_ih"].t() + hd @ sd["weight_hh"].t() + sd["bias_ih"] + sd["bias_hh"]
    pi, pf, pg, po = pre.chunk(4, 1)
    di, df, dg, do = dpre.chunk(4, 1)
    i, f, g, o = pi.sigmoid(), pf.sigmoid(), pg.tanh(), po.sigmoid()
    c = f * cd + i * g
    dc = cd.abs() * df / 4 + g.abs() * di / 4 + i * dg
    dh = do / 4 * c.tanh().abs() + o * dc
    slack = 1e-6  # float32 arithmetic, far below the rounding effect
    assert torch.all((c16.double() - c32.double()).abs() <= 1.01 * dc + slack)
    assert torch.all((h16.double() - h32.double()).abs() <= 1.01 * dh + slack)
    # autograd runs float32 weights
    hg, _ = m16(x, (h0, c0))
    assert hg.requires_grad and torch.equal(hg.detach(), m32(x, (h0, c0))[0].detach())


def test_bfloat16_weights_need_float32():
    m = flt.LSTMCell(3, 4, weights_dtype="bfloat16").double().eval()
    with torch.no_grad(), pytest.raises(TypeError, match="needs float32 parameters"):
        m(torch.zeros(2, 3, dtype=F64))
