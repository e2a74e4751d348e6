"""Plain NumPy reference of the LSTM: the readable spec and the test oracle.

Nothing here is fast and nothing here is clever. It loops over time, one step at a
time, in float64 by default, and depends only on NumPy. The compiled kernels are
tested against it, and it is itself tested against ``torch.nn.LSTM``, against an
independent torch implementation of zoneout and cell clipping, and against finite
differences (``tests/test_reference.py``, ``tests/test_reference_lstm_options.py``).

This module holds the LSTM cell: its parameters, one step forward and one step
backward (``_LSTMCell``). Layers, directions, lengths, dropout and zoneout are the
stack's, written once for every cell in ``fastlstm._reference_stack``.

The model
---------
Gate order i, f, g, o (as torch). For each step t, with x_t [B,I], h_{t-1} [B,Hout]::

    gates = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh            # [B,4H]
    i = σ(gates_i + p_i⊙c_{t-1})   f = σ(gates_f + p_f⊙c_{t-1})  # p_*: peepholes, optional
    g = tanh(gates_g)
    c_t = f⊙c_{t-1} + i⊙g
    o = σ(gates_o + p_o⊙c_t)
    h_t = o⊙tanh(c_t)         (with proj_size>0: h_t = (o⊙tanh(c_t)) W_hr^T)

Cell clipping, optional (ONNX LSTM's ``clip``): with ``cell_clip`` = a, each gate's
pre-activation (the argument of σ or tanh above: input and recurrent parts, biases
and peepholes added) is clipped to [−a, a] before its activation; the gradient is
zero where it was clipped.

Zoneout on h, optional (``zoneout``, ``zoneout_masks``, ``training``), as the GRU's
and haste's: training masks m (1 keeps the previous value)
h_t ← m⊙h_{t-1} + (1−m)⊙h_t; eval h_t ← p·h_{t-1} + (1−p)·h_t. c is not zoned out.
With a projection the masks cover the projected h: [T,B,D*Hout].

Layers stack; a bidirectional layer runs a reversed pass and concatenates
[forward, reverse] on the feature axis; dropout applies between layers, never
after the last one. Variable lengths as torch with packed sequences: row b only
has steps t < lengths[b], the reverse direction starting at t = lengths[b]-1.
``fastlstm._reference_stack`` states all of that precisely.

Parameters use torch.nn.LSTM's state_dict names and shapes, for layer k:
``weight_ih_l{k}`` [4H, I_k], ``weight_hh_l{k}`` [4H, Hout], ``bias_ih_l{k}`` [4H],
``bias_hh_l{k}`` [4H], ``weight_hr_l{k}`` [Hout, H] (only with proj_size > 0),
``weight_ph_l{k}`` [3, H] with rows (p_i, p_f, p_o) (only with peephole); the
reverse direction adds the suffix ``_reverse``. Hout = proj_size or hidden_size,
I_0 = input_size, I_k = D*Hout for k > 0, D = 2 if bidirectional else 1.
"""

import numpy as np

try:
    from . import _reference_stack as stack
except ImportError:  # loaded as a lone file (the tests do so where the extension is not built)
    import importlib.util
    import pathlib
    stack = importlib.util.module_from_spec(importlib.util.spec_from_file_location(
        "_reference_stack", pathlib.Path(__file__).with_name("_reference_stack.py")))
    stack.__spec__.loader.exec_module(stack)

__all__ = ["lstm_forward", "lstm_backward", "lstm_cell_forward"]

sigmoid = stack.sigmoid


class _LSTMCell:
    """The LSTM cell: states (h [Hout], c [H]), gates i, f, g, o, optional bias,
    peepholes, projection and cell clipping."""

    def __init__(self, hidden_size, proj_size=0, bias=True, peephole=False, cell_clip=None):
        if cell_clip is not None and not cell_clip > 0:
            raise ValueError(f"cell_clip must be None or > 0, got {cell_clip}")
        self.H, self.P = hidden_size, proj_size
        self.bias, self.peephole, self.clip = bias, peephole, cell_clip
        self.state_sizes = (proj_size or hidden_size, hidden_size)        # (h, c)

    def param_shapes(self, input_size):
        H, Hout = self.H, self.state_sizes[0]
        shapes = {"weight_ih": (4 * H, input_size), "weight_hh": (4 * H, Hout)}
        if self.bias:
            shapes.update(bias_ih=(4 * H,), bias_hh=(4 * H,))
        if self.P > 0:
            shapes["weight_hr"] = (Hout, H)
        if self.peephole:
            shapes["weight_ph"] = (3, H)
        return shapes

    def _clip(self, a):
        return a if self.clip is None else np.clip(a, -self.clip, self.clip)

    def _unclipped(self, da, a):
        """da where the pre-activation a was inside [-clip, clip], 0 where it was clipped."""
        return da if self.clip is None else da * (np.abs(a) <= self.clip)

    def step(self, w, wx, rh, state):
        """a = wx + rh + b_ih + b_hh                       (wx = x_t W_ih^T, rh = h_{t-1} W_hh^T)
        i = σ(clip(a_i + p_i c_{t-1}))   f = σ(clip(a_f + p_f c_{t-1}))   g = tanh(clip(a_g))
        c_t = f c_{t-1} + i g
        o = σ(clip(a_o + p_o c_t))
        m = o tanh(c_t);   h_t = m W_hr^T with a projection, else m"""
        c_prev = state[1]
        gates = wx + rh
        if self.bias:
            gates = gates + (w["bias_ih"] + w["bias_hh"])
        a_i, a_f, a_g, a_o = np.split(gates, 4, axis=-1)
        if self.peephole:
            a_i = a_i + w["weight_ph"][0] * c_prev
            a_f = a_f + w["weight_ph"][1] * c_prev
        i, f, g = sigmoid(self._clip(a_i)), sigmoid(self._clip(a_f)), np.tanh(self._clip(a_g))
        c = f * c_prev + i * g
        if self.peephole:
            a_o = a_o + w["weight_ph"][2] * c
        o = sigmoid(self._clip(a_o))
        tanh_c = np.tanh(c)
        m = o * tanh_c
        h = m @ w["weight_hr"].T if self.P > 0 else m
        return (h, c), dict(c_prev=c_prev, i=i, f=f, g=g, o=o, c=c, tanh_c=tanh_c, m=m,
                            a=(a_i, a_f, a_g, a_o))

    def step_backward(self, w, s, d_state):
        dh, dc = d_state
        d_w = {}
        if self.P > 0:                          # h_t = m W_hr^T
            d_w["weight_hr"] = dh.T @ s["m"]
            dm = dh @ w["weight_hr"]
        else:
            dm = dh
        i, f, g, o, c, tanh_c, c_prev = (s[k] for k in ("i", "f", "g", "o", "c", "tanh_c",
                                                         "c_prev"))
        a_i, a_f, a_g, a_o = s["a"]
        dc = dc + dm * o * (1.0 - tanh_c ** 2)
        da_o = self._unclipped(dm * tanh_c * o * (1.0 - o), a_o)
        if self.peephole:                       # o = σ(a_o + p_o c_t)
            dc = dc + da_o * w["weight_ph"][2]
        # c_t = f c_{t-1} + i g
        da_i = self._unclipped(dc * g * i * (1.0 - i), a_i)
        da_f = self._unclipped(dc * c_prev * f * (1.0 - f), a_f)
        da_g = self._unclipped(dc * i * (1.0 - g ** 2), a_g)
        dc_prev = dc * f
        if self.peephole:                       # i, f see p_i c_{t-1}, p_f c_{t-1}
            dc_prev = dc_prev + da_i * w["weight_ph"][0] + da_f * w["weight_ph"][1]
            d_w["weight_ph"] = np.stack([np.sum(da_i * c_prev, axis=0),
                                         np.sum(da_f * c_prev, axis=0),
                                         np.sum(da_o * c, axis=0)])
        dgates = np.concatenate([da_i, da_f, da_g, da_o], axis=-1)   # [B,4H]
        if self.bias:                           # b_ih + b_hh: both get the same gradient
            d_w["bias_ih"] = d_w["bias_hh"] = np.sum(dgates, axis=0)
        return dgates, dgates, (0.0, dc_prev), d_w


def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None, w_ph=None):
    """One LSTM step in float64 (the oracle for LSTMCell).

    There is no projection: h has H features, as c.

    Parameters
    ----------
    x : array_like, [B,I] or [I]
        The step's input, batched or not.
    h : array_like, [B,H] or [H]
        The h before the step.
    c : array_like, [B,H] or [H]
        The c before the step.
    w_ih : array_like, [4H,I]
        Input weights, rows i, f, g, o.
    w_hh : array_like, [4H,H]
        Recurrent weights.
    b_ih : array_like, [4H], optional
        The input-side bias. None: zeros, or no bias if ``b_hh`` is None too.
    b_hh : array_like, [4H], optional
        The recurrent bias. None: zeros, or no bias if ``b_ih`` is None too.
    w_ph : array_like, [3,H], optional
        Peepholes, rows i, f, o; None: none.

    Returns
    -------
    h1 : numpy.ndarray, float64
        The h after the step, shaped as ``c``.
    c1 : numpy.ndarray, float64
        The c after the step, shaped as ``c``.
    """
    bias = b_ih is not None or b_hh is not None
    cell = _LSTMCell(np.shape(c)[-1], bias=bias, peephole=w_ph is not None)
    w = dict(weight_ih=w_ih, weight_hh=w_hh)
    if bias:
        w.update(bias_ih=0.0 if b_ih is None else b_ih, bias_hh=0.0 if b_hh is None else b_hh)
    if w_ph is not None:
        w["weight_ph"] = w_ph
    return stack.cell_forward(cell, w, x, (h, c))


def lstm_forward(x, params, *, num_layers, hidden_size, proj_size=0, bidirectional=False,
                 bias=True, peephole=False, h0=None, c0=None, lengths=None,
                 dropout_masks=None, zoneout=0.0, zoneout_masks=None, training=False,
                 cell_clip=None, dtype=np.float64):
    """Multi-layer LSTM forward in plain NumPy: the oracle (module docstring: the model).

    Parameters
    ----------
    x : array_like, [T,B,I]
        The input, time-major, batched only.
    params : dict of str to array_like
        torch.nn.LSTM's state_dict keys: ``weight_ih_l{k}``, ``weight_hh_l{k}``,
        ``bias_ih_l{k}``, ``bias_hh_l{k}`` (with ``bias``), ``weight_hr_l{k}``
        (with ``proj_size > 0``), ``weight_ph_l{k}`` [3,H] rows (i, f, o) (with
        ``peephole``), suffix ``_reverse`` for direction 1. Arrays or anything
        :func:`numpy.asarray` takes.
    num_layers : int
        The number of layers L.
    hidden_size : int
        The hidden size H.
    proj_size : int, default 0
        > 0: h projected to proj_size features. Hout = proj_size or hidden_size.
    bidirectional : bool, default False
        D = 2 if True, else 1.
    bias : bool, default True
        Use ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
    peephole : bool, default False
        Use the peepholes ``weight_ph_l{k}``.
    h0 : array_like, [D*L,B,Hout], optional
        The initial h; None: zeros.
    c0 : array_like, [D*L,B,H], optional
        The initial c; None: zeros.
    lengths : array_like of int, [B], optional
        Each row's length, values in [1, T]; None: all T.
    dropout_masks : list of array_like, optional
        num_layers-1 arrays [T,B,D*Hout]: the output of layer k
        (k < num_layers-1) is multiplied elementwise by ``dropout_masks[k]``
        before it feeds layer k+1. They apply whenever given, whatever
        ``training`` says. None: no dropout.
    zoneout : float, default 0.0
        p, zoneout on h (module docstring). ``training=False``: h mixed as
        p·h_{t-1} + (1-p)·h_t. ``training=True``: must be 0 unless
        ``zoneout_masks`` is given.
    zoneout_masks : list of array_like, optional
        ``training=True`` only: num_layers arrays [T,B,D*Hout], 1 keeps
        h_{t-1}. None: no zoneout in training.
    training : bool, default False
        Selects how zoneout applies: with masks (True) or with p (False).
    cell_clip : float, optional
        a > 0: gate pre-activations clipped to [-a, a] (ONNX clip). None: no
        clip.
    dtype : numpy dtype, default numpy.float64
        The computation dtype (the benchmark may pass float32).

    Returns
    -------
    y : numpy.ndarray, [T,B,D*Hout]
        The last layer's output.
    h_n : numpy.ndarray, [D*L,B,Hout]
        The final h of each layer and direction.
    c_n : numpy.ndarray, [D*L,B,H]
        The final c.
    cache : dict
        Opaque, for :func:`lstm_backward`.

    Raises
    ------
    ValueError
        If ``cell_clip`` is not None and not > 0; ``zoneout_masks`` is given
        with ``training=False``; ``training=True`` has ``zoneout`` != 0 and no
        masks; ``zoneout_masks`` is not num_layers arrays [T,B,D*Hout].
    KeyError
        If ``params`` lacks a parameter.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> params = {"weight_ih_l0": rng.uniform(-0.5, 0.5, (16, 3)),
    ...           "weight_hh_l0": rng.uniform(-0.5, 0.5, (16, 4)),
    ...           "bias_ih_l0": np.zeros(16), "bias_hh_l0": np.zeros(16)}
    >>> x = rng.standard_normal((5, 2, 3))
    >>> y, h_n, c_n, cache = lstm_forward(x, params, num_layers=1, hidden_size=4)
    >>> dx, dh0, dc0, grads = lstm_backward(cache, np.ones_like(y))
    >>> y.shape, sorted(grads) == sorted(params)
    ((5, 2, 4), True)
    """
    cell = _LSTMCell(hidden_size, proj_size, bias, peephole, cell_clip)
    y, (h_n, c_n), cache = stack.forward(
        cell, x, params, num_layers=num_layers, bidirectional=bidirectional, state0=(h0, c0),
        lengths=lengths, dropout_masks=dropout_masks, zoneout=zoneout,
        zoneout_masks=zoneout_masks, training=training, dtype=dtype)
    return y, h_n, c_n, cache


def lstm_backward(cache, dy, dh_n=None, dc_n=None):
    """Back-propagation through time through :func:`lstm_forward`, in plain NumPy.

    Parameters
    ----------
    cache : dict
        What :func:`lstm_forward` returned.
    dy : array_like, [T,B,D*Hout]
        The gradient with respect to ``y``. With lengths, its values past a
        row's length are ignored.
    dh_n : array_like, [D*L,B,Hout], optional
        The gradient with respect to ``h_n``; None: zeros.
    dc_n : array_like, [D*L,B,H], optional
        The gradient with respect to ``c_n``; None: zeros.

    Returns
    -------
    dx : numpy.ndarray, [T,B,I]
        The gradient with respect to ``x``.
    dh0 : numpy.ndarray, [D*L,B,Hout]
        The gradient with respect to ``h0``.
    dc0 : numpy.ndarray, [D*L,B,H]
        The gradient with respect to ``c0``.
    grads : dict of str to numpy.ndarray
        Keyed like ``params``, same shapes.
    """
    dx, (dh0, dc0), grads = stack.backward(cache, dy, (dh_n, dc_n))
    return dx, dh0, dc0, grads
