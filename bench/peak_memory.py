"""Peak memory of one training step (forward + backward), fastlstm.LSTM against
torch.nn.LSTM on the CPU, float32, one fresh process per measurement.

The figure is the peak resident set during the step (VmHWM, reset through
/proc/self/clear_refs just before it) minus the resident set just before it,
which already holds the model, x and dy. So it counts the activations kept
for the backward, the outputs, dx, the weight gradients and any temporaries.
fastlstm's saved activation cache (`_core.workspace_size`) is printed beside it.

    python bench/peak_memory.py [--json out.json]
"""
import argparse
import json
import subprocess
import sys

SHAPES = [  # name, T, B, I, H, layers
    ("small", 100, 16, 128, 128, 1),
    ("mid", 200, 32, 256, 256, 1),
    ("deepbench", 100, 64, 512, 512, 1),
    ("long", 2000, 8, 128, 256, 1),
    ("stack2", 200, 32, 256, 256, 2),
]

CHILD = r"""
import json, sys
import numpy as np
T, B, I, H, L, lib = json.loads(sys.argv[1])

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status("VmRSS")

rng = np.random.default_rng(0)
x = rng.standard_normal((T, B, I)).astype(np.float32)
dy = rng.standard_normal((T, B, H)).astype(np.float32)
out = {}
if lib == "fastlstm":
    import fastlstm
    from fastlstm import _core
    m = fastlstm.LSTM(I, H, num_layers=L, seed=0).train()
    m(x[:2]); m.backward(dy[:2]); m.zero_grad()   # packs, starts threads, allocates grads
    def step():
        m(x)
        m.backward(dy)
    isa = m._packed[1].isa
    out["cache"] = sum(_core.workspace_size(_core.LayerDims(T=T, B=B, I=I if k == 0 else H, H=H),
                                            None, isa, 4) * 4 for k in range(L))
else:
    import torch
    torch.manual_seed(0)
    m = torch.nn.LSTM(I, H, num_layers=L)
    xt, dyt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(dy)
    y, _ = m(xt[:2]); y.backward(dyt[:2]); m.zero_grad(set_to_none=False); xt.grad = None
    def step():
        y, _ = m(xt)
        y.backward(dyt)
base = reset_peak()
step()
out["peak"] = status("VmHWM") - base
print(json.dumps(out))
"""


def measure(shape, lib):
    _, T, B, I, H, L = shape
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps([T, B, I, H, L, lib])],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json")
    args = ap.parse_args()
    mb = 1 << 20
    rows = []
    print(f"{'shape':10} {'T,B,I,H,L':>22} {'fastlstm MB':>12} {'cache MB':>9} {'torch MB':>9} "
          f"{'torch/fastlstm':>15}")
    for shape in SHAPES:
        f, t = measure(shape, "fastlstm"), measure(shape, "torch")
        rows.append(dict(shape=shape[0], dims=shape[1:], fastlstm=f["peak"], cache=f["cache"],
                         torch=t["peak"]))
        dims = ",".join(map(str, shape[1:]))
        print(f"{shape[0]:10} {dims:>22} {f['peak'] / mb:12.1f} {f['cache'] / mb:9.1f} "
              f"{t['peak'] / mb:9.1f} {t['peak'] / max(f['peak'], 1):15.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
