"""`Parameter`: the ndarray type of a layer's weights.

A layer packs its weights once for its kernels and repacks only when they
change. Parameters are ordinary writable ndarrays (a subclass) whose in-place
changes through NumPy bump a version shared with their layer:
- item and slice assignment, ``p.flat[...] = v``, in-place operators, ufuncs
  with ``out=`` (and ``ufunc.at``);
- NumPy functions that write into an argument (``np.copyto``, ``np.put``,
  ``np.place``, ``np.putmask``, ``np.fill_diagonal``, ``np.put_along_axis``)
  and any function given a parameter as its ``out``;
- the mutating methods (``fill``, ``put``, ``sort``, ``partition``, ...);
on the parameter or on any view of it (indexing, ``.T``, ``reshape``,
``np.split``, ``np.ravel``, ...). Copies (``p.copy()``, ``copy.copy``,
``astype``, fancy indexing, arithmetic results) are plain ndarrays, detached
from the layer. Writes that bypass NumPy's API (a base-class view from
``np.asarray`` or ``p.view(np.ndarray)``, a memoryview, ctypes,
``torch.from_numpy``) cannot be seen: call the layer's ``params_changed()``.
"""
from __future__ import annotations

import functools
import inspect

import numpy as np


class VersionCell:
    """A counter shared by a layer and its parameters (and their views)."""
    __slots__ = ("value",)

    def __init__(self):
        self.value = 0

    def bump(self):
        self.value += 1


# Functions that write into an argument: function -> that argument's name.
_WRITERS = {np.copyto: "dst", np.put: "a", np.place: "arr", np.putmask: "a",
            np.fill_diagonal: "a", np.put_along_axis: "arr"}
# C functions with no introspectable signature that take `out` positionally.
_POSITIONAL_OUT = {np.dot: 2, np.concatenate: 2, np.vdot: None, np.inner: None}


def _bump(a) -> None:
    cell = getattr(a, "_cell", None)
    if cell is not None:
        cell.bump()


@functools.lru_cache(maxsize=None)
def _signature(func):
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def _written(func, args, kwargs):
    """The arguments `func` writes into: its target (writers) and its `out`."""
    name = _WRITERS.get(func)
    found = []
    if name is not None:
        found.append(kwargs[name] if name in kwargs else (args[0] if args else None))
    if "out" in kwargs:
        found.append(kwargs["out"])
    else:
        pos = _POSITIONAL_OUT.get(func)
        if pos is not None:
            found.append(args[pos] if len(args) > pos else None)
        elif func not in _POSITIONAL_OUT:
            sig = _signature(func)
            if sig is not None and "out" in sig.parameters:
                params = list(sig.parameters)
                i = params.index("out")
                if len(args) > i and all(sig.parameters[p].kind in (
                        inspect.Parameter.POSITIONAL_ONLY,
                        inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in params[:i + 1]):
                    found.append(args[i])
    out = []
    for f in found:
        out.extend(f if isinstance(f, tuple) else (f,))
    return out


def _plain(a):
    return a.view(np.ndarray) if isinstance(a, Parameter) else a


class _Flat:
    """``p.flat``: numpy's flat iterator whose assignments bump the version."""
    __slots__ = ("_p",)

    def __init__(self, p):
        self._p = p

    def __getitem__(self, key):
        return self._p.view(np.ndarray).flat[key]

    def __setitem__(self, key, value):
        self._p.view(np.ndarray).flat[key] = value
        _bump(self._p)

    def __iter__(self):
        return iter(self._p.view(np.ndarray).flat)

    def __len__(self):
        return self._p.size

    def __array__(self, dtype=None, copy=None):
        return np.array(self._p.view(np.ndarray).flat, dtype=dtype)


class Parameter(np.ndarray):
    """A writable ndarray whose in-place changes bump its layer's version."""

    _cell = None

    @classmethod
    def wrap(cls, a: np.ndarray, cell: VersionCell) -> "Parameter":
        p = a.view(cls)
        p._cell = cell
        return p

    def __array_finalize__(self, obj):
        # views share the layer's version; new arrays (copies) are detached
        cell = getattr(obj, "_cell", None)
        self._cell = cell if cell is not None and np.may_share_memory(self, obj) else None

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        _bump(self)

    @property
    def flat(self):
        return _Flat(self)

    @flat.setter
    def flat(self, value):
        self.view(np.ndarray).flat = value
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
        result = super().__array_function__(func, types, args, kwargs)
        for a in _written(func, args, kwargs):
            _bump(a)
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

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def astype(self, dtype, *args, **kwargs):
        return self.view(np.ndarray).astype(dtype, *args, **kwargs)

    def __reduce__(self):  # pickles as a plain array
        return np.array(self).__reduce__()

    def __repr__(self):
        return "Parameter(" + repr(self.view(np.ndarray))[len("array("):]
