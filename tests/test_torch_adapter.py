"""fastlstm.torch: the drop-in torch.nn.LSTM and its custom ops.

Oracles: torch.nn.LSTM itself (same state_dict, outputs and every .grad),
torch.autograd.gradcheck in float64, the float64 NumPy reference for
peepholes (torch has none), and torch.library.opcheck for the op
registrations (schema, fake kernel, autograd).
"""
import copy
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
flt = pytest.importorskip("fastlstm.torch")

from _tolerance import assert_rel_close  # noqa: E402
from _torch_pair import lstm_pair as pair  # noqa: E402

from fastlstm import reference as ref  # noqa: E402
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence  # noqa: E402

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}  # relative to max|torch|, as the oracle tests


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def assert_close(got, want, dtype, name):
    assert_rel_close(got, want, TOL[dtype], name)


def run_and_grad(m, x, hx=None):
    """Outputs and the gradients of a fixed random loss w.r.t. x, hx and params."""
    x = x.detach().clone().requires_grad_()
    hx = None if hx is None else tuple(t.detach().clone().requires_grad_() for t in hx)
    m.zero_grad()
    y, (hn, cn) = m(x, hx)
    g = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in (y, hn, cn))
    loss.backward()
    out = {"y": y, "h_n": hn, "c_n": cn, "dx": x.grad}
    if hx is not None:
        out.update({"dh0": hx[0].grad, "dc0": hx[1].grad})
    out.update({"grad " + k: p.grad for k, p in m.named_parameters()})
    return out


CONFIGS = {
    "plain": dict(input_size=5, hidden_size=7),
    "stacked_bidir": dict(input_size=6, hidden_size=8, num_layers=2, bidirectional=True),
    "proj_batch_first": dict(input_size=4, hidden_size=9, proj_size=3, batch_first=True),
    "no_bias_2layer": dict(input_size=3, hidden_size=5, num_layers=2, bias=False),
    "wide": dict(input_size=33, hidden_size=40, num_layers=2, bidirectional=True, proj_size=17),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cfg", list(CONFIGS))
@pytest.mark.parametrize("with_hx", [False, True])
def test_parity_with_torch(dtype, cfg, with_hx):
    kw = CONFIGS[cfg]
    tm, fm = pair(dtype, **kw)
    T, B = 6, 3
    D, L = 2 if kw.get("bidirectional") else 1, kw.get("num_layers", 1)
    g = torch.Generator().manual_seed(2)
    shape = (B, T, kw["input_size"]) if kw.get("batch_first") else (T, B, kw["input_size"])
    x = torch.randn(shape, generator=g, dtype=dtype)
    hx = None
    if with_hx:
        hx = (torch.randn(D * L, B, kw.get("proj_size") or kw["hidden_size"], generator=g,
                          dtype=dtype),
              torch.randn(D * L, B, kw["hidden_size"], generator=g, dtype=dtype))
    want, got = run_and_grad(tm, x, hx), run_and_grad(fm, x, hx)
    assert set(got) == set(want)
    for k in want:
        assert_close(got[k], want[k], dtype, k)


def test_packed_sequence_in_and_out():
    tm, fm = pair(torch.float64, input_size=4, hidden_size=6, num_layers=2, bidirectional=True)
    g = torch.Generator().manual_seed(3)
    seqs = [torch.randn(n, 4, generator=g, dtype=torch.float64) for n in (3, 7, 1, 5)]
    hx = (torch.randn(4, 4, 6, generator=g, dtype=torch.float64),  # the caller's batch order
          torch.randn(4, 4, 6, generator=g, dtype=torch.float64))
    results = []
    for m in (tm, fm):
        xs = [s.clone().requires_grad_() for s in seqs]
        packed = pack_sequence(xs, enforce_sorted=False)
        out, (hn, cn) = m(packed, hx)
        assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
        y, lens = pad_packed_sequence(out)
        (y.square().sum() + hn.sum() + 2 * cn.sum()).backward()
        results.append((out, y, lens, hn, cn, [s.grad for s in xs],
                        [p.grad for p in m.parameters()]))
    (to, ty, tl, thn, tcn, tdx, tgw), (fo, fy, fl_, fhn, fcn, fdx, fgw) = results
    assert torch.equal(to.batch_sizes, fo.batch_sizes)
    assert torch.equal(to.sorted_indices, fo.sorted_indices)
    assert torch.equal(to.unsorted_indices, fo.unsorted_indices)
    assert torch.equal(tl, fl_)
    for name, a, b in [("data", fo.data, to.data), ("y", fy, ty), ("h_n", fhn, thn),
                       ("c_n", fcn, tcn)] + [(f"dx{i}", a, b) for i, (a, b) in
                                             enumerate(zip(fdx, tdx))] + \
            [(f"dw{i}", a, b) for i, (a, b) in enumerate(zip(fgw, tgw))]:
        assert_close(a, b, torch.float64, name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_eager_path_equals_the_ops(dtype):
    """Eager autograd packs once for forward and backward; the op pair (what
    torch.compile runs) packs in each. Both give the same bits."""
    _, fm = pair(dtype, input_size=5, hidden_size=6, bidirectional=True, proj_size=3)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(4, 3, 5, generator=g, dtype=dtype)
    h0 = torch.randn(2, 3, 3, generator=g, dtype=dtype)
    c0 = torch.randn(2, 3, 6, generator=g, dtype=dtype)
    lengths = torch.tensor([4, 1, 3])
    dy = torch.randn(4, 3, 6, generator=g, dtype=dtype)
    w = fm._layer_weights(0)
    results = []
    for eager in (True, False):
        xs = x.clone().requires_grad_()
        ws = [t.detach().clone().requires_grad_() for t in w]
        if eager:
            y, hn, cn = flt._EagerLayer.apply(xs, lengths, ("lstm", 6, 3, True, True, False),
                                              h0, c0, *ws)
        else:
            y, hn, cn, _ = torch.ops.fastlstm.lstm_layer(xs, ws, h0, c0, lengths, 6, 3, True,
                                                         True, False, True)
        ((y * dy).sum() + hn.sum() + cn.sum()).backward(retain_graph=True)
        first = [xs.grad.clone()] + [t.grad.clone() for t in ws]
        ((y * dy).sum() + hn.sum() + cn.sum()).backward()  # retain_graph: twice is allowed
        assert all(torch.equal(2 * a, b) for a, b in zip(first, [xs.grad] + [t.grad for t in ws]))
        results.append([y, hn, cn] + first)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_unbatched_input():
    tm, fm = pair(torch.float64, input_size=3, hidden_size=4, num_layers=2)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    hx = (torch.randn(2, 4, generator=g, dtype=torch.float64),
          torch.randn(2, 4, generator=g, dtype=torch.float64))
    want, got = run_and_grad(tm, x, hx), run_and_grad(fm, x, hx)
    for k in want:
        assert_close(got[k], want[k], torch.float64, k)
    assert got["h_n"].shape == (2, 4)


def test_mirrors_torch_lstm_and_state_dicts_interchange():
    tm, fm = pair(torch.float32, input_size=3, hidden_size=4, num_layers=2, proj_size=2,
                  bidirectional=True)
    assert list(fm.state_dict()) == list(tm.state_dict())
    assert fm._flat_weights_names == tm._flat_weights_names
    assert fm._all_weights == tm._all_weights
    assert [[tuple(w.shape) for w in ws] for ws in fm.all_weights] == \
        [[tuple(w.shape) for w in ws] for ws in tm.all_weights]
    for a in ("mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first",
              "dropout", "bidirectional", "proj_size"):
        assert getattr(fm, a) == getattr(tm, a), a
    assert repr(fm).replace("fastlstm.torch.", "") == repr(tm)
    # the same seed gives torch's initial weights
    torch.manual_seed(3)
    t3 = torch.nn.LSTM(3, 4, num_layers=2, proj_size=2, bidirectional=True)
    torch.manual_seed(3)
    f3 = flt.LSTM(3, 4, num_layers=2, proj_size=2, bidirectional=True)
    for k, v in t3.state_dict().items():
        assert torch.equal(f3.state_dict()[k], v), k
    tm2 = torch.nn.LSTM(3, 4, num_layers=2, proj_size=2, bidirectional=True)
    tm2.load_state_dict(fm.state_dict())  # strict, both ways
    fm.flatten_parameters()
    fm2 = fm.double()
    assert fm2 is fm and all(p.dtype == torch.float64 for p in fm.parameters())
    y, _ = fm(torch.randn(4, 2, 3, dtype=torch.float64))
    assert y.dtype == torch.float64 and y.shape == (4, 2, 4)


def test_peephole_matches_the_reference():
    H, I, T, B = 5, 4, 6, 3
    torch.manual_seed(7)
    fm = flt.LSTM(I, H, num_layers=2, bidirectional=True, peephole=True).double()
    assert "weight_ph_l1_reverse" in fm.state_dict()
    assert fm.weight_ph_l0.shape == (3, H) and fm.weight_ph_l0.abs().max() <= 1 / np.sqrt(H)
    assert "peephole=True" in repr(fm)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    y, (hn, cn) = fm(x)
    dy = torch.randn(T, B, 2 * H, dtype=torch.float64)
    (y * dy).sum().backward()
    params = {k: v.detach().numpy() for k, v in fm.state_dict().items()}
    yr, hnr, cnr, cache = ref.lstm_forward(x.detach().numpy(), params, num_layers=2,
                                           hidden_size=H, bidirectional=True, peephole=True)
    dxr, _, _, gr = ref.lstm_backward(cache, dy.numpy())
    np.testing.assert_allclose(y.detach().numpy(), yr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(hn.detach().numpy(), hnr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), dxr, rtol=0, atol=1e-12)
    for k, p in fm.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), gr[k], rtol=0, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("variant", ["plain", "bidir_proj", "peephole_lengths"])
def test_gradcheck_float64(variant):
    H, I, T, B = 3, 2, 4, 2
    bidir, P, peep = variant == "bidir_proj", (2 if variant == "bidir_proj" else 0), \
        variant == "peephole_lengths"
    D, Ho = 2 if bidir else 1, P or H
    g = torch.Generator().manual_seed(8)

    def r(*shape):
        return torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)

    ws = []
    for _ in range(D):
        ws += [r(4 * H, I), r(4 * H, Ho), r(4 * H), r(4 * H)] + ([r(P, H)] if P else []) + \
            ([r(3, H)] if peep else [])
    lengths = torch.tensor([4, 2]) if peep else None

    def f(x, h0, c0, *w):
        return torch.ops.fastlstm.lstm_layer(x, list(w), h0, c0, lengths, H, P, bidir, True,
                                             peep, True)[:3]

    assert torch.autograd.gradcheck(f, (r(T, B, I), r(D, B, Ho), r(D, B, H), *ws))


def test_opcheck():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(3, 2, 4, generator=g, requires_grad=True)
    ws = [torch.randn(s, generator=g, requires_grad=True) for s in [(20, 4), (20, 5), (20,), (20,)]]
    h0 = torch.zeros(1, 2, 5)
    args = (x, ws, h0, h0.clone(), torch.tensor([3, 1]), 5, 0, False, True, False, True)
    torch.library.opcheck(torch.ops.fastlstm.lstm_layer.default, args)


def test_torch_compile_has_no_graph_break():
    tm, fm = pair(torch.float32, input_size=4, hidden_size=6, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3, 4)
    explain = torch._dynamo.explain(fm)(x)
    assert explain.graph_break_count == 0, explain.break_reasons
    torch._dynamo.reset()
    compiled = torch.compile(fm, fullgraph=True)  # inductor, as a user would call it
    xc = x.clone().requires_grad_()
    y, (hn, cn) = compiled(xc)
    (y.sum() + hn.sum()).backward()
    want = run_and_grad(tm, x)
    xe = x.clone().requires_grad_()
    ye, (hne, _) = fm(xe)
    fm.zero_grad()
    (ye.sum() + hne.sum()).backward()
    assert torch.equal(y, ye) and torch.equal(hn, hne)
    assert_close(y, want["y"], torch.float32, "compiled y vs torch.nn.LSTM")
    assert torch.equal(xc.grad, xe.grad)


def test_torch_compile_dynamic_shapes():
    _, fm = pair(torch.float32, input_size=3, hidden_size=5, proj_size=2)
    compiled = torch.compile(fm, fullgraph=True, dynamic=True, backend="aot_eager")
    for T, B in ((4, 2), (7, 3)):
        x = torch.randn(T, B, 3)
        xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
        yc, _ = compiled(xc)
        ye, _ = fm(xe)
        yc.square().sum().backward()
        ye.square().sum().backward()
        assert torch.equal(yc, ye) and torch.equal(xc.grad, xe.grad)


def test_torch_export_sees_the_op():
    _, fm = pair(torch.float32, input_size=4, hidden_size=6)
    fm.eval()
    ep = torch.export.export(fm, (torch.randn(5, 3, 4),))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert "fastlstm.lstm_layer.default" in targets, targets


def test_training_loop_matches_torch():
    """A sequence tagger written for torch.nn.LSTM: its loss curve is the same with
    the class swapped."""
    def tagger(lstm_cls):
        torch.manual_seed(11)
        emb = torch.nn.Embedding(30, 8)
        lstm = lstm_cls(8, 16, num_layers=2, bidirectional=True, batch_first=True)
        head = torch.nn.Linear(32, 5)
        return torch.nn.ModuleList([emb, lstm, head])

    def train(model):
        gen = torch.Generator().manual_seed(12)
        opt = torch.optim.Adam(model.parameters(), lr=3e-2)
        losses = []
        for _ in range(40):
            tokens = torch.randint(0, 30, (6, 10), generator=gen)
            tags = tokens % 5
            emb, lstm, head = model
            out, _ = lstm(emb(tokens))
            loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, 5), tags.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return np.array(losses)

    want, got = train(tagger(torch.nn.LSTM)), train(tagger(flt.LSTM))
    assert want[-1] < 0.5 * want[0]  # it learns
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_inference_sees_in_place_weight_updates():
    tm, fm = pair(torch.float32, input_size=3, hidden_size=4)
    fm.eval()
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        y0, _ = fm(x)
        assert torch.equal(fm(x)[0], y0)  # the cached packed weights
        fm.weight_hh_l0.mul_(0.5)         # an in-place op: seen
        tm.weight_hh_l0.mul_(0.5)
        y1, _ = fm(x)
        assert not torch.equal(y1, y0)
        assert_close(y1, tm(x)[0], torch.float32, "after mul_")
        fm.load_state_dict({k: v * 2 for k, v in fm.state_dict().items()})
        tm.load_state_dict(fm.state_dict())
        assert_close(fm(x)[0], tm(x)[0], torch.float32, "after load_state_dict")
        fm.weight_ih_l0.data.zero_()      # through .data: needs params_changed()
        tm.weight_ih_l0.data.zero_()
        fm.params_changed()
        assert_close(fm(x)[0], tm(x)[0], torch.float32, "after .data + params_changed")


def test_copy_and_pickle_drop_the_packed_weights():
    _, fm = pair(torch.float32, input_size=3, hidden_size=4)
    fm.eval()
    x = torch.randn(2, 1, 3)
    with torch.no_grad():
        y = fm(x)[0]
        for clone in (copy.deepcopy(fm), pickle.loads(pickle.dumps(fm))):
            assert clone._fl_cache is None
            assert torch.equal(clone(x)[0], y)


@pytest.mark.parametrize("bad, match", [
    (lambda m: m(torch.randn(3, 2, 5)), r"input.size\(-1\) must be equal to input_size"),
    (lambda m: m(torch.randn(3, 4)[None, None]), "Expected input to be 2D or 3D, got 4D"),
    (lambda m: m(torch.randn(3, 2, 4), (torch.zeros(1, 2, 6), torch.zeros(1, 2, 6))),
     r"Expected hidden\[0\] size"),
    (lambda m: m(torch.randn(3, 2, 4), (torch.zeros(1, 2, 5), torch.zeros(1, 3, 6))),
     r"Expected hidden\[1\] size"),
    (lambda m: m(torch.randn(3, 2, 4), (torch.zeros(2, 5), torch.zeros(2, 6))),
     "hx and cx should also be 3-D"),
    (lambda m: m(torch.randn(3, 4), (torch.zeros(1, 1, 5), torch.zeros(1, 1, 6))),
     "hx and cx should also be 2-D"),
    (lambda m: m(torch.randn(0, 2, 4)), "sequence length to be larger than 0"),
    (lambda m: m(torch.randn(3, 2, 4, dtype=torch.float64)),
     r"Convert input: input.to\(torch.float32\), or convert model"),
])
def test_bad_input_raises_as_torch(bad, match):
    """The same exception type and message as torch.nn.LSTM; shape errors are
    also ValueErrors (fastlstm.ShapeError), as the NumPy API promises."""
    tm, fm = pair(torch.float32, input_size=4, hidden_size=6, proj_size=5)
    with pytest.raises(Exception, match=match) as want:
        bad(tm)
    with pytest.raises(want.type, match=match) as got:
        bad(fm)
    assert isinstance(got.value, ValueError)


def test_bad_hx_types():
    _, fm = pair(torch.float32, input_size=4, hidden_size=6, proj_size=5)
    with pytest.raises(TypeError, match="hx"):
        fm(torch.randn(3, 2, 4), torch.zeros(1, 2, 5))
    with pytest.raises(RuntimeError, match=r"hx\[0\]: expected torch.float32") as e:
        fm(torch.randn(3, 2, 4), (torch.zeros(1, 2, 5, dtype=torch.float64),
                                  torch.zeros(1, 2, 6)))
    assert isinstance(e.value, TypeError)


def test_op_validates_its_arguments():
    x = torch.randn(3, 2, 4)
    h = torch.zeros(1, 2, 5)
    ws = [torch.randn(20, 4), torch.randn(20, 5)]
    with pytest.raises(ValueError, match="weights: expected 4"):
        torch.ops.fastlstm.lstm_layer(x, ws, h, h, None, 5, 0, False, True, False, False)
    with pytest.raises(ValueError, match="weight_hh_l0"):
        torch.ops.fastlstm.lstm_layer(x, [ws[0], torch.randn(20, 4)], h, h, None, 5, 0, False,
                                      False, False, False)
    with pytest.raises(ValueError, match="lengths"):
        torch.ops.fastlstm.lstm_layer(x, ws, h, h, torch.tensor([4, 1]), 5, 0, False, False,
                                      False, False)
    y = x.clone().requires_grad_()
    out = torch.ops.fastlstm.lstm_layer(y, ws, h, h, None, 5, 0, False, False, False, False)
    with pytest.raises(RuntimeError, match="training=True"):
        out[0].sum().backward()


def test_other_dtypes_defer_to_torch():
    torch.manual_seed(0)
    fm = flt.LSTM(3, 4).to(torch.bfloat16)
    tm = torch.nn.LSTM(3, 4).to(torch.bfloat16)
    tm.load_state_dict(fm.state_dict())
    x = torch.randn(2, 1, 3, dtype=torch.bfloat16)
    assert torch.equal(fm(x)[0], tm(x)[0])
    pm = flt.LSTM(3, 4, peephole=True).to(torch.bfloat16)
    with pytest.raises(TypeError, match="peepholes need"):
        pm(x)


def test_import_fastlstm_does_not_import_torch():
    code = "import sys, fastlstm; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bfloat16_weights_for_inference():
    """weights_dtype="bfloat16": eager inference rounds W_ih and W_hh to
    bfloat16 (oracle: torch.nn.LSTM on weights torch rounded itself); autograd
    calls keep float32 weights (torch's gradients); float64 is refused."""
    kw = dict(input_size=6, hidden_size=8, num_layers=2, bidirectional=True)
    tm, fm32 = pair(torch.float32, **kw)
    fm = flt.LSTM(**kw, weights_dtype="bfloat16")
    fm.load_state_dict(tm.state_dict())
    assert "weights_dtype='bfloat16'" in repr(fm)
    rounded = torch.nn.LSTM(**kw)
    rounded.load_state_dict({k: v.to(torch.bfloat16).float() if k.startswith(("weight_ih",
                                                                            "weight_hh")) else v
                             for k, v in tm.state_dict().items()})
    x = torch.randn(7, 3, 6, generator=torch.Generator().manual_seed(5))
    fm.eval()
    with torch.no_grad():
        y, (h, c) = fm(x)
        for name, a, b in zip(("y", "h_n", "c_n"), (y, h, c), flat_out(rounded(x))):
            assert_close(a, b, torch.float32, name)
        assert not torch.equal(y, fm32.eval()(x)[0])  # the rounding is really there
    fm.train()
    want, got = run_and_grad(tm, x), run_and_grad(fm, x)
    for k in want:
        assert_close(got[k], want[k], torch.float32, k)
    fm.double().eval()
    with pytest.raises(TypeError, match="bfloat16"), torch.no_grad():
        fm(x.double())
    with pytest.raises(ValueError, match="weights_dtype"):
        flt.LSTM(3, 4, weights_dtype="float16")


def flat_out(out):
    y, (h, c) = out
    return y, h, c


def test_quantize_dynamic_leaves_the_layer_float():
    """torch.ao.quantization.quantize_dynamic maps nn.LSTM by type; it leaves
    fastlstm.torch.LSTM (not a subclass) as it is, as the README says."""
    quant = pytest.importorskip("torch.ao.quantization")
    _, fm = pair(torch.float32, input_size=3, hidden_size=4)
    model = torch.nn.Sequential(fm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        q = quant.quantize_dynamic(model, {torch.nn.LSTM, torch.nn.Linear}, dtype=torch.qint8)
    assert type(q[0]) is flt.LSTM and q[0].weight_ih_l0.dtype == torch.float32
