"""The CUDA backend: whether it can run here, and on what.

A build with ``-Ccmake.define.FASTLSTM_CUDA=ON`` carries LSTM and GRU
kernels (forward and BPTT, float32 and float64) for NVIDIA GPUs, which
``fastlstm.torch.LSTM`` / ``GRU`` run on CUDA tensors. The backend needs,
at run time, a CUDA driver, a device, and cuBLAS of the major version it was
built with (the ``nvidia-cublas`` wheel or the
system's). It has not yet run on a GPU: see the CUDA page of the docs.
It links no cuBLAS: the library is loaded on first use, from
``$FASTLSTM_CUBLAS`` (a file) if set, else from the ``nvidia-cublas`` wheel,
else by the loader's search.
"""
from __future__ import annotations

import glob
import importlib.util
import os

from . import _core

__all__ = ["is_available", "unavailable_reason", "built", "device_count", "describe", "require"]

_cublas_error: str | None = None  # None until the first load; then "" or why not


def built() -> bool:
    """Whether this build of fastlstm has the CUDA backend."""
    return bool(_core.cuda_built())


def _cublas_major() -> int:
    return _core.cuda_runtime_version() // 1000


def _wheel_cublas() -> str:
    """libcublas.so.<major> from an installed nvidia-cublas wheel, or ''."""
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return ""
    name = f"libcublas.so.{_cublas_major()}"
    for root in spec.submodule_search_locations:
        # nvidia-cublas (cu13 and later: nvidia/cu<major>/lib); nvidia-cublas-cu12
        for sub in (f"cu{_cublas_major()}", "cublas"):
            hits = sorted(glob.glob(os.path.join(root, sub, "lib", name)))
            if hits:
                return hits[0]
    return ""


def _load_cublas() -> str:
    """Load cuBLAS once -> '' or why it could not be loaded."""
    global _cublas_error
    if _cublas_error is None:
        path = os.environ.get("FASTLSTM_CUBLAS") or _wheel_cublas()
        _cublas_error = _core.cuda_load_cublas(path)
    return _cublas_error


def device_count() -> int:
    """The CUDA devices the driver sees (0 without the backend, a driver or a device)."""
    return _core.cuda_device_count() if built() else 0


def unavailable_reason() -> str | None:
    """Why the backend cannot run here, or None when it can."""
    if not built():
        return ("this fastlstm was built without the CUDA backend (reinstall with "
                "pip install . -Ccmake.define.FASTLSTM_CUDA=ON)")
    if device_count() == 0:
        return f"no CUDA device ({_core.cuda_describe()})"
    err = _load_cublas()
    return err or None


def is_available() -> bool:
    """Whether the CUDA backend can run: built in, a device, and cuBLAS loaded.

    Examples
    --------
    >>> import fastlstm.cuda
    >>> fastlstm.cuda.is_available() in (True, False)
    True
    """
    return unavailable_reason() is None


def require() -> None:
    """RuntimeError, saying why, unless the backend can run."""
    why = unavailable_reason()
    if why is not None:
        raise RuntimeError(f"fastlstm's CUDA backend cannot run: {why}")


def describe() -> str:
    """One line: the build, the runtime, the driver, the devices and cuBLAS."""
    if not built():
        return "not built (FASTLSTM_CUDA=OFF)"
    v = _core.cuda_runtime_version()
    s = f"built (CUDA {v // 1000}.{v % 1000 // 10}); {_core.cuda_describe()}"
    if device_count():
        err = _load_cublas()
        s += f"; cuBLAS {'loaded' if not err else 'not loaded: ' + err}"
    return s
