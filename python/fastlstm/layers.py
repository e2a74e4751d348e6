"""``LSTM``, ``GRU``, ``LayerNormLSTM`` and their one-step cells: torch.nn's layers on NumPy
arrays."""
from __future__ import annotations

import warnings
from collections import OrderedDict

import numpy as np

from . import _checks, _core, _spec
from ._param import Parameter, VersionCell
from ._per_thread import PerThread
from ._runtime import get_num_threads, resolve_isa
from .functional import (BufferPool, _backward, _forward, _pack_checked, init_params,
                         param_shapes, weights_dtype_of)

__all__ = ["LSTM", "GRU", "LayerNormLSTM", "LSTMCell", "GRUCell"]

_CLASS_OF = {"lstm": "LSTM", "gru": "GRU", "lnlstm": "LayerNormLSTM"}  # cell spec -> layer


class _Module:
    """Parameters as attributes, state_dict, grads, train/eval (as torch).

    The layer packs its weights for the kernels once and repacks them only
    after they change. Parameters are writable ndarrays (`Parameter`) whose
    in-place changes through NumPy are seen, as are assignment and
    ``load_state_dict``; writes that bypass NumPy need ``params_changed()``.
    """

    _CELL = "lstm"  # the cell spec's name

    def _setup_params(self, shapes: dict, hidden_size: int, dtype, seed) -> None:
        object.__setattr__(self, "_shapes", dict(shapes))
        try:
            self._rng = np.random.default_rng(seed)
        except (TypeError, ValueError) as e:  # numpy's message does not say which argument
            raise type(e)(f"seed: expected None or an int >= 0, got {seed!r} ({e})") from None
        self._cell = VersionCell()
        params = {k: Parameter.wrap(v, self._cell)
                  for k, v in init_params(shapes, hidden_size, dtype, self._rng, self._CELL).items()}
        object.__setattr__(self, "_params", params)
        self._packed = None     # (version, functional.Packed) or None
        self.training = True
        self.zero_grad()

    def __getattr__(self, name):
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __setattr__(self, name, value):
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            new = _checks.shaped(value, name, self.dtype, self._shapes[name])
            params[name] = Parameter.wrap(np.array(new, order="C", copy=True), self._cell)
            self._cell.bump()
        else:
            object.__setattr__(self, name, value)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._params))

    # Pickling and copy.deepcopy: the copy gets its own parameters and version,
    # and none of the caches (packed weights, saved contexts) travel.
    _TRANSIENT = {"_packed": None, "_ctx": PerThread, "_saved": PerThread, "_cell_kernel": None,
                  "_ws_pool": BufferPool}

    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k not in self._TRANSIENT}
        state["_params"] = {k: np.array(v) for k, v in self._params.items()}
        state["_transient"] = [k for k in self._TRANSIENT if k in self.__dict__]
        del state["_cell"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._cell = VersionCell()
        self._params = {k: Parameter.wrap(v, self._cell) for k, v in state["_params"].items()}
        for k in self.__dict__.pop("_transient"):
            make = self._TRANSIENT[k]
            self.__dict__[k] = make() if callable(make) else make
        self._init_transient()

    def _init_transient(self) -> None:
        """Restore what __getstate__ leaves out (subclasses extend)."""

    @property
    def params_version(self) -> int:
        """int: A counter bumped by every seen change of the parameters.

        In-place writes through NumPy to a parameter or any view of it, attribute
        assignment, :meth:`load_state_dict` and :meth:`params_changed` bump it. The
        layer repacks its weights for the kernels on the first call after it moved.
        Read-only.
        """
        return self._cell.value

    def params_changed(self) -> None:
        """Tell the layer that its parameters changed behind NumPy's back.

        Call it after writes that bypass NumPy's API: through ``np.asarray`` (or
        ``.view(np.ndarray)``) views, memoryviews, ctypes or ``torch.from_numpy``.
        The next call repacks the weights. NumPy operations on the parameters (item
        and slice assignment, in-place operators, ufuncs with ``out=``,
        ``np.copyto``, ...) are seen and need no call.
        """
        self._cell.bump()

    def _packed_for(self, training: bool):
        """The packed weights for this call's kernel path, repacked if stale.
        Training packs float weights with backward panels; inference packs
        `weights_dtype`."""
        isa = resolve_isa()
        wdt = self.dtype.name if training else self.weights_dtype
        cached = self._packed
        if (cached is not None and cached[0] == self._cell.value and cached[1].isa == isa
                and cached[1].weights_dtype == wdt
                and (cached[1].with_backward or not training)):
            return cached[1]
        version = self._cell.value
        packed = _pack_checked(self._layer_params(), self._config(), self.dtype, isa, training,
                               get_num_threads(), wdt == "bfloat16", self._CELL)
        self._packed = (version, packed)
        return packed

    def named_parameters(self):
        """The parameters as (name, array) pairs, in torch's order.

        Returns
        -------
        list of (str, ndarray)
            The names are the ``state_dict`` keys. The arrays are the layer's own,
            not copies: in-place edits change the layer, and it sees them.
        """
        return list(self._params.items())

    def parameters(self):
        """The parameter arrays, in the order of :meth:`named_parameters`.

        Returns
        -------
        list of ndarray
            The layer's own arrays, not copies (in-place edits are seen).
        """
        return list(self._params.values())

    def state_dict(self, format: str = "numpy") -> dict:  # noqa: A002 (a format name)
        """Copies of the parameters, with torch's keys.

        Parameters
        ----------
        format : {"numpy", "torch"}, default "numpy"
            ``"numpy"``: a dict of plain ndarrays. ``"torch"``: an ``OrderedDict``
            of CPU tensors (needs torch), which ``torch.nn.LSTM.load_state_dict``
            (or ``GRU``'s, or ``fastlstm.torch``'s) loads as is.

        Returns
        -------
        dict or collections.OrderedDict
            Parameter name (``weight_ih_l0``, ..., ``weight_hh_l0_reverse``; a
            cell's names have no ``_l0``) to a copy of its values, in the layer's
            dtype, in torch's order.

        Raises
        ------
        ValueError
            ``format`` is neither ``"numpy"`` nor ``"torch"``.
        ImportError
            ``format="torch"`` and torch is not installed.
        """
        if format == "numpy":
            return {k: v.copy() for k, v in self._params.items()}
        if format == "torch":
            try:
                import torch
            except ImportError as e:
                raise ImportError("state_dict(format='torch') needs torch") from e
            return OrderedDict((k, torch.from_numpy(v.copy())) for k, v in self._params.items())
        raise ValueError(f"format: expected 'numpy' or 'torch', got {format!r}")

    def load_state_dict(self, state_dict) -> None:
        """Load parameters (NumPy arrays or torch tensors); keys and shapes must match.

        The values are cast to the layer's dtype and copied into its parameter
        arrays in place. Every entry is checked before any is written: a failed
        load leaves the layer unchanged.

        Parameters
        ----------
        state_dict : mapping of str to ndarray or torch.Tensor
            Exactly the layer's keys (torch's names, as :meth:`state_dict` gives
            them), each with the parameter's shape and a float dtype: a
            ``state_dict()`` of this class or of the matching torch module loads as
            is.

        Raises
        ------
        ValueError
            A key is missing or unexpected, or a value has the wrong shape (where
            the rows say it is another cell's state dict, e.g. a GRU's given to an
            LSTM, the message names the class to load it into).
        TypeError
            A value does not have a float dtype.
        """
        keys, expected = set(state_dict.keys()), set(self._shapes)
        if keys != expected:
            missing, extra = sorted(expected - keys), sorted(keys - expected)
            raise ValueError(f"state_dict: keys do not match the layer (missing: {missing}, "
                             f"unexpected: {extra})")
        new = {}
        for k, shape in self._shapes.items():
            v = _to_numpy(state_dict[k])
            if tuple(v.shape) != shape:
                raise ValueError(f"state_dict: {k} has shape {tuple(v.shape)}, expected {shape}"
                                 f"{self._other_cell(k, tuple(v.shape), shape)}")
            if not np.issubdtype(v.dtype, np.floating):
                raise TypeError(f"state_dict: {k} has dtype {v.dtype}, expected a float array")
            new[k] = np.array(v, dtype=self.dtype, order="C", copy=True)
        for k, v in new.items():
            self._params[k][...] = v

    def _other_cell(self, key, got, shape) -> str:
        """Why a gate-stacked parameter has the wrong rows: another cell's state_dict."""
        H, gates = self.hidden_size, _spec.SPECS[self._CELL]["gates"]
        if (not key.startswith(("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                or got[1:] != shape[1:] or not got or got[0] % H or got[0] // H == gates):
            return ""
        g = got[0] // H
        suffix = "Cell" if isinstance(self, _StepCell) else ""
        names = [_CLASS_OF[c] + suffix for c, spec in _spec.SPECS.items() if spec["gates"] == g]
        if not names:
            return ""
        return (f": {g}*hidden_size rows, as a {' or '.join(names)} has, where "
                f"{type(self).__name__} has {gates}*hidden_size. This state_dict is another "
                f"cell's: load it into fastlstm.{names[0]}")

    def zero_grad(self) -> None:
        """Clear the accumulated gradients.

        ``self.grads`` becomes a new dict of zero arrays, one per parameter, keyed
        like :meth:`state_dict`. Arrays taken from the old dict keep their values.
        """
        self.grads = {k: np.zeros_like(v) for k, v in self._params.items()}

    def train(self, mode: bool = True):
        """Set training (``True``) or inference (``False``) mode, as torch's.

        A new cell is in training mode, where every call saves its step for
        ``backward``. In inference mode calls save nothing and use the
        ``weights_dtype`` weights (the streaming path: see ``forward``).

        Parameters
        ----------
        mode : bool, default True
            ``True`` for training mode, ``False`` for inference mode.

        Returns
        -------
        self
        """
        self.training = bool(mode)
        return self

    def eval(self):
        """Set inference mode: the same as ``train(False)``.

        Returns
        -------
        self
        """
        return self.train(False)


def _to_numpy(v):
    if hasattr(v, "detach"):  # a torch tensor
        v = v.detach().cpu()
        if str(v.dtype) == "torch.bfloat16":  # NumPy has no bfloat16: widen (exact)
            v = v.float()
        v = v.numpy()
    return np.asarray(v)


class _Recurrent(_Module):
    """A multi-layer recurrent layer of one cell (torch.nn.LSTM / GRU's API).
    Subclasses state the cell and how hx and the states look."""

    def _init_layer(self, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                    bidirectional, proj_size, peephole, dtype, seed, weights_dtype, zoneout,
                    cell_clip):
        (self.input_size, self.hidden_size, self.num_layers, self.dropout,
         self.proj_size) = _checks.layer_config(input_size, hidden_size, num_layers, dropout,
                                                proj_size)
        self.zoneout, self.cell_clip = _checks.zoneout_config(zoneout, cell_clip)
        self.dtype = _checks.dtype_of(dtype)
        self.weights_dtype = weights_dtype_of(weights_dtype, self.dtype)
        self.bias, self.batch_first = bool(bias), bool(batch_first)
        self.bidirectional, self.peephole = bool(bidirectional), bool(peephole)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn("dropout > 0 has no effect with num_layers=1: dropout applies "
                          "between layers only", UserWarning, stacklevel=3)
        D, Ho = self._D, self._Ho
        gates = _spec.SPECS[self._CELL]["gates"]
        _checks.check_sizes("hidden_size", gates * self.hidden_size,
                            max(self.input_size, D * Ho))
        shapes = param_shapes(self.input_size, self.hidden_size, self.num_layers, self.bias,
                              self.bidirectional, self.proj_size, self.peephole, self._CELL)
        self._setup_params(shapes, self.hidden_size, self.dtype, seed)
        self._ctx = PerThread()  # each thread's saved training forward
        self._ws_pool = BufferPool()  # buffers of consumed training steps, for the next
        self.dropout_masks = []
        self.zoneout_masks = []

    def train(self, mode: bool = True):
        """Set training (``True``) or inference (``False``) mode, as torch's.

        A new layer is in training mode: a call saves what :meth:`backward`
        needs and applies dropout and zoneout with masks drawn from the layer's
        generator. In inference mode a call saves nothing, applies no dropout,
        uses zoneout's expectation and the ``weights_dtype`` weights. Setting
        inference mode also frees the buffers kept from consumed training steps.

        Parameters
        ----------
        mode : bool, default True
            ``True`` for training mode, ``False`` for inference mode.

        Returns
        -------
        self
        """
        super().train(mode)
        if not self.training:
            self._ws_pool.clear()  # inference keeps no training buffers
        return self

    def _config(self):
        return (self.input_size, self.hidden_size, self.num_layers, self.proj_size,
                self.bidirectional, self.bias, self.peephole)

    def _layer_params(self):
        return self._params

    @property
    def _D(self):
        return 2 if self.bidirectional else 1

    @property
    def _Ho(self):
        return self.proj_size or self.hidden_size

    def __repr__(self):
        extra = "".join(f", {k}={getattr(self, k)}" for k in
                        ("num_layers", "batch_first", "dropout", "bidirectional", "proj_size",
                         "peephole", "zoneout", "cell_clip") if getattr(self, k, None))
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra}, "
                f"dtype={self.dtype})")

    def __call__(self, x, hx=None, lengths=None):
        """Run the layer on x (and hx, lengths): the same as :meth:`forward`.

        See :meth:`forward` for the arguments, the results and the errors.
        """
        return self.forward(x, hx, lengths)

    def _state_shapes(self, B, batched):
        """The shape of each state: h, then the LSTM's c."""
        lead = (self._D * self.num_layers, B) if batched else (self._D * self.num_layers,)
        shapes = [lead + (self._Ho,)]
        if _spec.SPECS[self._CELL]["states"] == 2:
            shapes.append(lead + (self.hidden_size,))
        return shapes

    def _run(self, x, states, lengths):
        """y and the final states; states: per state (array or None, its name in errors)."""
        x = _checks.array(x, "x", self.dtype)
        if x.ndim not in (2, 3):
            raise ValueError(f"x: expected a 3-D [T,B,I] ({'[B,T,I] ' if self.batch_first else ''}"
                             f"batched) or 2-D [T,I] (unbatched) array, got {x.ndim}-D")
        batched = x.ndim == 3
        if x.shape[-1] != self.input_size:
            raise ValueError(f"x: expected input_size={self.input_size} features in the last "
                             f"axis, got shape {x.shape}")
        if not batched:
            x = x[:, None, :]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        T, B = x.shape[0], x.shape[1]
        if T < 1 or B < 1:
            raise ValueError(f"x: the sequence length and batch size must be >= 1, got T={T}, "
                             f"B={B}")
        _checks.check_sizes("x", T, B, max(self.input_size, self._D * self._Ho, 4))
        x = _checks.c_array(x)
        if lengths is not None:
            if not batched:
                raise ValueError("lengths: not accepted with unbatched (2-D) input")
            lengths = _checks.lengths_array(lengths, B, T)
        s0 = [None if v is None else _checks.c_array(
                  _checks.shaped(v, name, self.dtype, shape).reshape(shape[:1] + (B,)
                                                                     + shape[-1:]))
              for (v, name), shape in zip(states, self._state_shapes(B, batched))]
        h0, c0 = (s0 + [None])[:2]
        y, hn, cn, ctx = _forward(x, self._packed_for(self.training), h0, c0, lengths,
                                  self.dropout, self.training, self._rng, get_num_threads(),
                                  self.zoneout, None, self.cell_clip, self._ws_pool)
        if self.training:
            self._ctx.put((ctx, T, B, batched))
            self.dropout_masks = ctx.dropout_masks
            self.zoneout_masks = ctx.zoneout_masks
        else:
            self._ctx.put(None)
        finals = [hn] if cn is None else [hn, cn]
        return self._out(y, batched), [s if batched else s[:, 0, :] for s in finals]

    def _out(self, y, batched):
        if not batched:
            return y[:, 0, :]
        return np.ascontiguousarray(y.transpose(1, 0, 2)) if self.batch_first else y

    def _run_backward(self, dy, d_states):
        """dx and the gradients of the initial states, from dy and those of the final ones."""
        saved, others = self._ctx.take()
        if saved is None:
            raise RuntimeError("backward: no saved training-mode forward to differentiate "
                               "(call the layer in train() mode first; each forward can be "
                               "back-propagated once" + (", by the thread that ran it: "
                               "another thread's forward is pending" if others else "") + ")")
        ctx, T, B, batched = saved
        D, Ho = self._D, self._Ho
        if batched:
            ys = (B, T, D * Ho) if self.batch_first else (T, B, D * Ho)
        else:
            ys = (T, D * Ho)
        try:
            dy = _checks.shaped(dy, "dy", self.dtype, ys)
            ds = [None if v is None else _checks.shaped(v, name, self.dtype, shape)
                  for v, name, shape in zip(d_states, ("dh_n", "dc_n"),
                                            self._state_shapes(B, batched))]
        except (TypeError, ValueError):
            self._ctx.put(saved)  # bad gradients leave the forward to back-propagate
            raise
        if not batched:
            dy = dy[:, None, :]
            ds = [None if v is None else v[:, None, :] for v in ds]
        elif self.batch_first:
            dy = dy.transpose(1, 0, 2)
        dh_n, dc_n = (ds + [None])[:2]
        with self._ctx.accumulate:  # threads add into the one set of gradients in turn
            dx, dh0, dc0, _ = _backward(ctx, self._CELL, _checks.c_array(dy), dh_n, dc_n,
                                        self.grads, self._ws_pool)
        d0 = [dh0] if dc0 is None else [dh0, dc0]
        return self._out(dx, batched), [s if batched else s[:, 0, :] for s in d0]


class _TwoStates(_Recurrent):
    """The calls of a cell with states (h, c): torch.nn.LSTM's."""

    def forward(self, x, hx=None, lengths=None):
        """Run the layer over a batch of sequences: ``y, (h_n, c_n) = lstm(x, hx, lengths)``.

        Shapes are torch.nn.LSTM's. Below, T is the sequence length, B the batch
        size, I ``input_size``, H ``hidden_size``, Ho ``proj_size`` or else H, L
        ``num_layers`` and D 2 if ``bidirectional``, else 1. Every array has the
        layer's ``dtype``: there are no silent casts.

        Parameters
        ----------
        x : ndarray
            The input: [T,B,I], [B,T,I] with ``batch_first``, or [T,I] for one
            unbatched sequence.
        hx : tuple (h0, c0) of ndarray, optional
            The initial states: h0 [D*L,B,Ho] and c0 [D*L,B,H] ([D*L,Ho] and
            [D*L,H] with unbatched ``x``; ``batch_first`` does not apply to them).
            None (default): zeros.
        lengths : array_like of int, optional
            Each sequence's length, [B], every value in [1, T], in any order (no
            sorting, no packing). ``y`` is zero past each row's length, h_n and
            c_n are each row's last valid state, and the reverse direction starts
            at each row's own last element. Batched ``x`` only. None (default):
            every row has length T.

        Returns
        -------
        y : ndarray
            The last layer's output h at every step, the directions concatenated:
            [T,B,D*Ho] ([B,T,D*Ho] with ``batch_first``, [T,D*Ho] unbatched).
        (h_n, c_n) : tuple of ndarray
            The final states, shaped as h0 and c0.

        Raises
        ------
        TypeError
            ``x``, h0 or c0 is not a ``numpy.ndarray`` (the message says how to pass
            a torch tensor or a JAX array), ``hx`` is not a pair, or ``lengths`` is
            not an integer array.
        DTypeError
            ``x``, h0 or c0 does not have the layer's dtype.
        ShapeError
            h0 or c0 does not have the shape above.
        ValueError
            ``x`` is not 2-D or 3-D, its last axis is not ``input_size``, T or B is
            0, or it is too large; ``lengths`` does not have shape [B], has a value
            outside [1, T] or comes with unbatched ``x``; ``$FASTLSTM_ISA`` names a
            kernel path that this CPU or build lacks.

        Notes
        -----
        In train() mode a call saves what :meth:`backward` needs (replacing any
        forward not yet back-propagated) and draws its dropout and zoneout masks
        from the layer's generator (``dropout_masks``, ``zoneout_masks``). In
        eval() mode it saves nothing (a saved training forward is dropped) and
        applies no dropout. The work is proportional to ``sum(lengths)``.
        """
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError("hx: expected a tuple (h0, c0) of two arrays")
        h0, c0 = (None, None) if hx is None else hx
        y, (hn, cn) = self._run(x, [(h0, "hx[0] (h0)"), (c0, "hx[1] (c0)")], lengths)
        return y, (hn, cn)

    def backward(self, dy, dh_n=None, dc_n=None):
        """Back-propagate the last forward: ``dx, (dh0, dc0) = lstm.backward(dy, dh_n, dc_n)``.

        Needs the last forward in train() mode and consumes it: each forward can
        be back-propagated once. The last forward is this thread's: threads that
        train one layer at once each back-propagate their own. Parameter
        gradients are accumulated (added) into ``self.grads`` (by one thread at
        a time), so truncated BPTT over chunks works; :meth:`zero_grad` clears
        them. The gradients are those of the weights that the forward
        used, even if the parameters changed since.

        Parameters
        ----------
        dy : ndarray
            The gradient of the loss with respect to y: y's shape and the layer's
            dtype.
        dh_n : ndarray, optional
            The gradient with respect to h_n, h_n's shape. None (default): zeros.
        dc_n : ndarray, optional
            The gradient with respect to c_n, c_n's shape. None (default): zeros.

        Returns
        -------
        dx : ndarray
            The gradient with respect to x, x's shape.
        (dh0, dc0) : tuple of ndarray
            The gradients with respect to h0 and c0, shaped as h_n and c_n (also
            where the forward had no ``hx``).

        Raises
        ------
        RuntimeError
            There is no forward to back-propagate: none ran in train() mode (in
            this thread), it was back-propagated already, or an eval() call came
            after it.
        TypeError
            An argument is not a ``numpy.ndarray``.
        DTypeError
            An argument does not have the layer's dtype.
        ShapeError
            An argument does not have the shape of y, h_n or c_n. A failed check
            does not consume the forward.
        """
        dx, (dh0, dc0) = self._run_backward(dy, [dh_n, dc_n])
        return dx, (dh0, dc0)


class LSTM(_TwoStates):
    """Multi-layer LSTM with torch.nn.LSTM's arguments, shapes and parameter names.

    ``lstm(x, hx, lengths)`` runs it (:meth:`forward`) and takes variable lengths
    without packing. ``backward(dy, dh_n, dc_n)`` back-propagates the last
    training-mode forward and accumulates into ``grads``. The parameters are
    attributes with torch's names and default init, U(-1/sqrt(H), 1/sqrt(H)):
    ``weight_ih_l{k}`` [4H,I] (layer 0; [4H,D*Ho] above), ``weight_hh_l{k}``
    [4H,Ho], ``bias_ih_l{k}`` and ``bias_hh_l{k}`` [4H] (gate rows i, f, g, o),
    ``weight_hr_l{k}`` [Ho,H] with a projection, ``weight_ph_l{k}`` with
    peepholes, and the same with ``_reverse`` for the reverse direction.

    Parameters
    ----------
    input_size : int
        The number of input features, I >= 1.
    hidden_size : int
        The number of features of the cell state (and of h without a
        projection), H >= 1.
    num_layers : int, default 1
        The number of stacked layers, L >= 1.
    bias : bool, default True
        Whether the layers have the biases ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
    batch_first : bool, default False
        Whether ``x`` and ``y`` are [B,T,feature] rather than [T,B,feature] (the
        states keep their shapes).
    dropout : float, default 0.0
        The probability, in [0, 1], of dropping each output of every layer but
        the last, in train() mode (inverted dropout; the masks are kept as
        ``dropout_masks`` and reused by ``backward``).
    bidirectional : bool, default False
        Whether each layer also runs over the reversed sequence (D = 2).
    proj_size : int, default 0
        With 0 < proj_size < hidden_size, h is projected to Ho = proj_size
        features by ``weight_hr_l{k}``, as in torch. 0: no projection, Ho = H.
    peephole : bool, default False
        Peephole connections ``weight_ph_l{k}`` [3,H] (rows i, f, o): i and f
        see c_{t-1}, o sees c_t.
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        The dtype of the parameters and of every array the layer takes and
        returns.
    seed : int or None, default None
        The seed of the layer's generator (``numpy.random.default_rng(seed)``),
        which draws the initial weights and the dropout and zoneout masks.
    weights_dtype : {None, dtype, "bfloat16"}, default None
        ``"bfloat16"`` (float32 layers only): eval() calls run with ``W_ih`` and
        ``W_hh`` rounded to the nearest bfloat16, which halves the weight memory
        the recurrence streams (products, biases and states stay float32);
        train() calls use the float32 weights. None or the layer's dtype: the
        weights in that dtype.
    zoneout : float, default 0.0
        haste's zoneout on h, a probability p in [0, 1]. In train() each element
        keeps h_{t-1} with probability p (the masks are kept as
        ``zoneout_masks``, one [T,B,D*Ho] array per layer); in eval(),
        h_t = p·h_{t-1} + (1−p)·h̃_t.
    cell_clip : float or None, default None
        ONNX's ``clip``: every gate pre-activation (peephole terms included) is
        clipped to [-cell_clip, cell_clip] before its activation. None: no clip.

    Attributes
    ----------
    grads : dict of str to ndarray
        The accumulated gradients, keyed like :meth:`state_dict` (torch's
        ``.grad``).
    training : bool
        Whether the layer is in training mode (:meth:`train`, :meth:`eval`).
    dropout_masks : list of ndarray
        The dropout masks of the last training-mode forward, one per layer but
        the last (empty without dropout).
    zoneout_masks : list of ndarray
        The zoneout masks of the last training-mode forward, 1 where h_{t-1} was
        kept (empty without zoneout).

    Raises
    ------
    TypeError
        A size is not an int (bools are refused), ``dropout``, ``zoneout`` or
        ``cell_clip`` is not a real number, or ``dtype`` is not float32 or
        float64.
    ValueError
        A size is < 1 or too large, ``proj_size`` is not in [0, hidden_size),
        ``dropout`` or ``zoneout`` is outside [0, 1], ``cell_clip`` is <= 0, or
        ``weights_dtype`` is none of the above (``"bfloat16"`` needs float32).

    Warns
    -----
    UserWarning
        ``dropout > 0`` with ``num_layers=1``: dropout applies between layers
        only.

    Examples
    --------
    >>> import numpy as np, fastlstm
    >>> lstm = fastlstm.LSTM(64, 128, num_layers=2, batch_first=True, seed=0)
    >>> x = np.ones((8, 50, 64), np.float32)                    # [B,T,I]
    >>> y, (h, c) = lstm(x, lengths=np.array([50, 31, 7, 50, 12, 1, 44, 20]))
    >>> y.shape, h.shape
    ((8, 50, 128), (2, 8, 128))
    >>> dx, (dh0, dc0) = lstm.backward(np.ones_like(y))
    >>> lstm.grads["weight_hh_l1"].shape
    (512, 128)
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, peephole=False,
                 dtype=np.float32, seed=None, weights_dtype=None, zoneout=0.0, cell_clip=None):
        self._init_layer(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, peephole, dtype, seed, weights_dtype,
                         zoneout, cell_clip)


class LayerNormLSTM(_TwoStates):
    """Multi-layer layer-norm LSTM (Ba et al. 2016, as haste's LayerNormLSTM).

    It has torch.nn.LSTM's arguments, shapes and calls, without ``proj_size``
    or peepholes: ``m(x, hx, lengths)`` gives ``y, (h_n, c_n)`` (:meth:`forward`)
    and ``m.backward(dy, dh_n, dc_n)`` gives ``dx, (dh0, dc0)``. With
    LN(v) = (v − mean v)/sqrt(var v + 1e-5) over the last axis (biased
    variance, as torch.nn.LayerNorm)::

        a = LN(x W_ih^T)⊙weight_ln_ih + LN(h W_hh^T)⊙weight_ln_hh + b_ih + b_hh
        c_t = σ(a_f)⊙c_{t-1} + σ(a_i)⊙tanh(a_g)
        h_t = σ(a_o)⊙tanh(LN(c_t)⊙weight_ln_c + bias_ln_c)

    Per layer and direction: the LSTM's four parameters (``weight_ih_l{k}``,
    ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, gates i, f, g, o),
    plus ``weight_ln_ih_l{k}`` [4H], ``weight_ln_hh_l{k}`` [4H],
    ``weight_ln_c_l{k}`` [H] (initialised to 1) and ``bias_ln_c_l{k}`` [H] (to
    0), with ``_reverse`` for the reverse direction. c_n is the un-normalised c.

    Parameters
    ----------
    input_size : int
        The number of input features, I >= 1.
    hidden_size : int
        The number of features of h and c, H >= 1.
    num_layers : int, default 1
        The number of stacked layers, L >= 1.
    bias : bool, default True
        Whether the layers have ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (the
        layer norms' parameters are always there).
    batch_first : bool, default False
        Whether ``x`` and ``y`` are [B,T,feature] rather than [T,B,feature].
    dropout : float, default 0.0
        Dropout between layers in train() mode, as in :class:`LSTM`.
    bidirectional : bool, default False
        Whether each layer also runs over the reversed sequence (D = 2).
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        The dtype of the parameters and of every array the layer takes and
        returns.
    seed : int or None, default None
        The seed of the layer's generator (initial weights, dropout and zoneout
        masks).
    zoneout : float, default 0.0
        haste's zoneout on h, as in :class:`LSTM`.

    Attributes
    ----------
    grads : dict of str to ndarray
        The accumulated gradients, keyed like :meth:`state_dict`.
    training : bool
        Whether the layer is in training mode (:meth:`train`, :meth:`eval`).
    dropout_masks : list of ndarray
        The dropout masks of the last training-mode forward, as in
        :class:`LSTM`.
    zoneout_masks : list of ndarray
        The zoneout masks of the last training-mode forward, as in
        :class:`LSTM`.

    Raises
    ------
    TypeError
        A size is not an int, ``dropout`` or ``zoneout`` is not a real number,
        or ``dtype`` is not float32 or float64.
    ValueError
        A size is < 1 or too large, or ``dropout`` or ``zoneout`` is outside
        [0, 1].

    Warns
    -----
    UserWarning
        ``dropout > 0`` with ``num_layers=1``.
    """
    _CELL = "lnlstm"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, seed=None, zoneout=0.0):
        self._init_layer(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, False, dtype, seed, None, zoneout, None)


class GRU(_Recurrent):
    """Multi-layer GRU with torch.nn.GRU's arguments, shapes, parameter names
    (gates r, z, n) and maths.

    ``gru(x, hx, lengths)`` runs it (:meth:`forward`) and takes variable lengths
    without packing. ``backward(dy, dh_n)`` back-propagates the last
    training-mode forward and accumulates into ``grads``. The parameters are
    attributes with torch's names, shapes and init: ``weight_ih_l{k}`` [3H,I]
    (layer 0; [3H,D*H] above), ``weight_hh_l{k}`` [3H,H], ``bias_ih_l{k}`` and
    ``bias_hh_l{k}`` [3H], with ``_reverse`` for the reverse direction. A step
    is ``n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn))``, ``h' = (1−z)⊙n + z⊙h``.

    Parameters
    ----------
    input_size : int
        The number of input features, I >= 1.
    hidden_size : int
        The number of features of h, H >= 1.
    num_layers : int, default 1
        The number of stacked layers, L >= 1.
    bias : bool, default True
        Whether the layers have the biases ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
    batch_first : bool, default False
        Whether ``x`` and ``y`` are [B,T,feature] rather than [T,B,feature].
    dropout : float, default 0.0
        Dropout between layers in train() mode, as in :class:`LSTM`.
    bidirectional : bool, default False
        Whether each layer also runs over the reversed sequence (D = 2).
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        The dtype of the parameters and of every array the layer takes and
        returns.
    seed : int or None, default None
        The seed of the layer's generator (initial weights, dropout and zoneout
        masks).
    weights_dtype : {None, dtype, "bfloat16"}, default None
        ``"bfloat16"`` (float32 layers only): eval() calls use ``W_ih`` and
        ``W_hh`` rounded to bfloat16, as in :class:`LSTM`.
    zoneout : float, default 0.0
        haste's zoneout on h, as in :class:`LSTM`.

    Attributes
    ----------
    grads : dict of str to ndarray
        The accumulated gradients, keyed like :meth:`state_dict`.
    training : bool
        Whether the layer is in training mode (:meth:`train`, :meth:`eval`).
    dropout_masks : list of ndarray
        The dropout masks of the last training-mode forward, as in
        :class:`LSTM`.
    zoneout_masks : list of ndarray
        The zoneout masks of the last training-mode forward, as in
        :class:`LSTM`.

    Raises
    ------
    TypeError
        A size is not an int, ``dropout`` or ``zoneout`` is not a real number,
        or ``dtype`` is not float32 or float64.
    ValueError
        A size is < 1 or too large, ``dropout`` or ``zoneout`` is outside
        [0, 1], or ``weights_dtype`` is none of the above.

    Warns
    -----
    UserWarning
        ``dropout > 0`` with ``num_layers=1``.

    Examples
    --------
    >>> import numpy as np, fastlstm
    >>> gru = fastlstm.GRU(16, 32, bidirectional=True, seed=0)
    >>> x = np.ones((20, 4, 16), np.float32)                    # [T,B,I]
    >>> y, h = gru(x)
    >>> y.shape, h.shape
    ((20, 4, 64), (2, 4, 32))
    >>> dx, dh0 = gru.backward(np.ones_like(y))
    """
    _CELL = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, seed=None,
                 weights_dtype=None, zoneout=0.0):
        self._init_layer(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, False, dtype, seed, weights_dtype, zoneout, None)

    def forward(self, x, hx=None, lengths=None):
        """Run the layer over a batch of sequences: ``y, h_n = gru(x, hx, lengths)``.

        Shapes are torch.nn.GRU's. Below, T is the sequence length, B the batch
        size, I ``input_size``, H ``hidden_size``, L ``num_layers`` and D 2 if
        ``bidirectional``, else 1. Every array has the layer's ``dtype``: there
        are no silent casts.

        Parameters
        ----------
        x : ndarray
            The input: [T,B,I], [B,T,I] with ``batch_first``, or [T,I] for one
            unbatched sequence.
        hx : ndarray, optional
            The initial state h0, [D*L,B,H] ([D*L,H] with unbatched ``x``;
            ``batch_first`` does not apply to it). None (default): zeros.
        lengths : array_like of int, optional
            Each sequence's length, [B], every value in [1, T], in any order (no
            sorting, no packing). ``y`` is zero past each row's length, h_n is
            each row's last valid state, and the reverse direction starts at each
            row's own last element. Batched ``x`` only. None (default): every row
            has length T.

        Returns
        -------
        y : ndarray
            The last layer's output h at every step, the directions concatenated:
            [T,B,D*H] ([B,T,D*H] with ``batch_first``, [T,D*H] unbatched).
        h_n : ndarray
            The final state, shaped as h0.

        Raises
        ------
        TypeError
            ``x`` or ``hx`` is not a ``numpy.ndarray`` (the message says how to
            pass a torch tensor or a JAX array), or ``lengths`` is not an integer
            array.
        DTypeError
            ``x`` or ``hx`` does not have the layer's dtype.
        ShapeError
            ``hx`` does not have the shape above.
        ValueError
            ``x`` is not 2-D or 3-D, its last axis is not ``input_size``, T or B is
            0, or it is too large; ``lengths`` does not have shape [B], has a value
            outside [1, T] or comes with unbatched ``x``; ``$FASTLSTM_ISA`` names a
            kernel path that this CPU or build lacks.

        Notes
        -----
        In train() mode a call saves what :meth:`backward` needs (replacing any
        forward not yet back-propagated) and draws its dropout and zoneout masks
        from the layer's generator (``dropout_masks``, ``zoneout_masks``). In
        eval() mode it saves nothing (a saved training forward is dropped) and
        applies no dropout. The work is proportional to ``sum(lengths)``.
        """
        y, (hn,) = self._run(x, [(hx, "hx (h0)")], lengths)
        return y, hn

    def backward(self, dy, dh_n=None):
        """Back-propagate the last forward: ``dx, dh0 = gru.backward(dy, dh_n)``.

        Needs the last forward in train() mode and consumes it: each forward can
        be back-propagated once. The last forward is this thread's: threads that
        train one layer at once each back-propagate their own. Parameter
        gradients are accumulated (added) into ``self.grads`` (by one thread at
        a time), so truncated BPTT over chunks works; :meth:`zero_grad` clears
        them. The gradients are those of the weights that the forward
        used, even if the parameters changed since.

        Parameters
        ----------
        dy : ndarray
            The gradient of the loss with respect to y: y's shape and the layer's
            dtype.
        dh_n : ndarray, optional
            The gradient with respect to h_n, h_n's shape. None (default): zeros.

        Returns
        -------
        dx : ndarray
            The gradient with respect to x, x's shape.
        dh0 : ndarray
            The gradient with respect to h0, shaped as h_n (also where the forward
            had no ``hx``).

        Raises
        ------
        RuntimeError
            There is no forward to back-propagate: none ran in train() mode (in
            this thread), it was back-propagated already, or an eval() call came
            after it.
        TypeError
            An argument is not a ``numpy.ndarray``.
        DTypeError
            An argument does not have the layer's dtype.
        ShapeError
            An argument does not have the shape of y or h_n. A failed check does
            not consume the forward.
        """
        dx, (dh0,) = self._run_backward(dy, [dh_n])
        return dx, dh0


class _StepCell(_Module):
    """One step of a cell (torch.nn.LSTMCell / GRUCell's API). In train() mode
    every call saves its step on a stack; ``backward`` consumes the most recent
    one, so BPTT over many steps is a series of backward calls in reverse
    order. ``clear_saved()`` drops unconsumed steps. The stack is per thread,
    as a layer's saved forward: threads that step one cell at once each
    back-propagate their own steps, adding into ``grads`` one at a time."""

    def _init_cell(self, input_size, hidden_size, bias, peephole, dtype, seed, weights_dtype):
        self.input_size, self.hidden_size, _, _, _ = _checks.layer_config(
            input_size, hidden_size, 1, 0.0, 0)
        self.dtype = _checks.dtype_of(dtype)
        self.weights_dtype = weights_dtype_of(weights_dtype, self.dtype)
        self.bias, self.peephole = bool(bias), bool(peephole)
        gates = _spec.SPECS[self._CELL]["gates"]
        _checks.check_sizes("hidden_size", gates * self.hidden_size,
                            max(self.input_size, self.hidden_size))
        layer_shapes = param_shapes(self.input_size, self.hidden_size, 1, self.bias, False, 0,
                                    self.peephole, self._CELL)
        shapes = {k[:-3]: v for k, v in layer_shapes.items()}  # drop "_l0"
        self._setup_params(shapes, self.hidden_size, self.dtype, seed)
        self._saved = PerThread()  # this thread's stack of (ctx, B, batched)
        self._init_transient()

    def _init_transient(self) -> None:
        self._cell_kernel = _core.cell_forward_f32 if self.dtype == np.float32 else \
            _core.cell_forward_f64

    @property
    def _has_c(self):
        return _spec.SPECS[self._CELL]["states"] == 2

    def _layer_params(self):
        return {f"{k}_l0": v for k, v in self._params.items()}

    def _config(self):
        return (self.input_size, self.hidden_size, 1, 0, False, self.bias, self.peephole)

    def _infer_step(self, x, h0, c0):
        """One inference step on checked, C-contiguous arrays: x [B,I]; h0 (and the
        LSTM's c0) hold B*H values of the layer's dtype. Returns [h] or [h, c], [B,H]."""
        packed = self._packed_for(False)
        shape = (x.shape[0], self.hidden_size)
        h = np.empty(shape, self.dtype)
        c = np.empty(shape, self.dtype) if self._has_c else None
        self._cell_kernel(packed.layers[0], x, h0, c0, h, c, get_num_threads(), packed.isa)
        return [h] if c is None else [h, c]

    def _fast(self, x, states):
        """Whether this inference call can go straight to the kernel: C-contiguous
        [B,I] and [B,H] arrays of the layer's dtype (the kernel checks them again)."""
        shape = (x.shape[0], self.hidden_size) if x.ndim == 2 else None
        return (not self.training and x.ndim == 2 and x.dtype == self.dtype
                and x.shape[1] == self.input_size and shape[0] > 0 and x.flags.c_contiguous
                and x.flags.aligned
                and all(type(v) is np.ndarray and v.dtype == self.dtype and v.shape == shape
                        and v.flags.c_contiguous and v.flags.aligned for v in states))

    def _step(self, x, states):
        """The new states; states: per state (array or None, its name in errors)."""
        x = _checks.array(x, "x", self.dtype)
        if x.ndim not in (1, 2):
            raise ValueError(f"x: expected a 2-D [B,I] or 1-D [I] array, got {x.ndim}-D")
        batched = x.ndim == 2
        if x.shape[-1] != self.input_size:
            raise ValueError(f"x: expected input_size={self.input_size} features, got shape "
                             f"{x.shape}")
        xb = x if batched else x[None, :]
        B, H = xb.shape[0], self.hidden_size
        if B < 1:
            raise ValueError("x: the batch size must be >= 1, got 0")
        shape = (B, H) if batched else (H,)
        s0 = [None if v is None else _checks.shaped(v, name, self.dtype, shape).reshape(1, B, H)
              for v, name in states]
        if not self.training:  # inference: one core call, no context
            s0 = [np.zeros((B, H), self.dtype) if v is None else v for v in s0]
            out = self._infer_step(_checks.c_array(xb), *(s0 + [None])[:2])
        else:
            h0, c0 = (s0 + [None])[:2]
            _, hn, cn, ctx = _forward(_checks.c_array(xb[None]), self._packed_for(True),
                                      h0, c0, None, 0.0, True, None, get_num_threads())
            self._steps().append((ctx, B, batched))
            out = [hn[0]] if cn is None else [hn[0], cn[0]]
        return out if batched else [v[0] for v in out]

    def _step_backward(self, d_states):
        """dx and the gradients of the step's initial states, from those of its outputs."""
        steps = self._steps()
        if not steps:
            raise RuntimeError("backward: no saved training-mode step to differentiate "
                               "(call the cell in train() mode first; each step can be "
                               "back-propagated once, by the thread that ran it)")
        ctx, B, batched = steps[-1]
        shape = (B, self.hidden_size) if batched else (self.hidden_size,)
        dh, dc = [None if v is None else
                  _checks.shaped(v, name, self.dtype, shape).reshape(1, B, -1)
                  for v, name in d_states] + [None] * (2 - len(d_states))
        steps.pop()
        with self._saved.accumulate:  # threads add into the one set of gradients in turn
            grads = {f"{k}_l0": v for k, v in self.grads.items()}
            dx, dh0, dc0, grads = _backward(ctx, self._CELL,
                                            np.zeros((1, B, self.hidden_size), self.dtype), dh,
                                            dc, grads)
            self.grads = {k[:-3]: v for k, v in grads.items()}
        out = [dx[0], dh0[0]] + ([] if dc0 is None else [dc0[0]])
        return out if batched else [v[0] for v in out]

    def clear_saved(self) -> None:
        """Drop this thread's saved training-mode steps that ``backward`` has not
        consumed."""
        self._saved.put(None)

    def _steps(self) -> list:
        """This thread's stack of saved steps."""
        steps = self._saved.peek()
        if steps is None:
            steps = []
            self._saved.put(steps)
        return steps


class _TwoStateCell(_StepCell):
    """A cell with states (h, c): torch.nn.LSTMCell's calls."""

    def __call__(self, x, hx=None):
        """One step on x (and hx): the same as :meth:`forward`.

        See :meth:`forward` for the arguments, the results and the errors.
        """
        return self.forward(x, hx)

    def forward(self, x, hx=None):
        """One step: ``h, c = cell(x, hx)``, shapes as torch.nn.LSTMCell.

        Below, B is the batch size, I ``input_size`` and H ``hidden_size``. Every
        array has the cell's ``dtype``: there are no silent casts.

        Parameters
        ----------
        x : ndarray
            The input, [B,I], or [I] unbatched.
        hx : tuple (h, c) of ndarray, optional
            The states, each [B,H] ([H] with unbatched ``x``). None (default):
            zeros.

        Returns
        -------
        h : ndarray
            The new hidden state, [B,H] ([H] unbatched).
        c : ndarray
            The new cell state, [B,H] ([H] unbatched).

        Raises
        ------
        TypeError
            ``x``, h or c is not a ``numpy.ndarray``, or ``hx`` is not a pair.
        DTypeError
            ``x``, h or c does not have the cell's dtype.
        ShapeError
            h or c does not have the shape above.
        ValueError
            ``x`` is not 1-D or 2-D, its last axis is not ``input_size`` or B is
            0, or ``$FASTLSTM_ISA`` names a kernel path that this CPU or build
            lacks.

        Notes
        -----
        In eval() mode, with ``x`` [B,I] and ``hx`` a tuple of [B,H] arrays, all
        C-contiguous, a step is one call into the kernels on the cached packed
        weights (no packing, no allocation beyond the outputs): the streaming
        path. In train() mode each call saves its step on a stack for
        :meth:`backward`.
        """
        if type(hx) is tuple and len(hx) == 2 and type(x) is np.ndarray and self._fast(x, hx):
            h, c = self._infer_step(x, *hx)  # the streaming step
            return h, c
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError("hx: expected a tuple (h, c) of two arrays")
        h0, c0 = (None, None) if hx is None else hx
        h, c = self._step(x, [(h0, "hx[0] (h)"), (c0, "hx[1] (c)")])
        return h, c

    def backward(self, dh, dc=None):
        """Back-propagate the most recent saved step: ``dx, (dh0, dc0) = cell.backward(dh, dc)``.

        The step is taken off the stack, so BPTT over many steps is a series of
        ``backward`` calls in reverse order, each given the gradients with
        respect to its step's h and c (a later step's dh0 and dc0 plus what the
        loss adds). Parameter gradients are accumulated (added) into
        ``self.grads``.

        Parameters
        ----------
        dh : ndarray
            The gradient with respect to the step's h: [B,H], or [H] for an
            unbatched step, in the cell's dtype.
        dc : ndarray, optional
            The gradient with respect to the step's c, likewise. None (default):
            zeros.

        Returns
        -------
        dx : ndarray
            The gradient with respect to the step's x, [B,I] ([I] unbatched).
        (dh0, dc0) : tuple of ndarray
            The gradients with respect to the step's input states, [B,H] ([H]
            unbatched).

        Raises
        ------
        RuntimeError
            No step is saved: none ran in train() mode, or all were consumed or
            dropped by :meth:`clear_saved`.
        TypeError
            ``dh`` or ``dc`` is not a ``numpy.ndarray``.
        DTypeError
            ``dh`` or ``dc`` does not have the cell's dtype.
        ShapeError
            ``dh`` or ``dc`` does not have the step's h shape. A failed check keeps
            the step.
        """
        dx, dh0, dc0 = self._step_backward([(dh, "dh"), (dc, "dc")])
        return dx, (dh0, dc0)


class LSTMCell(_TwoStateCell):
    """One LSTM step with torch.nn.LSTMCell's arguments and parameter names.

    ``h, c = cell(x, hx)`` runs a step (:meth:`forward`). In train() mode every
    call saves its step on a stack; ``backward`` consumes the most recent one,
    so BPTT over many steps is a series of backward calls in reverse order.
    ``clear_saved()`` drops unconsumed steps. In eval() mode a step is one call
    into the kernels (the streaming path). The parameters are attributes with
    torch's names, shapes and init: ``weight_ih`` [4H,I], ``weight_hh`` [4H,H],
    ``bias_ih`` and ``bias_hh`` [4H] (gate rows i, f, g, o), and ``weight_ph``
    [3,H] with peepholes.

    Parameters
    ----------
    input_size : int
        The number of input features, I >= 1.
    hidden_size : int
        The number of features of h and c, H >= 1.
    bias : bool, default True
        Whether the cell has the biases ``bias_ih`` and ``bias_hh``.
    peephole : bool, default False
        Peephole connections ``weight_ph`` [3,H] (rows i, f, o), as in
        :class:`LSTM`.
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        The dtype of the parameters and of every array the cell takes and
        returns.
    seed : int or None, default None
        The seed of the generator that draws the initial weights.
    weights_dtype : {None, dtype, "bfloat16"}, default None
        ``"bfloat16"`` (float32 cells only): eval() steps use ``W_ih`` and
        ``W_hh`` rounded to bfloat16, as in :class:`LSTM`.

    Attributes
    ----------
    grads : dict of str to ndarray
        The accumulated gradients, keyed like :meth:`state_dict`.
    training : bool
        Whether the cell is in training mode (:meth:`train`, :meth:`eval`).

    Raises
    ------
    TypeError
        A size is not an int, or ``dtype`` is not float32 or float64.
    ValueError
        A size is < 1 or too large, or ``weights_dtype`` is none of the above.

    Examples
    --------
    >>> import numpy as np, fastlstm
    >>> cell = fastlstm.LSTMCell(8, 16, seed=0).eval()
    >>> h, c = np.zeros((1, 16), np.float32), np.zeros((1, 16), np.float32)
    >>> for x in np.ones((100, 1, 8), np.float32):             # streaming, B=1
    ...     h, c = cell(x, (h, c))
    """

    def __init__(self, input_size, hidden_size, bias=True, peephole=False, dtype=np.float32,
                 seed=None, weights_dtype=None):
        self._init_cell(input_size, hidden_size, bias, peephole, dtype, seed, weights_dtype)

    def __repr__(self):
        return (f"LSTMCell({self.input_size}, {self.hidden_size}, bias={self.bias}, "
                f"peephole={self.peephole}, dtype={self.dtype})")


class LayerNormLSTMCell(_TwoStateCell):
    """One step of :class:`LayerNormLSTM` (same maths, no dropout or zoneout),
    with :class:`LSTMCell`'s calls.

    Parameters: ``weight_ih`` [4H,I], ``weight_hh`` [4H,H], ``bias_ih``,
    ``bias_hh`` [4H] (with bias), ``weight_ln_ih``, ``weight_ln_hh`` [4H] and
    ``weight_ln_c`` [H] (initialised to 1), ``bias_ln_c`` [H] (to 0): the
    layer's names without ``_l0``, so a cell and a one-layer
    :class:`LayerNormLSTM` load each other's weights by renaming.

    ``h, c = cell(x, hx)`` runs a step (:meth:`forward`). In train() mode every
    call saves its step on a stack; ``backward`` consumes the most recent one,
    so BPTT over many steps is a series of backward calls in reverse order.
    ``clear_saved()`` drops unconsumed steps. In eval() mode a step is one call
    into the kernels (the streaming path).

    Parameters
    ----------
    input_size : int
        The number of input features, I >= 1.
    hidden_size : int
        The number of features of h and c, H >= 1.
    bias : bool, default True
        Whether the cell has the biases ``bias_ih`` and ``bias_hh`` (the layer
        norms' parameters are always there).
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        The dtype of the parameters and of every array the cell takes and
        returns.
    seed : int or None, default None
        The seed of the generator that draws the initial weights.

    Attributes
    ----------
    grads : dict of str to ndarray
        The accumulated gradients, keyed like :meth:`state_dict`.
    training : bool
        Whether the cell is in training mode (:meth:`train`, :meth:`eval`).

    Raises
    ------
    TypeError
        A size is not an int, or ``dtype`` is not float32 or float64.
    ValueError
        A size is < 1 or too large.
    """
    _CELL = "lnlstm"

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, seed=None):
        self._init_cell(input_size, hidden_size, bias, False, dtype, seed, None)

    def __repr__(self):
        return (f"LayerNormLSTMCell({self.input_size}, {self.hidden_size}, bias={self.bias}, "
                f"dtype={self.dtype})")


class GRUCell(_StepCell):
    """One GRU step with torch.nn.GRUCell's arguments, parameter names and maths.

    ``h = cell(x, hx)`` runs a step (:meth:`forward`). In train() mode every
    call saves its step on a stack; ``backward`` consumes the most recent one,
    so BPTT over many steps is a series of backward calls in reverse order.
    ``clear_saved()`` drops unconsumed steps. In eval() mode a step is one call
    into the kernels (the streaming path). The parameters are attributes with
    torch's names, shapes and init: ``weight_ih`` [3H,I], ``weight_hh`` [3H,H],
    ``bias_ih`` and ``bias_hh`` [3H] (gate rows r, z, n).

    Parameters
    ----------
    input_size : int
        The number of input features, I >= 1.
    hidden_size : int
        The number of features of h, H >= 1.
    bias : bool, default True
        Whether the cell has the biases ``bias_ih`` and ``bias_hh``.
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        The dtype of the parameters and of every array the cell takes and
        returns.
    seed : int or None, default None
        The seed of the generator that draws the initial weights.
    weights_dtype : {None, dtype, "bfloat16"}, default None
        ``"bfloat16"`` (float32 cells only): eval() steps use ``W_ih`` and
        ``W_hh`` rounded to bfloat16, as in :class:`LSTM`.

    Attributes
    ----------
    grads : dict of str to ndarray
        The accumulated gradients, keyed like :meth:`state_dict`.
    training : bool
        Whether the cell is in training mode (:meth:`train`, :meth:`eval`).

    Raises
    ------
    TypeError
        A size is not an int, or ``dtype`` is not float32 or float64.
    ValueError
        A size is < 1 or too large, or ``weights_dtype`` is none of the above.
    """
    _CELL = "gru"

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, seed=None,
                 weights_dtype=None):
        self._init_cell(input_size, hidden_size, bias, False, dtype, seed, weights_dtype)

    def __repr__(self):
        return (f"GRUCell({self.input_size}, {self.hidden_size}, bias={self.bias}, "
                f"dtype={self.dtype})")

    def __call__(self, x, hx=None):
        """One step on x (and hx): the same as :meth:`forward`.

        See :meth:`forward` for the arguments, the results and the errors.
        """
        return self.forward(x, hx)

    def forward(self, x, hx=None):
        """One step: ``h = cell(x, hx)``, shapes as torch.nn.GRUCell.

        Below, B is the batch size, I ``input_size`` and H ``hidden_size``. Every
        array has the cell's ``dtype``: there are no silent casts.

        Parameters
        ----------
        x : ndarray
            The input, [B,I], or [I] unbatched.
        hx : ndarray, optional
            The state, [B,H] ([H] with unbatched ``x``). None (default): zeros.

        Returns
        -------
        h : ndarray
            The new state, [B,H] ([H] unbatched).

        Raises
        ------
        TypeError
            ``x`` or ``hx`` is not a ``numpy.ndarray``.
        DTypeError
            ``x`` or ``hx`` does not have the cell's dtype.
        ShapeError
            ``hx`` does not have the shape above.
        ValueError
            ``x`` is not 1-D or 2-D, its last axis is not ``input_size`` or B is
            0, or ``$FASTLSTM_ISA`` names a kernel path that this CPU or build
            lacks.

        Notes
        -----
        In eval() mode, with ``x`` [B,I] and ``hx`` [B,H], both C-contiguous, a
        step is one call into the kernels on the cached packed weights (no
        packing, no allocation beyond the output): the streaming path. In
        train() mode each call saves its step on a stack for :meth:`backward`.
        """
        if type(x) is np.ndarray and type(hx) is np.ndarray and self._fast(x, (hx,)):
            return self._infer_step(x, hx, None)[0]  # the streaming step
        return self._step(x, [(hx, "hx")])[0]

    def backward(self, dh):
        """Back-propagate the most recent saved step: ``dx, dh0 = cell.backward(dh)``.

        The step is taken off the stack, so BPTT over many steps is a series of
        ``backward`` calls in reverse order, each given the gradient with respect
        to its step's h (a later step's dh0 plus what the loss adds). Parameter
        gradients are accumulated (added) into ``self.grads``.

        Parameters
        ----------
        dh : ndarray
            The gradient with respect to the step's h: [B,H], or [H] for an
            unbatched step, in the cell's dtype.

        Returns
        -------
        dx : ndarray
            The gradient with respect to the step's x, [B,I] ([I] unbatched).
        dh0 : ndarray
            The gradient with respect to the step's input state, [B,H] ([H]
            unbatched).

        Raises
        ------
        RuntimeError
            No step is saved: none ran in train() mode, or all were consumed or
            dropped by :meth:`clear_saved`.
        TypeError
            ``dh`` is not a ``numpy.ndarray``.
        DTypeError
            ``dh`` does not have the cell's dtype.
        ShapeError
            ``dh`` does not have the step's h shape. A failed check keeps the step.
        """
        dx, dh0 = self._step_backward([(dh, "dh")])
        return dx, dh0
