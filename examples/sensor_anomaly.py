"""Sensor anomaly detection with an LSTM autoencoder in Keras 3, on
fastlstm.keras layers (Keras's torch backend unless KERAS_BACKEND says jax).

    python examples/sensor_anomaly.py [--epochs 8]

A three-channel vibration sensor (two harmonics of a shaft's rotation, their
phases drifting, plus noise) is cut into windows. The autoencoder learns to
reconstruct normal windows; a window whose reconstruction error exceeds the
99.5th percentile of the training errors is flagged. The test stream has
injected faults (spikes, a bearing tone, a stuck sensor); prints the
precision and recall of the flags.
"""
import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from fastlstm import keras as fk  # noqa: E402

WINDOW, CHANNELS = 32, 3


def signal(rng, n):
    t = np.arange(n)
    phase = np.cumsum(0.002 * rng.standard_normal((n, 1)), axis=0)
    f = 2 * np.pi / 20
    base = np.sin(f * t[:, None] + phase + np.array([0.0, 1.0, 2.0]))
    s = base + 0.3 * np.sin(2 * f * t[:, None] + 2 * phase)
    return (s + 0.05 * rng.standard_normal((n, CHANNELS))).astype(np.float32)


def windows(s):
    n = len(s) // WINDOW
    return s[:n * WINDOW].reshape(n, WINDOW, CHANNELS)


def inject(rng, w):
    """Faults in a random third of the windows, in place; the fault flags."""
    faulty = rng.random(len(w)) < 1 / 3
    t = np.arange(WINDOW)
    for i in np.flatnonzero(faulty):
        ch = rng.integers(CHANNELS)
        kind = rng.integers(3)
        if kind == 0:  # a spike
            w[i, rng.integers(WINDOW), ch] += rng.choice([-1, 1]) * rng.uniform(1.0, 2.0)
        elif kind == 1:  # a bearing tone
            w[i, :, ch] += 0.4 * np.sin(2 * np.pi * t / 3.1)
        else:  # a stuck sensor
            w[i, WINDOW // 2:, ch] = w[i, WINDOW // 2, ch]
    return faulty


def autoencoder(hidden=32):
    inp = keras.Input((WINDOW, CHANNELS))
    z = fk.LSTM(hidden)(inp)                                  # encode the window
    y = keras.layers.RepeatVector(WINDOW)(z)
    y = fk.LSTM(hidden, return_sequences=True)(y)             # decode it
    return keras.Model(inp, keras.layers.TimeDistributed(keras.layers.Dense(CHANNELS))(y))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args(argv)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    train = windows(signal(rng, 64_000))
    test = windows(signal(rng, 16_000))
    faulty = inject(rng, test)

    model = autoencoder()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    start = time.perf_counter()
    hist = model.fit(train, train, batch_size=64, epochs=args.epochs, verbose=0)
    seconds = time.perf_counter() - start
    print("train loss by epoch: " + ", ".join(f"{v:.4f}" for v in hist.history["loss"]))

    def errors(w):
        return np.mean((model.predict(w, batch_size=256, verbose=0) - w) ** 2, axis=(1, 2))
    threshold = np.percentile(errors(train), 99.5)
    flagged = errors(test) > threshold
    tp = int(np.sum(flagged & faulty))
    precision = tp / max(int(flagged.sum()), 1)
    recall = tp / max(int(faulty.sum()), 1)
    print(f"{len(test)} test windows, {int(faulty.sum())} with faults: precision {precision:.2f}, "
          f"recall {recall:.2f} (backend {keras.backend.backend()}, trained in {seconds:.1f} s)")
    return precision, recall


if __name__ == "__main__":
    main()
