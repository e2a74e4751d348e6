"""Speed of a gradient penalty (double backward) through fastlstm.torch.LSTM
against torch.nn.LSTM, side by side in one process, interleaved, medians.

    python bench/torch_double_backward.py [--threads N] [--reps R]

Each step: y = lstm(x); g = grad(y.sum(), x, create_graph=True);
(y.square().sum() + g.square().sum()).backward(). The first-order training
step (no create_graph) is timed too, for scale.
"""
import argparse
import statistics
import time

import torch

import fastlstm.torch as flt

SHAPES = {"small": (50, 16, 64, 128), "mid": (100, 16, 256, 256)}  # T, B, I, H


def penalty_step(m, x):
    x = x.detach().requires_grad_()
    y, _ = m(x)
    g, = torch.autograd.grad(y.sum(), x, create_graph=True)
    (y.square().sum() + g.square().sum()).backward()


def train_step(m, x):
    y, _ = m(x.detach().requires_grad_())
    y.square().sum().backward()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, medians of {args.reps}, times in ms; ratio = torch / fastlstm")
    for name, (T, B, I, H) in SHAPES.items():
        torch.manual_seed(0)
        tm = torch.nn.LSTM(I, H)
        fm = flt.LSTM(I, H)
        fm.load_state_dict(tm.state_dict())
        x = torch.randn(T, B, I)
        for label, step in (("train", train_step), ("penalty", penalty_step)):
            times = {"fastlstm": [], "torch": []}
            for _ in range(args.reps + 1):  # the first round warms up
                for impl, m in (("fastlstm", fm), ("torch", tm)):
                    t0 = time.perf_counter()
                    step(m, x)
                    times[impl].append(time.perf_counter() - t0)
            f, t = (statistics.median(times[k][1:]) * 1e3 for k in ("fastlstm", "torch"))
            print(f"{name:6s} T={T} B={B} I={I} H={H} {label:8s} fastlstm {f:8.2f}  "
                  f"torch {t:8.2f}  ratio {t / f:5.2f}")


if __name__ == "__main__":
    main()
