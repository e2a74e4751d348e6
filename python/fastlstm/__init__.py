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
           "ShapeError", "DTypeError", "__version__"]


def info() -> dict:
    """Version, build options, CPU features, threads and backends of this install."""
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
        "jax_ffi": bool(_core.jax_ffi_targets()),  # fastlstm.jax's handlers are built in
        "jax_ffi_api": _core.jax_ffi_api_version(),  # (major, minor) of their headers, or None
    }
