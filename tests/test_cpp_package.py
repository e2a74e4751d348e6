"""The C++/C library as a C++ or C program gets it: a plain CMake build of
this repository, `cmake --install`, then examples/cpp and examples/c built
with find_package(fastlstm) against the installed package and run. Each
example checks its gradients against finite differences and exits non-zero
on a mismatch; the C one also checks the error path of the C ABI.

FASTLSTM_TEST_SANITIZE=address,undefined (.ci/sanitize) builds the library and
the examples with those sanitizers and runs the examples with LeakSanitizer
on: any report fails the test."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SANITIZE = os.environ.get("FASTLSTM_TEST_SANITIZE", "")
SAN_FLAGS = f"-fsanitize={SANITIZE} -fno-sanitize-recover=all -fno-omit-frame-pointer"

pytestmark = pytest.mark.skipif(
    shutil.which("cmake") is None or shutil.which("cc") is None and shutil.which("gcc") is None,
    reason="needs cmake and a C/C++ compiler")


def run(cmd, cwd=None, env=None):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r.stdout


def generator():
    return ["-G", "Ninja"] if shutil.which("ninja") else []


@pytest.fixture(scope="module", params=["shared", "static"])
def prefix(request, tmp_path_factory):
    """The library built and installed from this checkout (the shared one:
    $FASTLSTM_C_PREFIX where .ci/sanitize installed it)."""
    if request.param == "shared" and os.environ.get("FASTLSTM_C_PREFIX"):
        return Path(os.environ["FASTLSTM_C_PREFIX"])
    tmp = tmp_path_factory.mktemp(f"fastlstm-{request.param}")
    build, prefix = tmp / "build", tmp / "prefix"
    shared = "ON" if request.param == "shared" else "OFF"
    run(["cmake", "-S", ROOT, "-B", build, *generator(), "-DCMAKE_BUILD_TYPE=Release",
         f"-DBUILD_SHARED_LIBS={shared}", f"-DCMAKE_INSTALL_PREFIX={prefix}",
         f"-DFASTLSTM_SANITIZE={SANITIZE}"])
    run(["cmake", "--build", build, "--parallel", str(os.cpu_count() or 1)])
    run(["cmake", "--install", build])
    return prefix


def test_install_layout(prefix):
    assert (prefix / "include/fastlstm/lstm.h").is_file()
    assert (prefix / "include/fastlstm/fastlstm_c.h").is_file()
    cmake_dirs = list(prefix.glob("lib*/cmake/fastlstm/fastlstmConfig.cmake"))
    assert cmake_dirs, "no fastlstmConfig.cmake installed"
    assert not list(prefix.rglob("*.inc")), "private sources were installed"


@pytest.mark.parametrize("example, exe", [("cpp", "lstm_example"), ("c", "lstm_example_c")])
def test_example_builds_and_runs(prefix, tmp_path, example, exe):
    build = tmp_path / "build"
    san = [f"-DCMAKE_{k}_FLAGS={SAN_FLAGS}" for k in ("C", "CXX", "EXE_LINKER")] if SANITIZE else []
    run(["cmake", "-S", ROOT / "examples" / example, "-B", build, *generator(),
         f"-DCMAKE_PREFIX_PATH={prefix}", *san])
    run(["cmake", "--build", build])
    # the sanitized examples run with LeakSanitizer (the Python tests above them do not)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:halt_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    env.pop("LD_PRELOAD", None)
    if "address" in SANITIZE:  # the flags took: the example carries ASan's runtime
        assert "libasan" in run(["ldd", build / exe]), "the example is not built with ASan"
    out = run([build / exe], env=env)
    assert "gradient check passed" in out, out
    if example == "c":
        assert "status 1" in out and "packed from float64 weights" in out, out
    else:  # the backend seam refuses a backend that is not built
        assert "refused as expected: backend: 'cuda' is not built" in out, out


@pytest.mark.parametrize("prefix", ["shared"], indirect=True)  # ctypes loads the .so
def test_c_abi_reports_errors_without_crashing(prefix):
    """The C ABI through ctypes: every bad argument is a status and a message."""
    import ctypes

    libs = list(prefix.glob("lib*/libfastlstm.so"))
    assert libs, "the shared build installed no libfastlstm.so"
    lib = ctypes.CDLL(str(libs[0]))
    i64, p = ctypes.c_int64, ctypes.c_void_p

    class Dims(ctypes.Structure):
        _fields_ = [(n, i64) for n in "T B I H P D".split()] + [("peephole", ctypes.c_int),
                                                                 ("cell", ctypes.c_int)]

    class Weights(ctypes.Structure):
        _fields_ = [(n, p) for n in ("w_ih", "w_hh", "b_ih", "b_hh", "w_ph", "w_hr")]

    lib.fastlstm_last_error.restype = ctypes.c_char_p
    lib.fastlstm_version.restype = ctypes.c_char_p
    lib.fastlstm_pack_f32.argtypes = [p, p, ctypes.c_int, ctypes.c_int, ctypes.c_int, p]
    lib.fastlstm_workspace_size.argtypes = [p, p, ctypes.c_int, ctypes.c_int, p]
    lib.fastlstm_forward_f32.argtypes = [p] * 10 + [ctypes.c_int]
    lib.fastlstm_packed_free.argtypes = [p]
    assert lib.fastlstm_version() == b"0.1.0"

    import numpy as np
    T, B, I, H = 3, 2, 4, 5
    w_ih = np.ones((4 * H, I), np.float32)
    w_hh = np.ones((4 * H, H), np.float32)
    good = Dims(T, B, I, H, 0, 1, 0)
    w = Weights(w_ih.ctypes.data, w_hh.ctypes.data, None, None, None, None)
    out = p()
    ref = ctypes.byref

    def status(fn, *args):
        s = fn(*args)
        return s, lib.fastlstm_last_error().decode()

    assert status(lib.fastlstm_pack_f32, None, ref(w), -1, 0, 1, ref(out)) == \
        (1, "dims: must not be NULL")
    for dims, msg in ((Dims(T, B, I, H, 0, 3, 0), "D"), (Dims(T, B, I, -2, 0, 1, 0), "hidden"),
                      (Dims(T, B, I, H, H, 1, 0), "proj"),
                      (Dims(T, B, I, H, 0, 1, 1), "required weight pointer")):
        s, m = status(lib.fastlstm_pack_f32, ref(dims), ref(w), -1, 0, 1, ref(out))
        assert s == 1 and msg in m and not out.value, (dims, s, m)
    s, m = status(lib.fastlstm_pack_f32, ref(good), ref(w), -1, 0, 0, ref(out))
    assert s == 1 and "num_threads" in m
    s, m = status(lib.fastlstm_pack_f32, ref(good), ref(w), 7, 0, 1, ref(out))
    assert s == 1 and "isa" in m
    big = Dims(1 << 40, 1 << 40, I, H, 0, 1, 0)
    n = i64()
    s, m = status(lib.fastlstm_workspace_size, ref(big), None, -1, 4, ref(n))
    assert s == 2 and "overflow" in m, (s, m)
    lens = np.array([3, 9], np.int64)
    s, m = status(lib.fastlstm_workspace_size, ref(good), lens.ctypes.data, -1, 4, ref(n))
    assert s == 1 and "lengths" in m, (s, m)

    assert lib.fastlstm_pack_f32(ref(good), ref(w), -1, 0, 1, ref(out)) == 0 and out.value
    x = np.linspace(-1, 1, T * B * I, dtype=np.float32).reshape(T, B, I)
    h = np.zeros((1, B, H), np.float32)
    y = np.zeros((T, B, H), np.float32)
    hn, cn = np.zeros_like(h), np.zeros_like(h)
    args = [x.ctypes.data, None, h.ctypes.data, h.ctypes.data, y.ctypes.data, hn.ctypes.data,
            cn.ctypes.data, None]
    other = Dims(T, B, I + 1, H, 0, 1, 0)  # not what was packed
    s, m = status(lib.fastlstm_forward_f32, ref(other), out, *args, 1)
    assert s == 1 and "packed for I=4" in m, m
    s, m = status(lib.fastlstm_forward_f32, ref(good), out, None, *args[1:], 1)
    assert s == 1 and "must not be NULL" in m
    assert status(lib.fastlstm_forward_f32, ref(good), out, *args, 2) == (0, "")
    from fastlstm import reference
    want, _, _, _ = reference.lstm_forward(x.astype(np.float64), {
        "weight_ih_l0": w_ih.astype(np.float64), "weight_hh_l0": w_hh.astype(np.float64)},
        num_layers=1, hidden_size=H, bias=False)
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-5)
    lib.fastlstm_packed_free(out)
    lib.fastlstm_packed_free(None)  # a no-op, as free(NULL)

    # the GRU through the same entry points: no c state (NULL), 3H gate rows
    from fastlstm import reference_gru
    rng = np.random.default_rng(0)
    g_ih = rng.uniform(-.5, .5, (3 * H, I)).astype(np.float32)
    g_hh = rng.uniform(-.5, .5, (3 * H, H)).astype(np.float32)
    g_b = rng.uniform(-.5, .5, (2, 3 * H)).astype(np.float32)
    gw = Weights(g_ih.ctypes.data, g_hh.ctypes.data, g_b[0].ctypes.data, g_b[1].ctypes.data,
                 None, None)
    gru = Dims(T, B, I, H, 0, 1, 0, 1)
    s, m = status(lib.fastlstm_pack_f32, ref(Dims(T, B, I, H, 2, 1, 0, 1)), ref(gw), -1, 0, 1,
                  ref(out))
    assert s == 1 and "no projection" in m, m
    s, m = status(lib.fastlstm_pack_f32, ref(Dims(T, B, I, H, 0, 1, 0, 5)), ref(gw), -1, 0, 1,
                  ref(out))
    assert s == 1 and "dims.cell" in m, m
    assert lib.fastlstm_pack_f32(ref(gru), ref(gw), -1, 0, 1, ref(out)) == 0
    h = rng.standard_normal((1, B, H)).astype(np.float32)
    y, hn = np.zeros((T, B, H), np.float32), np.zeros((1, B, H), np.float32)
    assert status(lib.fastlstm_forward_f32, ref(gru), out, x.ctypes.data, None, h.ctypes.data,
                  None, y.ctypes.data, hn.ctypes.data, None, None, 1) == (0, "")
    lib.fastlstm_packed_free(out)
    params = {"weight_ih_l0": g_ih, "weight_hh_l0": g_hh, "bias_ih_l0": g_b[0],
              "bias_hh_l0": g_b[1]}
    want, want_h, _ = reference_gru.gru_forward(x.astype(np.float64), params, num_layers=1,
                                                hidden_size=H, h0=h.astype(np.float64))
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(hn, want_h, rtol=0, atol=1e-5)
