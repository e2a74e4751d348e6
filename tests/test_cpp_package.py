"""The C++/C library as a C++ or C program gets it: a plain CMake build of
this repository, `cmake --install`, then examples/cpp and examples/c built
with find_package(fastlstm) against the installed package and run. Each
example checks its gradients against finite differences and exits non-zero
on a mismatch; the C one also checks the error path of the C ABI."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    shutil.which("cmake") is None or shutil.which("cc") is None and shutil.which("gcc") is None,
    reason="needs cmake and a C/C++ compiler")


def run(cmd, cwd=None):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r.stdout


def generator():
    return ["-G", "Ninja"] if shutil.which("ninja") else []


@pytest.fixture(scope="module", params=["shared", "static"])
def prefix(request, tmp_path_factory):
    """The library built and installed from this checkout."""
    tmp = tmp_path_factory.mktemp(f"fastlstm-{request.param}")
    build, prefix = tmp / "build", tmp / "prefix"
    shared = "ON" if request.param == "shared" else "OFF"
    run(["cmake", "-S", ROOT, "-B", build, *generator(), "-DCMAKE_BUILD_TYPE=Release",
         f"-DBUILD_SHARED_LIBS={shared}", f"-DCMAKE_INSTALL_PREFIX={prefix}"])
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
    run(["cmake", "-S", ROOT / "examples" / example, "-B", build, *generator(),
         f"-DCMAKE_PREFIX_PATH={prefix}"])
    run(["cmake", "--build", build])
    out = run([build / exe])
    assert "gradient check passed" in out, out
    if example == "c":
        assert "status 1" in out and "packed from float64 weights" in out, out
