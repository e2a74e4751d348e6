"""Training buffers kept across steps: a module's forward workspaces and
backward scratch go back to its BufferPool when a backward consumes them,
and the next step reuses them. Reuse must never change a result, never hand
out a buffer a live context holds, and end with eval()."""
import threading

import numpy as np
import pytest

import fastlstm
from fastlstm import _core
from fastlstm.functional import BufferPool

CASES = [  # cell, layer kwargs, lengths
    ("lstm", dict(num_layers=2, bidirectional=True), None),
    ("lstm", dict(proj_size=3, peephole=True), [5, 2, 4]),
    ("gru", dict(num_layers=2), [3, 5, 1]),
    ("lnlstm", dict(bidirectional=True), None),
]
LAYERS = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "lnlstm": fastlstm.LayerNormLSTM}
T, B, I, H = 5, 3, 4, 6


def step(m, x, dy, lengths):
    m.zero_grad()
    m(x, lengths=lengths)
    dx, _ = m.backward(dy)
    return dx, {k: v.copy() for k, v in m.grads.items()}


@pytest.mark.parametrize("cell,kw,lengths", CASES)
def test_reused_buffers_give_bitwise_the_same_steps(cell, kw, lengths):
    """Module b reuses its buffers, poisoned with NaN between steps (nothing may
    read them before writing); module a starts each step with a fresh pool."""
    rng = np.random.default_rng(0)
    a = LAYERS[cell](I, H, seed=1, **kw)
    b = LAYERS[cell](I, H, seed=1, **kw)
    D = 2 if kw.get("bidirectional") else 1
    x = rng.standard_normal((T, B, I), dtype=np.float32)
    dy = rng.standard_normal((T, B, D * kw.get("proj_size", H)), dtype=np.float32)
    for _ in range(3):
        a._ws_pool = BufferPool()
        kept = list(b._ws_pool._free)
        for buf in kept:
            buf.fill(np.nan)
        dxa, ga = step(a, x, dy, lengths)
        dxb, gb = step(b, x, dy, lengths)
        np.testing.assert_array_equal(dxa, dxb)
        for k in ga:
            np.testing.assert_array_equal(ga[k], gb[k], err_msg=k)
        # a workspace and a scratch a layer, or fewer where a lower layer's
        # backward reused the scratch of the layer above
        assert 2 <= len(b._ws_pool._free) <= 2 * kw.get("num_layers", 1)
    # the third step ran on the buffers of the second
    assert {id(v) for v in kept} == {id(v) for v in b._ws_pool._free}


def test_a_live_context_keeps_its_workspace():
    """Two forwards in a row: the second gets a new workspace (the first one's
    context is dropped, not consumed, so its buffers never reach the pool)."""
    m = fastlstm.LSTM(I, H, seed=0)
    x = np.ones((T, B, I), np.float32)
    dy = np.ones((T, B, H), np.float32)
    step(m, x, dy, None)
    pooled = {id(v) for v in m._ws_pool._free}
    m(x)
    ws = m._ctx.peek()[0].layers[0].ws
    assert id(ws) in pooled and id(ws) not in {id(v) for v in m._ws_pool._free}
    m(x)
    assert m._ctx.peek()[0].layers[0].ws is not ws


def test_eval_releases_the_buffers():
    m = fastlstm.GRU(I, H, seed=0)
    step(m, np.ones((T, B, I), np.float32), np.ones((T, B, H), np.float32), None)
    assert m._ws_pool._free
    m.eval()
    assert not m._ws_pool._free


def test_pool_hands_each_buffer_out_once_across_threads():
    pool = BufferPool()
    pool.give([np.empty(8, np.float32) for _ in range(64)], 64)
    got, lock = [], threading.Lock()

    def take():
        for _ in range(16):
            b = pool.take(8, np.float32)
            with lock:
                got.append(b)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(b) for b in got}) == len(got) == 128  # 64 kept, then 64 new


def test_pool_keeps_at_most_most_and_matches_size_and_dtype():
    pool = BufferPool()
    a, b, c = np.empty(4, np.float32), np.empty(4, np.float64), np.empty(5, np.float32)
    pool.give([a, b, c], 2)
    assert pool._free == [b, c]
    assert pool.take(4, np.float64) is b
    assert pool.take(4, np.float32) is not a
    assert pool.take(5, np.float32) is c


def test_pool_most_zero_keeps_none_and_a_bad_most_is_named():
    pool = BufferPool()
    pool.give([np.empty(4, np.float32)], 2)
    pool.give([np.empty(3, np.float32)], 0)
    assert pool._free == []
    for bad in (-1, 1.5, None, True):
        with pytest.raises(ValueError, match="most: expected an int >= 0"):
            pool.give([], bad)


def test_backward_scratch_is_checked():
    """The binding names a wrong scratch; the size is the C++ API's."""
    m = fastlstm.LSTM(I, H, seed=0)
    x = np.ones((T, B, I), np.float32)
    m(x)
    ctx = m._ctx.peek()[0]
    lay = ctx.layers[0]
    n = _core.backward_scratch_size(lay.dims, None, ctx.isa, 4)
    assert n >= T * B * 4 * H
    grads = [tuple(np.zeros(ctx.shapes[k], np.float32) if k else None for k in names)
             for names in lay.names]
    args = (lay.dims, lay.packed, grads, lay.x, None, lay.c0, lay.ws,
            np.ones((T, B, H), np.float32), np.zeros((1, B, H), np.float32),
            np.zeros((1, B, H), np.float32), np.empty((T, B, I), np.float32),
            np.empty((1, B, H), np.float32), np.empty((1, B, H), np.float32), 1, ctx.isa, None)
    with pytest.raises(ValueError, match=f"scratch: expected {n} elements"):
        _core.layer_backward_f32(*args, np.empty(n - 1, np.float32))
    with pytest.raises(TypeError, match="scratch: expected dtype float32"):
        _core.layer_backward_f32(*args, np.empty(n, np.float64))
    _core.layer_backward_f32(*args, np.full(n, np.nan, np.float32))
    assert np.isfinite(args[10]).all()
