"""PyTorch's own standard for nn.LSTM and nn.GRU, applied to
fastlstm.torch.LSTM and fastlstm.torch.GRU.

The installed torch ships the ModuleInfo of nn.LSTM and nn.GRU (`module_db`
in torch.testing._internal.common_modules): their sample inputs and their
error inputs. They run here through fastlstm.torch's twin the way torch's
test_modules.py runs them (forward against the reference function and
torch.nn.LSTM, gradients, gradcheck, gradgradcheck, errors, pickling, `to()`,
factory kwargs, non-contiguous input), followed by the behaviours of
test_nn.py's RNN tests that apply on a CPU.
"""
import copy
import functools
import io
import pickle

import pytest

torch = pytest.importorskip("torch")
flt = pytest.importorskip("fastlstm.torch")
cm = pytest.importorskip("torch.testing._internal.common_modules")

from _tolerance import assert_rel_close  # noqa: E402
from _torch_pair import lstm_pair  # noqa: E402

from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence  # noqa: E402

# torch's module -> fastlstm.torch's twin, each with torch's ModuleInfo
TWINS = {"LSTM": (torch.nn.LSTM, flt.LSTM), "GRU": (torch.nn.GRU, flt.GRU)}
INFOS = {k: next(m for m in cm.module_db if m.module_cls is t) for k, (t, _) in TWINS.items()}
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def samples(dtype, requires_grad=True, mod="LSTM"):
    info = INFOS[mod]
    return list(info.module_inputs_func(info, device="cpu", dtype=dtype,
                                        requires_grad=requires_grad, training=True))


def error_samples(dtype, mod="LSTM"):
    info = INFOS[mod]
    return list(info.module_error_inputs_func(info, device="cpu", dtype=dtype,
                                              requires_grad=False, training=True))


def build(sample, dtype, seed=0, mod="LSTM"):
    """(torch's module, fastlstm.torch's twin) of the sample, same weights."""
    ci = sample.constructor_input
    tcls, fcls = TWINS[mod]
    torch.manual_seed(seed)
    tm = tcls(*ci.args, **ci.kwargs).to(dtype)
    fm = fcls(*ci.args, **ci.kwargs).to(dtype)
    fm.load_state_dict(tm.state_dict())
    return tm, fm


def flat(out):
    """[y, h (, c)] of an LSTM's (y, (h, c)) or a GRU's (y, h)."""
    y, state = out
    return [y, *state] if isinstance(state, tuple) else [y, state]


def clone_args(args):
    """The sample's forward args as fresh leaves (x, (h, c)) for each module."""
    out = []
    for a in args:
        if isinstance(a, tuple):
            out.append(tuple(t.detach().clone().requires_grad_(t.requires_grad) for t in a))
        else:
            out.append(a.detach().clone().requires_grad_(a.requires_grad))
    return out


def close(got, want, dtype, name):
    assert_rel_close(got, want, TOL[dtype], name)


def leaves(args):
    return [t for a in args for t in (a if isinstance(a, tuple) else (a,))]


CASES = [(mod, i) for mod in TWINS for i in range(len(samples(torch.float64, mod=mod)))]
IDS = [f"{mod}-s{i}" for mod, i in CASES]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mod, i", CASES, ids=IDS)
def test_forward_and_grads(dtype, mod, i):
    """test_modules.test_forward (against the sample's reference function) and
    the outputs and every gradient against torch's module."""
    s = samples(dtype, mod=mod)[i]
    tm, fm = build(s, dtype, mod=mod)
    fargs, targs = clone_args(s.forward_input.args), clone_args(s.forward_input.args)
    fout, tout = fm(*fargs), tm(*targs)
    ref = s.reference_fn(fm, *clone_args(s.forward_input.args),
                         **s.forward_input.kwargs)
    assert len(flat(fout)) == len(flat(ref)) == len(flat(tout))
    for name, a, b in zip(("y", "h_n", "c_n"), flat(fout), flat(ref)):
        close(a, b, dtype, f"{name} vs reference_fn")
    g = torch.Generator().manual_seed(1)
    ws = [torch.randn(t.shape, generator=g, dtype=dtype) for t in flat(tout)]
    for m, out in ((fm, fout), (tm, tout)):
        m.zero_grad()
        sum((o * w).sum() for o, w in zip(flat(out), ws)).backward()
    for name, a, b in zip(("y", "h_n", "c_n"), flat(fout), flat(tout)):
        close(a, b, dtype, name)
    for j, (a, b) in enumerate(zip(leaves(fargs), leaves(targs))):
        close(a.grad, b.grad, dtype, f"input {j} grad")
    for (n, a), b in zip(fm.named_parameters(), tm.parameters()):
        close(a.grad, b.grad, dtype, n)


def module_as_function(fm, args):
    """f(*inputs, *params) -> outputs, for gradcheck over both."""
    names = [n for n, _ in fm.named_parameters()]
    shapes = [a if isinstance(a, tuple) else None for a in args]
    n_in = len(leaves(args))

    def f(*flat_args):
        it = iter(flat_args[:n_in])
        call = [tuple(next(it) for _ in s) if s is not None else next(it) for s in shapes]
        params = dict(zip(names, flat_args[n_in:]))
        return tuple(flat(torch.func.functional_call(fm, params, tuple(call))))

    inputs = leaves(clone_args(args)) + [p.detach().clone().requires_grad_()
                                         for p in fm.parameters()]
    return f, inputs


@pytest.mark.parametrize("mod, i", CASES, ids=IDS)
def test_gradcheck_and_gradgradcheck(mod, i):
    """test_modules.test_grad / test_gradgrad: finite differences in float64."""
    s = samples(torch.float64, mod=mod)[i]
    _, fm = build(s, torch.float64, mod=mod)
    f, inputs = module_as_function(fm, s.forward_input.args)
    assert torch.autograd.gradcheck(f, inputs, check_batched_grad=True)
    assert torch.autograd.gradgradcheck(f, inputs)


ERROR_CASES = [(mod, i) for mod in TWINS for i in range(len(error_samples(torch.float32,
                                                                             mod=mod)))]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mod, i", ERROR_CASES, ids=[f"{m}-{i}" for m, i in ERROR_CASES])
def test_error_inputs(dtype, mod, i):
    """test_modules.test_errors: the same exception type and message."""
    e = error_samples(dtype, mod=mod)[i]
    fcls = TWINS[mod][1]
    ci, fi = e.module_error_input.constructor_input, e.module_error_input.forward_input
    if e.error_on == cm.ModuleErrorEnum.CONSTRUCTION_ERROR:
        with pytest.raises(e.error_type, match=e.error_regex):
            fcls(*ci.args, **ci.kwargs)
        return
    m = fcls(*ci.args, **ci.kwargs)
    with pytest.raises(e.error_type, match=e.error_regex):
        m(*fi.args, **fi.kwargs)


@pytest.mark.parametrize("mod, i", CASES, ids=IDS)
def test_pickle_deepcopy_and_state(mod, i):
    """test_modules.test_pickle: a module round-tripped through pickle,
    torch.save and deepcopy computes the same outputs."""
    s = samples(torch.float32, requires_grad=False, mod=mod)[i]
    _, fm = build(s, torch.float32, mod=mod)
    fm.eval()
    want = flat(fm(*s.forward_input.args))
    buf = io.BytesIO()
    torch.save(fm, buf)
    buf.seek(0)
    clones = [pickle.loads(pickle.dumps(fm)), copy.deepcopy(fm),
              torch.load(buf, weights_only=False)]
    for c in clones:
        assert type(c) is TWINS[mod][1]
        for a, b in zip(flat(c(*s.forward_input.args)), want):
            assert torch.equal(a, b)


def test_to_and_factory_kwargs():
    """test_modules.test_to / test_factory_kwargs."""
    m = flt.LSTM(3, 4, num_layers=2, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in m.parameters())
    assert m.to(torch.float32) is m and all(p.dtype == torch.float32 for p in m.parameters())
    params = list(m.parameters())
    m.to(torch.float64)
    assert [id(p) for p in m.parameters()] == [id(p) for p in params]  # same Parameters
    x = torch.randn(2, 1, 3, dtype=torch.float64)
    assert m(x)[0].dtype == torch.float64
    with pytest.raises(ValueError, match="does not match weight dtype"):
        m(x.float())


def test_non_contiguous_inputs():
    """test_modules.test_non_contiguous_tensors: strided input and state."""
    tm, fm = build(samples(torch.float64)[2], torch.float64)
    big = torch.randn(6, 4, 2, 3, dtype=torch.float64)
    x = big[:, ::2, :, 0].transpose(1, 2)[..., :2]  # [6, 2, 2], non-contiguous
    assert not x.is_contiguous()
    x = x.reshape(6, 2, 2)[:, 0]  # unbatched [T, I], as the samples
    for a, b in zip(flat(fm(x)), flat(tm(x))):
        close(a, b, torch.float64, "non-contiguous")


def test_train_and_eval_differ_only_by_dropout():
    """ModuleInfo(train_and_eval_differ=True): dropout between layers in train()."""
    torch.manual_seed(0)
    fm = flt.LSTM(3, 5, num_layers=3, dropout=0.5).double()
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    fm.eval()
    e1, e2 = fm(x)[0], fm(x)[0]
    assert torch.equal(e1, e2)
    fm.train()
    t1, t2 = fm(x)[0], fm(x)[0]
    assert not torch.equal(t1, e1) and not torch.equal(t1, t2)


# ------------------------------------------------------------ test_nn behaviours


pair = functools.partial(lstm_pair, torch.float64)


def test_initial_hidden_state_none_is_zeros():
    _, fm = pair(input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    zeros = (torch.zeros(4, 2, 4, dtype=torch.float64), torch.zeros(4, 2, 4, dtype=torch.float64))
    for a, b in zip(flat(fm(x)), flat(fm(x, zeros))):
        assert torch.equal(a, b)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_variable_sequence_equals_each_sequence_alone(bidirectional):
    """test_nn.test_variable_sequence: a packed batch gives each sequence's own
    outputs and final states, and their gradients."""
    _, fm = pair(input_size=3, hidden_size=4, num_layers=2, bidirectional=bidirectional)
    g = torch.Generator().manual_seed(3)
    seqs = [torch.randn(n, 3, generator=g, dtype=torch.float64, requires_grad=True)
            for n in (5, 2, 4)]
    out, (hn, cn) = fm(pack_sequence(seqs, enforce_sorted=False))
    y, lens = pad_packed_sequence(out)
    (y.square().sum() + hn.sum()).backward()
    for b, s in enumerate(seqs):
        xs = s.detach().clone().requires_grad_()
        ys, (hs, cs) = fm(xs)
        (ys.square().sum() + hs.sum()).backward()
        close(y[:lens[b], b], ys, torch.float64, f"y of seq {b}")
        assert torch.all(y[lens[b]:, b] == 0)
        close(hn[:, b], hs, torch.float64, f"h_n of seq {b}")
        close(cn[:, b], cs, torch.float64, f"c_n of seq {b}")
        close(s.grad, xs.grad, torch.float64, f"grad of seq {b}")


def test_changing_dropout_takes_effect():
    """test_nn.test_RNN_change_dropout: `m.dropout` set after construction."""
    _, fm = pair(input_size=3, hidden_size=4, num_layers=2)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    fm.train()
    for p in (0.0, 0.276, 0.5, 1.0):
        fm.dropout = p
        torch.manual_seed(1)
        y1, (h1, _) = fm(x)
        torch.manual_seed(2)
        y2, (h2, _) = fm(x)
        if p == 0.0:
            assert torch.equal(y1, y2)
        elif p == 1.0:  # layer 2 sees zeros: the output of layer 2 alone on zeros
            top = flt.LSTM(4, 4).double()
            top.load_state_dict({k.replace("_l1", "_l0"): v for k, v in fm.state_dict().items()
                                 if "_l1" in k})
            with torch.no_grad():
                want = top(torch.zeros(5, 2, 4, dtype=torch.float64))[0]
            assert torch.equal(y1, y2)
            close(y1, want, torch.float64, "dropout=1")
        else:
            assert not torch.equal(y1, y2)


def test_retain_graph_twice_doubles_the_grads():
    _, fm = pair(input_size=3, hidden_size=4, bidirectional=True)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    y, _ = fm(x)
    y.square().sum().backward(retain_graph=True)
    first = [x.grad.clone()] + [p.grad.clone() for p in fm.parameters()]
    y.square().sum().backward()
    for a, b in zip(first, [x.grad] + [p.grad for p in fm.parameters()]):
        assert torch.equal(2 * a, b)


def test_weight_norm_parametrization_matches_torch():
    """test_nn's weight-norm RNN test, with torch.nn.utils.parametrizations: the
    computed weight is seen in training, and in eval after an optimizer step
    (a parametrized weight is a new tensor per call, never a stale cache)."""
    from torch.nn.utils.parametrizations import weight_norm
    tm, fm = pair(input_size=3, hidden_size=4)
    for m in (tm, fm):
        weight_norm(m, "weight_hh_l0")
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    for m in (tm, fm):
        m(x)[0].square().sum().backward()
    for (n, a), b in zip(fm.named_parameters(), tm.parameters()):
        close(a.grad, b.grad, torch.float64, n)
    for m in (tm, fm):
        m.eval()
        with torch.no_grad():
            m(x)  # fills fastlstm's inference cache
        torch.optim.SGD(m.parameters(), lr=0.5).step()
    with torch.no_grad():
        for a, b in zip(flat(fm(x)), flat(tm(x))):
            close(a, b, torch.float64, "after a step")


def test_weight_tying_between_layers():
    """Two layers sharing a Parameter: gradients add up as in torch, and an
    update through one is seen by the other."""
    mods = {}
    for name, cls in (("torch", torch.nn.LSTM), ("fast", flt.LSTM)):
        torch.manual_seed(0)
        a, b = cls(4, 4).double(), cls(4, 4).double()
        b.weight_hh_l0 = a.weight_hh_l0
        mods[name] = (a, b)
    x = torch.randn(3, 2, 4, dtype=torch.float64)
    for a, b in mods.values():
        b(a(x)[0])[0].sum().backward()
    (ta, tb), (fa, fb) = mods["torch"], mods["fast"]
    close(fa.weight_hh_l0.grad, ta.weight_hh_l0.grad, torch.float64, "tied grad")
    with torch.no_grad():
        for a, b in mods.values():
            a.eval()
            b.eval()
            b(x)
            a.weight_hh_l0.mul_(0.5)
        close(fb(x)[0], tb(x)[0], torch.float64, "tied update seen")
