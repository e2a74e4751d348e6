"""fastlstm's GEMM driver against the BLAS in the environment, side by side.

    python bench/gemm_rate.py [--threads 1,2] [--isa avx2] [--repeats 7]

For each (M, N, K) (a square product and the products an LSTM layer runs:
the input projection over T*B rows, a step's h W_hh^T, the weight gradients
with K = T*B) it times fastlstm's packed-B GEMM (the packing of B is not
timed: the kernels pack weights once), numpy's matmul and torch.mm, in
GFLOP/s (medians), and checks fastlstm's product against numpy's in float64.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

import fastlstm
from fastlstm import _core

SHAPES = {  # name: (M, N, K)
    "square 2048": (2048, 2048, 2048),
    "deepbench x W_ih^T": (3200, 4096, 1024),
    "deepbench step": (64, 4096, 1024),
    "deepbench dW_ih": (4096, 1024, 3200),
    "mid x W_ih^T": (1600, 2048, 512),
    "mid step": (16, 2048, 512),
    "wide x W_ih^T": (800, 8192, 2048),
}


def median_time(f, repeats):
    f()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--isa", default=None)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--shapes", default=",".join(SHAPES))
    args = p.parse_args(argv)
    isa = args.isa or fastlstm.info()["isa"]
    try:
        import torch
    except ImportError:
        torch = None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    rng = np.random.default_rng(0)
    print(f"fastlstm {fastlstm.__version__} isa {isa} | numpy {np.__version__} | torch "
          f"{torch.__version__ if torch else '-'} | {os.cpu_count()} cpus")
    print(f"{'shape':22s} {'M':>5s} {'N':>5s} {'K':>5s} t  fastlstm   numpy   torch  "
          f"(GFLOP/s)  fl/best")
    for name in args.shapes.split(","):
        M, N, K = SHAPES[name]
        a = rng.standard_normal((M, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        c = np.empty((M, N), np.float32)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        flops = 2.0 * M * N * K
        for nt in [int(t) for t in args.threads.split(",")]:
            s = _core._kernel_gemm_f32(isa, a, b, c, M, N, K, nt, args.repeats)
            err = float(np.abs(c - ref).max() / np.abs(ref).max())
            assert err < 1e-5, f"{name}: fastlstm's product differs by {err:.1e}"
            fl = flops / s / 1e9
            if threadpool_limits:
                with threadpool_limits(nt):
                    npr = flops / median_time(lambda: a @ b, args.repeats) / 1e9
            else:
                npr = float("nan")
            if torch:
                torch.set_num_threads(nt)
                ta, tb = torch.from_numpy(a), torch.from_numpy(b)
                tr = flops / median_time(lambda: torch.mm(ta, tb), args.repeats) / 1e9
            else:
                tr = float("nan")
            best = max(v for v in (npr, tr) if v == v) if (npr == npr or tr == tr) else fl
            print(f"{name:22s} {M:5d} {N:5d} {K:5d} {nt} {fl:9.1f} {npr:7.1f} {tr:7.1f}"
                  f"             {fl / best:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
