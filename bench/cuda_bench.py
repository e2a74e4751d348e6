"""fastlstm's CUDA backend against cuDNN (torch.nn.LSTM / GRU), side by side.

    python bench/cuda_bench.py [--cell lstm|gru] [--reps 20] [--json FILE]

The DeepBench training shapes (H, B, T), with I = H: a forward and backward
per call; then the same H and T in inference (torch.inference_mode) at
B = 1, 2, 4. float32, the same weights in both. cuDNN is timed with TF32
off (the bit-for-bit float32 peer of fastlstm's cuBLAS SGEMMs) and with
torch's default (cuDNN may use TF32). Times are medians of CUDA-event
timings after warm-up; ratios are cuDNN / fastlstm (> 1: fastlstm faster).
"""
import argparse
import json
import statistics

import torch

import fastlstm.cuda
import fastlstm.torch as flt

TRAIN = [(512, 16, 25), (1024, 128, 25), (2048, 64, 25), (256, 16, 150), (1536, 8, 50)]
INFER_B = (1, 2, 4)


def _median_ms(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def _pair(cell, H):
    torch.manual_seed(0)
    Ref, Ours = (torch.nn.LSTM, flt.LSTM) if cell == "lstm" else (torch.nn.GRU, flt.GRU)
    ref = Ref(H, H).cuda()
    ours = Ours(H, H).cuda()
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _train(m, x):
    def step():
        x.grad = None
        y, _ = m(x)
        y.sum().backward()
    return step


def _infer(m, x):
    def step():
        with torch.inference_mode():
            m(x)
    return step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    fastlstm.cuda.require()
    print(f"# {torch.cuda.get_device_name()}; fastlstm.cuda: {fastlstm.cuda.describe()}")
    print(f"# {a.cell}, float32, median of {a.reps}; ratio = cuDNN / fastlstm")
    print("| mode | H | B | T | fastlstm ms | cuDNN ms (no TF32) | ratio | cuDNN ms (default) "
          "| ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    cases = [("train", H, B, T) for H, B, T in TRAIN]
    cases += [("infer", H, B, T) for H, _, T in TRAIN for B in INFER_B]
    for mode, H, B, T in cases:
        ref, ours = _pair(a.cell, H)
        x = torch.randn(T, B, H, device="cuda", requires_grad=mode == "train")
        make = _train if mode == "train" else _infer
        t_ours = _median_ms(make(ours, x), a.reps)
        old = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        t_exact = _median_ms(make(ref, x), a.reps)
        torch.backends.cudnn.allow_tf32 = True
        t_default = _median_ms(make(ref, x), a.reps)
        torch.backends.cudnn.allow_tf32 = old
        rows.append(dict(mode=mode, H=H, B=B, T=T, fastlstm_ms=t_ours, cudnn_exact_ms=t_exact,
                         cudnn_default_ms=t_default))
        print(f"| {mode} | {H} | {B} | {T} | {t_ours:.3f} | {t_exact:.3f} | "
              f"{t_exact / t_ours:.2f} | {t_default:.3f} | {t_default / t_ours:.2f} |",
              flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), cell=a.cell, rows=rows), f,
                      indent=1)


if __name__ == "__main__":
    main()
