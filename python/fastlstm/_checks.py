"""Argument checks shared by the layers and the functional API.

Every user input is checked here before it reaches C++: a bad one raises a
TypeError or ValueError whose message names the argument and what was expected.
"""
from __future__ import annotations

import numbers
import operator

import numpy as np

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class ShapeError(ValueError, RuntimeError):
    """A tensor of the wrong shape or rank.

    A ValueError, as the NumPy API promises, and a RuntimeError, as torch
    raises for the same input: ``except ValueError`` and ``except
    RuntimeError`` both catch it.
    """


class DTypeError(TypeError, RuntimeError):
    """A tensor of the wrong dtype or device.

    A TypeError, as the NumPy API promises, and a RuntimeError, as torch raises
    for the same input: ``except TypeError`` and ``except RuntimeError`` both
    catch it. There are no silent casts.
    """
_MAX_ELEMENTS = 1 << 60  # byte counts of float64 arrays stay below 2**63


def dtype_of(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from e
    if dt not in DTYPES:
        raise TypeError(f"dtype: expected float32 or float64, got {dt}")
    return dt


def positive_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    value = operator.index(value)
    if value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value}")
    if value > _MAX_ELEMENTS:
        raise ValueError(f"{name}: {value} is too large")
    return value


def layer_config(input_size, hidden_size, num_layers, dropout, proj_size):
    input_size = positive_int(input_size, "input_size")
    hidden_size = positive_int(hidden_size, "hidden_size")
    num_layers = positive_int(num_layers, "num_layers")
    if isinstance(proj_size, (bool, np.bool_)) or not isinstance(proj_size, numbers.Integral):
        raise TypeError(f"proj_size: expected an int, got {type(proj_size).__name__}")
    proj_size = operator.index(proj_size)
    if proj_size < 0 or proj_size >= hidden_size:
        raise ValueError(f"proj_size: expected 0 <= proj_size < hidden_size={hidden_size}, "
                         f"got {proj_size}")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
        raise TypeError(f"dropout: expected a float in [0, 1], got {type(dropout).__name__}")
    dropout = float(dropout)
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"dropout: expected a probability in [0, 1], got {dropout}")
    return input_size, hidden_size, num_layers, dropout, proj_size


def zoneout_config(zoneout, cell_clip=None):
    """(zoneout in [0, 1], cell_clip None or > 0) as floats, checked."""
    if isinstance(zoneout, bool) or not isinstance(zoneout, numbers.Real):
        raise TypeError(f"zoneout: expected a float in [0, 1], got {type(zoneout).__name__}")
    zoneout = float(zoneout)
    if not 0.0 <= zoneout <= 1.0:
        raise ValueError(f"zoneout: expected a probability in [0, 1], got {zoneout}")
    if cell_clip is not None:
        if isinstance(cell_clip, bool) or not isinstance(cell_clip, numbers.Real):
            raise TypeError(f"cell_clip: expected None or a float > 0, got "
                            f"{type(cell_clip).__name__}")
        cell_clip = float(cell_clip)
        if not cell_clip > 0.0:
            raise ValueError(f"cell_clip: expected None or a float > 0, got {cell_clip}")
    return zoneout, cell_clip


def check_sizes(name: str, *dims: int) -> None:
    """Raise ValueError if an array of these dims would have too many bytes."""
    n = 1
    for d in dims:
        n *= int(d)
        if n > _MAX_ELEMENTS:
            raise ValueError(f"{name}: shape {tuple(dims)} is too large (its byte count overflows)")


def _foreign(value) -> str:
    """How to pass a framework's tensor, or ''."""
    module = type(value).__module__.split(".")[0]
    if module == "torch":
        return (" (a torch.Tensor: pass .numpy(), or use fastlstm.torch's layers, which take "
                "tensors)")
    if module in ("jax", "jaxlib"):
        return " (a JAX array: pass np.asarray(...), or use fastlstm.jax, which takes them)"
    return ""


def c_array(a, dtype=None) -> np.ndarray:
    """a as a C-contiguous, aligned ndarray (copied only if needed): what the
    core reads (an unaligned view, as of a bytes buffer at an odd offset, is
    copied; the binding refuses one)."""
    return np.require(a, dtype, ("C", "A", "E"))


def array(value, name: str, dtype: np.dtype) -> np.ndarray:
    """A C-contiguous array of exactly `dtype` (copied only if needed)."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray of dtype {dtype}, "
                        f"got {type(value).__name__}{_foreign(value)}")
    if value.dtype != dtype:
        fix = f"convert it with .astype(np.{dtype})"
        if value.dtype in DTYPES:
            fix += f", or compute in {value.dtype} throughout (a layer's dtype=np.{value.dtype})"
            if name == "dy":
                fix += "; a readout or loss in another dtype than the layer's changes dy's"
        raise DTypeError(f"{name}: expected dtype {dtype}, got {value.dtype}: {fix}")
    return c_array(value)


def shaped(value, name: str, dtype: np.dtype, shape: tuple) -> np.ndarray:
    a = array(value, name, dtype)
    if a.shape != tuple(shape):
        raise ShapeError(f"{name}: expected shape {tuple(shape)}, got {a.shape}")
    return a


def lengths_array(lengths, batch: int, steps: int) -> np.ndarray:
    """lengths as int64 [B] with every value in [1, T]."""
    if isinstance(lengths, (str, bytes)):
        raise TypeError("lengths: expected an integer array of shape [B]")
    try:
        a = np.asarray(lengths)
    except Exception as e:  # objects numpy cannot read
        raise TypeError(f"lengths: expected an integer array of shape [B], got "
                        f"{type(lengths).__name__}") from e
    if a.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected an integer array, got dtype {a.dtype}")
    if a.shape != (batch,):
        raise ValueError(f"lengths: expected shape ({batch},), got {a.shape}")
    if a.size and (a.min() < 1 or a.max() > steps):
        raise ValueError(f"lengths: every value must be in [1, {steps}] (T), got values in "
                         f"[{a.min()}, {a.max()}]")
    return c_array(a, np.int64)
