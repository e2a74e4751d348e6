"""Threads on a busy machine: the default thread count (affinity, cgroup CPU
quota), the back-off to one thread after a preempted team stalled
(fastlstm.set_adaptive_threads), and a call under a competing load, whose
default-thread time must stay close to its one-thread time."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import fastlstm
from fastlstm import _runtime


def write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("v2, want", [("50000 100000\n", 0.5), ("150000 100000\n", 1.5),
                                      ("max 100000\n", None), ("200000 50000", 4.0)])
def test_cgroup_v2_quota_of_the_own_group(tmp_path, v2, want):
    write(tmp_path, "proc", "0::/user.slice/job\n")
    write(tmp_path, "cg/user.slice/job/cpu.max", v2)
    write(tmp_path, "cg/cpu.max", "max 100000\n")  # the root's must not win
    got = _runtime._cgroup_cpus(str(tmp_path / "cg"), str(tmp_path / "proc"))
    assert got == want


@pytest.mark.parametrize("quota, want", [("-1\n", None), ("250000\n", 2.5)])
def test_cgroup_v1_quota(tmp_path, quota, want):
    write(tmp_path, "proc", "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n")
    write(tmp_path, "cg/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", quota)
    write(tmp_path, "cg/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n")
    assert _runtime._cgroup_cpus(str(tmp_path / "cg"), str(tmp_path / "proc")) == want


def test_no_cgroup_files_means_no_quota(tmp_path):
    assert _runtime._cgroup_cpus(str(tmp_path / "none"), str(tmp_path / "none")) is None


def test_default_threads_follow_affinity_quota_and_env(monkeypatch):
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(_runtime, "_cgroup_cpus", lambda: None)
    if affinity is not None:
        assert _runtime._default_threads() == affinity
    monkeypatch.setattr(_runtime, "_cgroup_cpus", lambda: 0.5)  # half a CPU: one thread
    assert _runtime._default_threads() == 1
    monkeypatch.setattr(_runtime, "_cgroup_cpus", lambda: 1000.5)  # above the CPUs: no cap
    if affinity is not None:
        assert _runtime._default_threads() == affinity
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's word wins
    assert _runtime._default_threads() == 3


def test_adaptive_threads_switch_and_state():
    state = fastlstm.adaptive_threads_state()
    assert set(state) == {"enabled", "stalls", "backing_off"} and state["enabled"] is True
    with pytest.raises(TypeError, match="on: expected a bool"):
        fastlstm.set_adaptive_threads(1)
    try:
        fastlstm.set_adaptive_threads(False)
        assert fastlstm.adaptive_threads_state() == {
            "enabled": False, "stalls": state["stalls"], "backing_off": False}
    finally:
        fastlstm.set_adaptive_threads(True)
    assert fastlstm.info()["adaptive_threads"]["enabled"] is True


def test_environment_turns_it_off():
    code = "import fastlstm; print(fastlstm.adaptive_threads_state()['enabled'])"
    env = dict(os.environ, FASTLSTM_ADAPTIVE_THREADS="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def _median_ms(m, x, nt, seconds):
    fastlstm.set_num_threads(nt)
    m(x)
    ts = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(ts) < 20:
        t0 = time.perf_counter()
        m(x)
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts))


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two or more CPUs to compete for")
def test_a_call_under_load_stays_near_its_one_thread_time():
    """With a busy process on every CPU, a streaming-size call on the default
    threads took 100x its one-thread time when a team member was preempted
    (a spinning barrier); now it must stay within a loose 3x of it."""
    prev = fastlstm.get_num_threads()
    nt = max(2, prev)
    m = fastlstm.LSTM(256, 256, seed=0)  # B=1, H=256: split between threads
    m.eval()
    x = np.random.default_rng(0).standard_normal((100, 1, 256)).astype(np.float32)
    want = m(x)[0]
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 2)]
    try:
        time.sleep(0.3)
        one, many = [], []
        for _ in range(3):  # interleaved: both see the same load
            one.append(_median_ms(m, x, 1, 0.5))
            many.append(_median_ms(m, x, nt, 0.5))
        y = m(x)[0]
    finally:
        for p in busy:
            p.kill()
        for p in busy:
            p.wait()
        fastlstm.set_num_threads(prev)
    np.testing.assert_array_equal(y, want)  # whatever team size ran it
    ratio = min(many) / min(one)
    assert ratio <= 3.0, (f"{nt} threads under load: {min(many):.2f} ms, 1 thread "
                          f"{min(one):.2f} ms ({ratio:.1f}x)")


def test_back_off_policy():
    """Two stalled calls in a row halve the team for 0.1 s (halved again if
    the halved team stalls); the probe after it gets the full team; a clean
    full team ends the back-off, a stalled probe doubles it."""
    from fastlstm import _core
    c = _core._Contention()
    assert (c.threads(1), c.threads(2), c.threads(16)) == (1, 2, 16)
    c.report(False, 2, 2)
    assert c.threads(16) == 16 and c.stalls() == 0
    c.report(True, 16, 16)  # a lone stall: a hiccup
    c.report(False, 16, 16)
    c.report(True, 16, 16)
    assert c.threads(16) == 16 and c.stalls() == 2
    c.report(True, 16, 16)  # two in a row
    assert (c.threads(16), c.threads(2), c.threads(3), c.threads(1)) == (8, 1, 1, 1)
    c.report(True, 8, 16)  # the halved team stalled too
    assert c.threads(16) == 4 and c.stalls() == 4
    c.report(False, 4, 16)  # a clean reduced team keeps the back-off
    assert c.threads(16) == 4
    time.sleep(0.12)
    assert c.threads(16) == 16  # the probe
    c.report(True, 16, 16)  # the probe stalled: 0.2 s now
    assert c.threads(16) == 4
    time.sleep(0.12)
    assert c.threads(16) == 4
    time.sleep(0.12)
    assert c.threads(16) == 16
    c.report(False, 16, 16)  # clean: back to the full team for good
    c.report(True, 16, 16)
    c.report(True, 16, 16)
    assert c.threads(16) == 8
    time.sleep(0.12)
    assert c.threads(16) == 16  # the back-off restarted at 0.1 s
