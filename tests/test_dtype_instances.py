"""A float32 array is a float32 array, whichever np.dtype instance it carries.

Arrays that come back from pickle (multiprocessing queues, DataLoader workers,
joblib, pickle files) or from copy.deepcopy of a dtype carry a dtype object that
compares equal to np.float32 but is not NumPy's canonical instance. The contract
(DESIGN.md): inputs must have the layer's dtype, TypeError otherwise; these have
it, so they must be accepted and give the same bits as the original arrays.
"""
import pickle

import numpy as np
import pytest

fastlstm = pytest.importorskip("fastlstm")
from fastlstm import functional as F  # noqa: E402

T, B, I, H = 4, 2, 3, 5


def unpickled(a):
    b = pickle.loads(pickle.dumps(a))
    assert b.dtype == a.dtype and np.array_equal(a, b)
    return b


def test_unpickled_arrays_have_a_non_canonical_dtype_instance():
    # the premise of this file (true of NumPy 1.x and 2.x): if this ever fails, the
    # tests below no longer exercise anything
    a = unpickled(np.zeros(3, np.float32))
    assert a.dtype == np.float32 and a.dtype is not np.dtype(np.float32)


@pytest.mark.parametrize("which", ["x", "hx", "dy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_lstm_accepts_unpickled_inputs(which, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    hx = tuple(rng.standard_normal((1, B, H)).astype(dtype) for _ in range(2))
    dy = rng.standard_normal((T, B, H)).astype(dtype)

    def run(x, hx, dy):
        lstm = fastlstm.LSTM(I, H, dtype=dtype, seed=0)
        y, (hn, cn) = lstm(x, hx)
        dx, (dh0, dc0) = lstm.backward(dy)
        return [y, hn, cn, dx, dh0, dc0]

    want = run(x, hx, dy)
    args = dict(x=x, hx=hx, dy=dy)
    args[which] = tuple(unpickled(a) for a in hx) if which == "hx" else unpickled(args[which])
    try:
        got = run(**args)
    except TypeError as e:
        pytest.fail(f"an unpickled {np.dtype(dtype)} {which} was rejected: {e}")
    for g, w in zip(got, want):
        assert np.array_equal(g, w)


def test_functional_accepts_unpickled_params():
    rng = np.random.default_rng(1)
    shapes = F.param_shapes(I, H)
    params = {k: rng.uniform(-0.5, 0.5, s).astype(np.float32) for k, s in shapes.items()}
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    want = F.lstm_forward(x, params, num_layers=1, hidden_size=H)[0]
    try:
        got = F.lstm_forward(x, {k: unpickled(v) for k, v in params.items()}, num_layers=1,
                             hidden_size=H)[0]
    except TypeError as e:
        pytest.fail(f"unpickled float32 params were rejected: {e}")
    assert np.array_equal(got, want)


def test_cell_accepts_an_unpickled_input():
    cell = fastlstm.LSTMCell(I, H, seed=0)
    x = np.random.default_rng(2).standard_normal((B, I)).astype(np.float32)
    want = cell(x)
    try:
        got = cell(unpickled(x))
    except TypeError as e:
        pytest.fail(f"an unpickled float32 x was rejected: {e}")
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
