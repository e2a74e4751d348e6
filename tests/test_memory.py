"""Memory of the forward: inference does not grow with T; training allocates the
workspace `_core.workspace_size` announces and nothing per step beyond it, and
its backward dx and the scratch `_core.backward_scratch_size` announces.

Each measurement runs in one fresh subprocess (a clean RSS): the peak resident
set (VmHWM, reset through /proc/self/clear_refs just before the call) minus the
resident set just before the call (which holds x and the packed weights) minus
the bytes the caller receives (y; in training also the saved workspace) is the
call's hidden memory.

Why it can fail: a forward that kept one [4H] row of gate pre-activations per
step (the whole input projection up front) would add T*4H*4 bytes:
100_000 * 1024 * 4 = 400 MB for LSTM(256, 256) at T = 100_000, 40 MB at
T = 10_000; the bound is 32 MB on each and 16 MB on their difference (a buffer
of more than ~44 floats per step is caught). The subprocess also allocates such
a buffer on purpose (calibration) to prove the measurement sees it.
"""
import pytest
from _proc_memory import run_child

fastlstm = pytest.importorskip("fastlstm")

MB = 1 << 20
BOUND = 32 * MB
GROWTH_BOUND = 16 * MB

SCRIPT = r"""
import json, sys
import numpy as np
import fastlstm
from fastlstm import _core
from _proc_memory import reset_peak, status

def measure(fn):
    base = reset_peak()
    kept = fn()
    return status()["VmHWM"] - base - kept

out = {}
rng = np.random.default_rng(0)

# 1. inference, LSTM(256, 256) float32, B=1, T = 10_000 and 100_000 (one thread)
fastlstm.set_num_threads(1)
lstm = fastlstm.LSTM(256, 256, seed=0).eval()
x = np.empty((100_000, 1, 256), np.float32)
rng.standard_normal(out=x, dtype=np.float32)
lstm(x[:2])                                   # packs the weights, starts the threads
for T in (10_000, 100_000):
    def call(T=T):
        y, (h, c) = lstm(x[:T])
        assert y.shape == (T, 1, 256) and np.isfinite(y[-1]).all()
        return y.nbytes
    out[f"eval_T{T}"] = measure(call)

# calibration: a T-proportional [T, 4H] float32 buffer must show up
def calibrate():
    buf = np.ones((10_000, 4 * 256), np.float32)
    return 0
out["calibration_T10000"] = measure(calibrate)
out["calibration_expected"] = 10_000 * 4 * 256 * 4
del x

# 2. inference, bidirectional with lengths (gathered rows, both directions at once)
fastlstm.set_num_threads(2)
bl = fastlstm.LSTM(64, 128, bidirectional=True, seed=1).eval()
xb = np.empty((50_000, 2, 64), np.float32)
rng.standard_normal(out=xb, dtype=np.float32)
bl(xb[:2])
for T in (5_000, 50_000):
    def call(T=T):
        y, _ = bl(xb[:T], lengths=np.array([T // 2 + 1, T]))
        return y.nbytes
    out[f"bidir_eval_T{T}"] = measure(call)
del xb

# 3. training forward: the workspace is what workspace_size says, nothing more
fastlstm.set_num_threads(1)
tl = fastlstm.LSTM(256, 256, seed=2).train()
xt = np.empty((20_000, 1, 256), np.float32)
rng.standard_normal(out=xt, dtype=np.float32)
tl(xt[:2])
def call():
    y, _ = tl(xt)
    isa = tl._packed[1].isa
    ws = _core.workspace_size(_core.LayerDims(T=20_000, B=1, I=256, H=256), None, isa, 4) * 4
    saved = tl._ctx.peek()[0].layers[0].ws
    assert saved.nbytes == ws, (saved.nbytes, ws)
    out["train_ws_bytes"] = ws
    return y.nbytes + ws
out["train_T20000"] = measure(call)

# 4. training backward: dx and the backward scratch backward_scratch_size says
dy = np.ones((20_000, 1, 256), np.float32)
def call():
    isa = tl._packed[1].isa
    d = _core.LayerDims(T=20_000, B=1, I=256, H=256)
    scratch = _core.backward_scratch_size(d, None, isa, 4) * 4
    dx, _ = tl.backward(dy)
    out["train_scratch_bytes"] = scratch
    return dx.nbytes + scratch
out["train_backward_T20000"] = measure(call)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def measured():
    return run_child(SCRIPT)


def fmt(n):
    return f"{n / MB:.1f} MB"


def test_measurement_sees_a_t_proportional_buffer(measured):
    got, want = measured["calibration_T10000"], measured["calibration_expected"]
    assert got >= 0.9 * want, f"calibration: a {fmt(want)} buffer measured as {fmt(got)}"
    assert want > BOUND


def test_inference_memory_does_not_grow_with_t(measured):
    small, large = measured["eval_T10000"], measured["eval_T100000"]
    assert large <= BOUND, f"T=100000: {fmt(large)} beyond x and y (bound {fmt(BOUND)})"
    assert small <= BOUND, f"T=10000: {fmt(small)} beyond x and y (bound {fmt(BOUND)})"
    assert large - small <= GROWTH_BOUND, (
        f"extra memory grows with T: {fmt(small)} at T=10000, {fmt(large)} at T=100000")


def test_bidirectional_inference_with_lengths_does_not_grow_with_t(measured):
    small, large = measured["bidir_eval_T5000"], measured["bidir_eval_T50000"]
    assert large <= BOUND, f"T=50000: {fmt(large)} beyond x and y (bound {fmt(BOUND)})"
    assert large - small <= GROWTH_BOUND, (
        f"extra memory grows with T: {fmt(small)} at T=5000, {fmt(large)} at T=50000")


def test_training_forward_allocates_only_the_workspace(measured):
    extra, ws = measured["train_T20000"], measured["train_ws_bytes"]
    assert ws > 3 * BOUND       # a hidden copy of even a third of it would show
    assert extra <= BOUND, (f"training forward: {fmt(extra)} beyond x, y and the "
                            f"{fmt(ws)} workspace (bound {fmt(BOUND)})")


def test_training_backward_allocates_only_dx_and_the_scratch(measured):
    extra, scratch = measured["train_backward_T20000"], measured["train_scratch_bytes"]
    assert extra <= BOUND, (f"training backward: {fmt(extra)} beyond dy, dx and the "
                            f"{fmt(scratch)} backward scratch (bound {fmt(BOUND)})")
