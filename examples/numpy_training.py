"""A training loop in NumPy alone: fastlstm.LSTM, a linear readout, backward,
grads and an Adam step, on next-value prediction of noisy sine waves.

    python examples/numpy_training.py [--steps 300]

Prints the loss as it trains and the test error against the naive forecast
(the last value seen). No framework: the layer's `backward` runs fastlstm's
BPTT and accumulates into `lstm.grads`, as `.grad` in torch.
"""
import argparse
import time

import numpy as np

import fastlstm


def batch(rng, B, T):
    """x [T,B,1] noisy sines of random frequency and phase; y the next values."""
    f = rng.uniform(0.05, 0.25, (1, B, 1))
    p = rng.uniform(0, 2 * np.pi, (1, B, 1))
    t = np.arange(T + 1, dtype=np.float64)[:, None, None]
    s = np.sin(f * t + p) + 0.05 * rng.standard_normal((T + 1, B, 1))
    s = s.astype(np.float32)  # the layer is float32: so must x and dy be
    return s[:-1], s[1:]


class Adam:
    """Adam over a dict of arrays, updated in place (the layer sees the new values)."""

    def __init__(self, params, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8):
        self.params, self.lr, self.b1, self.b2, self.eps = params, lr, b1, b2, eps
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, grads):
        self.t += 1
        for k, p in self.params.items():
            g = grads[k]
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g
            m = self.m[k] / (1 - self.b1 ** self.t)
            v = self.v[k] / (1 - self.b2 ** self.t)
            p -= (self.lr * m / (np.sqrt(v) + self.eps)).astype(p.dtype)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    H, B, T = 32, 32, 60
    lstm = fastlstm.LSTM(1, H, seed=0)
    readout = {"w": (rng.standard_normal((H, 1)) / np.sqrt(H)).astype(np.float32),
               "b": np.zeros(1, np.float32)}
    params = {**dict(lstm.named_parameters()), **{"readout." + k: v for k, v in readout.items()}}
    opt = Adam(params)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = batch(rng, B, T)
        lstm.train()
        h, _ = lstm(x)                              # [T,B,H]
        pred = h @ readout["w"] + readout["b"]      # [T,B,1]
        err = pred - y
        loss = float(np.mean(err ** 2))
        dpred = (2 / err.size) * err                # float32, as the layer
        lstm.zero_grad()
        dh, _ = lstm.backward(dpred @ readout["w"].T)
        grads = dict(lstm.grads)
        grads["readout.w"] = np.einsum("tbh,tbo->ho", h, dpred)
        grads["readout.b"] = dpred.sum(axis=(0, 1))
        opt.step(grads)
        if step == 1 or step % 50 == 0:
            print(f"step {step:4d}  train mse {loss:.4f}")
    train_s = time.perf_counter() - start

    lstm.eval()
    x, y = batch(np.random.default_rng(1), 256, T)
    h, _ = lstm(x)
    mse = float(np.mean((h @ readout["w"] + readout["b"] - y)[10:] ** 2))  # after a warm-up
    naive = float(np.mean((x - y)[10:] ** 2))
    print(f"test mse {mse:.4f}  (naive last-value forecast {naive:.4f}); "
          f"{args.steps} steps in {train_s:.1f} s")
    return mse, naive


if __name__ == "__main__":
    main()
