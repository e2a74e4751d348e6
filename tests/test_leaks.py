"""Leaks: 10,000 training steps (forward + backward) on one layer leave the
resident set flat. Each case runs in a fresh subprocess: 1,000 warm-up steps
(pools, packed weights, threads, allocator arenas), then the resident set
(VmRSS) before and after 10,000 more. The bound, LEAK_BOUND for 10,000 steps,
catches a leak of 100 bytes per step; the calibration case leaks 128 bytes
per step on purpose to prove that the measurement sees one."""
import os

import pytest
from _proc_memory import run_child

STEPS = 10_000
LEAK_BOUND = 1 << 20  # bytes of growth over STEPS steps: 105 bytes a step

SCRIPT = r"""
import json, sys
import numpy as np
kind, steps = sys.argv[1], int(sys.argv[2])

from _proc_memory import status

rng = np.random.default_rng(0)
x = rng.standard_normal((5, 2, 8)).astype(np.float32)
lengths = np.array([5, 3])
kept = []
if kind == "torch":
    import torch
    import fastlstm.torch as ft
    torch.set_num_threads(1)
    m = ft.LSTM(8, 16, bidirectional=True)
    xt = torch.from_numpy(x).requires_grad_()
    def step():
        y, _ = m(xt)
        y.sum().backward()
else:
    import fastlstm
    cls = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "lnlstm": fastlstm.LayerNormLSTM,
           "calibration": fastlstm.GRU}[kind]
    big = kind == "lstm"  # two bidirectional layers: every buffer kind, once per step
    m = cls(8, 16, num_layers=2 if big else 1, bidirectional=big, seed=0)
    m.train()
    dy = np.ones((5, 2, 32 if big else 16), np.float32)
    def step():
        m(x, lengths=lengths)
        m.backward(dy)
        if kind == "calibration":
            kept.append(bytes(128 - 33))  # 33: a bytes object's header
for _ in range(1000):
    step()
before = status()["VmRSS"]
for _ in range(steps):
    step()
print(json.dumps({"growth": status()["VmRSS"] - before}))
"""


def growth(kind):
    # one thread: a busy machine's preemptions would only slow the steps down
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return run_child(SCRIPT, [kind, STEPS], timeout=600, env=env)["growth"]


def test_the_measurement_sees_a_leak_of_128_bytes_a_step():
    assert growth("calibration") > LEAK_BOUND


@pytest.mark.parametrize("kind", ["lstm", "gru", "lnlstm"])
def test_ten_thousand_training_steps_leave_rss_flat(kind):
    g = growth(kind)
    assert g <= LEAK_BOUND, f"{kind}: RSS grew {g / 1024:.0f} KiB over {STEPS} steps"


def test_ten_thousand_fastlstm_torch_steps_leave_rss_flat():
    pytest.importorskip("torch")
    g = growth("torch")
    assert g <= LEAK_BOUND, f"fastlstm.torch: RSS grew {g / 1024:.0f} KiB over {STEPS} steps"
