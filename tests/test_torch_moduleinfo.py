"""PyTorch's own standard for nn.LSTM, nn.GRU, nn.LSTMCell and nn.GRUCell,
applied to fastlstm.torch.LSTM, GRU, LSTMCell and GRUCell.

The installed torch ships the ModuleInfo of each (`module_db` in
torch.testing._internal.common_modules): their sample inputs and their error
inputs. They run here through fastlstm.torch's twin the way torch's
test_modules.py runs them (forward against the reference function and torch's
module, gradients, gradcheck, gradgradcheck, partial derivatives, errors,
pickling, `to()` with and without swapped tensors, `to_empty()`, factory
kwargs, the meta device, non-contiguous input, memory format, the training
flag), followed by the behaviours of test_nn.py's RNN and RNN-cell tests that
apply on a CPU.

A layer returns (y, (h, c)) or (y, h), a cell (h, c) or h; `flat` lists the
tensors of either, and everything else is the same code for all four.
"""
import copy
import functools
import io
import itertools
import pickle

import pytest

torch = pytest.importorskip("torch")
flt = pytest.importorskip("fastlstm.torch")
cm = pytest.importorskip("torch.testing._internal.common_modules")

from _tolerance import assert_rel_close  # noqa: E402
from _torch_pair import lstm_pair  # noqa: E402

from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence  # noqa: E402

# torch's module -> fastlstm.torch's twin, each with torch's ModuleInfo
TWINS = {"LSTM": (torch.nn.LSTM, flt.LSTM), "GRU": (torch.nn.GRU, flt.GRU),
         "LSTMCell": (torch.nn.LSTMCell, flt.LSTMCell), "GRUCell": (torch.nn.GRUCell, flt.GRUCell)}
CELLS = ("LSTMCell", "GRUCell")
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
    """The output tensors: [y, h (, c)] of an LSTM's (y, (h, c)) or a GRU's
    (y, h), [h, c] of an LSTMCell's (h, c), [h] of a GRUCell's h."""
    if isinstance(out, torch.Tensor):
        return [out]
    y, state = out
    return [y, *state] if isinstance(state, tuple) else [y, state]


def out_names(mod):
    """The names of `flat`'s tensors for module `mod`."""
    return {"LSTM": ("y", "h_n", "c_n"), "GRU": ("y", "h_n"), "LSTMCell": ("h", "c"),
            "GRUCell": ("h",)}[mod]


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


def map_args(args, fn):
    """The forward args (tensors and tuples of tensors) with fn applied to each tensor."""
    return [tuple(fn(t) for t in a) if isinstance(a, tuple) else fn(a) for a in args]


def unflatten(args, tensors):
    """`tensors` (as `leaves(args)` lists them) put back in the form of args."""
    it = iter(tensors)
    return [tuple(next(it) for _ in a) if isinstance(a, tuple) else next(it) for a in args]


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
    names = out_names(mod)
    assert len(flat(fout)) == len(flat(ref)) == len(flat(tout)) == len(names)
    for name, a, b in zip(names, flat(fout), flat(ref)):
        close(a, b, dtype, f"{name} vs reference_fn")
    g = torch.Generator().manual_seed(1)
    ws = [torch.randn(t.shape, generator=g, dtype=dtype) for t in flat(tout)]
    for m, out in ((fm, fout), (tm, tout)):
        m.zero_grad()
        sum((o * w).sum() for o, w in zip(flat(out), ws)).backward()
    for name, a, b in zip(names, flat(fout), flat(tout)):
        assert a.dtype == b.dtype and a.is_contiguous(), name
        close(a, b, dtype, name)
    for j, (a, b) in enumerate(zip(leaves(fargs), leaves(targs))):
        close(a.grad, b.grad, dtype, f"input {j} grad")
    for (n, a), b in zip(fm.named_parameters(), tm.parameters()):
        close(a.grad, b.grad, dtype, n)
    # test_forward's last step: the dtype's own method, then the forward again
    assert getattr(fm, {torch.float32: "float", torch.float64: "double"}[dtype])() is fm
    assert all(p.dtype == dtype and p.device.type == "cpu" for p in fm.parameters())
    for name, a, b in zip(names, flat(fm(*clone_args(s.forward_input.args))), flat(fout)):
        assert torch.equal(a, b), f"{name} after .{dtype}()"


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


@pytest.mark.parametrize("mod, i", CASES, ids=IDS)
def test_partial_derivatives(mod, i):
    """test_modules' gradient checks, second half: the module itself (its own
    Parameters, not functional_call) with one parameter at a time requiring
    grad, beside the sample's inputs and (cells) alone: gradcheck and
    gradgradcheck in float64."""
    s = samples(torch.float64, mod=mod)[i]
    _, fm = build(s, torch.float64, mod=mod)
    args = clone_args(s.forward_input.args)
    n = len(leaves(args))

    def f(*tensors):
        return tuple(flat(fm(*unflatten(args, tensors[:n]))))

    def f_param_only(p):
        return lambda q: tuple(flat(fm(*args)))  # q is p: the module reads it itself

    params = list(fm.parameters())
    for p in params:
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
        assert torch.autograd.gradcheck(f, leaves(args) + [p])
        if mod in CELLS:
            assert torch.autograd.gradgradcheck(f, leaves(args) + [p])  # the inputs need no grad: only this parameter does
            for t in leaves(args):
                t.requires_grad_(False)
            assert torch.autograd.gradcheck(f_param_only(p), [p])
            assert torch.autograd.gradgradcheck(f_param_only(p), [p])
            for t in leaves(args):
                t.requires_grad_(True)
        p.requires_grad_(False)


ERROR_CASES = [(mod, i) for mod in TWINS for i in range(len(error_samples(torch.float32,
                                                                             mod=mod)))]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mod, i", ERROR_CASES, ids=[f"{m}-{i}" for m, i in ERROR_CASES])
def test_error_inputs(dtype, mod, i):
    """test_modules.test_errors: the same exception type and message; again
    under no_grad once fastlstm's packed weights are cached (the state in
    which a cell's streaming step takes its calls)."""
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
    with torch.no_grad():
        m(torch.zeros(1, m.input_size, dtype=m.weight_hh_l0.dtype if mod not in CELLS
                      else m.weight_hh.dtype))  # one step ([T=1, I] or [B=1, I])
        assert m._fl_cache is not None
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


def noncontiguous(t):
    """test_modules.test_non_contiguous_tensors' strided copy of t (stride 2 on
    the last dimension), a leaf requiring grad as t does."""
    out = torch.repeat_interleave(t.detach(), 2, dim=-1)[..., ::2]
    return out.requires_grad_(t.requires_grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mod, i", CASES, ids=IDS)
def test_non_contiguous_and_memory_format(dtype, mod, i):
    """test_modules.test_non_contiguous_tensors and test_memory_format: every
    mix of strided and contiguous inputs and output gradients gives the
    contiguous call's outputs and gradients (inputs' and parameters'), and
    outputs, and the gradients of contiguous inputs, are contiguous."""
    s = samples(dtype, mod=mod)[i]
    _, fm = build(s, dtype, mod=mod)
    params = list(fm.parameters())
    g = torch.Generator().manual_seed(2)
    results, gouts = [], None
    for strided_in, strided_grad in itertools.product((False, True), repeat=2):
        args = map_args(s.forward_input.args, noncontiguous if strided_in else
                        lambda t: t.detach().clone().requires_grad_(t.requires_grad))
        if strided_in:
            assert not any(t.is_contiguous() for t in leaves(args) if t.shape[-1] > 1)
        out = flat(fm(*args))
        assert all(o.is_contiguous() for o in out)
        if gouts is None:
            gouts = [torch.randn(o.shape, generator=g, dtype=dtype) for o in out]
        go = [noncontiguous(t) if strided_grad else t for t in gouts]
        assert not strided_grad or not any(t.is_contiguous() for t in go)
        grads = torch.autograd.grad(out, leaves(args) + params, go)
        if not strided_in:
            assert all(t.is_contiguous() for t in grads)
        results.append([o.detach() for o in out] + list(grads))
    names = list(out_names(mod)) + [f"input {j} grad" for j in range(len(leaves(args)))] + \
        [f"{n} grad" for n, _ in fm.named_parameters()]
    for k, r in enumerate(results[1:], 1):
        for name, a, b in zip(names, r, results[0]):
            close(a, b, dtype, f"{name} (strided inputs, grads: {divmod(k, 2)})")


@pytest.mark.parametrize("mod", TWINS)
def test_training_flag_is_read_only_where_modes_differ(mod):
    """test_modules.test_if_train_and_eval_modes_differ: with `training`
    deleted, a forward (autograd and no_grad) raises an AttributeError naming
    it only where the ModuleInfo says train and eval differ."""
    for s in samples(torch.float32, requires_grad=False, mod=mod):
        _, fm = build(s, torch.float32, mod=mod)
        del fm.training
        for grad in (True, False):
            try:
                with torch.set_grad_enabled(grad):
                    fm(*s.forward_input.args)
            except AttributeError as e:
                assert "'training'" in str(e) and INFOS[mod].train_and_eval_differ, e


def assert_metadata_equal(a, b):
    from torch._subclasses.meta_utils import assert_metadata_eq

    def eq(x, y, msg=None):
        assert x == y, msg

    assert_metadata_eq(eq, a, b)


@pytest.mark.parametrize("mod", TWINS)
def test_factory_kwargs_and_meta_device(mod):
    """test_modules.test_factory_kwargs / test_repr / test_device_ctx_init,
    over the constructors of the samples and of the error inputs that fail in
    forward: device= and dtype= reach every parameter (torch's names and
    shapes), the repr is torch's; under torch.device("meta") every parameter
    is a meta tensor with the CPU module's metadata."""
    tcls, fcls = TWINS[mod]
    ctors = [s.constructor_input for s in samples(torch.float64, requires_grad=False, mod=mod)]
    ctors += [e.module_error_input.constructor_input for e in error_samples(torch.float64, mod)
              if e.error_on == cm.ModuleErrorEnum.FORWARD_ERROR]
    for ci in ctors:
        for dtype in (torch.float32, torch.float64):
            kw = {**ci.kwargs, "device": "cpu", "dtype": dtype}
            fm, tm = fcls(*ci.args, **kw), tcls(*ci.args, **kw)
            assert [(n, p.shape, p.dtype, p.device) for n, p in fm.named_parameters()] == \
                [(n, p.shape, p.dtype, p.device) for n, p in tm.named_parameters()]
            assert all(p.dtype == dtype for p in fm.parameters())
            assert repr(fm) == str(fm) == repr(tm)  # test_modules.test_repr, and torch's text
        if "device" in ci.kwargs:  # (an explicit device outranks the context)
            continue
        cpu = fcls(*ci.args, **ci.kwargs)
        with torch.device("meta"):
            meta = fcls(*ci.args, **ci.kwargs)
        assert len(list(meta.parameters())) == len(list(cpu.parameters())) > 0
        for a, b in zip(meta.parameters(), cpu.parameters()):
            assert a.is_meta and isinstance(a, torch.nn.Parameter)
            assert_metadata_equal(a, b)


@pytest.fixture(params=[False, True], ids=["set_data", "swap"])
def swap(request):
    """torch.__future__.set_swap_module_params_on_conversion(swap), restored after."""
    old = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(request.param)
    yield request.param
    torch.__future__.set_swap_module_params_on_conversion(old)


def check_same_as_torch(fm, tm, args, dtype, name):
    """fm's outputs are tm's, on the autograd path and under no_grad (twice:
    the second call takes the packed-weights cache)."""
    cast = map_args(args, lambda t: t.detach().to(dtype))
    want = flat(tm(*cast))
    for grad in (True, False, False):
        with torch.set_grad_enabled(grad):
            got = flat(fm(*cast))
        for a, b in zip(got, want):
            assert a.dtype == dtype
            close(a, b, dtype, f"{name} (grad={grad})")


@pytest.mark.parametrize("mod", TWINS)
def test_to_with_and_without_swapped_tensors(mod, swap):
    """test_modules.test_to: `to()` keeps the Parameter objects; with swap
    their tensors are swapped (new _cdata), else set through .data (same
    _cdata); gradients follow (set_grad). After every conversion (and the
    half-precision round trip test_to makes after a backward) the module
    computes as torch's module given the same conversions."""
    for s in samples(torch.float32, requires_grad=False, mod=mod):
        args = s.forward_input.args
        for set_grad in (False, True):
            tm, fm = build(s, torch.float32, mod=mod)
            if set_grad:
                for p in fm.parameters():
                    p.grad = torch.randn_like(p)
            else:
                check_same_as_torch(fm, tm, args, torch.float32, "before to()")
                if swap:
                    flat(fm(*args))[0].sum().backward()
                    for m in (fm, tm):
                        m.to(dtype=torch.half)
                        m.to(dtype=torch.float32)
                    check_same_as_torch(fm, tm, args, torch.float32, "after to(half), to(float)")
            for dtype in (torch.float64, torch.float32, torch.float32):
                ids = [id(p) for p in fm.parameters()]
                cdatas = [p._cdata for p in fm.parameters()]
                if set_grad:
                    grad_ids = [id(p.grad) for p in fm.parameters()]
                assert fm.to(device="cpu", dtype=dtype) is fm
                assert all(isinstance(p, torch.nn.Parameter) and p.dtype == dtype
                           and p.device.type == "cpu" for p in fm.parameters())
                assert [id(p) for p in fm.parameters()] == ids
                if swap:
                    assert all(a != p._cdata for a, p in zip(cdatas, fm.parameters()))
                else:
                    assert [p._cdata for p in fm.parameters()] == cdatas
                if set_grad:
                    assert all(p.grad.dtype == dtype for p in fm.parameters())
                    if not swap:
                        assert [id(p.grad) for p in fm.parameters()] == grad_ids
                else:
                    tm.to(dtype=dtype)
                    check_same_as_torch(fm, tm, args, dtype, f"after to({dtype})")


@pytest.mark.parametrize("mod", TWINS)
def test_to_empty_from_meta(mod, swap):
    """test_modules.test_to_empty: a module built on the meta device and
    moved with to_empty(device="cpu") has CPU Parameters (the same objects
    with swap, new ones without); filled with torch's weights, it computes as
    torch's module."""
    for s in samples(torch.float32, requires_grad=False, mod=mod):
        ci = s.constructor_input
        tm, _ = build(s, torch.float32, mod=mod)
        with torch.device("meta"):
            fm = TWINS[mod][1](*ci.args, **ci.kwargs)
        ids = [id(p) for p in fm.parameters()]
        cdatas = [p._cdata for p in fm.parameters()]
        assert fm.to_empty(device="cpu") is fm
        assert all(isinstance(p, torch.nn.Parameter) and p.device.type == "cpu"
                   and p.dtype == torch.float32 for p in fm.parameters())
        assert all(a != p._cdata for a, p in zip(cdatas, fm.parameters()))
        assert ([id(p) for p in fm.parameters()] == ids) == swap
        with torch.no_grad():
            for a, b in zip(fm.parameters(), tm.parameters()):
                a.copy_(b)
        check_same_as_torch(fm, tm, s.forward_input.args, torch.float32, "after to_empty()")


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


# ------------------------------------------------------- test_nn cell behaviours


def cell_pair(mod, *args, dtype=torch.float64, **kw):
    """(torch's cell, fastlstm.torch's twin) with torch's weights, in dtype."""
    tcls, fcls = TWINS[mod]
    torch.manual_seed(0)
    tm = tcls(*args, **kw).to(dtype)
    torch.manual_seed(1)  # another init: load_state_dict must do the work
    fm = fcls(*args, **kw).to(dtype)
    fm.load_state_dict(tm.state_dict())
    return tm, fm


def cell_hx(mod, states):
    """A cell's hx from its state tensors: (h, c) for the LSTMCell, h for the GRUCell."""
    return tuple(states) if mod == "LSTMCell" else states[0]


def n_cell_states(mod):
    return 2 if mod == "LSTMCell" else 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("mod", CELLS)
def test_cell_steps_and_backward(mod, bias, dtype):
    """test_nn.test_RNN_cell / test_LSTM_cell: six steps of a (10, 20) cell
    on one input from a given state, then the backward of the states' sum;
    here against torch: the states and the input, initial-state and
    parameter gradients."""
    tm, fm = cell_pair(mod, 10, 20, bias=bias, dtype=dtype)
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(3, 10, generator=g, dtype=dtype)
    s0 = [torch.randn(3, 20, generator=g, dtype=dtype) for _ in range(n_cell_states(mod))]
    res = []
    for m in (tm, fm):
        x = x0.clone().requires_grad_()
        s = [t.clone().requires_grad_() for t in s0]
        hx = cell_hx(mod, s)
        for _ in range(6):
            hx = m(x, hx)
            assert all(t.is_contiguous() for t in flat(hx))
        sum(t.sum() for t in flat(hx)).backward()
        res.append(flat(hx) + [x.grad] + [t.grad for t in s] + [p.grad for p in m.parameters()])
    names = list(out_names(mod)) + ["dx"] + [f"d{n}0" for n in out_names(mod)] + \
        [n for n, _ in fm.named_parameters()]
    assert len(res[0]) == len(res[1]) == len(names)
    for name, a, b in zip(names, res[1], res[0]):
        close(a, b, dtype, name)


@pytest.mark.parametrize("sizes", [(10, 0), (0, 20)], ids=["hidden_size_0", "input_size_0"])
@pytest.mark.parametrize("mod", CELLS)
def test_cell_zero_sizes(mod, sizes):
    """test_nn.test_RNN_cell_forward_zero_hidden_size (and its input_size
    twin): a cell with a zero size returns torch's [3, H] states, and its
    gradients, with and without autograd."""
    I, H = sizes
    tm, fm = cell_pair(mod, I, H)
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(3, I, generator=g, dtype=torch.float64)
    s0 = [torch.randn(3, H, generator=g, dtype=torch.float64) for _ in range(n_cell_states(mod))]
    res = []
    for m in (tm, fm):
        x = x0.clone().requires_grad_()
        s = [t.clone().requires_grad_() for t in s0]
        out = flat(m(x, cell_hx(mod, s)))
        assert all(o.shape == (3, H) for o in out)
        sum((o * (k + 1)).sum() for k, o in enumerate(out)).backward()
        with torch.no_grad():
            out += flat(m(x0, cell_hx(mod, s0)))
        res.append(out + [x.grad] + [t.grad for t in s] + [p.grad for p in m.parameters()])
    for j, (a, b) in enumerate(zip(res[1], res[0])):
        close(a, b, torch.float64, f"tensor {j}")


def bad_cell_calls(mod):
    """test_nn.test_RNN_cell_no_broadcasting, test_LSTM_cell_forward_input_size
    and _hidden_size: states or input that would broadcast, for a (10, 20) cell."""
    g = torch.Generator().manual_seed(6)
    x, bad_x = torch.randn(3, 10, generator=g), torch.randn(3, 1, generator=g)
    good = torch.randn(3, 20, generator=g)
    bads = {"batch": torch.randn(1, 20, generator=g), "hidden": torch.randn(3, 1, generator=g)}
    calls = {"input_size": (bad_x, cell_hx(mod, [good] * n_cell_states(mod)))}
    for k, bad in bads.items():
        if mod == "LSTMCell":
            calls[f"h_{k}"] = (x, (bad, good))
            calls[f"c_{k}"] = (x, (good, bad))
        else:
            calls[k] = (x, bad)
    return x, good, calls


@pytest.mark.parametrize("streaming", [False, True], ids=["grad", "no_grad_cached"])
@pytest.mark.parametrize("mod", CELLS)
def test_cell_no_broadcasting(mod, streaming):
    """The RuntimeError of torch's cell, its message too, for every state or
    input that would broadcast; also from a cell whose streaming step is armed
    (no_grad, packed weights cached)."""
    tm, fm = cell_pair(mod, 10, 20, dtype=torch.float32)
    x, good, calls = bad_cell_calls(mod)
    with torch.set_grad_enabled(not streaming):
        for name, (xi, hx) in calls.items():
            if streaming:
                fm(x, cell_hx(mod, [good] * n_cell_states(mod)))
                assert fm._fl_cache is not None
            with pytest.raises(RuntimeError) as want:
                tm(xi, hx)
            with pytest.raises(RuntimeError) as got:
                fm(xi, hx)
            assert str(got.value) == str(want.value), name


@pytest.mark.parametrize("lead", [(3,), (), (0,)], ids=["batched", "unbatched", "0_batch"])
@pytest.mark.parametrize("mod", CELLS)
def test_cell_hx_none_is_zeros(mod, lead):
    """hx=None is a zero state (torch's forward), for batched, unbatched and
    empty batches, with autograd and under no_grad: the outputs equal those
    for explicit zeros and torch's, and so do the gradients."""
    tm, fm = cell_pair(mod, 5, 7)
    x0 = torch.randn(*lead, 5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    zeros = cell_hx(mod, [torch.zeros(*lead, 7, dtype=torch.float64)] * n_cell_states(mod))
    for grad in (True, False, False):
        with torch.set_grad_enabled(grad):
            none, given, want = flat(fm(x0)), flat(fm(x0, zeros)), flat(tm(x0))
        for name, a, b, c in zip(out_names(mod), none, given, want):
            assert a.shape == c.shape == (*lead, 7) and torch.equal(a, b), name
            close(a, c, torch.float64, f"{name} (grad={grad})")
    res = []
    for m in (tm, fm):
        x = x0.clone().requires_grad_()
        out = flat(m(x))
        sum((o * (k + 1)).square().sum() for k, o in enumerate(out)).backward()
        res.append([x.grad] + [p.grad for p in m.parameters()])
    for name, a, b in zip(["dx"] + [n for n, _ in fm.named_parameters()], res[1], res[0]):
        close(a, b, torch.float64, name)


@pytest.mark.parametrize("mod", CELLS)
def test_cell_retain_graph_twice_doubles_the_grads(mod):
    """A second backward through a retained graph of cell steps adds the same
    gradients again (the saved step is read, never consumed)."""
    tm, fm = cell_pair(mod, 3, 4)
    x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    hx = None
    for t in range(3):
        hx = fm(x[t], hx)
    loss = sum(o.square().sum() for o in flat(hx))
    loss.backward(retain_graph=True)
    first = [x.grad.clone()] + [p.grad.clone() for p in fm.parameters()]
    loss.backward()
    for a, b in zip(first, [x.grad] + [p.grad for p in fm.parameters()]):
        assert torch.equal(2 * a, b)


def inference_pair(mod, *args):
    """(torch's module, the twin) built under torch.inference_mode, float64,
    with the same weights: every parameter an inference tensor."""
    tm0, _ = cell_pair(mod, *args)
    with torch.inference_mode():
        tm, fm = TWINS[mod][0](*args).double(), TWINS[mod][1](*args).double()
        tm.load_state_dict(tm0.state_dict())
        fm.load_state_dict(tm0.state_dict())
    assert all(p.is_inference() for p in fm.parameters())
    return tm, fm


@pytest.mark.parametrize("mod", CELLS)
def test_cell_with_inference_tensor_parameters(mod):
    """A cell built under torch.inference_mode (its parameters are inference
    tensors, with no version counter) computes as torch's: under
    inference_mode, no_grad and autograd, with torch's gradients (and its
    error where autograd would have to save an inference tensor), and an
    in-place update of a weight is seen by the next call (nothing stale is
    cached)."""
    tm, fm = inference_pair(mod, 5, 7)
    g = torch.Generator().manual_seed(9)
    x = torch.randn(3, 5, generator=g, dtype=torch.float64)
    hx = cell_hx(mod, [torch.randn(3, 7, generator=g, dtype=torch.float64)
                       for _ in range(n_cell_states(mod))])
    for step in range(3):
        for ctx in (torch.inference_mode, torch.no_grad, torch.enable_grad):
            with ctx():
                for _ in range(2):
                    for name, a, b in zip(out_names(mod), flat(fm(x, hx)), flat(tm(x, hx))):
                        close(a, b, torch.float64, f"{name} ({ctx.__name__}, step {step})")
        with torch.inference_mode():
            for m in (tm, fm):
                m.weight_hh.mul_(0.5)
    grads = []
    for m in (tm, fm):
        sum(o.sum() for o in flat(m(x, hx))).backward()
        grads.append([p.grad for p in m.parameters()])
    assert [g is None for g in grads[1]] == [g is None for g in grads[0]]
    for a, b in zip(*grads):
        if a is not None:
            close(b, a, torch.float64, "grad")
    xg = x.clone().requires_grad_()
    with pytest.raises(RuntimeError) as want:
        tm(xg, hx)
    with pytest.raises(RuntimeError) as got:
        fm(xg, hx)
    assert str(got.value) == str(want.value)


LAYERS = ("LSTM", "GRU")


def layer_hx(mod, states):
    return tuple(states) if mod == "LSTM" else states[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("ac_dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("mod", CELLS + LAYERS)
def test_under_cpu_autocast(mod, ac_dtype, dtype):
    """Under torch.autocast("cpu") torch computes float32 products in
    autocast's dtype: the twin gives torch's results and gradients (or its
    error: torch's LSTM has no float16 oneDNN primitive here), also with its
    packed weights cached (a cell's streaming step armed); float64, which
    autocast leaves alone, is computed as without autocast."""
    cell = mod in CELLS
    kw = {} if cell else {"num_layers": 2}
    tm, fm = cell_pair(mod, 6, 8, dtype=dtype, **kw)
    g = torch.Generator().manual_seed(8)
    lead = (3,) if cell else (5, 3)
    x0 = torch.randn(*lead, 6, generator=g, dtype=dtype)
    states = [torch.randn(*((3,) if cell else (2, 3)), 8, generator=g, dtype=dtype)
              for _ in range(2 if mod in ("LSTM", "LSTMCell") else 1)]
    hx = cell_hx(mod, states) if cell else layer_hx(mod, states)
    with torch.no_grad():
        fm(x0, hx)  # packs and caches the weights
    assert fm._fl_cache is not None
    res = []
    for m in (tm, fm):
        x = x0.clone().requires_grad_()
        try:
            with torch.autocast("cpu", dtype=ac_dtype):
                out = flat(m(x, hx))
                with torch.no_grad():
                    out += flat(m(x0, hx))
        except RuntimeError as e:
            res.append(e)
            continue
        sum((o.float() * (k + 1)).sum() for k, o in enumerate(out[:len(out) // 2])).backward()
        res.append(out + [x.grad] + [p.grad for p in m.parameters()])
    if isinstance(res[0], Exception):
        assert isinstance(res[1], RuntimeError) and str(res[1]) == str(res[0])
        return
    for j, (a, b) in enumerate(zip(res[1], res[0])):
        assert a.dtype == b.dtype and (not cell or a.dtype == dtype), j  # cells: dtype's
        if dtype == torch.float32:
            assert torch.equal(a, b), f"tensor {j}"
        else:
            close(a, b, dtype, f"tensor {j}")
    if dtype == torch.float32:  # the autocast result is not the float32 one
        with torch.no_grad():
            assert not torch.equal(flat(fm(x0, hx))[0], res[1][0])


def test_layer_with_zoneout_under_autocast_stays_on_the_kernels():
    """torch's op has no zoneout: under autocast such a layer computes in
    float32 on the kernels, never torch's op without the zoneout."""
    fm = flt.LSTM(6, 8, zoneout=0.3).eval()
    x = torch.randn(5, 3, 6)
    with torch.no_grad():
        want = fm(x)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = fm(x)[0]
    assert torch.equal(got, want)


@pytest.mark.parametrize("mod", LAYERS)
def test_layer_with_inference_tensor_parameters(mod):
    """A layer built under torch.inference_mode computes as torch's under
    inference_mode, no_grad and autograd (torch's error where autograd would
    have to save an inference tensor), and sees in-place weight updates."""
    tm, fm = inference_pair(mod, 5, 7)
    g = torch.Generator().manual_seed(9)
    x = torch.randn(4, 3, 5, generator=g, dtype=torch.float64)
    for step in range(3):
        for ctx in (torch.inference_mode, torch.no_grad, torch.enable_grad):
            with ctx():
                for _ in range(2):
                    try:
                        want = flat(tm(x))
                    except RuntimeError as e:  # torch's layer saves them for backward
                        with pytest.raises(RuntimeError) as got:
                            fm(x)
                        assert str(got.value) == str(e)
                        continue
                    for name, a, b in zip(out_names(mod), flat(fm(x)), want):
                        close(a, b, torch.float64, f"{name} ({ctx.__name__}, step {step})")
        with torch.inference_mode():
            for m in (tm, fm):
                m.weight_hh_l0.mul_(0.5)
    xg = x.clone().requires_grad_()
    with pytest.raises(RuntimeError) as want:
        tm(xg)
    with pytest.raises(RuntimeError) as got:
        fm(xg)
    assert str(got.value) == str(want.value)
