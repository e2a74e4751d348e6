"""Packaging facts a user meets: the command line's exit codes and info, the
JAX handlers built into the extension (and the jaxlib they were built
against), and pyproject's test extra and dependency group kept equal."""
import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

import fastlstm
from fastlstm import __main__ as cli

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _pyproject():
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_no_command_is_an_error(capsys):
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert "usage: python -m fastlstm {info,bench}" in err
    assert "a command is required: info or bench" in err
    assert cli.main(["--help"]) == 0
    assert cli.main(["nope"]) == 2


def test_module_entry_exit_code():
    r = subprocess.run([sys.executable, "-m", "fastlstm"], capture_output=True, text=True)
    assert r.returncode == 2 and "a command is required" in r.stderr


def test_info_reports_the_jax_handlers(capsys):
    info = fastlstm.info()
    assert info["jax_ffi"] == bool(fastlstm._core.jax_ffi_targets())
    assert (info["jax_ffi_api"] is None) == (not info["jax_ffi"])
    assert cli.main(["info"]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("jax:")]
    assert len(line) == 1
    if info["jax_ffi"]:
        major, minor = info["jax_ffi_api"]
        assert f"XLA FFI handlers built (FFI API {major}.{minor})" in line[0]
        if importlib.util.find_spec("jax") is not None:
            assert re.search(r"jax \S+ installed", line[0])
        else:
            assert "jax not installed (pip install jax" in line[0]
    else:
        assert "fastlstm.jax is unavailable" in line[0]


def test_test_extra_equals_the_test_group():
    doc = _pyproject()
    assert doc["project"]["optional-dependencies"]["test"] == doc["dependency-groups"]["test"]


def _pins(requires):
    """{python_version lower bound: jaxlib version} of the build's jaxlib pins."""
    out = {}
    for req in requires:
        m = re.match(r"jaxlib==(\S+); python_version >= '(\d+\.\d+)'", req)
        assert m, req
        out[m.group(2)] = m.group(1)
    return out


def test_jax_extra_admits_nothing_older_than_the_headers_built_against():
    """A handler built against jaxlib X's FFI headers runs on X and newer: the
    extra's lower bound per Python must be the build's jaxlib pin."""
    doc = _pyproject()
    pins = _pins(doc["tool"]["scikit-build"]["build"]["requires"])
    extra = {}
    for req in doc["project"]["optional-dependencies"]["jax"]:
        m = re.match(r"jax>=(\S+); python_version >= '(\d+\.\d+)'", req)
        assert m, req
        extra[m.group(2)] = m.group(1)
    assert extra == pins


def test_the_handlers_headers_are_not_newer_than_the_running_jaxlib():
    if not fastlstm.info()["jax_ffi"]:
        pytest.skip("built without the XLA FFI handlers")
    jax_ffi = pytest.importorskip("jax.ffi")
    header = pathlib.Path(jax_ffi.include_dir()) / "xla" / "ffi" / "api" / "c_api.h"
    text = header.read_text()
    running = tuple(int(re.search(rf"#define XLA_FFI_API_{k} (\d+)", text).group(1))
                    for k in ("MAJOR", "MINOR"))
    built = fastlstm.info()["jax_ffi_api"]
    assert built[0] == running[0] and built[1] <= running[1], (built, running)


def test_fastlstm_jax_without_jax_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)  # import jax -> ImportError
    monkeypatch.delitem(sys.modules, "fastlstm.jax", raising=False)
    with pytest.raises(ImportError, match=r"fastlstm.jax needs jax >= 0.5.0 .*pip install jax "
                                          r".*needs no rebuild"):
        import fastlstm.jax  # noqa: F401
