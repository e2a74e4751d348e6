"""fastlstm.LSTM (the compiled kernels) against independent oracles:

- fastlstm.reference (plain NumPy, itself proved against torch and finite
  differences in tests/test_reference.py): a 3-wise covering sweep over every
  option, outputs and every gradient;
- torch.nn.LSTM in float32 and float64, weights carried both ways;
- central finite differences of the layer itself in float64;
- gradient accumulation into lstm.grads.

Tolerances. float64: 1e-10 relative to max|oracle| (the kernels and the
reference differ only in summation order). float32: the kernel is compared with
the float64 reference, and the bound is derived from the error that the same
reference commits when it computes in float32 (reference.lstm_forward(...,
dtype=np.float32) vs float64), on the same inputs and on inputs moved by one
float32 ulp (so that one lucky, nearly exact float32 evaluation does not set the
bound): the kernel may err by at most a small multiple (8x) of that, with a floor
of 32 float32 ulps of max|oracle|. Measured on this sweep, the kernel's error is
at most ~0.25 of that bound, ~0.04 typically.
"""

import itertools
import random

import numpy as np
from _fd import central_diff
from _expected import param_shapes
from _tolerance import (F32, F64, bound_for, check_close, float32_reference_error, max_abs,
                        perturb_ulp)
import pytest

fastlstm = pytest.importorskip("fastlstm")
from fastlstm import reference as ref  # noqa: E402

TORCH_TOL = {F32: 1e-5, F64: 1e-10}


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------

def random_params(rng, shapes, dtype, scale=0.6):
    return {k: rng.uniform(-scale, scale, s).astype(dtype) for k, s in shapes.items()}


def make_lengths(kind, T, B, rng):
    if kind == "none":
        return None
    if kind == "equal_full":
        return np.full(B, T, dtype=np.int64)
    if kind == "equal_short":
        return np.full(B, max(T - 2, 1), dtype=np.int64)
    if kind == "mixed":     # contains a 1 and one row of full length (when B allows), unsorted
        lens = np.concatenate([[1, T], rng.integers(1, T + 1, size=max(B - 2, 0))])[:B]
        if B == 1:
            lens = np.array([max(T - 1, 1)])
        return rng.permutation(lens).astype(np.int64)
    raise ValueError(kind)


# ----------------------------------------------------------------------------
# a 3-wise covering selection of the option space
# ----------------------------------------------------------------------------

FACTORS = {
    # (T, B, I, H): a typical small case, an I=1 case, a B=1 / tiny-H case
    "sizes": [(7, 4, 3, 8), (5, 3, 1, 5), (4, 1, 4, 2)],
    "num_layers": [1, 2, 3],
    "bidirectional": [False, True],
    "bias": [True, False],
    "proj": [False, True],
    "peephole": [False, True],
    "layout": ["time_major", "batch_first", "unbatched"],
    "lengths": ["none", "equal_full", "equal_short", "mixed"],
    "hx": [False, True],
    "upstream": ["dy_dhn_dcn", "dy_only"],
    "dtype": [F32, F64],
    "threads": [1, 2],
    "dropout": [0.0, 0.4],
}


def _valid(assign):
    """assign: {factor name: value} (partial). Unbatched input takes no lengths."""
    if assign.get("layout") == "unbatched" and assign.get("lengths", "none") != "none":
        return False
    return True


def covering_cases(factors, strength=3, candidates=10, seed=1234):
    """Greedy (AETG-style) covering array: every valid combination of `strength`
    factor values appears in at least one case. Deterministic."""
    names = list(factors)
    rng = random.Random(seed)
    uncovered = set()
    for combo in itertools.combinations(range(len(names)), strength):
        for vals in itertools.product(*(range(len(factors[names[i]])) for i in combo)):
            if _valid({names[i]: factors[names[i]][v] for i, v in zip(combo, vals)}):
                uncovered.add((combo, vals))
    combos = list(itertools.combinations(range(len(names)), strength))

    def gain(row):
        return sum((c, tuple(row[i] for i in c)) in uncovered for c in combos)

    rows = []
    while uncovered:
        pool = sorted(uncovered)
        best, best_gain = None, -1
        for _ in range(candidates):
            combo, vals = pool[rng.randrange(len(pool))]
            row = [rng.randrange(len(factors[n])) for n in names]
            for i, v in zip(combo, vals):
                row[i] = v
            assign = lambda r: {n: factors[n][v] for n, v in zip(names, r)}
            while not _valid(assign(row)):       # repair a free factor
                free = [i for i in range(len(names)) if i not in combo]
                i = rng.choice(free)
                row[i] = rng.randrange(len(factors[names[i]]))
            g = gain(row)
            if g > best_gain:
                best, best_gain = row, g
        rows.append(best)
        for c in combos:
            uncovered.discard((c, tuple(best[i] for i in c)))
    return [{n: factors[n][v] for n, v in zip(names, r)} for r in rows]


SWEEP = covering_cases(FACTORS)


def _case_id(c):
    T, B, I, H = c["sizes"]
    return (f"T{T}B{B}I{I}H{H}-L{c['num_layers']}-{'bi' if c['bidirectional'] else 'uni'}"
            f"-{'bias' if c['bias'] else 'nobias'}-{'proj' if c['proj'] else 'noproj'}"
            f"-{'peep' if c['peephole'] else 'nopeep'}-{c['layout']}-len_{c['lengths']}"
            f"-{'hx' if c['hx'] else 'nohx'}-{c['upstream']}-{np.dtype(c['dtype']).name}"
            f"-thr{c['threads']}-p{c['dropout']}")


def test_sweep_is_a_3_wise_cover_of_reasonable_size():
    assert len(SWEEP) < 300
    names = list(FACTORS)
    for a, b, c in itertools.combinations(names, 3):
        seen = {(case[a], case[b], case[c]) for case in SWEEP}
        for va, vb, vc in itertools.product(FACTORS[a], FACTORS[b], FACTORS[c]):
            if _valid({a: va, b: vb, c: vc}):
                assert (va, vb, vc) in seen, (a, va, b, vb, c, vc)


# ----------------------------------------------------------------------------
# the sweep: kernel vs reference
# ----------------------------------------------------------------------------

def _to_time_major(a, layout):
    if layout == "batch_first":
        return np.swapaxes(a, 0, 1)
    if layout == "unbatched":
        return a[:, None, :]
    return a


def _from_time_major(a, layout):
    if layout == "batch_first":
        return np.swapaxes(a, 0, 1)
    if layout == "unbatched":
        return a[:, 0, :]
    return a


def _state_batched(a, layout):      # [D*L,B,*] <- [D*L,*] for unbatched
    return None if a is None else (a[:, None, :] if layout == "unbatched" else a)


def _state_unbatch(a, layout):
    return a[:, 0, :] if layout == "unbatched" else a


@pytest.mark.filterwarnings("ignore:.*dropout.*:UserWarning")   # dropout with 1 layer, as torch
@pytest.mark.parametrize("case", SWEEP, ids=[_case_id(c) for c in SWEEP])
def test_kernel_matches_reference(case, restore_threads):
    T, B, I, H = case["sizes"]
    L, bidir, bias, peephole = case["num_layers"], case["bidirectional"], case["bias"], \
        case["peephole"]
    layout, dtype, p = case["layout"], case["dtype"], case["dropout"]
    D = 2 if bidir else 1
    P = max(H - 2, 1) if case["proj"] and H > 1 else 0
    Hout = P or H
    if layout == "unbatched":
        B = 1
    rng = np.random.default_rng(SWEEP.index(case))
    shapes = param_shapes(I, H, L, D, bias, P, peephole)
    params = random_params(rng, shapes, dtype)

    fastlstm.set_num_threads(case["threads"])
    lstm = fastlstm.LSTM(I, H, num_layers=L, bias=bias, batch_first=(layout == "batch_first"),
                         dropout=p, bidirectional=bidir, proj_size=P, peephole=peephole,
                         dtype=dtype, seed=7)
    lstm.load_state_dict(params)
    lstm.train()
    lstm.zero_grad()

    # inputs in the layout the layer takes
    x_tm = rng.standard_normal((T, B, I)).astype(dtype)
    x = _from_time_major(x_tm, layout)
    lengths = make_lengths(case["lengths"], T, B, rng) if layout != "unbatched" else None
    h0 = c0 = None
    if case["hx"]:
        h0 = rng.standard_normal((D * L, B, Hout)).astype(dtype)
        c0 = rng.standard_normal((D * L, B, H)).astype(dtype)
    dy_tm = rng.standard_normal((T, B, D * Hout)).astype(dtype)
    dhn = dcn = None
    if case["upstream"] == "dy_dhn_dcn":
        dhn = rng.standard_normal((D * L, B, Hout)).astype(dtype)
        dcn = rng.standard_normal((D * L, B, H)).astype(dtype)
    hx = None if h0 is None else (_state_unbatch(h0, layout), _state_unbatch(c0, layout))

    # the kernel
    y, (hn, cn) = lstm(x, hx, lengths=lengths)
    masks = None
    if p > 0 and L > 1:
        masks = []
        for m in lstm.dropout_masks:
            m = np.asarray(m)
            assert m.size == T * B * D * Hout
            m = m.reshape(T, B, D * Hout)
            vals = np.unique(m)
            assert set(vals.tolist()) <= {0.0, float(dtype(1.0 / (1.0 - p)))}, vals
            masks.append(m)
        assert len(masks) == L - 1
    dx, (dh0, dc0) = lstm.backward(
        _from_time_major(dy_tm, layout),
        None if dhn is None else _state_unbatch(dhn, layout),
        None if dcn is None else _state_unbatch(dcn, layout))
    grads = {k: np.array(v) for k, v in lstm.grads.items()}

    for name, a in [("y", y), ("h_n", hn), ("c_n", cn), ("dx", dx), ("dh0", dh0), ("dc0", dc0)]:
        assert a.dtype == dtype, f"{name} dtype {a.dtype}"

    # the oracle: float64 reference on exactly the same (dtype-rounded) values
    def run_reference(cdtype, perturb_rng=None):
        pt = lambda a: a if a is None or perturb_rng is None else perturb_ulp(a, perturb_rng)
        yr, hnr, cnr, cache = ref.lstm_forward(
            pt(x_tm), {k: pt(v) for k, v in params.items()}, num_layers=L, hidden_size=H,
            proj_size=P, bidirectional=bidir, bias=bias, peephole=peephole, h0=pt(h0),
            c0=pt(c0), lengths=lengths, dropout_masks=masks, dtype=cdtype)
        dxr, dh0r, dc0r, gr = ref.lstm_backward(cache, pt(dy_tm), pt(dhn), pt(dcn))
        out = {"y": _from_time_major(yr, layout), "h_n": _state_unbatch(hnr, layout),
               "c_n": _state_unbatch(cnr, layout), "dx": _from_time_major(dxr, layout),
               "dh0": _state_unbatch(dh0r, layout), "dc0": _state_unbatch(dc0r, layout)}
        out.update({"grad " + k: v for k, v in gr.items()})
        return out

    want = run_reference(F64)
    err32 = float32_reference_error(run_reference, want) if dtype == F32 else {}
    got = {"y": y, "h_n": hn, "c_n": cn, "dx": dx, "dh0": dh0, "dc0": dc0}
    assert set(grads) == set(shapes), "lstm.grads keys"
    got.update({"grad " + k: v for k, v in grads.items()})

    for name in want:
        check_close(got[name], want[name], bound_for(dtype, want[name], err32.get(name)), name)
    if lengths is not None:     # outputs past each row's length are zero
        pad = np.arange(T)[:, None] >= lengths[None, :]
        y_tm = _to_time_major(y, layout)
        assert np.all(y_tm[pad] == 0), "y is not zero past a row's length"


def test_eval_mode_matches_reference_without_dropout():
    T, B, I, H, L = 6, 3, 4, 5, 3
    rng = np.random.default_rng(0)
    for dtype in (F32, F64):
        shapes = param_shapes(I, H, L, 2, True, 3, True)
        params = random_params(rng, shapes, dtype)
        lstm = fastlstm.LSTM(I, H, num_layers=L, dropout=0.5, bidirectional=True, proj_size=3,
                             peephole=True, dtype=dtype, seed=3)
        lstm.load_state_dict(params)
        lstm.eval()
        x = rng.standard_normal((T, B, I)).astype(dtype)
        lengths = np.array([6, 1, 4])
        y, (hn, cn) = lstm(x, lengths=lengths)
        kw = dict(num_layers=L, hidden_size=H, proj_size=3, bidirectional=True, peephole=True,
                  lengths=lengths)

        def run_reference(cdtype, perturb_rng=None):
            pt = lambda a: a if perturb_rng is None else perturb_ulp(a, perturb_rng)
            yr, hnr, cnr, _ = ref.lstm_forward(pt(x), {k: pt(v) for k, v in params.items()},
                                               dtype=cdtype, **kw)
            return {"y": yr, "h_n": hnr, "c_n": cnr}

        want = run_reference(F64)
        err32 = float32_reference_error(run_reference, want) if dtype == F32 else {}
        for name, got in [("y", y), ("h_n", hn), ("c_n", cn)]:
            check_close(got, want[name], bound_for(dtype, want[name], err32.get(name)),
                        name + " (eval)")


# ----------------------------------------------------------------------------
# torch parity, both directions of weight transfer, float32 and float64
# ----------------------------------------------------------------------------

TORCH_SIZES = {
    "small_proj": (7, 4, 5, 6, 4),
    "moderate": (20, 8, 32, 64, 0),
    "moderate_proj": (20, 8, 32, 64, 32),
}


@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("transfer", ["fastlstm_to_torch", "torch_to_fastlstm"])
@pytest.mark.parametrize("size", list(TORCH_SIZES))
def test_torch_parity(dtype, transfer, size):
    torch = pytest.importorskip("torch")
    n_torch = torch.get_num_threads()
    torch.set_num_threads(1)    # torch is the oracle here, not under test; keeps it quick
    try:
        _torch_parity(torch, dtype, transfer, size)
    finally:
        torch.set_num_threads(n_torch)


def _torch_parity(torch, dtype, transfer, size):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    T, B, I, H, P = TORCH_SIZES[size]
    L, D = 2, 2
    Hout = P or H
    tdtype = torch.float32 if dtype == F32 else torch.float64
    torch.manual_seed(5)
    rng = np.random.default_rng(5)
    tm = torch.nn.LSTM(I, H, num_layers=L, bidirectional=True, proj_size=P).to(tdtype)
    fl = fastlstm.LSTM(I, H, num_layers=L, bidirectional=True, proj_size=P, dtype=dtype, seed=5)
    if transfer == "torch_to_fastlstm":
        fl.load_state_dict(tm.state_dict())          # a torch state_dict of tensors, as is
    else:
        tm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in
                            fl.state_dict().items()})
    tsd, fsd = tm.state_dict(), fl.state_dict()
    assert set(tsd) == set(fsd)
    for k in tsd:
        assert fsd[k].dtype == dtype
        np.testing.assert_array_equal(fsd[k], tsd[k].numpy(), err_msg=k)

    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((D * L, B, Hout)).astype(dtype)
    c0 = rng.standard_normal((D * L, B, H)).astype(dtype)
    lengths = make_lengths("mixed", T, B, rng)
    dy = rng.standard_normal((T, B, D * Hout)).astype(dtype)
    dhn = rng.standard_normal((D * L, B, Hout)).astype(dtype)
    dcn = rng.standard_normal((D * L, B, H)).astype(dtype)

    # torch
    xt = torch.from_numpy(x.copy()).requires_grad_()
    h0t = torch.from_numpy(h0.copy()).requires_grad_()
    c0t = torch.from_numpy(c0.copy()).requires_grad_()
    packed = pack_padded_sequence(xt, torch.from_numpy(lengths), enforce_sorted=False)
    out, (hnt, cnt) = tm(packed, (h0t, c0t))
    yt, _ = pad_packed_sequence(out, total_length=T)
    loss = ((yt * torch.from_numpy(dy)).sum() + (hnt * torch.from_numpy(dhn)).sum()
            + (cnt * torch.from_numpy(dcn)).sum())
    loss.backward()
    want = {"y": yt, "h_n": hnt, "c_n": cnt, "dx": xt.grad, "dh0": h0t.grad, "dc0": c0t.grad}
    want.update({"grad " + k: prm.grad for k, prm in tm.named_parameters()})
    want = {k: v.detach().numpy() for k, v in want.items()}

    # fastlstm
    fl.zero_grad()
    y, (hn, cn) = fl(x, (h0, c0), lengths=lengths)
    dx, (dh0, dc0) = fl.backward(dy, dhn, dcn)
    got = {"y": y, "h_n": hn, "c_n": cn, "dx": dx, "dh0": dh0, "dc0": dc0}
    assert set(fl.grads) == set(tsd)
    got.update({"grad " + k: np.array(v) for k, v in fl.grads.items()})

    # float64 reference, only to say who is off when the bound is missed
    yr, hnr, cnr, cache = ref.lstm_forward(x, {k: v.numpy() for k, v in tsd.items()},
                                           num_layers=L, hidden_size=H, proj_size=P,
                                           bidirectional=True, h0=h0, c0=c0, lengths=lengths)
    dxr, dh0r, dc0r, gr = ref.lstm_backward(cache, dy, dhn, dcn)
    truth = {"y": yr, "h_n": hnr, "c_n": cnr, "dx": dxr, "dh0": dh0r, "dc0": dc0r}
    truth.update({"grad " + k: v for k, v in gr.items()})

    failures = []
    for name in want:
        scale = max_abs(want[name])
        err = max_abs(got[name].astype(np.float64) - want[name])
        if got[name].shape != want[name].shape or err > TORCH_TOL[dtype] * scale:
            failures.append(
                f"{name}: max|fastlstm - torch| = {err:.3e} > {TORCH_TOL[dtype]:.0e} * "
                f"{scale:.3e}; vs float64 reference: fastlstm "
                f"{max_abs(got[name] - truth[name]):.3e}, torch "
                f"{max_abs(want[name] - truth[name]):.3e}")
    assert not failures, "\n".join(failures)


# ----------------------------------------------------------------------------
# finite differences of the layer itself, float64, all options
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_gradcheck_finite_differences(dropout, restore_threads):
    # ~1000 tiny forwards: one thread keeps this fast on a loaded machine (results do not
    # depend on the thread count; the sweep covers 2 threads)
    fastlstm.set_num_threads(1)
    T, B, I, H, P, L, D = 4, 3, 3, 3, 2, 2, 2
    rng = np.random.default_rng(99)
    shapes = param_shapes(I, H, L, D, True, P, True)
    params = random_params(rng, shapes, F64, scale=0.8)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D * L, B, P))
    c0 = rng.standard_normal((D * L, B, H))
    lengths = np.array([4, 1, 3])
    dy = rng.standard_normal((T, B, D * P))
    dhn = rng.standard_normal((D * L, B, P))
    dcn = rng.standard_normal((D * L, B, H))

    def make():
        # a fresh layer with the same seed draws the same dropout masks on its first
        # training-mode forward, so every evaluation sees the same function
        lstm = fastlstm.LSTM(I, H, num_layers=L, dropout=dropout, bidirectional=True,
                             proj_size=P, peephole=True, dtype=F64, seed=2024)
        lstm.load_state_dict(params)
        return lstm

    def loss():
        y, (hn, cn) = make()(x, (h0, c0), lengths=lengths)
        return np.sum(y * dy) + np.sum(hn * dhn) + np.sum(cn * dcn)

    lstm = make()
    lstm(x, (h0, c0), lengths=lengths)
    if dropout > 0:
        m0 = np.array(lstm.dropout_masks[0])
        assert np.any(m0 == 0) and np.any(m0 != 0)
        other = make()
        other(x, (h0, c0), lengths=lengths)
        np.testing.assert_array_equal(np.array(other.dropout_masks[0]), m0,
                                      err_msg="same seed must draw the same masks")
    dx, (dh0, dc0) = lstm.backward(dy, dhn, dcn)
    grads = {k: np.array(v) for k, v in lstm.grads.items()}

    def fd(arr):
        return central_diff(arr, loss)

    def check(analytic, numeric, name):
        scale = max(max_abs(numeric), max_abs(analytic))
        assert scale > 1e-3, f"{name}: gradient ~0, the check would be vacuous"
        err = max_abs(analytic - numeric) / scale
        assert err <= 1e-6, f"{name}: relative error {err:.2e}"

    assert set(grads) == set(shapes)
    for k in shapes:
        check(grads[k], fd(params[k]), k)
    check(dx, fd(x), "dx")
    check(dh0, fd(h0), "dh0")
    check(dc0, fd(c0), "dc0")


# ----------------------------------------------------------------------------
# gradient accumulation
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
def test_grads_accumulate_and_zero_grad_clears(dtype):
    T, B, I, H, L, P = 5, 3, 4, 6, 2, 4
    rng = np.random.default_rng(42)
    shapes = param_shapes(I, H, L, 2, True, P, True)
    params = random_params(rng, shapes, dtype)
    lstm = fastlstm.LSTM(I, H, num_layers=L, bidirectional=True, proj_size=P, peephole=True,
                         dtype=dtype, seed=1)
    lstm.load_state_dict(params)
    kw = dict(num_layers=L, hidden_size=H, proj_size=P, bidirectional=True, peephole=True)

    batches = []
    for _ in range(3):
        x = rng.standard_normal((T, B, I)).astype(dtype)
        lengths = make_lengths("mixed", T, B, rng)
        dy = rng.standard_normal((T, B, 2 * P)).astype(dtype)
        batches.append((x, lengths, dy))

    def expected(which, cdtype, perturb_rng=None):
        pt = lambda a: a if perturb_rng is None else perturb_ulp(a, perturb_rng)
        total = {k: 0.0 for k in shapes}
        for i in which:
            x, lengths, dy = batches[i]
            cache = ref.lstm_forward(pt(x), {k: pt(v) for k, v in params.items()},
                                     lengths=lengths, dtype=cdtype, **kw)[3]
            g = ref.lstm_backward(cache, pt(dy))[3]
            total = {k: total[k] + g[k].astype(np.float64) for k in shapes}
        return total

    def check(which):
        want = expected(which, F64)
        err32 = float32_reference_error(lambda d, r: expected(which, d, r), want) \
            if dtype == F32 else {}
        assert set(lstm.grads) == set(shapes)
        for k in shapes:
            check_close(np.array(lstm.grads[k]), want[k],
                        bound_for(dtype, want[k], err32.get(k)), f"grad {k} after {which}")

    lstm.zero_grad()
    for i in (0, 1):
        x, lengths, dy = batches[i]
        lstm(x, lengths=lengths)
        lstm.backward(dy)
    check([0, 1])                       # accumulated: sum of both

    lstm.zero_grad()
    assert all(max_abs(v) == 0 for v in lstm.grads.values()), "zero_grad left non-zero grads"
    x, lengths, dy = batches[2]
    lstm(x, lengths=lengths)
    lstm.backward(dy)
    check([2])                          # after zero_grad: only the new pair
