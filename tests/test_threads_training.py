"""Training one NumPy layer or step cell from several threads: each thread's backward
consumes its own forward (never another thread's), and the gradients are
the sum of every thread's, added in turn."""
import threading

import numpy as np
import pytest

import fastlstm


def _layer(cls, seed=0):
    kw = dict(proj_size=2) if cls is fastlstm.LSTM else {}
    return cls(3, 5, bidirectional=True, seed=seed, dtype=np.float64, **kw)


def _alone(cls, x, dy):
    m = _layer(cls)
    m.train()
    m(x)
    dx = m.backward(dy)[0]
    return dx, {k: np.array(v) for k, v in m.grads.items()}


def _interleaved(forward, backward):
    """Threads 0 (A) and 1 (B) each run forward(i), then backward(i), in the
    order A forward, B forward, A backward, B backward; [backward(0),
    backward(1)]. An exception in either thread fails the caller."""
    steps = [threading.Event() for _ in range(4)]
    out, errors = {}, []

    def run(i):
        try:
            steps[i].wait(10)
            forward(i)
            steps[i + 1].set()
            steps[i + 2].wait(10)
            out[i] = backward(i)
            if i + 3 < 4:
                steps[i + 3].set()
        except BaseException as e:  # reported by the main thread
            errors.append(e)
            for s in steps:
                s.set()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    steps[0].set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return [out[0], out[1]]


def _assert_own_and_summed(out, want, grads):
    """Each thread's dx is its own run's (want[i] = (dx, grads) of thread i's
    run alone), and the gradients are the sum of both runs'."""
    for i in range(2):
        np.testing.assert_allclose(out[i], want[i][0], rtol=1e-12, atol=1e-12)
    for k, g in grads.items():
        np.testing.assert_allclose(g, want[0][1][k] + want[1][1][k], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [fastlstm.LSTM, fastlstm.GRU], ids=["lstm", "gru"])
def test_interleaved_forward_backward_on_one_layer(cls):
    """A forward, B forward, A backward, B backward, in that order: each thread
    gets its own dx, and the gradients add up."""
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((6, 2, 3)) for _ in range(2)]
    m = _layer(cls)
    m.train()
    D, Ho = 2, (2 if cls is fastlstm.LSTM else 5)
    dys = [rng.standard_normal((6, 2, D * Ho)) for _ in range(2)]
    out = _interleaved(lambda i: m(xs[i]), lambda i: m.backward(dys[i])[0])
    _assert_own_and_summed(out, [_alone(cls, x, dy) for x, dy in zip(xs, dys)], m.grads)


def test_backward_in_another_thread_says_whose_forward_is_pending():
    m = _layer(fastlstm.GRU)
    m.train()
    x = np.zeros((4, 2, 3))
    m(x)
    err = []

    def other():
        try:
            m.backward(np.zeros((4, 2, 10)))
        except RuntimeError as e:
            err.append(str(e))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert err and "another thread's forward is pending" in err[0]
    m.backward(np.zeros((4, 2, 10)))  # this thread's forward is still there


def test_bad_gradients_leave_the_forward_saved():
    m = _layer(fastlstm.LSTM)
    m.train()
    m(np.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match="dy"):
        m.backward(np.zeros((4, 2, 7)))
    m.backward(np.zeros((4, 2, 4)))


def _cell_alone(cls, x, dh):
    c = cls(3, 5, seed=0, dtype=np.float64)
    c(x)
    return c.backward(dh)[0], {k: np.array(v) for k, v in c.grads.items()}


@pytest.mark.parametrize("cls", [fastlstm.LSTMCell, fastlstm.GRUCell, fastlstm.LayerNormLSTMCell],
                         ids=["lstm", "gru", "lnlstm"])
def test_interleaved_steps_on_one_cell(cls):
    """A step cell's saved steps are per thread too: A steps, B steps, A
    back-propagates, B back-propagates; each gets its own dx, and the
    gradients add up."""
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((2, 3)) for _ in range(2)]
    dhs = [rng.standard_normal((2, 5)) for _ in range(2)]
    c = cls(3, 5, seed=0, dtype=np.float64)
    out = _interleaved(lambda i: c(xs[i]), lambda i: c.backward(dhs[i])[0])
    _assert_own_and_summed(out, [_cell_alone(cls, x, dh) for x, dh in zip(xs, dhs)], c.grads)
