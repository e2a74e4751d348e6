"""A Cython extension built against the installed fastlstm (fastlstm/capi.pxd,
fastlstm.get_include(); nothing linked) runs a 100-step decoding loop with the
GIL released through the C ABI capsule, and matches LSTMCell."""
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

import fastlstm

HERE = os.path.dirname(os.path.abspath(__file__))


def build(tmp_path):
    pytest.importorskip("Cython")
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    pyx = tmp_path / "stream.pyx"
    shutil.copy(os.path.join(HERE, "cython", "stream.pyx"), pyx)
    package_root = os.path.dirname(os.path.dirname(fastlstm.__file__))  # holds fastlstm/capi.pxd
    subprocess.run([sys.executable, "-m", "cython", "-3", "-I", package_root, str(pyx),
                    "-o", str(tmp_path / "stream.c")], check=True, capture_output=True)
    so = tmp_path / ("stream" + sysconfig.get_config_var("EXT_SUFFIX"))
    r = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-I", sysconfig.get_paths()["include"],
                        "-I", fastlstm.get_include(), str(tmp_path / "stream.c"), "-o", str(so)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    spec = importlib.util.spec_from_file_location("stream", so)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_headers_and_pxd_are_installed():
    inc = fastlstm.get_include()
    for h in ("fastlstm_c.h", "fastlstm_capi.h"):
        assert os.path.isfile(os.path.join(inc, "fastlstm", h)), inc
    pxd = os.path.join(os.path.dirname(fastlstm.__file__), "capi.pxd")
    assert os.path.isfile(pxd)


def test_a_cython_decoding_loop_matches_lstmcell(tmp_path):
    mod = build(tmp_path)
    size, abi, version = mod.abi()
    assert abi >= 2 and version == fastlstm.__version__ and size > 0
    I, H, T = 24, 48, 100
    cell = fastlstm.LSTMCell(I, H, seed=3).eval()
    sd = cell.state_dict()
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((T, I)).astype(np.float32)
    h0 = rng.standard_normal(H).astype(np.float32)
    c0 = rng.standard_normal(H).astype(np.float32)
    h, c = h0.copy(), c0.copy()
    mod.stream(sd["weight_ih"], sd["weight_hh"], sd["bias_ih"], sd["bias_hh"], xs, h, c)
    hr, cr = h0[None], c0[None]
    for t in range(T):
        hr, cr = cell(xs[t][None], (hr, cr))
    np.testing.assert_allclose(h, hr[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c, cr[0], rtol=1e-5, atol=1e-6)
    assert np.abs(h - h0).max() > 1e-2  # it moved


def test_errors_come_back_through_last_error(tmp_path):
    mod = build(tmp_path)
    H = 8
    w = np.zeros((4 * H, 3), np.float32)
    with pytest.raises(ValueError, match="num_threads"):
        mod.stream(w, np.zeros((4 * H, H), np.float32), np.zeros(4 * H, np.float32),
                   np.zeros(4 * H, np.float32), np.zeros((2, 3), np.float32),
                   np.zeros(H, np.float32), np.zeros(H, np.float32), 0)
