"""Data-parallel training beyond one process: fastlstm.torch under
DistributedDataParallel (gloo, two processes on loopback), and fastlstm.jax
under jax.shard_map over two host devices; each equal to one process on the
full batch. The workers are in tests/workers/."""
import importlib.util
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

DIST = pathlib.Path(__file__).resolve().parent / "workers"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_one_process(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.distributed.is_available():
        pytest.skip("this torch has no torch.distributed")
    worker = str(DIST / "ddp_worker.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, worker, str(r), "2", str(port),
                               str(tmp_path / f"rank{r}.npz")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(2)]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-3000:]
    one = subprocess.run([sys.executable, worker, "0", "1", "0", str(tmp_path / "one.npz")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stdout[-2000:] + one.stderr[-2000:]
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    full = np.load(tmp_path / "one.npz")
    # the mean of the two half-batch losses is the full-batch loss
    np.testing.assert_allclose((ranks[0]["losses"] + ranks[1]["losses"]) / 2, full["losses"],
                               rtol=1e-5)
    names = [k for k in full.files if k != "losses"]
    assert any(k.startswith("lstm.weight_hh_l1_reverse") for k in names)
    for k in names:
        np.testing.assert_array_equal(ranks[0][k], ranks[1][k], err_msg=k)  # in sync
        np.testing.assert_allclose(ranks[0][k], full[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_shard_map_over_two_devices_matches_one_device():
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    r = subprocess.run([sys.executable, str(DIST / "shard_map_worker.py")], env=env,
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "no XLA FFI handlers" in r.stderr and \
            not os.environ.get("FASTLSTM_REQUIRE_JAX"):
        pytest.skip("fastlstm was built without the XLA FFI handlers")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "equal the full batch's" in r.stdout
