"""csrc/cuda's layer drivers compiled for the host (tests/cuda_host/emulate.cpp):
a device whose GEMM is a naive column-major BLAS reached through the CUDA
backend's own row-major mapping, and whose for_each is a loop."""
import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def build(out_dir: Path):
    """The emulator as a ctypes library (skips without a C++ compiler)."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    out = out_dir / "emu.so"
    subprocess.run([cxx, "-std=c++17", "-O2", "-shared", "-fPIC", "-Wall", "-Werror",
                    f"-I{ROOT / 'csrc'}", f"-I{ROOT / 'csrc/include'}",
                    str(ROOT / "tests/cuda_host/emulate.cpp"), "-o", str(out)], check=True)
    lib = ctypes.CDLL(str(out))
    lib.emu_workspace_size.restype = ctypes.c_int64
    return lib


_EMU_ORDER = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_ph", "weight_hr")
_CELLS = {"lstm": 0, "gru": 1}


def entries(lib, dtype_suffix: str):
    """(forward, backward) with the signatures of the extension's
    cuda_layer_forward_<s> / cuda_layer_backward_<s> (addresses as ints, 0 =
    none), running the emulated drivers on host memory."""
    from fastlstm import _core
    VP = ctypes.c_void_p

    def vp(a):
        return VP(a) if a else None

    def common(d):
        names = [p["name"] for p in _core.cell_specs()[d.cell]["params"]]
        s = (ctypes.c_int64 * 7)(d.T, d.B, d.I, d.H, d.P, d.D, int(d.peephole))
        assert lib.emu_workspace_size(_CELLS[d.cell], s) == _core.cuda_workspace_size(d)

        def table(dirs):
            assert len(dirs) == d.D and all(len(row) == len(names) for row in dirs)
            flat = [dict(zip(names, row)).get(n, 0) for row in dirs for n in _EMU_ORDER]
            return (VP * len(flat))(*[vp(a) for a in flat])

        return _CELLS[d.cell], s, table

    def forward(d, weights, x, lengths, h0, c0, y, hn, cn, ws, scratch, stream, keep):
        assert stream == 0 and scratch  # host memory: the default stream, a scratch given
        cell, s, table = common(d)
        rc = getattr(lib, f"emu_forward_{dtype_suffix}")(
            cell, s, ctypes.c_double(d.zoneout), ctypes.c_double(d.cell_clip), table(weights),
            vp(x), vp(lengths), vp(h0), vp(c0), vp(y), vp(hn), vp(cn), vp(ws), vp(keep))
        assert rc == 0

    def backward(d, weights, grads, x, lengths, ws, dy, dhn, dcn, dx, dh0, dc0, scratch,
                 stream, keep):
        assert stream == 0 and scratch
        cell, s, table = common(d)
        rc = getattr(lib, f"emu_backward_{dtype_suffix}")(
            cell, s, ctypes.c_double(d.zoneout), ctypes.c_double(d.cell_clip), table(weights),
            vp(x), vp(lengths), vp(ws), vp(dy), vp(dhn), vp(dcn), vp(dx), vp(dh0), vp(dc0),
            table(grads), vp(keep))
        assert rc == 0

    return forward, backward
