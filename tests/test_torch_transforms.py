"""fastlstm.torch under higher-order autograd, torch.func transforms, tracing
and scripting. Oracles: torch.nn.LSTM with the same state_dict (where torch
supports the transform), a per-sample loop (where it does not), and
gradcheck / gradgradcheck (finite differences) in float64."""
import functools

import pytest

torch = pytest.importorskip("torch")
flt = pytest.importorskip("fastlstm.torch")

from _tolerance import assert_rel_close  # noqa: E402
from _torch_pair import lstm_pair  # noqa: E402

import torch.autograd.forward_ad as fwAD  # noqa: E402
from torch.func import functional_call, grad, jacfwd, jvp, vmap  # noqa: E402
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence  # noqa: E402

F64 = torch.float64
TOL = 1e-10  # float64, relative to max|torch|, as the parity tests


pytestmark = pytest.mark.usefixtures("torch_one_thread")


pair = functools.partial(lstm_pair, F64)


def close(got, want, name, tol=TOL):
    assert_rel_close(got, want, tol, name)


def rand(*shape, seed=1):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


CONFIGS = {
    "plain": dict(input_size=4, hidden_size=5),
    "bidir2": dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True),
    "proj_batch_first": dict(input_size=4, hidden_size=6, proj_size=3, batch_first=True),
}


def penalty_grads(m, x, packed_lengths=None):
    """WGAN-GP style: loss = |y|^2 + |dL/dx|^2, both through the layer; grads of
    every parameter and of x."""
    m.zero_grad()
    x = x.detach().clone().requires_grad_()
    if packed_lengths is None:
        y, (hn, cn) = m(x)
    else:
        seqs = [x[:n, b] for b, n in enumerate(packed_lengths)]
        out, (hn, cn) = m(pack_sequence(seqs, enforce_sorted=False))
        y = pad_packed_sequence(out)[0]
    inner = (y * rand(*y.shape, seed=2)).sum() + hn.sum() + 0.5 * cn.square().sum()
    gx, = torch.autograd.grad(inner, x, create_graph=True)
    assert gx.requires_grad
    loss = y.square().sum() + gx.square().sum()
    loss.backward()
    return [x.grad] + [p.grad for p in m.parameters()]


@pytest.mark.parametrize("cfg", list(CONFIGS))
def test_double_backward_matches_torch(cfg):
    tm, fm = pair(**CONFIGS[cfg])
    kw = CONFIGS[cfg]
    x = rand(*((3, 5) if kw.get("batch_first") else (5, 3)), kw["input_size"])
    for i, (a, b) in enumerate(zip(penalty_grads(fm, x), penalty_grads(tm, x))):
        close(a, b, f"grad {i}")


def test_double_backward_with_lengths_matches_torch():
    tm, fm = pair(input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x = rand(6, 3, 3)
    lengths = [6, 2, 4]
    for i, (a, b) in enumerate(zip(penalty_grads(fm, x, lengths), penalty_grads(tm, x, lengths))):
        close(a, b, f"grad {i}")


@pytest.mark.parametrize("variant", ["plain", "bidir_proj_lengths", "peephole_lengths"])
def test_op_gradgradcheck(variant):
    H, I, T, B = 3, 2, 4, 2
    bidir = variant == "bidir_proj_lengths"
    P = 2 if bidir else 0
    peep = variant == "peephole_lengths"
    D, Ho = 2 if bidir else 1, P or H
    g = torch.Generator().manual_seed(8)

    def r(*shape):
        return torch.randn(shape, generator=g, dtype=F64, requires_grad=True)

    ws = []
    for _ in range(D):
        ws += [r(4 * H, I), r(4 * H, Ho), r(4 * H), r(4 * H)] + ([r(P, H)] if P else []) + \
            ([r(3, H)] if peep else [])
    lengths = None if variant == "plain" else torch.tensor([4, 2])

    def f(x, h0, c0, *w):
        return torch.ops.fastlstm.lstm_layer(x, list(w), h0, c0, lengths, H, P, bidir, True,
                                             peep, True)[:3]

    args = (r(T, B, I), r(D, B, Ho), r(D, B, H), *ws)
    assert torch.autograd.gradgradcheck(f, args)


def module_fn(m):
    names = [n for n, _ in m.named_parameters()]
    return lambda x, *w: functional_call(m, dict(zip(names, w)), (x,))[0]


@pytest.mark.parametrize("cfg", ["bidir2", "proj_batch_first"])
def test_module_gradgradcheck_and_batched_grad(cfg):
    _, fm = pair(**CONFIGS[cfg])
    kw = CONFIGS[cfg]
    x = rand(2, 3, kw["input_size"]).requires_grad_()
    params = [p.detach().clone().requires_grad_() for p in fm.parameters()]
    f = module_fn(fm)
    assert torch.autograd.gradcheck(f, (x, *params), check_batched_grad=True)
    assert torch.autograd.gradgradcheck(f, (x, *params))


def test_backward_op_is_not_differentiable():
    x = rand(3, 2, 4).requires_grad_()
    ws = [rand(20, 4, seed=3).requires_grad_(), rand(20, 5, seed=4).requires_grad_()]
    h = torch.zeros(1, 2, 5, dtype=F64)
    y, hn, cn, ws_ = torch.ops.fastlstm.lstm_layer(x, ws, h, h, None, 5, 0, False, False,
                                                   False, True)
    dy = torch.ones_like(y, requires_grad=True)
    out = torch.ops.fastlstm.lstm_layer_backward(x, ws, h, None, ws_, dy, torch.zeros_like(hn),
                                                 torch.zeros_like(cn), 5, 0, False, False,
                                                 False)
    with pytest.raises(RuntimeError, match="not differentiable"):
        out[0].sum().backward()


def test_vmap_inference_matches_a_loop():
    tm, fm = pair(**CONFIGS["bidir2"])
    xs = rand(4, 5, 2, 3)  # 4 samples of [T=5, B=2, I=3]
    with torch.no_grad():
        got_y, (got_h, got_c) = vmap(fm)(xs)
        for i, x in enumerate(xs):
            y, (h, c) = tm(x)
            close(got_y[i], y, f"y[{i}]")
            close(got_h[i], h, f"h[{i}]")
            close(got_c[i], c, f"c[{i}]")


def test_vmap_with_batched_hidden_state_and_ensembled_weights():
    tms = [pair(seed=s, **CONFIGS["plain"])[0] for s in range(3)]
    fms = [pair(seed=s, **CONFIGS["plain"])[1] for s in range(3)]
    params, buffers = torch.func.stack_module_state(fms)
    base = fms[0]
    x = rand(5, 2, 4)
    h0, c0 = rand(3, 1, 2, 5, seed=5), rand(3, 1, 2, 5, seed=6)

    def run(p, h, c):
        return functional_call(base, p, (x, (h, c)))[0]

    with torch.no_grad():
        got = vmap(run)(params, h0, c0)
        for i, tm in enumerate(tms):
            close(got[i], tm(x, (h0[i], c0[i]))[0], f"member {i}")


def test_vmap_over_the_backward():
    """torch.func.vmap over autograd.grad with a batch of output cotangents: the
    backward op's vmap rule, against one grad call per cotangent."""
    _, fm = pair(**CONFIGS["bidir2"])
    x = rand(5, 2, 3).requires_grad_()
    y, _ = fm(x)
    vs = rand(4, *y.shape, seed=7)

    def vjp(v):
        return torch.autograd.grad(y, (x, fm.weight_hh_l1), v, retain_graph=True)

    got = vmap(vjp)(vs)
    for i, v in enumerate(vs):
        for name, a, b in zip(("dx", "dW"), (got[0][i], got[1][i]), vjp(v)):
            close(a, b, f"{name}[{i}]")


def test_per_sample_gradients():
    tm, fm = pair(**CONFIGS["proj_batch_first"])
    params = {k: v.detach() for k, v in fm.named_parameters()}
    x = rand(4, 6, 4)  # 4 samples, each [T=6, I=4] -> batch_first [1, T, I]

    def loss(m):
        return lambda p, xi: functional_call(m, p, (xi[None],))[0].square().sum()

    got = vmap(grad(loss(fm)), in_dims=(None, 0))(params, x)
    for i in range(4):  # torch.nn.LSTM fails under vmap(grad): a loop is the oracle
        want = grad(loss(tm))(params, x[i])
        for k in params:
            close(got[k][i], want[k], f"{k}[{i}]")


def test_jvp_and_jacfwd_match_torch():
    tm, fm = pair(**CONFIGS["bidir2"])
    x, t = rand(4, 2, 3), rand(4, 2, 3, seed=9)
    for (yf, tf), (yt, tt) in [(jvp(lambda x: m(x)[0], (x,), (t,)) for m in (fm, tm))]:
        close(yf, yt, "jvp primal")
        close(tf, tt, "jvp tangent")
    jf = jacfwd(lambda x: fm(x)[1][0].sum())(x)
    jt = jacfwd(lambda x: tm(x)[1][0].sum())(x)
    close(jf, jt, "jacfwd")
    with fwAD.dual_level():
        yf = fwAD.unpack_dual(fm(fwAD.make_dual(x, t))[0]).tangent
        yt = fwAD.unpack_dual(tm(fwAD.make_dual(x, t))[0]).tangent
    close(yf, yt, "forward_ad tangent")


def test_hessian_vector_product_matches_torch():
    tm, fm = pair(**CONFIGS["proj_batch_first"])
    x = rand(2, 5, 4)
    v = {k: rand(*p.shape, seed=11 + i) for i, (k, p) in enumerate(fm.named_parameters())}

    def hvp(m):
        params = {k: p.detach() for k, p in m.named_parameters()}

        def loss(p):
            return functional_call(m, p, (x,))[0].tanh().sum()

        return jvp(grad(loss), (params,), (v,))[1]

    got, want = hvp(fm), hvp(tm)
    for k in got:
        close(got[k], want[k], k)


def test_jit_trace_records_the_op_and_follows_new_inputs():
    tm, fm = pair(**CONFIGS["bidir2"])
    fm.eval()
    tm.eval()
    traced = torch.jit.trace(fm, (rand(5, 2, 3),))
    assert "fastlstm::lstm_layer" in str(traced.graph)
    for T, B, seed in ((5, 2, 20), (7, 3, 21)):  # new values and new shapes
        x = rand(T, B, 3, seed=seed)
        (y, (h, c)), (yt, (ht, ct)) = traced(x), tm(x)
        close(y, yt, "y")
        close(h, ht, "h_n")
        close(c, ct, "c_n")


def test_jit_trace_in_train_mode_backpropagates():
    tm, fm = pair(**CONFIGS["plain"])
    traced = torch.jit.trace(fm, (rand(4, 2, 4),), check_trace=False)
    x = rand(6, 3, 4, seed=3)
    for m in (traced, tm):
        m.zero_grad()
        m(x)[0].square().sum().backward()
    for (n, a), b in zip(fm.named_parameters(), tm.parameters()):
        close(a.grad, b.grad, n)


def test_jit_script_raises_a_clear_error():
    _, fm = pair(**CONFIGS["plain"])
    with pytest.raises(RuntimeError, match="torch.jit.script.*torch.jit.trace"):
        torch.jit.script(fm)


@pytest.mark.parametrize("batch_first", [False, True])
def test_empty_batch_returns_torch_shapes(batch_first):
    tm, fm = pair(input_size=3, hidden_size=4, num_layers=2, bidirectional=True,
                  batch_first=batch_first)
    x = torch.zeros((0, 5, 3) if batch_first else (5, 0, 3), dtype=F64, requires_grad=True)
    outs = []
    for m in (fm, tm):
        y, (h, c) = m(x)
        (y.sum() + h.sum() + c.sum()).backward()
        outs.append((y, h, c, [p.grad for p in m.parameters()]))
    (yf, hf, cf, gf), (yt, ht, ct, gt) = outs
    assert yf.shape == yt.shape and hf.shape == ht.shape and cf.shape == ct.shape
    for a, b in zip(gf, gt):
        close(a, b, "param grad")


def test_compiled_double_backward_raises():
    _, fm = pair(**CONFIGS["plain"])
    compiled = torch.compile(fm, backend="aot_eager", fullgraph=True)
    x = rand(4, 2, 4).requires_grad_()
    y, _ = compiled(x)
    # AOTAutograd refuses at the create_graph call or at the second backward
    with pytest.raises(RuntimeError, match="double backward|create_graph=False"):
        gx, = torch.autograd.grad(y.sum(), x, create_graph=True)
        gx.square().sum().backward()


def test_double_backward_with_weights_shared_across_calls():
    """The layer called twice with the state carried over: the first call's
    weights also reach the second call through h0, and each call's
    create_graph backward must count only its own paths."""
    tm, fm = pair(input_size=4, hidden_size=5)
    x1, x2 = rand(3, 2, 4), rand(3, 2, 4, seed=2)
    grads = []
    for m in (fm, tm):
        m.zero_grad()
        _, hx = m(x1)
        y, _ = m(x2, hx)
        g, = torch.autograd.grad(y.square().sum(), m.weight_hh_l0, create_graph=True)
        g.square().sum().backward()
        grads.append([p.grad for p in m.parameters()])
    for (n, _), a, b in zip(fm.named_parameters(), *grads):
        close(a, b, n)
