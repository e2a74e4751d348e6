"""The layers' packed-weight cache sees every change of the parameters.

A layer packs its weights once and repacks only when they change: parameters
are `Parameter` arrays whose in-place changes through NumPy bump a version
shared with the layer (`layer.params_version`); `layer.params_changed()` covers
writes that bypass NumPy. Each edit route is checked the only way that matters
to a user: after the edit the layer's outputs (and, in train mode, its backward)
are bitwise those of a fresh layer loaded with the edited state_dict.

Also: copies are plain and detached, reading does not repack, the kernel path
follows FASTLSTM_ISA between calls, and a training Context differentiates the
weights of its own forward even if they are edited before backward.
"""
import copy

import numpy as np
import pytest

fastlstm = pytest.importorskip("fastlstm")
from fastlstm import reference as ref  # noqa: E402
from fastlstm import functional as F  # noqa: E402

I, H, P, L, T, B = 3, 5, 3, 2, 4, 3


def make(kind, dtype=None, seed=0):
    if kind == "LSTM":
        return fastlstm.LSTM(I, H, num_layers=L, bidirectional=True, proj_size=P,
                             peephole=True, dtype=dtype or np.float32, seed=seed)
    return fastlstm.LSTMCell(I, H, peephole=True, dtype=dtype or np.float64, seed=seed)


def inputs(layer):
    rng = np.random.default_rng(11)
    dt = layer.dtype
    r = lambda *s: rng.standard_normal(s).astype(dt)  # noqa: E731
    if isinstance(layer, fastlstm.LSTM):
        return dict(x=r(T, B, I), hx=(r(2 * L, B, P), r(2 * L, B, H)), dy=r(T, B, 2 * P),
                    dh=r(2 * L, B, P), dc=r(2 * L, B, H))
    return dict(x=r(B, I), hx=(r(B, H), r(B, H)), dy=None, dh=r(B, H), dc=r(B, H))


def run(layer):
    """Forward (and backward in train mode) on fixed inputs: every result, copied."""
    a = inputs(layer)
    layer.zero_grad()
    if isinstance(layer, fastlstm.LSTM):
        y, (h, c) = layer(a["x"], a["hx"])
        out = {"y": y, "h": h, "c": c}
        if layer.training:
            dx, (dh0, dc0) = layer.backward(a["dy"], a["dh"], a["dc"])
            out.update(dx=dx, dh0=dh0, dc0=dc0)
    else:
        h, c = layer(a["x"], a["hx"])
        out = {"h": h, "c": c}
        if layer.training:
            dx, (dh0, dc0) = layer.backward(a["dh"], a["dc"])
            out.update(dx=dx, dh0=dh0, dc0=dc0)
    if layer.training:
        out.update({"grad " + k: v for k, v in layer.grads.items()})
    return {k: np.array(v) for k, v in out.items()}


def fresh_like(layer):
    """A new layer (other seed) loaded with `layer`'s current weights, same mode."""
    f = make("LSTM" if isinstance(layer, fastlstm.LSTM) else "LSTMCell", layer.dtype, seed=99)
    f.load_state_dict(layer.state_dict())
    return f.train(layer.training)


def assert_same(got, want, what):
    assert got.keys() == want.keys()
    for k in want:
        same = bool(np.array_equal(got[k], want[k]))
        assert same, (
            f"{what}: {k} differs from a fresh layer with the edited weights (max|diff| "
            f"{np.max(np.abs(got[k].astype(np.float64) - want[k])):.3e}): the layer used "
            f"stale packed weights")


def assert_differs(a, b, what):
    changed = any(not np.array_equal(a[k], b[k]) for k in a)
    assert changed, f"{what}: the edit changed nothing"


# ----------------------------------------------------------------------------
# every edit route, LSTM and LSTMCell, train and eval
# ----------------------------------------------------------------------------

def _w(layer):
    """(name, parameter) of the 2-D weight the routes edit: weight_hh of layer 0."""
    name = "weight_hh_l0" if isinstance(layer, fastlstm.LSTM) else "weight_hh"
    return name, getattr(layer, name)


def _bias(layer):
    name = "bias_ih_l0" if isinstance(layer, fastlstm.LSTM) else "bias_ih"
    return name, getattr(layer, name)


def _new_values(p, seed=5):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, p.shape).astype(p.dtype)


def route_setitem(layer):
    _, p = _w(layer)
    p[...] = _new_values(p)


def route_slice_iadd(layer):
    _, p = _w(layer)
    p[:2] += 1


def route_imul(layer):
    _, p = _w(layer)
    p *= 2


def route_ufunc_out(layer):
    _, p = _w(layer)
    np.add(p, 1, out=p)


def route_copyto(layer):
    _, p = _w(layer)
    np.copyto(p, _new_values(p))


def route_put(layer):
    _, p = _w(layer)
    np.put(p, [0, 4, 7], [0.3, -0.2, 0.9])


def route_fill(layer):
    _, p = _bias(layer)
    p.fill(0.25)


def route_transpose_setitem(layer):
    _, p = _w(layer)
    p.T[...] = _new_values(p).T


def route_reshape_setitem(layer):
    _, p = _w(layer)
    p.reshape(-1)[0] = 3.0


def route_ufunc_at(layer):
    _, p = _w(layer)
    np.add.at(p, (np.array([0, 1, 1]), np.array([0, 2, 2])), 0.5)


def route_attribute(layer):
    name, p = _w(layer)
    setattr(layer, name, _new_values(p))


def route_load_state_dict(layer):
    sd = layer.state_dict()
    name, p = _bias(layer)
    sd[name] = _new_values(p, 7)
    w, _ = _w(layer)
    sd[w] = sd[w] * 1.5
    layer.load_state_dict(sd)


ROUTES = {k[len("route_"):]: v for k, v in globals().items() if k.startswith("route_")}


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("kind", ["LSTM", "LSTMCell"])
@pytest.mark.parametrize("route", list(ROUTES))
def test_edit_is_seen(route, kind, mode):
    layer = make(kind).train(mode == "train")
    before = run(layer)                       # packs and caches the weights
    assert layer._packed is not None
    v = layer.params_version
    ROUTES[route](layer)
    assert layer.params_version != v, f"{route}: params_version not bumped"
    after = run(layer)
    assert_differs(before, after, route)
    assert_same(after, run(fresh_like(layer)), f"{kind} {mode} after {route}")
    assert_same(run(layer), after, f"{kind} {mode}, second call after {route}")


def test_edit_between_eval_and_train_calls_reaches_backward():
    """The cache of an eval call (inference-only packing) must not serve the train call
    after an edit, and the train call's backward must use the edited weights."""
    layer = make("LSTM").eval()
    run(layer)
    _w(layer)[1][1:3] -= 0.25
    layer.train()
    assert_same(run(layer), run(fresh_like(layer)), "eval call, edit, train call")
    layer.eval()
    _bias(layer)[1][0] = 2.0
    assert_same(run(layer), run(fresh_like(layer)), "train call, edit, eval call")


# Further in-place routes through NumPy's own API (the Parameter docstring: "item
# assignment, in-place operators and ufuncs with out=, np.copyto/np.put/... and the
# mutating methods, on the array or on any view taken from it by indexing, .T, reshape
# and so on").
def more_copyto_keywords(layer):
    _, p = _w(layer)
    np.copyto(dst=p, src=_new_values(p))


def more_flat_setitem(layer):
    _, p = _w(layer)
    p.flat[0:4] = [0.1, 0.2, 0.3, 0.4]


def more_np_reshape_view(layer):
    _, p = _w(layer)
    np.reshape(p, -1)[0] = 3.0


def more_np_ravel_view(layer):
    _, p = _w(layer)
    np.ravel(p)[:] = _new_values(p).ravel()


def more_np_split_gate_view(layer):          # the forget-gate bias idiom
    _, b = _bias(layer)
    np.split(b, 4)[1][...] = 1.0


def more_dot_positional_out(layer):
    _, p = _w(layer)
    np.dot(_new_values(p), np.eye(p.shape[1], dtype=p.dtype), p)


MORE_ROUTES = {k[len("more_"):]: v for k, v in globals().items() if k.startswith("more_")}


@pytest.mark.parametrize("route", list(MORE_ROUTES))
def test_more_numpy_routes_are_seen(route):
    layer = make("LSTM").eval()
    before = run(layer)
    MORE_ROUTES[route](layer)
    after = run(layer)
    want = run(fresh_like(layer))
    assert_differs(before, want, route)
    assert_same(after, want, f"LSTM eval after {route}")


# ----------------------------------------------------------------------------
# writes that bypass NumPy: params_changed()
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("kind", ["LSTM", "LSTMCell"])
def test_write_through_asarray_is_seen_after_params_changed(kind, mode):
    layer = make(kind).train(mode == "train")
    before = run(layer)
    _, p = _w(layer)
    raw = np.asarray(p)
    assert type(raw) is np.ndarray and np.shares_memory(raw, p)
    raw[0, :] += 1.0
    memoryview(np.asarray(_bias(layer)[1]))[0] = 2.0     # another bypass
    v = layer.params_version
    layer.params_changed()
    assert layer.params_version != v
    after = run(layer)
    assert_differs(before, after, "asarray write")
    assert_same(after, run(fresh_like(layer)), f"{kind} {mode} after params_changed()")


# ----------------------------------------------------------------------------
# copies are plain arrays, detached from the layer
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["LSTM", "LSTMCell"])
def test_state_dict_values_and_copies_are_plain_and_detached(kind):
    layer = make(kind)
    run(layer)
    packed = layer._packed
    _, p = _w(layer)
    v = layer.params_version
    sd = layer.state_dict()
    for k, a in sd.items():
        assert type(a) is np.ndarray, f"state_dict()[{k!r}] is {type(a).__name__}"
        assert not np.shares_memory(a, getattr(layer, k))
        a[...] = 0
        a += 1
        np.add(a, 1, out=a)
    c = p.copy()
    assert type(c) is np.ndarray
    assert not np.shares_memory(c, p)
    c[...] = 0
    c *= 3
    np.copyto(c, 1.0)
    assert layer.params_version == v, "writing a copy bumped the layer's version"
    for what, r in {"p * 2": p * 2, "p + p": p + p, "np.sin(p)": np.sin(p),
                    "p.sum(axis=0)": p.sum(axis=0), "p @ p.T": p @ p.T,
                    "np.copy(p)": np.copy(p), "np.array(p)": np.array(p)}.items():
        assert type(r) is np.ndarray, f"{what} is {type(r).__name__}"
        r[...] = 0
    assert layer.params_version == v
    assert layer._packed is packed
    assert_same(run(layer), run(fresh_like(layer)), "after writing copies")


SEQUENCE_FUNCTIONS = {
    "concatenate": lambda ps: np.concatenate([q.ravel() for q in ps]),   # flatten all params
    "stack": lambda ps: np.stack([ps[0], ps[0]]),
}


@pytest.mark.parametrize("fn", list(SEQUENCE_FUNCTIONS))
def test_numpy_functions_on_lists_of_parameters(fn):
    """NumPy functions that take a sequence of arrays work on parameters as on plain
    arrays (and return plain arrays) - e.g. flattening every parameter for an optimizer."""
    layer = make("LSTM")
    run(layer)
    packed, v = layer._packed, layer.params_version
    plain = [np.array(q) for q in layer.parameters()]
    want = SEQUENCE_FUNCTIONS[fn](plain)
    try:
        got = SEQUENCE_FUNCTIONS[fn](layer.parameters())
    except RecursionError:
        pytest.fail(f"np.{fn} on a list of Parameters raised RecursionError "
                    f"(Parameter.__array_function__ re-dispatches on the list's items)")
    assert type(got) is np.ndarray and np.array_equal(got, want)
    got[...] = 0
    assert layer.params_version == v and layer._packed is packed


@pytest.mark.parametrize("how", ["copy.copy", "copy.deepcopy"])
def test_copy_module_copies_are_detached(how):
    """Parameter.copy() and pickling give plain arrays; so must copy.copy / deepcopy
    (ndarray's __copy__/__deepcopy__ bypass Parameter.__reduce__)."""
    layer = make("LSTM")
    _, p = _w(layer)
    c = copy.copy(p) if how == "copy.copy" else copy.deepcopy(p)
    assert not np.shares_memory(c, p)
    v = layer.params_version
    c[...] = 0
    assert layer.params_version == v, f"writing a {how} of a parameter bumped the layer"
    assert type(c) is np.ndarray, f"{how} of a parameter is a {type(c).__name__}"


def test_deepcopy_of_a_layer_is_independent():
    """copy.deepcopy(layer) (as for a torch module: a snapshot, a target network) gives
    a layer whose parameter edits are its own: seen by the copy, not by the original."""
    layer = make("LSTM")
    clone = copy.deepcopy(layer)
    v_orig, v_clone = layer.params_version, clone.params_version
    _w(clone)[1][...] += 0.5
    assert clone.params_version != v_clone, "the copy's version did not see its own edit"
    assert layer.params_version == v_orig, "editing the copy bumped the original's version"
    for lay in (layer, clone):
        assert_same(run(lay), run(fresh_like(lay)), "deepcopy")


# ----------------------------------------------------------------------------
# no repacking without edits
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("kind", ["LSTM", "LSTMCell"])
def test_no_repack_without_edits(kind, mode):
    layer = make(kind).train(mode == "train")
    first = run(layer)
    packed = layer._packed
    assert packed is not None
    v = layer.params_version
    # reads of every kind
    _ = [getattr(layer, k) for k in layer.state_dict()]
    layer.state_dict()
    layer.named_parameters()
    _, p = _w(layer)
    _ = (p * 2, p.copy(), np.sum(p), p.T, p[0], p.reshape(-1), np.asarray(p), repr(p))
    for _ in range(3):
        assert_same(run(layer), first, "repeated call")
        assert layer._packed is packed and layer._packed[1] is packed[1], "repacked"
    assert layer.params_version == v


# ----------------------------------------------------------------------------
# the kernel path follows FASTLSTM_ISA between calls
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("kind", ["LSTM", "LSTMCell"])
def test_switching_isa_between_calls(kind, mode, monkeypatch):
    isas = fastlstm.available_isas()
    layer = make(kind).train(mode == "train")
    for isa in isas + isas[::-1]:
        monkeypatch.setenv("FASTLSTM_ISA", isa)
        got = run(layer)
        assert layer._packed[1].isa == isa
        assert_same(got, run(fresh_like(layer)), f"{kind} {mode} on {isa}")


# ----------------------------------------------------------------------------
# a Context differentiates the weights of its forward
# ----------------------------------------------------------------------------

def _reference_lstm(params, a, bidirectional=True, num_layers=L, proj_size=P):
    y, hn, cn, cache = ref.lstm_forward(a["x"], params, num_layers=num_layers, hidden_size=H,
                                        proj_size=proj_size, bidirectional=bidirectional,
                                        peephole=True, h0=a["hx"][0], c0=a["hx"][1])
    dx, dh0, dc0, g = ref.lstm_backward(cache, a["dy"], a["dh"], a["dc"])
    return y, dx, dh0, dc0, g


def _close(got, want, what):
    scale = max(np.max(np.abs(want)), 1e-300)
    err = np.max(np.abs(np.asarray(got, np.float64) - want))
    assert err <= 1e-10 * scale, f"{what}: max|diff| {err:.3e} vs reference on the " \
                                 f"forward's weights (scale {scale:.3e})"


def _edit_everything(layer):
    for k in layer.state_dict():
        getattr(layer, k)[...] *= -1.5
    _w(layer)[1].fill(0.7)


def test_context_keeps_the_forward_weights_lstm():
    layer = make("LSTM", np.float64)
    a = inputs(layer)
    w0 = layer.state_dict()
    y, _ = layer(a["x"], a["hx"])
    _edit_everything(layer)
    setattr(layer, "weight_ih_l1", np.zeros_like(w0["weight_ih_l1"]))
    dx, (dh0, dc0) = layer.backward(a["dy"], a["dh"], a["dc"])
    yr, dxr, dh0r, dc0r, gr = _reference_lstm(w0, a)
    _close(y, yr, "y")
    for what, g, w in [("dx", dx, dxr), ("dh0", dh0, dh0r), ("dc0", dc0, dc0r)]:
        _close(g, w, what)
    for k in w0:
        _close(layer.grads[k], gr[k], "grad " + k)
    # and the next forward uses the edited weights
    assert_same(run(layer), run(fresh_like(layer)), "forward after the edit")


def test_context_keeps_the_forward_weights_cell():
    cell = make("LSTMCell", np.float64)
    a = inputs(cell)
    w0 = {k + "_l0": v for k, v in cell.state_dict().items()}
    h1, c1 = cell(a["x"], a["hx"])
    _edit_everything(cell)
    h2, c2 = cell(a["x"], (h1, c1))           # a second step on the edited weights
    w1 = {k + "_l0": v for k, v in cell.state_dict().items()}
    dx2, (dh1, dc1) = cell.backward(a["dh"], a["dc"])
    dx1, (dh0, dc0) = cell.backward(dh1, dc1)
    x = a["x"][None]
    kw = dict(num_layers=1, hidden_size=H, peephole=True)
    _, _, _, cache1 = ref.lstm_forward(x, w0, h0=a["hx"][0][None], c0=a["hx"][1][None], **kw)
    _, _, _, cache2 = ref.lstm_forward(x, w1, h0=h1[None], c0=c1[None], **kw)
    zero = np.zeros((1, B, H))
    rdx2, rdh1, rdc1, g2 = ref.lstm_backward(cache2, zero, a["dh"][None], a["dc"][None])
    rdx1, rdh0, rdc0, g1 = ref.lstm_backward(cache1, zero, rdh1, rdc1)
    _close(dx2, rdx2[0], "dx step 2")
    _close(dx1, rdx1[0], "dx step 1")
    _close(dh0, rdh0[0], "dh0")
    _close(dc0, rdc0[0], "dc0")
    for k in cell.grads:
        _close(cell.grads[k], g1[k + "_l0"] + g2[k + "_l0"], "grad " + k)


def test_functional_context_keeps_its_weights():
    """lstm_forward packs copies: editing the params dict between forward and backward
    changes nothing for that Context."""
    rng = np.random.default_rng(3)
    shapes = F.param_shapes(I, H, 1, True, False, 0, True)
    params = {k: rng.uniform(-0.6, 0.6, s) for k, s in shapes.items()}
    w0 = {k: v.copy() for k, v in params.items()}
    x = rng.standard_normal((T, B, I))
    dy = rng.standard_normal((T, B, H))
    kw = dict(num_layers=1, hidden_size=H, peephole=True)
    y, _, _, ctx = F.lstm_forward(x, params, training=True, **kw)
    for v in params.values():
        v *= -2.0
    dx, dh0, dc0, g = F.lstm_backward(ctx, dy)
    yr, _, _, cache = ref.lstm_forward(x, w0, **kw)
    dxr, dh0r, dc0r, gr = ref.lstm_backward(cache, dy)
    _close(y, yr, "y")
    _close(dx, dxr, "dx")
    _close(dh0, dh0r, "dh0")
    for k in shapes:
        _close(g[k], gr[k], "grad " + k)
