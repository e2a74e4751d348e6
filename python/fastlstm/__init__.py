"""fastlstm: fused LSTM, GRU and layer-norm LSTM forward and BPTT kernels (C++,
OpenMP, SIMD) under a NumPy API that mirrors torch.nn.LSTM and torch.nn.GRU."""
from . import _core, functional, reference
from ._checks import DTypeError, ShapeError
from ._runtime import (adaptive_threads_state, available_isas, get_num_threads,
                       set_adaptive_threads, set_num_threads)
from .layers import GRU, LSTM, GRUCell, LayerNormLSTM, LayerNormLSTMCell, LSTMCell

__version__ = _core.build_info()["version"]

__all__ = ["LSTM", "LSTMCell", "GRU", "GRUCell", "LayerNormLSTM", "LayerNormLSTMCell",
           "functional", "reference", "set_num_threads", "get_num_threads",
           "set_adaptive_threads", "adaptive_threads_state", "available_isas", "info",
           "ShapeError", "DTypeError", "get_include", "__version__"]


def get_include() -> str:
    """The directory of fastlstm's C ABI headers, for C and Cython extensions.

    Returns
    -------
    str
        A directory holding ``fastlstm/fastlstm_c.h`` and
        ``fastlstm/fastlstm_capi.h``: pass it as ``include_dirs`` when
        compiling an extension that does ``from fastlstm.capi cimport *``.
        The extension links nothing: it reaches the kernels through the
        capsule ``fastlstm._core.c_api``.
    """
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(here, "include")
    if os.path.isfile(os.path.join(installed, "fastlstm", "fastlstm_capi.h")):
        return installed
    source = os.path.join(here, os.pardir, os.pardir, "csrc", "include")  # an editable install
    return os.path.normpath(source)


def info() -> dict:
    """Version, build options, CPU features, threads and backends of this install.

    Returns
    -------
    dict
        With the keys:

        - ``"version"``: the package version (``fastlstm.__version__``);
        - ``"build"``: ``"compiler"``, ``"build_type"``, ``"native"`` (tuned for
          the build machine, ``-march=native``) and ``"openmp"`` (the OpenMP
          version, as ``_OPENMP``);
        - ``"cpu_features"``: CPU flags (``"avx2"``, ``"fma"``, ``"avx512f"``,
          ...) to bools;
        - ``"isa"``: the kernel path calls use now;
        - ``"isas_available"``: :func:`available_isas`;
        - ``"num_threads"``: :func:`get_num_threads`;
        - ``"adaptive_threads"``: :func:`adaptive_threads_state`;
        - ``"num_procs"``: OpenMP's processor count;
        - ``"backends"``: the compute backends built in (``["cpu"]``, plus
          ``"cuda"`` in a ``FASTLSTM_CUDA=ON`` build);
        - ``"cuda"``: :func:`fastlstm.cuda.describe`, the CUDA build, runtime,
          driver, devices and cuBLAS;
        - ``"jax_ffi"``: whether ``fastlstm.jax``'s FFI handlers are built in;
        - ``"jax_ffi_api"``: the (major, minor) version of their headers, or
          None.

    Raises
    ------
    ValueError
        ``$FASTLSTM_ISA`` names a kernel path that this CPU or build lacks.

    Examples
    --------
    >>> import fastlstm
    >>> fastlstm.info()["isa"] in fastlstm.available_isas()
    True
    """
    from . import cuda
    from ._runtime import resolve_isa
    build = _core.build_info()
    return {
        "version": __version__,
        "build": {k: build[k] for k in ("compiler", "build_type", "native", "openmp")},
        "cpu_features": _core.cpu_features(),
        "isa": resolve_isa(),
        "isas_available": available_isas(),
        "num_threads": get_num_threads(),
        "adaptive_threads": adaptive_threads_state(),
        "num_procs": _core.num_procs(),
        "backends": ["cpu"] + (["cuda"] if build["cuda"] else []),
        "cuda": cuda.describe(),
        "jax_ffi": bool(_core.jax_ffi_targets()),  # fastlstm.jax's handlers are built in
        "jax_ffi_api": _core.jax_ffi_api_version(),  # (major, minor) of their headers, or None
    }
