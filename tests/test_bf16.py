"""bfloat16 weights (weights_dtype="bfloat16", float32 layers, inference).

The kernels round W_ih and W_hh to the nearest bfloat16 and compute in float32.
Oracles:
- the float64 reference run on weights rounded to bfloat16 by NumPy here (an
  independent rounding): the kernel must agree to float32 rounding;
- a first-order bound of the bfloat16 rounding's effect on one step against
  float32 weights, derived from the data (|rounding| <= 2^-9 relative).
"""

import numpy as np
import pytest

fastlstm = pytest.importorskip("fastlstm")
from fastlstm import reference as ref  # noqa: E402
from fastlstm.functional import lstm_forward, pack  # noqa: E402


def to_bf16(a):
    """Nearest bfloat16 (ties to even), back as float32; NaN stays NaN."""
    a = np.ascontiguousarray(a, np.float32)
    u = a.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    out = r.astype(np.uint32).view(np.float32)
    return np.where(np.isnan(a), a, out)


def rounded_state(sd):
    return {k: (to_bf16(v) if k.startswith(("weight_ih", "weight_hh")) else v)
            for k, v in sd.items()}


def test_rounding_helper_is_nearest_even():
    vals = np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, 1.0 + 2**-8 + 2**-20, -2.5e-3],
                    np.float32)
    got = to_bf16(vals)
    np.testing.assert_array_equal(got[:3], [1.0, 1.0, 1.0 + 2**-6])
    assert got[3] == np.float32(1.0 + 2**-7)
    assert abs(got[4] - vals[4]) <= abs(vals[4]) * 2**-9


CASES = [
    dict(T=9, B=3),                                     # rows below the widening threshold
    dict(T=40, B=20),                                   # widened k-slices in the projection
    dict(T=7, B=1),                                     # one row: the k-split tile
    dict(T=9, B=5, bidirectional=True, num_layers=2, peephole=True),
    dict(T=9, B=4, proj_size=5),
    dict(T=12, B=6, lengths=True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("nt", [1, 2])
def test_matches_reference_on_rounded_weights(case, nt, isa, restore_threads):
    fastlstm.set_num_threads(nt)
    case = dict(case)
    T, B, I, H = case.pop("T"), case.pop("B"), 20, 37
    use_lengths = case.pop("lengths", False)
    m = fastlstm.LSTM(I, H, seed=0, weights_dtype="bfloat16", **case).eval()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = rng.integers(1, T + 1, B) if use_lengths else None
    y, (h, c) = m(x, lengths=lengths)
    assert m._packed[1].weights_dtype == "bfloat16"
    sd = {k: v.astype(np.float64) for k, v in rounded_state(m.state_dict()).items()}
    yr, hr, cr, _ = ref.lstm_forward(x.astype(np.float64), sd, num_layers=m.num_layers,
                                     hidden_size=H, proj_size=m.proj_size,
                                     bidirectional=m.bidirectional, peephole=m.peephole,
                                     lengths=lengths)
    for name, got, want in (("y", y, yr), ("h_n", h, hr), ("c_n", c, cr)):
        err = np.abs(got - want).max()
        assert err <= 1e-5 * max(1.0, np.abs(want).max()), (name, err)


def test_one_step_error_against_float32_is_within_the_rounding_bound(isa):
    I = H = 256
    m32 = fastlstm.LSTM(I, H, seed=3).eval()
    m16 = fastlstm.LSTM(I, H, seed=3, weights_dtype="bfloat16").eval()
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 8, I)).astype(np.float32)
    h0 = rng.uniform(-1, 1, (1, 8, H)).astype(np.float32)
    c0 = rng.uniform(-2, 2, (1, 8, H)).astype(np.float32)
    y32, (_, c32) = m32(x, (h0, c0))
    y16, (_, c16) = m16(x, (h0, c0))
    # first-order bound: each rounded weight moves by <= 2^-9 of itself
    wih, whh = np.abs(m32.weight_ih_l0.astype(np.float64)), np.abs(m32.weight_hh_l0.astype(np.float64))
    dpre = 2.0**-9 * (np.abs(x[0]) @ wih.T + np.abs(h0[0]) @ whh.T)        # [B,4H]
    sd = {k: v.astype(np.float64) for k, v in m32.state_dict().items()}
    pre = x[0] @ sd["weight_ih_l0"].T + h0[0] @ sd["weight_hh_l0"].T + sd["bias_ih_l0"] \
        + sd["bias_hh_l0"]
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    i, f, g, o = (sig(pre[:, :H]), sig(pre[:, H:2 * H]), np.tanh(pre[:, 2 * H:3 * H]),
                  sig(pre[:, 3 * H:]))
    di, df, dg, do = (dpre[:, :H] / 4, dpre[:, H:2 * H] / 4, dpre[:, 2 * H:3 * H],
                      dpre[:, 3 * H:] / 4)
    c = f * c0[0] + i * g
    dc = np.abs(c0[0]) * df + np.abs(g) * di + np.abs(i) * dg
    dy = do * np.abs(np.tanh(c)) + o * dc
    slack = 1e-6  # float32 arithmetic, far below the rounding effect
    assert np.all(np.abs(c16[0] - c32[0]) <= 1.01 * dc + slack)
    assert np.all(np.abs(y16[0] - y32[0]) <= 1.01 * dy + slack)
    assert np.abs(y16 - y32).max() > 0  # the weights really were rounded


def test_training_mode_uses_float32_weights():
    m16 = fastlstm.LSTM(10, 16, seed=0, weights_dtype="bfloat16")
    m32 = fastlstm.LSTM(10, 16, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 3, 10)).astype(np.float32)
    y16, _ = m16(x)  # train() mode: float32 weights, backward available
    y32, _ = m32(x)
    np.testing.assert_array_equal(y16, y32)
    dx16, _ = m16.backward(np.ones_like(y16))
    dx32, _ = m32.backward(np.ones_like(y32))
    np.testing.assert_array_equal(dx16, dx32)
    ye, _ = m16.eval()(x)
    assert not np.array_equal(ye, y32)


def test_cell_matches_layer_step():
    cell = fastlstm.LSTMCell(12, 24, seed=5, weights_dtype="bfloat16").eval()
    lstm = fastlstm.LSTM(12, 24, seed=0, weights_dtype="bfloat16").eval()
    lstm.load_state_dict({f"{k}_l0": v for k, v in cell.state_dict().items()})
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 12)).astype(np.float32)
    h0 = rng.standard_normal((3, 24)).astype(np.float32)
    c0 = rng.standard_normal((3, 24)).astype(np.float32)
    h, c = cell(x, (h0, c0))
    _, (hl, cl) = lstm(x[None], (h0[None], c0[None]))
    np.testing.assert_array_equal(h, hl[0])
    np.testing.assert_array_equal(c, cl[0])


def test_edits_are_seen():
    m = fastlstm.LSTM(6, 8, seed=0, weights_dtype="bfloat16").eval()
    x = np.ones((2, 1, 6), np.float32)
    y0, _ = m(x)
    m.weight_hh_l0[...] *= 0.5
    y1, _ = m(x)
    assert not np.array_equal(y0, y1)


def test_weights_dtype_arguments():
    assert fastlstm.LSTM(4, 4).weights_dtype == "float32"
    assert fastlstm.LSTM(4, 4, weights_dtype=np.float32).weights_dtype == "float32"
    assert fastlstm.LSTM(4, 4, dtype=np.float64, weights_dtype=None).weights_dtype == "float64"
    with pytest.raises(ValueError, match="weights_dtype"):
        fastlstm.LSTM(4, 4, dtype=np.float64, weights_dtype="bfloat16")
    with pytest.raises(ValueError, match="weights_dtype"):
        fastlstm.LSTM(4, 4, weights_dtype="float16")
    with pytest.raises(ValueError, match="weights_dtype"):
        fastlstm.LSTMCell(4, 4, weights_dtype=np.float64)
    params = fastlstm.LSTM(4, 4, seed=0).state_dict()
    kw = dict(input_size=4, hidden_size=4)
    with pytest.raises(ValueError, match="weights_dtype"):
        pack(params, training=True, weights_dtype="bfloat16", **kw)
    p = pack(params, weights_dtype="bfloat16", **kw)
    assert p.weights_dtype == "bfloat16" and p.nbytes > 0
    x = np.zeros((2, 1, 4), np.float32)
    with pytest.raises(ValueError, match="packed"):
        lstm_forward(x, None, num_layers=1, hidden_size=4, training=True, packed=p)
    y, _, _, _ = lstm_forward(x, None, num_layers=1, hidden_size=4, packed=p)
    assert y.shape == (2, 1, 4)


def test_nan_weight_propagates():
    m = fastlstm.LSTM(3, 4, seed=0, weights_dtype="bfloat16").eval()
    m.weight_ih_l0[0, 0] = np.nan
    y, _ = m(np.ones((2, 1, 3), np.float32))
    assert np.isnan(y).any()


def test_memory_is_halved():
    p32 = pack(fastlstm.LSTM(64, 64, seed=0).state_dict(), input_size=64, hidden_size=64)
    p16 = pack(fastlstm.LSTM(64, 64, seed=0).state_dict(), input_size=64, hidden_size=64,
               weights_dtype="bfloat16")
    weights = 2 * 4 * 64 * 64 * 4  # W_ih and W_hh in float32
    assert p32.nbytes - p16.nbytes == weights // 2


# ---------------------------------------------------------------------------- GRU

GRU_CASES = [
    dict(T=9, B=3),
    dict(T=40, B=20),                                   # rows split, widened projection slices
    dict(T=7, B=1),                                     # one row: the k-split tile
    dict(T=9, B=5, bidirectional=True, num_layers=2, lengths=True),
    dict(T=5, B=12, H=300),                             # k in slices (rows > MR16)
]


@pytest.mark.parametrize("case", GRU_CASES,
                         ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("nt", [1, 2])
def test_gru_matches_reference_on_rounded_weights(case, nt, isa, restore_threads):
    from fastlstm import reference_gru
    fastlstm.set_num_threads(nt)
    case = dict(case)
    T, B, H = case.pop("T"), case.pop("B"), case.pop("H", 37)
    use_lengths = case.pop("lengths", False)
    m = fastlstm.GRU(20, H, seed=0, weights_dtype="bfloat16", **case).eval()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, 20)).astype(np.float32)
    lengths = rng.integers(1, T + 1, B) if use_lengths else None
    y, h = m(x, lengths=lengths)
    assert m._packed[1].weights_dtype == "bfloat16"
    sd = {k: v.astype(np.float64) for k, v in rounded_state(m.state_dict()).items()}
    yr, hr, _ = reference_gru.gru_forward(x.astype(np.float64), sd, num_layers=m.num_layers,
                                          hidden_size=H, bidirectional=m.bidirectional,
                                          lengths=lengths)
    for name, got, want in (("y", y, yr), ("h_n", h, hr)):
        err = np.abs(got - want).max()
        assert err <= 1e-5 * max(1.0, np.abs(want).max()), (name, err)
    m32 = fastlstm.GRU(20, H, seed=0, **case).eval()  # the rounding does change the result
    assert np.abs(m32(x, lengths=lengths)[0] - y).max() > 1e-6


def test_gru_cell_bf16_matches_layer_step_and_halves_memory():
    cell = fastlstm.GRUCell(12, 24, seed=5, weights_dtype="bfloat16").eval()
    gru = fastlstm.GRU(12, 24, seed=0, weights_dtype="bfloat16").eval()
    gru.load_state_dict({f"{k}_l0": v for k, v in cell.state_dict().items()})
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 12)).astype(np.float32)
    h0 = rng.standard_normal((3, 24)).astype(np.float32)
    _, hl = gru(x[None], h0[None])
    np.testing.assert_array_equal(cell(x, h0), hl[0])
    sd = fastlstm.GRU(64, 64, seed=0).state_dict()
    p32 = pack(sd, input_size=64, hidden_size=64, cell="gru")
    p16 = pack(sd, input_size=64, hidden_size=64, cell="gru", weights_dtype="bfloat16")
    # W_ih halves; W_hh's bfloat16 panels are a block wider (4 slots for 3 gates)
    assert p32.nbytes - p16.nbytes == 3 * 64 * 64 * 2 + 3 * 64 * 64 * 4 - 4 * 64 * 64 * 2
