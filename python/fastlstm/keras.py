"""fastlstm in Keras 3: `LSTM` and `GRU`, layers with keras.layers.LSTM's and
keras.layers.GRU's arguments, weights and masking that run fastlstm's kernels.

On Keras's torch backend a layer calls fastlstm.torch's layer ops (autograd
through fastlstm's BPTT); on its JAX backend it calls `fastlstm.jax` (XLA FFI
custom calls, under jit). Other backends raise. The weights are Keras's:
``kernel`` [I, G*units], ``recurrent_kernel`` [units, G*units] and ``bias``
(LSTM [4*units], gates i, f, c, o; GRU [2, 3*units], gates z, r, h, input and
recurrent biases), so ``get_weights`` / ``set_weights`` move weights to and
from ``keras.layers.LSTM`` / ``GRU`` as they are.

Supported: units, use_bias, the initializers (and ``unit_forget_bias``),
regularizers and constraints, ``dropout`` (one mask on the inputs per
sequence, as Keras's fused path draws it), return_sequences, return_state,
go_backwards, ``initial_state``, masking through ``mask`` (a right-padded
mask: each sequence is a prefix of valid steps; a fully masked sequence
keeps its initial state), ``keras.layers.Bidirectional``, and saving
(``get_config``). Refused with a ValueError: another activation than tanh
and sigmoid, recurrent_dropout, stateful, the GRU's reset_after=False, and a
compute dtype other than float32 / float64. A mask with a gap (a masked step
before a valid one) raises too: ValueError in eager calls, a JaxRuntimeError
carrying the same message under jit. ``unroll`` and ``use_cudnn`` are
accepted and have no effect.
"""
from __future__ import annotations

import inspect

import keras
from keras import ops

from . import _spec

__all__ = ["LSTM", "GRU"]

_BACKENDS = ("torch", "jax")
_NOT_RIGHT_PADDED = ("mask: fastlstm.keras takes right-padded masks (each sequence a run of "
                     "valid steps from its start, then padding); this one masks a step before "
                     "a valid one. Use keras.layers.{} for such masks")


def _same(fn, name: str) -> bool:
    return keras.activations.get(fn) is keras.activations.get(name)


class _Recurrent(keras.layers.Layer):
    """What LSTM and GRU share: arguments, weights, masking, the kernel call."""

    _CELL = ""
    _KERAS = ""

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, use_cudnn="auto",
                 zero_output_for_mask=False, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        backend = keras.backend.backend()
        if backend not in _BACKENDS:
            raise RuntimeError(f"fastlstm.keras.{type(self).__name__} runs on Keras's torch and "
                               f"jax backends, not {backend!r}: set KERAS_BACKEND=torch or jax, "
                               f"or use keras.layers.{self._KERAS}")
        if self.compute_dtype not in ("float32", "float64"):
            raise ValueError(f"dtype: fastlstm's kernels compute in float32 or float64, not "
                             f"{self.compute_dtype} (a mixed precision policy is not supported)")
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(f"units: expected a positive int, got {units!r}")
        if not _same(activation, "tanh"):
            raise ValueError(f"activation: fastlstm's kernels compute tanh, got {activation!r}")
        if not _same(recurrent_activation, "sigmoid"):
            raise ValueError(f"recurrent_activation: fastlstm's kernels compute sigmoid, got "
                             f"{recurrent_activation!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout: expected a float in [0, 1), got {dropout!r}")
        if recurrent_dropout:
            raise ValueError("recurrent_dropout: not supported by fastlstm's kernels; use "
                             f"dropout, or keras.layers.{self._KERAS}")
        if stateful:
            raise ValueError("stateful: not supported by fastlstm.keras; pass initial_state, "
                             f"or use keras.layers.{self._KERAS}")
        self.units = units
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.dropout = float(dropout)
        self.recurrent_dropout = 0.0
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = False
        self.unroll = bool(unroll)
        self.use_cudnn = use_cudnn
        self.zero_output_for_mask = bool(zero_output_for_mask)  # Bidirectional sets it
        self.supports_masking = True
        self.input_spec = keras.layers.InputSpec(ndim=3)
        self._states = _spec.SPECS[self._CELL]["states"]
        self._gates = _spec.SPECS[self._CELL]["gates"]

    # ---- weights -------------------------------------------------------------

    def build(self, sequences_shape, initial_state_shape=None):
        I, G, U = sequences_shape[-1], self._gates, self.units
        self.kernel = self.add_weight(shape=(I, G * U), name="kernel",
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight(shape=(U, G * U), name="recurrent_kernel",
                                                initializer=self.recurrent_initializer,
                                                regularizer=self.recurrent_regularizer,
                                                constraint=self.recurrent_constraint)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(shape=self._bias_shape(), name="bias",
                                        initializer=self._bias_init(),
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)
        self.built = True

    def _bias_shape(self):
        raise NotImplementedError

    def _bias_init(self):
        return self.bias_initializer

    def _torch_weights(self):
        """The weights in torch.nn's layout: [w_ih, w_hh(, b_ih, b_hh)]."""
        raise NotImplementedError

    # ---- shapes and masks ----------------------------------------------------

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        B, T = sequences_shape[0], sequences_shape[1]
        out = (B, T, self.units) if self.return_sequences else (B, self.units)
        if self.return_state:
            return (out,) + ((B, self.units),) * self._states
        return out

    def compute_mask(self, _, mask):
        mask = None if mask is None else keras.tree.flatten(mask)[0]
        out = mask if self.return_sequences else None
        return [out] + [None] * self._states if self.return_state else out

    def _lengths(self, mask, T):
        """lengths [B] (int32) of a right-padded mask [B,T], checked."""
        mask = ops.cast(mask, "bool")
        lengths = ops.sum(ops.cast(mask, "int32"), axis=1)
        ok = ops.all(ops.equal(mask, ops.arange(T)[None, :] < lengths[:, None]))
        message = _NOT_RIGHT_PADDED.format(self._KERAS)
        if keras.backend.backend() == "jax":
            import jax
            if isinstance(ok, jax.core.Tracer):
                def check(value):
                    if not value:
                        raise ValueError(message)
                jax.debug.callback(check, ok)
                return lengths
        if not bool(ops.convert_to_numpy(ok)):
            raise ValueError(message)
        return lengths

    # ---- the call ------------------------------------------------------------

    def call(self, sequences, initial_state=None, mask=None, training=False):
        dtype = keras.backend.standardize_dtype(sequences.dtype)
        if dtype not in ("float32", "float64"):
            raise ValueError(f"fastlstm.keras.{type(self).__name__}: inputs of dtype {dtype}; "
                             f"fastlstm's kernels compute in float32 or float64 (a mixed "
                             f"precision policy is not supported)")
        B, T = ops.shape(sequences)[0], ops.shape(sequences)[1]
        x = sequences
        if training and self.dropout > 0.0:  # one mask per sequence, as Keras's fused path
            keep = keras.random.dropout(ops.ones_like(x[:, :1, :]), self.dropout,
                                        seed=self.seed_generator)
            x = x * keep
        if mask is not None:
            mask = keras.tree.flatten(mask)[0]
        states0 = self._initial_states(initial_state, B, dtype)
        lengths = None if mask is None else self._lengths(mask, T)
        t = ops.arange(T)[None, :]
        if self.go_backwards:  # each sequence reversed within its length
            if lengths is None:
                x = ops.flip(x, axis=1)
            else:
                src = ops.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
                x = ops.take_along_axis(x, src[:, :, None], axis=1)
        run_lengths = None if lengths is None else ops.maximum(lengths, 1)
        y, finals = self._run(ops.transpose(x, (1, 0, 2)), states0, run_lengths)
        y = ops.transpose(y, (1, 0, 2))  # [B,T,U], in the order the steps ran
        if lengths is not None:
            empty = (lengths == 0)[:, None]  # fully masked: the initial states stay
            finals = [ops.where(empty, s0, s) for s0, s in zip(states0, finals)]
            y = self._masked_outputs(y, lengths, t, finals[0], states0[0])
        output = y if self.return_sequences else y[:, -1, :]
        if self.return_state:
            return (output, *finals)
        return output

    def _masked_outputs(self, y, lengths, t, h_n, h0):
        """Keras's outputs at the masked steps: the carried state (h_n forward,
        the initial h backwards), or zeros with zero_output_for_mask."""
        T = ops.shape(y)[1]
        L = lengths[:, None]
        if self.go_backwards:  # the valid steps ran last: shift them there
            valid = t >= T - L
            src = ops.clip(t - (T - L), 0, T - 1)
            y = ops.take_along_axis(y, src[:, :, None], axis=1)
            fill = h0
        else:
            valid = t < L
            fill = h_n
        if self.zero_output_for_mask:
            fill = ops.zeros_like(fill)
        return ops.where(valid[:, :, None], y, fill[:, None, :])

    def _initial_states(self, initial_state, B, dtype):
        if initial_state is None:
            return [ops.zeros((B, self.units), dtype=dtype)] * self._states
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) \
            else [initial_state]
        if len(states) != self._states:
            raise ValueError(f"initial_state: expected {self._states} tensor(s) [batch, units], "
                             f"got {len(states)}")
        return [ops.cast(s, dtype) for s in states]

    def _run(self, x_tm, states0, lengths):
        """The layer on x_tm [T,B,I] -> y [T,B,U], final states [[B,U], ...]."""
        weights = self._torch_weights()
        if keras.backend.backend() == "torch":
            return _run_torch(self._CELL, x_tm, weights, states0, lengths, self.units,
                              self.use_bias)
        return _run_jax(self._CELL, x_tm, weights, states0, lengths, self.use_bias)

    def get_config(self):
        s = keras.saving.serialize_keras_object
        config = {
            "units": self.units, "activation": s(self.activation),
            "recurrent_activation": s(self.recurrent_activation), "use_bias": self.use_bias,
            "kernel_initializer": s(self.kernel_initializer),
            "recurrent_initializer": s(self.recurrent_initializer),
            "bias_initializer": s(self.bias_initializer),
            "kernel_regularizer": s(self.kernel_regularizer),
            "recurrent_regularizer": s(self.recurrent_regularizer),
            "bias_regularizer": s(self.bias_regularizer),
            "activity_regularizer": s(self.activity_regularizer),
            "kernel_constraint": s(self.kernel_constraint),
            "recurrent_constraint": s(self.recurrent_constraint),
            "bias_constraint": s(self.bias_constraint), "dropout": self.dropout,
            "recurrent_dropout": 0.0, "seed": self.seed,
            "return_sequences": self.return_sequences, "return_state": self.return_state,
            "go_backwards": self.go_backwards, "stateful": False, "unroll": self.unroll,
            "use_cudnn": self.use_cudnn, "zero_output_for_mask": self.zero_output_for_mask,
        }
        return {**super().get_config(), **config}


def _keywords(layer: str, args: tuple, kwargs: dict) -> dict:
    """Positional arguments after units, named in keras.layers.<layer>'s order."""
    order = [n for n in inspect.signature(getattr(keras.layers, layer).__init__).parameters
             if n not in ("self", "units", "args", "kwargs")]
    if len(args) > len(order):
        raise TypeError(f"{layer}: takes {len(order) + 1} positional arguments, got "
                        f"{len(args) + 1}")
    for name, value in zip(order, args):
        if name in kwargs:
            raise TypeError(f"{layer}: got multiple values for argument {name!r}")
        kwargs[name] = value
    return kwargs


def _names(bias: bool):
    return ["weight_ih_l0", "weight_hh_l0"] + (["bias_ih_l0", "bias_hh_l0"] if bias else [])


def _run_torch(cell, x_tm, weights, states0, lengths, units, bias):
    import torch

    from .torch._ops import call_layer
    if x_tm.device.type != "cpu":
        raise ValueError(f"fastlstm.keras runs on the CPU; the inputs are on {x_tm.device} "
                         f"(use keras.layers' own layers on a GPU)")
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in [x_tm, *weights, *states0])
    if lengths is not None:
        lengths = lengths.to(torch.int64)
    states = [s.unsqueeze(0).contiguous() for s in states0]
    y, finals, _ = call_layer(cell, x_tm.contiguous(), [w.contiguous() for w in weights],
                              states, lengths, (units, 0, False, bias, False), needs_grad)
    return y, [s[0] for s in finals]


def _run_jax(cell, x_tm, weights, states0, lengths, bias):
    from . import jax as fj
    params = dict(zip(_names(bias), weights))
    states = [s[None] for s in states0]
    if cell == "lstm":
        y, (h_n, c_n) = fj.lstm(params, x_tm, *states, lengths)
        return y, [h_n[0], c_n[0]]
    y, h_n = fj.gru(params, x_tm, *states, lengths)
    return y, [h_n[0]]


@keras.saving.register_keras_serializable(package="fastlstm")
class LSTM(_Recurrent):
    """``keras.layers.LSTM`` on fastlstm's kernels.

    A Keras 3 layer with ``keras.layers.LSTM``'s arguments, weights and
    masking (see the module docstring): ``kernel`` [features, 4*units],
    ``recurrent_kernel`` [units, 4*units] and ``bias`` [4*units], gates i,
    f, c, o, so ``get_weights`` / ``set_weights`` move weights to and from
    ``keras.layers.LSTM`` as they are.

    Positional arguments after ``units`` take ``keras.layers.LSTM``'s order.

    Parameters
    ----------
    units : int
        The size of h and c.
    activation : str or callable, default "tanh"
        Must be tanh (fastlstm's kernels compute it).
    recurrent_activation : str or callable, default "sigmoid"
        Must be sigmoid.
    use_bias : bool, default True
        Whether the layer has the ``bias`` weight.
    kernel_initializer : initializer, default "glorot_uniform"
        As in Keras.
    recurrent_initializer : initializer, default "orthogonal"
        As in Keras.
    bias_initializer : initializer, default "zeros"
        As in Keras.
    unit_forget_bias : bool, default True
        Initialize the forget gate's bias to ones, as Keras.
    kernel_regularizer, recurrent_regularizer, bias_regularizer : regularizer or None
        As in Keras; default None.
    activity_regularizer : regularizer or None
        As in Keras; default None.
    kernel_constraint, recurrent_constraint, bias_constraint : constraint or None
        As in Keras; default None.
    dropout : float, default 0.0
        In [0, 1): the dropout rate on the inputs in training, one mask per
        sequence (as Keras's fused path draws it).
    recurrent_dropout : float, default 0.0
        Must be 0.
    seed : int or None, default None
        The seed of the dropout masks.
    return_sequences : bool, default False
        Return the output at every step, not only the last.
    return_state : bool, default False
        Also return the final h and c.
    go_backwards : bool, default False
        Run each sequence backwards (within its valid steps under a mask);
        the outputs come in the order the steps ran, as in Keras.
    stateful : bool, default False
        Must be False; pass ``initial_state`` instead.
    unroll, use_cudnn
        Accepted, with no effect.
    zero_output_for_mask : bool, default False
        Masked steps output zeros instead of the carried state
        (``keras.layers.Bidirectional`` sets it).
    **kwargs
        ``keras.layers.Layer``'s arguments, such as ``name`` and ``dtype``;
        the compute dtype must be float32 or float64.

    Raises
    ------
    RuntimeError
        If Keras's backend is not torch or jax.
    ValueError
        At construction: if ``units`` is not an int >= 1, the activations
        are not tanh and sigmoid, ``dropout`` is not in [0, 1),
        ``recurrent_dropout`` is not 0, ``stateful`` is True, or the compute
        dtype is not float32 or float64 (mixed precision). When called: if
        the inputs are not float32 or float64, ``initial_state`` is not two
        tensors, the mask has a gap (a masked step before a valid one; under
        ``jax.jit``, a ``JaxRuntimeError`` with the same message), or, on the
        torch backend, the inputs are not on the CPU.

    Notes
    -----
    Call the layer as ``layer(sequences, initial_state=None, mask=None,
    training=False)``:

    - ``sequences``: [batch, time, features], float32 or float64.
    - ``initial_state``: ``[h0, c0]``, each [batch, units]; zeros if
      omitted.
    - ``mask``: [batch, time], right-padded: each sequence a prefix of valid
      steps. A fully masked sequence keeps its initial state.
    - ``training``: apply ``dropout``.

    It returns the last output [batch, units], or every output [batch, time,
    units] with ``return_sequences``; with ``return_state``, the tuple
    ``(output, h, c)``, each state [batch, units].

    On Keras's torch backend the layer runs on the CPU.

    Examples
    --------
    >>> import keras, fastlstm.keras
    >>> inp = keras.Input((None, 32))
    >>> masked = keras.layers.Masking(0.0)(inp)
    >>> y = keras.layers.Bidirectional(
    ...     fastlstm.keras.LSTM(64, return_sequences=True))(masked)
    >>> model = keras.Model(inp, keras.layers.Dense(1)(fastlstm.keras.LSTM(64)(y)))
    """

    _CELL = "lstm"
    _KERAS = "LSTM"

    def __init__(self, units, *args, **kwargs):
        kwargs = _keywords("LSTM", args, kwargs)
        unit_forget_bias = kwargs.pop("unit_forget_bias", True)
        super().__init__(units, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _bias_shape(self):
        return (4 * self.units,)

    def _bias_init(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        U, init = self.units, self.bias_initializer

        def forget_ones(shape, dtype=None):  # Keras's unit_forget_bias init: i, f=1, c, o
            return ops.concatenate([init((U,), dtype=dtype), ops.ones((U,), dtype=dtype),
                                    init((2 * U,), dtype=dtype)])
        return forget_ones

    def _torch_weights(self):
        # Keras's gate order (i, f, c, o) is torch's (i, f, g, o); one bias.
        w = [ops.transpose(self.kernel), ops.transpose(self.recurrent_kernel)]
        if self.use_bias:
            b = ops.convert_to_tensor(self.bias)
            w += [b, ops.zeros_like(b)]
        return w

    def get_config(self):
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}


@keras.saving.register_keras_serializable(package="fastlstm")
class GRU(_Recurrent):
    """``keras.layers.GRU`` (``reset_after=True``) on fastlstm's kernels.

    A Keras 3 layer with ``keras.layers.GRU``'s arguments, weights and
    masking (see the module docstring), with the reset gate applied after
    the recurrent product (Keras's default, cuDNN's and torch.nn.GRU's
    maths): ``kernel`` [features, 3*units], ``recurrent_kernel`` [units,
    3*units] and ``bias`` [2, 3*units] (input bias, recurrent bias), gates
    z, r, h, so ``get_weights`` / ``set_weights`` move weights to and from
    ``keras.layers.GRU`` as they are.

    Positional arguments after ``units`` take ``keras.layers.GRU``'s order.

    Parameters
    ----------
    units : int
        The size of h.
    reset_after : bool, default True
        Must be True (torch's and cuDNN's GRU).
    activation : str or callable, default "tanh"
        Must be tanh (fastlstm's kernels compute it).
    recurrent_activation : str or callable, default "sigmoid"
        Must be sigmoid.
    use_bias : bool, default True
        Whether the layer has the ``bias`` weight.
    kernel_initializer : initializer, default "glorot_uniform"
        As in Keras.
    recurrent_initializer : initializer, default "orthogonal"
        As in Keras.
    bias_initializer : initializer, default "zeros"
        As in Keras.
    kernel_regularizer, recurrent_regularizer, bias_regularizer : regularizer or None
        As in Keras; default None.
    activity_regularizer : regularizer or None
        As in Keras; default None.
    kernel_constraint, recurrent_constraint, bias_constraint : constraint or None
        As in Keras; default None.
    dropout : float, default 0.0
        In [0, 1): the dropout rate on the inputs in training, one mask per
        sequence (as Keras's fused path draws it).
    recurrent_dropout : float, default 0.0
        Must be 0.
    seed : int or None, default None
        The seed of the dropout masks.
    return_sequences : bool, default False
        Return the output at every step, not only the last.
    return_state : bool, default False
        Also return the final h.
    go_backwards : bool, default False
        Run each sequence backwards (within its valid steps under a mask);
        the outputs come in the order the steps ran, as in Keras.
    stateful : bool, default False
        Must be False; pass ``initial_state`` instead.
    unroll, use_cudnn
        Accepted, with no effect.
    zero_output_for_mask : bool, default False
        Masked steps output zeros instead of the carried state
        (``keras.layers.Bidirectional`` sets it).
    **kwargs
        ``keras.layers.Layer``'s arguments, such as ``name`` and ``dtype``;
        the compute dtype must be float32 or float64.

    Raises
    ------
    RuntimeError
        If Keras's backend is not torch or jax.
    ValueError
        At construction: if ``units`` is not an int >= 1, the activations
        are not tanh and sigmoid, ``dropout`` is not in [0, 1),
        ``recurrent_dropout`` is not 0, ``stateful`` is True, ``reset_after``
        is False, or the compute dtype is not float32 or float64 (mixed
        precision). When called: if the inputs are not float32 or float64,
        ``initial_state`` is not one tensor (or a list of one), the mask has a
        gap (a masked step before a valid one; under ``jax.jit``, a
        ``JaxRuntimeError`` with the same message), or, on the torch backend,
        the inputs are not on the CPU.

    Notes
    -----
    Call the layer as ``layer(sequences, initial_state=None, mask=None,
    training=False)``:

    - ``sequences``: [batch, time, features], float32 or float64.
    - ``initial_state``: h0 [batch, units] (or ``[h0]``); zeros if omitted.
    - ``mask``: [batch, time], right-padded: each sequence a prefix of valid
      steps. A fully masked sequence keeps its initial state.
    - ``training``: apply ``dropout``.

    It returns the last output [batch, units], or every output [batch, time,
    units] with ``return_sequences``; with ``return_state``, the tuple
    ``(output, h)``, each state [batch, units].

    On Keras's torch backend the layer runs on the CPU.

    Examples
    --------
    >>> import keras, fastlstm.keras
    >>> inp = keras.Input((None, 32))
    >>> model = keras.Model(inp, keras.layers.Dense(1)(fastlstm.keras.GRU(64)(inp)))
    """

    _CELL = "gru"
    _KERAS = "GRU"

    def __init__(self, units, *args, **kwargs):
        kwargs = _keywords("GRU", args, kwargs)
        if not kwargs.pop("reset_after", True):
            raise ValueError("reset_after=False: fastlstm's GRU is torch's and cuDNN's "
                             "(reset_after=True); use keras.layers.GRU for the other form")
        super().__init__(units, **kwargs)
        self.reset_after = True

    def _bias_shape(self):
        return (2, 3 * self.units)

    def _torch_weights(self):
        # Keras's gate blocks (z, r, h) -> torch's (r, z, n); bias rows: input, recurrent.
        U = self.units

        def rzn(a):  # columns (or entries) of the last axis
            return ops.concatenate([a[..., U:2 * U], a[..., :U], a[..., 2 * U:]], axis=-1)
        w = [ops.transpose(rzn(ops.convert_to_tensor(self.kernel))),
             ops.transpose(rzn(ops.convert_to_tensor(self.recurrent_kernel)))]
        if self.use_bias:
            b = rzn(ops.convert_to_tensor(self.bias))
            w += [b[0], b[1]]
        return w

    def get_config(self):
        return {**super().get_config(), "reset_after": True}
