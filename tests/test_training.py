"""End to end: a 1-layer fastlstm.LSTM with a NumPy linear read-out learns to
forecast the next value of a noisy sine wave, trained with Adam written here
on top of lstm.backward / lstm.grads.

Margin: with these settings the loss drops by > 100x (checked over seeds 0-5,
also with an equivalent torch model); the test asks for 10x."""
import numpy as np
import pytest

fastlstm = pytest.importorskip("fastlstm")

T, B, H = 30, 32, 24
SKIP = 5          # the first steps cannot know the phase yet: not scored
SIGMA = 0.05      # observation noise; the floor of the loss is SIGMA**2
DT = 0.3
STEPS = 150
LR = 0.01


def batch(rng, n):
    phase = rng.uniform(0, 2 * np.pi, n)
    t = np.arange(T + 1)[:, None] * DT
    s = np.sin(t + phase) + SIGMA * rng.standard_normal((T + 1, n))
    return s[:-1, :, None].astype(np.float32), s[1:].astype(np.float32)


class Adam:
    def __init__(self, lr, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m, self.v, self.t = {}, {}, 0

    def step(self, params, grads):
        self.t += 1
        for k, p in params.items():
            g = grads[k].astype(np.float64)
            m = self.m[k] = self.b1 * self.m.get(k, 0.0) + (1 - self.b1) * g
            v = self.v[k] = self.b2 * self.v.get(k, 0.0) + (1 - self.b2) * g * g
            mh = m / (1 - self.b1 ** self.t)
            vh = v / (1 - self.b2 ** self.t)
            p -= (self.lr * mh / (np.sqrt(vh) + self.eps)).astype(p.dtype)  # in place


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("seed", [0, 3])
def test_learns_noisy_sine_forecast(seed):
    rng = np.random.default_rng(seed)
    lstm = fastlstm.LSTM(1, H, seed=seed)
    readout = {
        "W": (rng.uniform(-1, 1, H) / np.sqrt(H)).astype(np.float32),
        "b": np.zeros(1, np.float32),
    }
    x_eval, t_eval = batch(np.random.default_rng(1000 + seed), 256)

    def eval_loss():
        lstm.eval()
        y, _ = lstm(x_eval)
        lstm.train()
        pred = y @ readout["W"] + readout["b"][0]
        return float(np.mean((pred - t_eval)[SKIP:] ** 2))

    initial = eval_loss()
    assert np.isfinite(initial)
    opt = Adam(LR)
    keys = list(lstm.state_dict())
    n = (T - SKIP) * B
    for _ in range(STEPS):
        x, target = batch(rng, B)
        y, _ = lstm(x)
        pred = y @ readout["W"] + readout["b"][0]
        err = pred - target
        err[:SKIP] = 0.0
        dpred = (2.0 / n) * err                                   # [T,B]
        grads = {
            "W": np.einsum("tb,tbh->h", dpred, y),
            "b": np.array([dpred.sum()], np.float32),
        }
        dy = (dpred[:, :, None] * readout["W"]).astype(np.float32)  # [T,B,H]
        lstm.zero_grad()
        dx, _ = lstm.backward(dy)
        assert dx.shape == x.shape
        params = {k: getattr(lstm, k) for k in keys}  # the layer's own arrays
        params.update(readout)
        grads.update(lstm.grads)
        opt.step(params, grads)

    final = eval_loss()
    assert final <= initial / 10, f"loss {initial:.4f} -> {final:.4f}"
    assert final >= SIGMA ** 2 * 0.5, f"loss {final:.5f} below the noise floor: the eval is leaking"
