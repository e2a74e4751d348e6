"""`Parameter`: the ndarray type of a layer's weights.

A layer packs its weights once for its kernels and repacks only when they
change. Parameters are ordinary writable ndarrays (a subclass) whose in-place
changes through NumPy bump a version shared with their layer: item assignment,
in-place operators and ufuncs with ``out=``, ``np.copyto``/``np.put``/... and
the mutating methods (``fill``, ``sort``, ...), on the array or on any view
taken from it by indexing, ``.T``, ``reshape`` and so on. Writes that bypass
NumPy's API (a base-class view from ``np.asarray``, a ``memoryview``, ctypes,
``torch.from_numpy``) cannot be seen: call the layer's ``params_changed()``
after those.
"""
from __future__ import annotations

import numpy as np


class VersionCell:
    """A counter shared by a layer and its parameters (and their views)."""
    __slots__ = ("value",)

    def __init__(self):
        self.value = 0

    def bump(self):
        self.value += 1


# NumPy functions that write into an argument: name -> index of that argument.
_WRITERS = {np.copyto: 0, np.put: 0, np.place: 0, np.putmask: 0, np.fill_diagonal: 0,
            np.put_along_axis: 0}


def _plain(a):
    return a.view(np.ndarray) if isinstance(a, Parameter) else a


def _bump(a):
    cell = getattr(a, "_cell", None)
    if cell is not None:
        cell.bump()


class Parameter(np.ndarray):
    """A writable ndarray whose in-place changes bump its layer's version."""

    _cell = None

    @classmethod
    def wrap(cls, a: np.ndarray, cell: VersionCell) -> "Parameter":
        p = a.view(cls)
        p._cell = cell
        return p

    def __array_finalize__(self, obj):
        self._cell = getattr(obj, "_cell", None)

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        _bump(self)

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        args = tuple(_plain(a) for a in inputs)
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if method == "at":
            _bump(inputs[0])
        if out is None:
            return result
        for o in out:
            _bump(o)
        return out[0] if len(out) == 1 else out

    def __array_function__(self, func, types, args, kwargs):
        plain_args = tuple(_plain(a) for a in args)
        plain_kwargs = {k: _plain(v) for k, v in kwargs.items()}
        result = func(*plain_args, **plain_kwargs)
        if func in _WRITERS and len(args) > _WRITERS[func]:
            _bump(args[_WRITERS[func]])
        if "out" in kwargs:
            _bump(kwargs["out"])
        return result

    def _mutating(name):  # noqa: N805 - builds methods below
        base = getattr(np.ndarray, name)

        def method(self, *args, **kwargs):
            result = base(self, *args, **kwargs)
            _bump(self)
            return result
        method.__name__ = name
        method.__doc__ = base.__doc__
        return method

    fill = _mutating("fill")
    put = _mutating("put")
    sort = _mutating("sort")
    partition = _mutating("partition")
    setfield = _mutating("setfield")
    byteswap = _mutating("byteswap")
    del _mutating

    def copy(self, order="C"):  # a copy is a plain array: not the layer's
        return np.array(self.view(np.ndarray), order=order, copy=True)

    def __reduce__(self):  # pickles (and copies via pickle) as a plain array
        return np.array(self).__reduce__()

    def __repr__(self):
        return "Parameter(" + repr(self.view(np.ndarray))[len("array("):]
