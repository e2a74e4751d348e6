"""Thread count and kernel path (ISA) used by every call."""
from __future__ import annotations

import os

from . import _core

_ISAS = ("scalar", "avx2", "avx512")


def _default_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, _core.num_procs())


_num_threads = _default_threads()


def set_num_threads(n: int) -> None:
    """Set the number of threads of every fastlstm kernel (like torch.set_num_threads)."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int >= 1, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n: expected a thread count >= 1, got {n}")
    _num_threads = n


def get_num_threads() -> int:
    """The number of threads fastlstm kernels use."""
    return _num_threads


_SUPPORTED = tuple(i for i in _ISAS if _core.isa_supported(i))  # the CPU does not change
_BEST = _core.best_isa()


# os.environ.get costs about a microsecond (a KeyError inside when unset);
# streaming calls read the variable through os.environ's own dict instead.
try:
    _ENV_DATA, _ENV_KEY = os.environ._data, os.environ.encodekey("FASTLSTM_ISA")
except AttributeError:  # not CPython's os.environ
    _ENV_DATA = None


def _env_isa():
    if _ENV_DATA is None:
        return os.environ.get("FASTLSTM_ISA")
    v = _ENV_DATA.get(_ENV_KEY)
    return None if v is None else os.environ.decodevalue(v)


def available_isas() -> list:
    """Kernel paths this build can run on this CPU, slowest first."""
    return list(_SUPPORTED)


def resolve_isa(isa: str | None = None) -> str:
    """The kernel path to run: `isa`, else $FASTLSTM_ISA, else the best one."""
    choice = isa or _env_isa() or _BEST
    if choice not in _SUPPORTED:
        if choice not in _ISAS:
            raise ValueError(f"isa: expected one of {_ISAS}, got {choice!r}")
        raise ValueError(f"isa: {choice!r} is not supported by this CPU or build "
                         f"(available: {available_isas()})")
    return choice
