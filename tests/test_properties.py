"""Property-based tests (hypothesis) of the Python boundary of the NumPy layers
fastlstm.LSTM, fastlstm.GRU and fastlstm.LayerNormLSTM, written against the
"Python API (the contract)" section of DESIGN.md and the layers' docstrings.

- Valid calls: a random configuration (sizes, layers, directions, bias,
  projection, peepholes, cell clip, dropout, zoneout, dtype, batch_first,
  unbatched input, variable lengths, given or default states, train or eval
  mode, thread count) and random inputs in odd memory layouts (strided views
  of a NaN-filled larger array, negative strides, Fortran order, permuted
  axes, zero-stride broadcasts, read-only, unaligned) must give what the
  float64 NumPy references (fastlstm.reference, reference_gru,
  reference_lnlstm) give: y, h_n, c_n and, in training mode, dx, dh0, dc0 and
  every accumulated parameter gradient, with the tolerances of
  tests/_tolerance.py (float64: 1e-10 of max|oracle|; float32: 8x the
  reference's own float32 error, floor 32 ulps of max|oracle|), with a
  floor: that bound on the largest oracle of the output's group (outputs;
  input and state gradients; parameter gradients), times the dropout mask
  scale 1/(1-p) for float32 where dropout applies and, for a float32
  LayerNormLSTM, by the largest rstd of its layer norms (which multiply the
  rounding of what they normalise). An oracle far below the terms that make
  it (dx through LN(x W_ih^T) with input_size=1; an output that only
  saturated units make) carries their rounding. Float32
  gradients are not compared where a gate pre-activation lies within 1e-4 of
  cell_clip (the clip's gradient jumps there); LayerNormLSTM with
  hidden_size=1 (LN over one unit, a degenerate case) has its gradients held
  only to rounding / LN-eps level.
  Parameters reach the layer through load_state_dict, attribute assignment or
  in-place edits (after a call that packed the old ones). Inputs are left
  unchanged; y is zero past each row's length.
- Invalid calls: a valid configuration and call with one mutation (a
  constructor argument, x, hx, lengths, dy, dh_n, dc_n, or misuse of
  backward) must raise TypeError / ValueError whose message names the
  argument (and the expected dtype for dtype errors), or RuntimeError for
  misuse of backward; the layer stays usable and unchanged.

Profiles (registered and loaded here; select with FASTLSTM_HYPOTHESIS_PROFILE):
"ci" (the default): 300 examples per test, derandomized, no deadline;
"sanitize": 60 per test, derandomized (the ASan build in .ci/sanitize);
"long": 5000 examples per test, random, for local runs:

    FASTLSTM_HYPOTHESIS_PROFILE=long python -m pytest -q tests/test_properties.py
"""
import contextlib
import os
import re
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from _expected import param_shapes as lstm_param_shapes  # noqa: E402
from _tolerance import (F32, F64, bound_for, check_close, float32_reference_error,  # noqa: E402
                        max_abs, perturb_ulp)

fastlstm = pytest.importorskip("fastlstm")
from fastlstm import reference, reference_gru, reference_lnlstm  # noqa: E402

_HEALTH = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile("ci", max_examples=300, deadline=None, derandomize=True,
                          suppress_health_check=_HEALTH, print_blob=True)
settings.register_profile("long", max_examples=5000, deadline=None, derandomize=False,
                          suppress_health_check=_HEALTH, print_blob=True)
settings.register_profile("sanitize", max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=_HEALTH, print_blob=True)  # .ci/sanitize
settings.load_profile(os.environ.get("FASTLSTM_HYPOTHESIS_PROFILE", "ci"))

CELLS = ("lstm", "gru", "lnlstm")
CLASSES = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "lnlstm": fastlstm.LayerNormLSTM}
TWO_STATES = {"lstm": True, "gru": False, "lnlstm": True}
# the ways an input array may lie in memory (odd_array)
MEMORY = ("contiguous", "sliced", "negative", "fortran", "permuted", "broadcast", "readonly",
          "unaligned")
LENGTH_KINDS = ("list", "int64", "int32", "int16", "uint8", "uint64")
CLIP_MARGIN = 1e-4  # float32 gradients are not compared where a gate is this close to a clip


def word(name):
    return r"\b" + re.escape(name) + r"\b"


HX = r"\bhx\b|\bh0\b|\bh_0\b"
CX = r"\bhx\b|\bc0\b|\bc_0\b"


@contextlib.contextmanager
def _quiet():
    """Constructors warn for dropout > 0 with one layer; that is not what is tested here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


# ----------------------------------------------------------------------------
# configurations
# ----------------------------------------------------------------------------

_probability = st.one_of(st.just(0.0), st.floats(0.01, 0.99), st.sampled_from([0.5, 1.0]))


@st.composite
def cases(draw, cell):
    """A valid configuration of a layer of `cell` and of one call to it."""
    c = {"cell": cell}
    c["I"] = draw(st.integers(1, 9))
    c["H"] = H = draw(st.integers(1, 9))
    c["L"] = draw(st.integers(1, 3))
    c["bidirectional"] = draw(st.booleans())
    c["bias"] = draw(st.booleans())
    c["proj_size"] = (draw(st.integers(1, H - 1))
                      if cell == "lstm" and H > 1 and draw(st.booleans()) else 0)
    c["peephole"] = cell == "lstm" and draw(st.booleans())
    c["cell_clip"] = draw(st.none() | st.floats(0.1, 3.0)) if cell == "lstm" else None
    c["dropout"] = draw(_probability)
    c["zoneout"] = draw(_probability)
    c["dtype"] = draw(st.sampled_from([F64, F32]))
    c["training"] = draw(st.booleans())
    c["batch_first"] = draw(st.booleans())
    c["unbatched"] = draw(st.booleans())
    c["T"] = T = draw(st.integers(1, 6))
    c["B"] = B = 1 if c["unbatched"] else draw(st.integers(1, 4))
    c["lengths"] = (None if c["unbatched"] else
                    draw(st.none() | st.lists(st.integers(1, T), min_size=B, max_size=B)))
    c["lengths_kind"] = draw(st.sampled_from(LENGTH_KINDS))
    c["hx"] = draw(st.booleans())
    c["hx_list"] = draw(st.booleans())  # (h0, c0) as a list rather than a tuple
    c["dh_n"] = draw(st.booleans())
    c["dc_n"] = draw(st.booleans())
    c["accumulate"] = draw(st.booleans())  # grads hold values before backward adds
    c["params_by"] = draw(st.sampled_from(["load_state_dict", "setattr", "inplace"]))
    c["warmup"] = draw(st.booleans())  # a call before the parameters change
    c["threads"] = draw(st.sampled_from([1, 1, 1, 2]))
    c["memory"] = draw(st.fixed_dictionaries(
        {k: st.sampled_from(MEMORY) for k in ("x", "h0", "c0", "dy", "dh_n", "dc_n", "lengths")}))
    c["seed"] = draw(st.integers(0, 2**32 - 1))
    return c


def _D(c):
    return 2 if c["bidirectional"] else 1


def _Ho(c):
    return c["proj_size"] or c["H"]


def layer_kwargs(c):
    kw = dict(num_layers=c["L"], bias=c["bias"], batch_first=c["batch_first"],
              dropout=c["dropout"], bidirectional=c["bidirectional"], dtype=c["dtype"],
              seed=c["seed"] % 1000, zoneout=c["zoneout"])
    if c["cell"] == "lstm":
        kw.update(proj_size=c["proj_size"], peephole=c["peephole"], cell_clip=c["cell_clip"])
    return kw


def make_layer(c):
    with _quiet():
        layer = CLASSES[c["cell"]](c["I"], c["H"], **layer_kwargs(c))
    return layer.train(c["training"])


def expected_param_shapes(c):
    """The parameters' names and shapes, from the tests' own table (LSTM) or the references."""
    I, H, L, bid, bias = c["I"], c["H"], c["L"], c["bidirectional"], c["bias"]
    if c["cell"] == "lstm":
        return lstm_param_shapes(I, H, L, _D(c), bias, c["proj_size"], c["peephole"])
    if c["cell"] == "gru":
        return reference_gru.gru_param_shapes(I, H, L, bias, bid)
    return reference_lnlstm.lnlstm_param_shapes(I, H, L, bias, bid)


def state_sizes(c):
    return (_Ho(c), c["H"]) if TWO_STATES[c["cell"]] else (_Ho(c),)


# layouts: the references take time-major batched arrays [T,B,F] and states [D*L,B,F]

def to_layer(a, c):
    if c["unbatched"]:
        return a[:, 0, :]
    return a.transpose(1, 0, 2) if c["batch_first"] else a


def to_time_major(a, c):
    if c["unbatched"]:
        return a[:, None, :]
    return a.transpose(1, 0, 2) if c["batch_first"] else a


def state_to_layer(s, c):
    return s[:, 0, :] if c["unbatched"] else s


def state_to_batched(s, c):
    return s[:, None, :] if c["unbatched"] else s


def odd_array(a, kind, rng):
    """An array equal to `a` (to a[:1] broadcast for "broadcast") laid out as `kind` says."""
    a = np.ascontiguousarray(a)
    if kind == "contiguous":
        return a.copy()
    if kind == "sliced":  # strided on every axis, inside a larger array of NaN (or of 0)
        fill = np.nan if a.dtype.kind == "f" else 0
        big = np.full(tuple(2 * n + 1 for n in a.shape), fill, a.dtype)
        v = big[tuple(slice(1, None, 2) for _ in a.shape)]
        v[...] = a
        return v
    if kind == "negative":  # negative strides on every axis
        return np.flip(np.ascontiguousarray(np.flip(a)))
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "permuted":
        perm = rng.permutation(a.ndim)
        return np.ascontiguousarray(a.transpose(perm)).transpose(np.argsort(perm))
    if kind == "broadcast":  # zero stride on the first axis (and read-only)
        return np.broadcast_to(a[:1], a.shape)
    if kind == "readonly":
        v = a.copy()
        v.flags.writeable = False
        return v
    if kind == "unaligned":
        buf = np.zeros(a.nbytes + a.itemsize, np.uint8)
        v = buf[1:1 + a.nbytes].view(a.dtype).reshape(a.shape)
        v[...] = a
        return v
    raise ValueError(kind)


def lengths_arg(lengths, c, rng):
    if lengths is None:
        return None
    if c["lengths_kind"] == "list":
        return list(lengths)
    return odd_array(np.array(lengths, dtype=c["lengths_kind"]), c["memory"]["lengths"], rng)


def make_inputs(c):
    """Random inputs for the call and backward, in the layer's layout and in odd memory
    layouts, plus their values in the references' layout ("*_ref", float64 copies of
    exactly what the layer sees)."""
    rng = np.random.default_rng(c["seed"])
    dt, T, B, I, L, D = c["dtype"], c["T"], c["B"], c["I"], c["L"], _D(c)
    mem = c["memory"]
    inp = {}

    def array(name, shape_tm, state):
        a = (1.5 * rng.standard_normal(shape_tm)).astype(dt)
        a = state_to_layer(a, c) if state else to_layer(a, c)
        v = odd_array(a, mem[name], rng)
        inp[name] = v
        inp[name + "_copy"] = np.array(v)  # to check that the call leaves it alone
        inp[name + "_ref"] = (state_to_batched if state else to_time_major)(np.array(v), c)

    array("x", (T, B, I), False)
    array("dy", (T, B, D * _Ho(c)), False)
    names = ("h0", "c0")[:len(state_sizes(c))]
    for name, dname, size in zip(names, ("dh_n", "dc_n"), state_sizes(c)):
        if c["hx"]:
            array(name, (D * L, B, size), True)
        else:
            inp[name] = inp[name + "_ref"] = None
        if c[dname]:
            array(dname, (D * L, B, size), True)
        else:
            inp[dname] = inp[dname + "_ref"] = None
    inp["lengths"] = lengths_arg(c["lengths"], c, rng)
    inp["lengths_copy"] = None if inp["lengths"] is None else np.array(inp["lengths"])
    inp["lengths_ref"] = None if c["lengths"] is None else np.array(inp["lengths"], np.int64)
    shapes = expected_param_shapes(c)
    inp["params"] = {k: (rng.uniform(-0.8, 0.8, s) + (1.0 if "_ln_" in k and "weight" in k
                                                       else 0.0)).astype(dt)
                     for k, s in shapes.items()}
    inp["grads0"] = {k: rng.standard_normal(s).astype(dt) for k, s in shapes.items()}
    return inp


def hx_arg(c, inp):
    if not c["hx"]:
        return None
    if not TWO_STATES[c["cell"]]:
        return inp["h0"]
    pair = [inp["h0"], inp["c0"]]
    return pair if c["hx_list"] else tuple(pair)


def backward_args(c, inp):
    args = [inp["dy"], inp["dh_n"]]
    if TWO_STATES[c["cell"]]:
        args.append(inp["dc_n"])
    return args


def set_params(layer, c, params):
    if c["params_by"] == "load_state_dict":
        layer.load_state_dict(params)
    elif c["params_by"] == "setattr":
        for k, v in params.items():
            setattr(layer, k, v)
    else:
        for k, v in params.items():
            getattr(layer, k)[...] = v


# ----------------------------------------------------------------------------
# the references
# ----------------------------------------------------------------------------

def run_reference(c, inp, dmasks, zmasks, cdtype, prng=None):
    """The reference's outputs (and gradients in training mode) on the call's inputs,
    in the references' layout; prng: move every float input by one ulp (float32).
    Returns (outputs, cache)."""
    def pt(a):
        return a if a is None or prng is None else perturb_ulp(a, prng)

    params = {k: pt(v) for k, v in inp["params"].items()}
    kw = dict(num_layers=c["L"], hidden_size=c["H"], bidirectional=c["bidirectional"],
              bias=c["bias"], lengths=inp["lengths_ref"], dropout_masks=dmasks,
              zoneout=c["zoneout"], zoneout_masks=zmasks, training=c["training"],
              dtype=cdtype)
    x, h0, c0 = pt(inp["x_ref"]), pt(inp["h0_ref"]), pt(inp.get("c0_ref"))
    if c["cell"] == "lstm":
        y, hn, cn, cache = reference.lstm_forward(
            x, params, proj_size=c["proj_size"], peephole=c["peephole"],
            cell_clip=c["cell_clip"], h0=h0, c0=c0, **kw)
        out = {"y": y, "h_n": hn, "c_n": cn}
    elif c["cell"] == "gru":
        y, hn, cache = reference_gru.gru_forward(x, params, h0=h0, **kw)
        out = {"y": y, "h_n": hn}
    else:
        y, hn, cn, cache = reference_lnlstm.lnlstm_forward(x, params, h0=h0, c0=c0, **kw)
        out = {"y": y, "h_n": hn, "c_n": cn}
    if c["training"]:
        dy, dhn, dcn = pt(inp["dy_ref"]), pt(inp["dh_n_ref"]), pt(inp.get("dc_n_ref"))
        if c["cell"] == "lstm":
            dx, dh0, dc0, grads = reference.lstm_backward(cache, dy, dhn, dcn)
        elif c["cell"] == "gru":
            dx, dh0, grads = reference_gru.gru_backward(cache, dy, dhn)
            dc0 = None
        else:
            dx, dh0, dc0, grads = reference_lnlstm.lnlstm_backward(cache, dy, dhn, dcn)
        out.update(dx=dx, dh0=dh0)
        if dc0 is not None:
            out["dc0"] = dc0
        out.update({"grad " + k: g for k, g in grads.items()})
    return out, cache


def clip_margin(cache, clip):
    """min over every gate pre-activation of the reference of ||a| - clip|."""
    margin = np.inf
    for layer_steps in cache["steps"]:
        for steps in layer_steps:
            for s in steps:
                for a in s["cell"]["a"]:
                    margin = min(margin, float(np.min(np.abs(np.abs(a) - clip))))
    return margin


def ln_rstd_max(cache):
    """max(1, the largest 1/sqrt(var + eps) of the reference's layer norms)."""
    return max([1.0] + [float(np.max(s["cell"][k])) for layer_steps in cache["steps"]
                        for steps in layer_steps for s in steps
                        for k in ("rstd_ih", "rstd_hh", "rstd_c")])


# ----------------------------------------------------------------------------
# 1. valid calls agree with the references
# ----------------------------------------------------------------------------

def _group(name):
    """outputs (y, h_n, c_n), input and state gradients, or parameter gradients."""
    if name.startswith("grad "):
        return "parameter gradients"
    return "input gradients" if name.startswith("d") else "outputs"


def check_against_reference(c):
    fastlstm.set_num_threads(c["threads"])
    dt, T, B, L, D, Ho = c["dtype"], c["T"], c["B"], c["L"], _D(c), _Ho(c)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layer = CLASSES[c["cell"]](c["I"], c["H"], **layer_kwargs(c))
    warned = any(issubclass(w.category, UserWarning) and "dropout" in str(w.message)
                 for w in caught)
    assert warned == (c["dropout"] > 0 and L == 1), "the dropout UserWarning (documented)"
    layer.train(c["training"])
    inp = make_inputs(c)
    shapes = expected_param_shapes(c)
    assert {k: v.shape for k, v in layer.state_dict().items()} == shapes, "parameter names"
    if c["warmup"]:  # the layer packs its initial weights; the new ones must be seen
        layer(np.array(inp["x"]), hx_arg(c, inp), lengths=inp["lengths"])
    set_params(layer, c, inp["params"])

    out = layer(inp["x"], hx_arg(c, inp), lengths=inp["lengths"])
    if TWO_STATES[c["cell"]]:
        y, (hn, cn) = out
        finals = {"h_n": hn, "c_n": cn}
    else:
        y, hn = out
        finals = {"h_n": hn}
    got = {"y": y}
    got.update(finals)
    y_shape = to_layer(np.empty((T, B, D * Ho)), c).shape
    assert y.shape == y_shape, f"y shape {y.shape}, expected {y_shape}"
    for (name, s), size in zip(finals.items(), state_sizes(c)):
        want_shape = state_to_layer(np.empty((D * L, B, size)), c).shape
        assert s.shape == want_shape, f"{name} shape {s.shape}, expected {want_shape}"

    dmasks = zmasks = None
    if c["training"]:  # the masks drawn by this call, as the reference takes them
        n_drop = L - 1 if c["dropout"] > 0 else 0
        assert len(layer.dropout_masks) == n_drop, "dropout_masks: one per layer but the last"
        if n_drop:
            keep = dt(1.0 / (1.0 - c["dropout"])) if c["dropout"] < 1 else dt(0.0)
            dmasks = []
            for m in layer.dropout_masks:
                m = np.array(m, dtype=F64)
                assert m.size == T * B * D * Ho, "dropout mask size"
                assert set(np.unique(m).tolist()) <= {0.0, float(keep)}, "dropout mask values"
                dmasks.append(m.reshape(T, B, D * Ho))
        if c["zoneout"] > 0:
            assert len(layer.zoneout_masks) == L, "zoneout_masks: one per layer"
            zmasks = [np.array(m, dtype=F64) for m in layer.zoneout_masks]
            for m in zmasks:
                assert m.shape == (T, B, D * Ho), "zoneout mask shape"
                assert set(np.unique(m).tolist()) <= {0.0, 1.0}, "zoneout mask values"
        else:
            assert len(layer.zoneout_masks) == 0, "zoneout_masks: empty without zoneout"

        layer.zero_grad()
        if c["accumulate"]:
            for k, g in inp["grads0"].items():
                layer.grads[k][...] = g
        grads_out = layer.backward(*backward_args(c, inp))
        if TWO_STATES[c["cell"]]:
            dx, (dh0, dc0) = grads_out
            got.update(dx=dx, dh0=dh0, dc0=dc0)
        else:
            dx, dh0 = grads_out
            got.update(dx=dx, dh0=dh0)
        assert dx.shape == inp["x"].shape, "dx shape"
        assert dh0.shape == hn.shape, "dh0 shape"
        if TWO_STATES[c["cell"]]:
            assert dc0.shape == cn.shape, "dc0 shape"
        assert set(layer.grads) == set(shapes), "grads keys"
        got.update({"grad " + k: np.array(g) for k, g in layer.grads.items()})

    for name, a in got.items():
        assert a.dtype == dt, f"{name}: dtype {a.dtype}, expected {np.dtype(dt)}"
    for name in ("x", "h0", "c0", "dy", "dh_n", "dc_n", "lengths"):
        if inp.get(name) is not None and (name not in ("dy", "dh_n", "dc_n") or c["training"]):
            assert np.array_equal(np.asarray(inp[name]), inp[name + "_copy"], equal_nan=True), \
                f"the call changed its input {name}"

    # to the references' layout
    for name in ("y", "dx"):
        if name in got:
            got[name] = to_time_major(got[name], c)
    for name in ("h_n", "c_n", "dh0", "dc0"):
        if name in got:
            got[name] = state_to_batched(got[name], c)

    with np.errstate(over="ignore"):  # exp overflows in a saturated sigmoid: harmless
        want, cache = run_reference(c, inp, dmasks, zmasks, F64)
    err32 = {}
    if dt == F32:  # the reference's own float32 error (tests/_tolerance.py)
        with np.errstate(over="ignore"):
            err32 = float32_reference_error(
                lambda d, r: run_reference(c, inp, dmasks, zmasks, d, r)[0], want)
    if c["accumulate"] and c["training"]:
        for k, g in inp["grads0"].items():
            want["grad " + k] = want["grad " + k] + g.astype(F64)
    gradients_compared = True
    if dt == F32 and c["training"] and c["cell_clip"] is not None \
            and clip_margin(cache, c["cell_clip"]) < CLIP_MARGIN:
        # a float32 pre-activation this close to the clip may fall on the other side of
        # it than the float64 one: the gradient jumps there, and it is not compared
        gradients_compared = False
        event("float32 gradients near a cell_clip boundary: not compared")
    assert set(got) == set(want), (sorted(got), sorted(want))
    degenerate = c["cell"] == "lnlstm" and c["H"] == 1
    if degenerate and c["training"]:
        # LayerNorm over one unit: LN(c) is a constant whose gradient is exactly 0 in the
        # reference, where the kernels leave a rounding residue of the upstream gradient
        # that rstd = 1/sqrt(eps) amplifies, at LN(c) and again at LN(h W_hh^T) when h is
        # ~0. The gradients are held to that level (reported, not a contract)
        upstream = max(max_abs(inp[k]) for k in ("dy_ref", "dh_n_ref", "dc_n_ref")
                       if inp.get(k) is not None)
        upstream *= max(1.0, max(max_abs(v) for v in inp["params"].values()))
        event("LayerNormLSTM with hidden_size=1: gradients to the rounding level / LN eps")
    ln_amplification = ln_rstd_max(cache) if c["cell"] == "lnlstm" else 1.0
    group_max = {}
    for name in want:
        group_max[_group(name)] = max(group_max.get(_group(name), 0.0), max_abs(want[name]))
    for name in want:
        if _group(name) != "outputs" and not gradients_compared:
            continue
        # tests/_tolerance.py's bound, with a floor: the same bound on the largest oracle of
        # the output's group. An oracle far below the terms that make it (cancellation, as
        # dx through LN(x W_ih^T) with input_size=1, or an output that only saturated
        # units make, where float32 1 - tanh² is mostly rounding and the kernels' tanh,
        # within ~2.3 ulps, is less exact than NumPy's) carries the rounding of those terms
        floor = bound_for(dt, group_max[_group(name)], 0.0)
        if dt == F32 and dmasks is not None and c["dropout"] < 1:
            # dropout scales the inputs of the layers above by 1/(1-p) (8 at p=0.875),
            # saturating their gates: the float32 floor grows by that scale
            floor /= 1.0 - c["dropout"]
        if dt == F32 and c["cell"] == "lnlstm":
            # LayerNorm multiplies the rounding of what it normalises by rstd, which is
            # large where the values are close together (LN(c) over H=2 units: up to ~40)
            floor *= ln_amplification
        bound = max(bound_for(dt, want[name], err32.get(name)), floor)
        if degenerate and _group(name) != "outputs":
            bound = max(bound, bound_for(dt, upstream, 0.0) / reference_lnlstm.LN_EPS)
        check_close(got[name], want[name], bound, name)
    if inp["lengths_ref"] is not None:  # y is zero past each row's length
        pad = np.arange(T)[:, None] >= inp["lengths_ref"][None, :]
        assert np.all(got["y"][pad] == 0), "y is not zero past a row's length"


@given(c=cases("lstm"))
def test_lstm_matches_reference(c, restore_threads):
    check_against_reference(c)


@given(c=cases("gru"))
def test_gru_matches_reference(c, restore_threads):
    check_against_reference(c)


@given(c=cases("lnlstm"))
def test_layer_norm_lstm_matches_reference(c, restore_threads):
    check_against_reference(c)


# ----------------------------------------------------------------------------
# 2. invalid calls name the offending argument
# ----------------------------------------------------------------------------

def assert_raises_naming(exc, patterns, fn, *args, **kwargs):
    """fn(*args, **kwargs) raises `exc` (a type or tuple) whose message matches every
    pattern."""
    with pytest.raises(exc) as ei:
        fn(*args, **kwargs)
    msg = str(ei.value)
    for p in patterns:
        assert re.search(p, msg), f"{type(ei.value).__name__}: {msg!r} does not match {p!r}"
    return ei.value


NAN, INF = float("nan"), float("inf")
_BAD_SIZES = [  # (value, exception)
    (0, ValueError), (-1, ValueError), (-(2**63), ValueError), (2**61, ValueError),
    (2**70, ValueError), (np.int64(0), ValueError), (np.int32(-3), ValueError),
    (2.0, TypeError), (2.5, TypeError), (NAN, TypeError), ("3", TypeError), (None, TypeError),
    (True, TypeError), (np.bool_(True), TypeError), (np.float64(3.0), TypeError),
    (3 + 0j, TypeError), ([3], TypeError),
]
_BAD_PROBABILITIES = [
    (-0.1, ValueError), (1.01, ValueError), (2, ValueError), (-1, ValueError),
    (NAN, ValueError), (INF, ValueError), (-INF, ValueError), (np.float32(1.5), ValueError),
    ("0.1", TypeError), (None, TypeError), (True, TypeError), (0.5 + 0j, TypeError),
    ([0.1], TypeError),
]
_BAD_CLIPS = [
    (0.0, ValueError), (-1.0, ValueError), (-INF, ValueError), (NAN, ValueError), (0, ValueError),
    ("1", TypeError), (True, TypeError), ([1.0], TypeError), (1j, TypeError),
]
_BAD_DTYPES = [np.float16, np.int32, np.int64, np.complex64, np.bool_, object, "foo", ">f4",
               "float16", np.uint8]
_BAD_WEIGHTS_DTYPES = ["foo", "float16", np.int8, np.float16, np.complex64]


def constructor_mutations(c):
    names = ["input_size", "hidden_size", "num_layers", "dropout", "zoneout", "dtype"]
    if c["cell"] == "lstm":
        names += ["proj_size", "cell_clip"]
    if c["cell"] in ("lstm", "gru"):
        names += ["weights_dtype"]
    return names


@given(data=st.data())
def test_invalid_constructor_arguments_name_the_argument(data):
    cell = data.draw(st.sampled_from(CELLS), label="cell")
    c = data.draw(cases(cell), label="case")
    name = data.draw(st.sampled_from(constructor_mutations(c)), label="argument")
    kw = dict(layer_kwargs(c), input_size=c["I"], hidden_size=c["H"])
    if name in ("input_size", "hidden_size", "num_layers"):
        value, exc = data.draw(st.sampled_from(_BAD_SIZES), label="value")
    elif name in ("dropout", "zoneout"):
        value, exc = data.draw(st.sampled_from(_BAD_PROBABILITIES), label="value")
    elif name == "cell_clip":
        value, exc = data.draw(st.sampled_from(_BAD_CLIPS), label="value")
    elif name == "proj_size":
        H = c["H"]
        value, exc = data.draw(st.sampled_from([
            (H, ValueError), (H + 1, ValueError), (-1, ValueError), (2**70, ValueError),
            (1.0, TypeError), ("1", TypeError), (True, TypeError), (None, TypeError)]),
            label="value")
    elif name == "dtype":
        value, exc = data.draw(st.sampled_from(_BAD_DTYPES), label="value"), (TypeError,
                                                                               ValueError)
    else:  # weights_dtype: another dtype, or bfloat16 on a float64 layer
        value = data.draw(st.sampled_from(_BAD_WEIGHTS_DTYPES + ["bfloat16"]), label="value")
        if value == "bfloat16" and c["dtype"] != F64:
            kw["dtype"] = F64
        exc = ValueError
    kw[name] = value
    with _quiet():
        assert_raises_naming(exc, [word(name)], CLASSES[cell], **kw)


def _other_dtype(draw, layer_dtype):
    other = F32 if layer_dtype == F64 else F64
    return draw(st.sampled_from([other, other, np.float16, np.int32, np.int64, np.bool_,
                                 np.complex64, np.dtype(layer_dtype).newbyteorder()]),
                label="dtype")


def _wrong_shape(draw, shape):
    """A shape other than `shape`: one axis changed, one added or one removed."""
    how = draw(st.sampled_from(["change", "add", "remove"]), label="shape change")
    if how == "change":
        axis = draw(st.integers(0, len(shape) - 1), label="axis")
        delta = draw(st.sampled_from([-1, 1, 2, 5]), label="delta")
        new = list(shape)
        new[axis] = max(new[axis] + delta, 0)
        if new[axis] == shape[axis]:
            new[axis] += 1
        return tuple(new)
    if how == "add":
        axis = draw(st.integers(0, len(shape)), label="axis")
        return shape[:axis] + (draw(st.sampled_from([1, 2]), label="size"),) + shape[axis:]
    axis = draw(st.integers(0, len(shape) - 1), label="axis")
    return shape[:axis] + shape[axis + 1:]


def forward_mutations(c):
    names = ["x_rank", "x_features", "x_empty", "x_dtype", "x_not_array", "h0_shape",
             "h0_dtype", "h0_not_array"]
    if TWO_STATES[c["cell"]]:
        names += ["c0_shape", "c0_dtype", "c0_not_array", "hx_not_pair"]
    else:
        names += ["hx_tuple"]
    if c["unbatched"]:
        names += ["lengths_unbatched"]
    else:
        names += ["lengths_size", "lengths_range", "lengths_dtype", "lengths_rank"]
    return names


def _fresh_result(c, inp, call):
    """What a new, identical layer gives for call(layer): the reference of 'unchanged'."""
    layer = make_layer(c)
    layer.load_state_dict(inp["params"])
    return call(layer)


def _same(a, b):
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def _draws_masks(c):
    return c["training"] and (c["zoneout"] > 0 or (c["dropout"] > 0 and c["L"] > 1))


@given(data=st.data())
def test_invalid_forward_arguments_name_the_argument(data, one_thread):
    cell = data.draw(st.sampled_from(CELLS), label="cell")
    c = data.draw(cases(cell), label="case")
    mutation = data.draw(st.sampled_from(forward_mutations(c)), label="mutation")
    layer = make_layer(c)
    inp = make_inputs(c)
    layer.load_state_dict(inp["params"])
    dt, T, B, I, D, L = c["dtype"], c["T"], c["B"], c["I"], _D(c), c["L"]
    x, hx, lengths = inp["x"], hx_arg(c, inp), inp["lengths"]
    h0 = inp["h0"] if c["hx"] else np.zeros(state_to_layer(np.empty((D * L, B, _Ho(c))), c).shape,
                                            dt)
    c0 = None
    if TWO_STATES[cell]:
        c0 = inp["c0"] if c["hx"] else np.zeros(
            state_to_layer(np.empty((D * L, B, c["H"])), c).shape, dt)
    dtype_name = np.dtype(dt).name
    X = word("x")
    LEN = word("lengths")
    H_NAME, C_NAME = (HX, CX) if TWO_STATES[cell] else (word("hx"), None)

    def with_states(h, cc):
        return (h, cc) if TWO_STATES[cell] else h

    if mutation == "x_rank":
        ndim = data.draw(st.sampled_from([0, 1, 4]), label="ndim")
        shape = {0: (), 1: (I,), 4: (1,) + x.shape if x.ndim == 3 else (1, 1) + x.shape}[ndim]
        x = np.ones(shape, dt)
        exc, pats = ValueError, [X]
    elif mutation == "x_features":
        delta = data.draw(st.sampled_from([-1, 1, 3]), label="delta")
        if I + delta < 1:
            delta = 1
        x = np.ones(x.shape[:-1] + (I + delta,), dt)
        exc, pats = ValueError, [X]
    elif mutation == "x_empty":
        axes = [0] if x.ndim == 2 else [0, 1]
        axis = data.draw(st.sampled_from(axes), label="axis")
        shape = list(x.shape)
        shape[axis] = 0
        x = np.zeros(shape, dt)
        lengths = None
        exc, pats = ValueError, [X]
    elif mutation == "x_dtype":
        x = np.array(x).astype(_other_dtype(data.draw, dt))
        exc, pats = TypeError, [X, dtype_name]
    elif mutation == "x_not_array":
        x = data.draw(st.sampled_from([np.array(x).tolist(), None, 1.0, "x", memoryview(b"ab")]),
                      label="x")
        exc, pats = TypeError, [X]
    elif mutation in ("h0_shape", "c0_shape"):
        s = h0 if mutation == "h0_shape" else c0
        bad = np.zeros(_wrong_shape(data.draw, s.shape), dt)
        hx = with_states(bad, c0) if mutation == "h0_shape" else with_states(h0, bad)
        exc, pats = ValueError, [H_NAME if mutation == "h0_shape" else C_NAME]
    elif mutation in ("h0_dtype", "c0_dtype"):
        s = h0 if mutation == "h0_dtype" else c0
        bad = np.array(s).astype(_other_dtype(data.draw, dt))
        hx = with_states(bad, c0) if mutation == "h0_dtype" else with_states(h0, bad)
        exc, pats = TypeError, [H_NAME if mutation == "h0_dtype" else C_NAME, dtype_name]
    elif mutation in ("h0_not_array", "c0_not_array"):
        s = h0 if mutation == "h0_not_array" else c0
        bad = data.draw(st.sampled_from([np.array(s).tolist(), 0.0, "h"]), label="state")
        hx = with_states(bad, c0) if mutation == "h0_not_array" else with_states(h0, bad)
        exc, pats = TypeError, [H_NAME if mutation == "h0_not_array" else C_NAME]
    elif mutation == "hx_not_pair":
        hx = data.draw(st.sampled_from([h0, (h0,), (h0, c0, c0), (), {"h0": h0, "c0": c0},
                                        "hc", 0.0]), label="hx")
        exc, pats = (TypeError, ValueError), [word("hx")]
    elif mutation == "hx_tuple":  # a GRU's hx is one array
        hx = data.draw(st.sampled_from([(h0,), [h0], (h0, h0)]), label="hx")
        exc, pats = TypeError, [word("hx")]
    elif mutation == "lengths_unbatched":
        lengths = data.draw(st.sampled_from([np.array([T]), [T], np.array(T)]), label="lengths")
        exc, pats = ValueError, [LEN]
    elif mutation == "lengths_size":
        n = data.draw(st.sampled_from([0, B - 1, B + 1, B + 3]).filter(lambda n: n != B),
                      label="size")
        lengths = np.full(max(n, 0), T, np.int64)
        exc, pats = ValueError, [LEN]
    elif mutation == "lengths_range":
        kind = data.draw(st.sampled_from(["int64", "int32", "int8", "uint64", "uint8"]),
                         label="dtype")
        signed = kind.startswith("int")
        info = np.iinfo(kind)
        choices = [0, T + 1, int(info.max)] + ([-1, int(info.min)] if signed else [])
        choices = [v for v in choices if v == 0 or v < 0 or v > T]
        bad = data.draw(st.sampled_from(choices), label="value")
        good = np.full(B, T, np.int64)
        if c["lengths"] is not None:
            good = np.array(c["lengths"], np.int64)
        arr = good.astype(kind)
        arr[data.draw(st.integers(0, B - 1), label="row")] = bad
        lengths = arr
        exc, pats = ValueError, [LEN]
    elif mutation == "lengths_dtype":
        good = np.full(B, T)
        lengths = data.draw(st.sampled_from([good.astype(np.float64), good.astype(np.float32),
                                             good.astype(np.complex64), good.astype(object),
                                             good.astype(bool), [float(T)] * B, "ab",
                                             good.astype(str)]), label="lengths")
        exc, pats = (TypeError, ValueError), [LEN]
    elif mutation == "lengths_rank":
        good = np.full(B, T, np.int64)
        lengths = data.draw(st.sampled_from([good[:, None], good[None, :], np.array(T),
                                             np.full((B, 2), T)]), label="lengths")
        exc, pats = (TypeError, ValueError), [LEN]
    else:
        raise AssertionError(mutation)

    assert_raises_naming(exc, pats, layer, x, hx, lengths=lengths)
    # the rejected call left the layer usable and unchanged
    def call(lay):
        return lay(inp["x"], hx_arg(c, inp), lengths=inp["lengths"])
    got = call(layer)
    if not _draws_masks(c):  # (a call that draws masks gives other values each time)
        assert _same(got, _fresh_result(c, inp, call)), "a rejected call changed the layer"
    if c["training"]:
        layer.backward(*backward_args(c, inp))


def backward_mutations(c):
    names = ["dy_shape", "dy_dtype", "dy_not_array", "dh_n_shape", "dh_n_dtype",
             "backward_twice", "backward_without_forward", "backward_after_eval"]
    if TWO_STATES[c["cell"]]:
        names += ["dc_n_shape", "dc_n_dtype"]
    return names


@given(data=st.data())
def test_invalid_backward_arguments_name_the_argument(data, one_thread):
    cell = data.draw(st.sampled_from(CELLS), label="cell")
    c = dict(data.draw(cases(cell), label="case"), training=True)
    mutation = data.draw(st.sampled_from(backward_mutations(c)), label="mutation")
    layer = make_layer(c)
    inp = make_inputs(c)
    layer.load_state_dict(inp["params"])
    dt, T, B, D, L = c["dtype"], c["T"], c["B"], _D(c), c["L"]
    good = backward_args(c, inp)
    y_shape = to_layer(np.empty((T, B, D * _Ho(c))), c).shape
    state_shapes = [state_to_layer(np.empty((D * L, B, s)), c).shape for s in state_sizes(c)]
    dtype_name = np.dtype(dt).name

    def forward(lay):
        return lay(inp["x"], hx_arg(c, inp), lengths=inp["lengths"])

    misuse = r"(?i)backward|forward"
    args = list(good)
    if mutation == "backward_without_forward":
        assert_raises_naming(RuntimeError, [misuse], layer.backward, *args)
        return
    forward(layer)
    if mutation == "backward_twice":
        layer.backward(*args)
        assert_raises_naming(RuntimeError, [misuse], layer.backward, *args)
        return
    if mutation == "backward_after_eval":
        layer.eval()
        forward(layer)
        assert_raises_naming(RuntimeError, [misuse], layer.backward, *args)
        return
    target, what = {"dy_shape": ("dy", "shape"), "dy_dtype": ("dy", "dtype"),
                    "dy_not_array": ("dy", "array"), "dh_n_shape": ("dh_n", "shape"),
                    "dh_n_dtype": ("dh_n", "dtype"), "dc_n_shape": ("dc_n", "shape"),
                    "dc_n_dtype": ("dc_n", "dtype")}[mutation]
    index = {"dy": 0, "dh_n": 1, "dc_n": 2}[target]
    shape = y_shape if index == 0 else state_shapes[index - 1]
    if what == "shape":
        args[index] = np.zeros(_wrong_shape(data.draw, shape), dt)
        exc, pats = ValueError, [word(target)]
    elif what == "dtype":
        args[index] = np.zeros(shape, _other_dtype(data.draw, dt))
        exc, pats = TypeError, [word(target), dtype_name]
    elif what == "array":  # dy_not_array
        args[index] = data.draw(st.sampled_from([np.zeros(shape, dt).tolist(), 0.0, "dy"]),
                                label="dy")
        exc, pats = TypeError, [word(target)]
    else:
        raise AssertionError(mutation)
    assert_raises_naming(exc, pats, layer.backward, *args)
    # the failed check kept the forward: backward with good gradients works, and gives
    # what a new layer gives (where the forward drew no random masks)
    got = layer.backward(*good)
    if not _draws_masks(c):
        def run(lay):
            forward(lay)
            return lay.backward(*good), {k: np.array(v) for k, v in lay.grads.items()}
        want, want_grads = _fresh_result(c, inp, run)
        assert _same(got, want), "a rejected backward changed the result"
        for k, g in layer.grads.items():
            assert np.array_equal(g, want_grads[k], equal_nan=True), f"grads {k}"
