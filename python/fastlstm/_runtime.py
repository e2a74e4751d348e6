"""Thread count and kernel path (ISA) used by every call."""
from __future__ import annotations

import math
import numbers
import operator
import os

import numpy as np

from . import _core

_ISAS = ("scalar", "avx2", "avx512")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _cgroup_cpus(root: str = "/sys/fs/cgroup", self_cgroup: str = "/proc/self/cgroup"):
    """The CPU quota of this process's cgroup in CPUs (quota / period), or None
    where there is none: cgroup v2's cpu.max ("max 100000" is none; the
    process's own group, then the root's), else v1's cpu.cfs_quota_us /
    cpu.cfs_period_us (-1 is none)."""
    v2, v1 = "", ""  # this process's group: "0::/path" (v2), "N:cpu,cpuacct:/path" (v1)
    for line in (_read(self_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[0] == "0":
            v2 = parts[2].strip().lstrip("/")
        elif len(parts) == 3 and "cpu" in parts[1].split(","):
            v1 = parts[2].strip().lstrip("/")
    for d in dict.fromkeys([os.path.join(root, v2), root]):
        v = (_read(os.path.join(d, "cpu.max")) or "").split()
        if len(v) == 2:
            return None if v[0] == "max" else _ratio(v[0], v[1])
    for ctl in ("cpu", "cpu,cpuacct"):
        for d in dict.fromkeys([os.path.join(root, ctl, v1), os.path.join(root, ctl)]):
            q = (_read(os.path.join(d, "cpu.cfs_quota_us")) or "").split()
            p = (_read(os.path.join(d, "cpu.cfs_period_us")) or "").split()
            if q and p:
                return None if q[0] == "-1" else _ratio(q[0], p[0])
    return None


def _default_threads() -> int:
    """$OMP_NUM_THREADS, else the CPUs this process may run on: its affinity
    mask, capped by its cgroup's CPU quota (rounded up)."""
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        n = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        n = max(1, _core.num_procs())
    quota = _cgroup_cpus()
    if quota is not None:
        n = max(1, min(n, math.ceil(quota)))
    return n


_num_threads = _default_threads()


def set_num_threads(n: int) -> None:
    """Set the number of threads of every fastlstm kernel (like torch.set_num_threads).

    The setting is process-wide. Results are bitwise identical for every
    thread count. The default is ``$OMP_NUM_THREADS``, else the CPUs this
    process may run on: its affinity mask, capped by its cgroup's CPU quota
    (rounded up).

    Parameters
    ----------
    n : int
        The number of threads, >= 1.

    Raises
    ------
    TypeError
        ``n`` is not an integer (a Python or NumPy int; a bool is refused).
    ValueError
        ``n`` is < 1.
    """
    global _num_threads
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n: expected an int >= 1, got {type(n).__name__}")
    n = operator.index(n)
    if n < 1:
        raise ValueError(f"n: expected a thread count >= 1, got {n}")
    _num_threads = n


def get_num_threads() -> int:
    """The number of threads fastlstm kernels use.

    Returns
    -------
    int
        The last :func:`set_num_threads` value, else the default (see there).
        With adaptive threads on, calls may run on fewer for a while (see
        :func:`set_adaptive_threads`).
    """
    return _num_threads


def set_adaptive_threads(on: bool) -> None:
    """Whether calls use fewer threads for a while after their threads were
    preempted (on by default; ``$FASTLSTM_ADAPTIVE_THREADS=0`` turns it off).

    On a busy machine a team of threads stalls at every step when one of them
    is off the CPU; after two calls in a row that spent a quarter or more of
    their time stalled, fastlstm runs the next calls on half
    the threads (one, on two cores; halved again if they stall too) for a
    back-off time (0.1 s, doubling while the full team keeps stalling, up to
    3.2 s), then tries the full team again. Results are bitwise identical for
    every thread count, so this changes speed only. Off: every call uses
    :func:`get_num_threads` threads.

    Parameters
    ----------
    on : bool
        ``True`` to turn the back-off on, ``False`` to turn it off (which also
        ends a back-off in progress). The setting is process-wide.

    Raises
    ------
    TypeError
        ``on`` is not a bool.

    See Also
    --------
    adaptive_threads_state : the setting, the stalls seen and the back-off.
    """
    if not isinstance(on, bool):
        raise TypeError(f"on: expected a bool, got {type(on).__name__}")
    _core.set_adaptive_threads(on)


def adaptive_threads_state() -> dict:
    """The state of the adaptive thread count (see :func:`set_adaptive_threads`).

    Returns
    -------
    dict
        ``"enabled"`` (bool): whether it is on; ``"stalls"`` (int): the stalled
        calls so far in this process; ``"backing_off"`` (bool): whether calls
        run on fewer threads right now.
    """
    return dict(_core.adaptive_threads_state())


if os.environ.get("FASTLSTM_ADAPTIVE_THREADS", "").strip() == "0":
    _core.set_adaptive_threads(False)


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
    """Kernel paths this build can run on this CPU, slowest first.

    Returns
    -------
    list of str
        Among ``"scalar"``, ``"avx2"`` and ``"avx512"``. Calls use the best one
        unless ``$FASTLSTM_ISA`` names another of them.
    """
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
