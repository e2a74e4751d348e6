"""Streaming inference at batch 1: a trained LSTM's weights in an LSTMCell that
takes one sample at a time (a sensor, an audio frame, a token), keeping its
state between calls.

    python examples/streaming_cell.py [--steps 2000]

Checks that the stream gives what the whole sequence gives through
fastlstm.LSTM, and prints the time a step takes (and torch.nn.LSTMCell's, when
torch is installed).
"""
import argparse
import time

import numpy as np

import fastlstm


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args(argv)
    I, H, T = 40, 256, args.steps
    layer = fastlstm.LSTM(I, H, seed=0).eval()  # stands in for a trained model
    cell = fastlstm.LSTMCell(I, H).eval()  # eval(): no saved context, the fast step
    sd = layer.state_dict()
    cell.load_state_dict({k[:-3]: v for k, v in sd.items()})  # weight_ih_l0 -> weight_ih
    stream = np.random.default_rng(0).standard_normal((T, 1, I)).astype(np.float32)

    h = np.zeros((1, H), np.float32)
    c = np.zeros((1, H), np.float32)
    outs = np.empty((T, 1, H), np.float32)
    times = np.empty(T)
    for t in range(T):  # one sample arrives
        t0 = time.perf_counter()
        h, c = cell(stream[t], (h, c))
        times[t] = time.perf_counter() - t0
        outs[t] = h

    y, _ = layer(stream)
    err = float(np.abs(outs - y).max())
    print(f"stream vs whole sequence: max |difference| {err:.1e}")
    assert err < 1e-5, err
    ours = float(np.median(times)) * 1e6
    print(f"fastlstm.LSTMCell({I}, {H}) step at batch 1: median {ours:.1f} us "
          f"({fastlstm.get_num_threads()} threads)")
    try:
        import torch
    except ImportError:
        return ours, None
    ref = torch.nn.LSTMCell(I, H)
    ref.load_state_dict({k[:-3]: torch.from_numpy(v) for k, v in sd.items()})
    ht, ct = torch.zeros(1, H), torch.zeros(1, H)
    tt = np.empty(T)
    with torch.inference_mode():
        for t in range(T):
            x = torch.from_numpy(stream[t])
            t0 = time.perf_counter()
            ht, ct = ref(x, (ht, ct))
            tt[t] = time.perf_counter() - t0
    theirs = float(np.median(tt)) * 1e6
    print(f"torch.nn.LSTMCell step: median {theirs:.1f} us ({torch.get_num_threads()} threads); "
          f"ratio {theirs / ours:.2f}")
    return ours, theirs


if __name__ == "__main__":
    main()
