"""Plain NumPy reference of the layer-norm LSTM: the readable spec and the test oracle.

Written like ``fastlstm.reference`` (the LSTM one): a loop over time, one step at a
time, in float64 by default, NumPy only. It is tested against an independent torch
autograd implementation of the equations and against finite differences
(``tests/test_reference_lnlstm.py``).

This module holds the layer-norm LSTM cell: its parameters, one step forward and
one step backward (``_LNLSTMCell``). Layers, directions, lengths, dropout and
zoneout are the stack's, written once for every cell in
``fastlstm._reference_stack``.

The model
---------
The layer-norm LSTM of Ba et al. 2016 as haste's LayerNormLSTM computes it, with
torch's gate order i, f, g, o. With LN(v) = (v − mean(v)) / sqrt(var(v) + 1e-5) over
the last axis (biased variance, as torch.nn.LayerNorm), for each step t with
x_t [B,I], h_{t-1} [B,H]::

    a_t = LN(x_t W_ih^T) ⊙ γ_ih + LN(h_{t-1} W_hh^T) ⊙ γ_hh + b_ih + b_hh     # [B,4H]
    i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
    c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ tanh(LN(c_t) ⊙ γ_c + β_c)

The two products are normalised apart, each over all 4H gate rows at once; c_t is
kept un-normalised (it is the state and c_n). Zoneout on h (haste), optional, with
p = ``zoneout``::

    training, mask m (1 keeps the previous value):  h_t ← m ⊙ h_{t-1} + (1 − m) ⊙ h_t
    eval (training=False):                          h_t ← p·h_{t-1} + (1 − p)·h_t

c is not zoned out. Layers stack; a bidirectional layer runs a reversed pass and
concatenates [forward, reverse] on the feature axis; dropout applies between
layers, never after the last one. Variable lengths as torch with packed
sequences: row b only has steps t < lengths[b], the reverse direction starting at
t = lengths[b]-1. ``fastlstm._reference_stack`` states all of that precisely
(zoneout and dropout masks: their layout and sense).

Parameters, for layer k and direction suffix ``""`` or ``"_reverse"``, in this order
(``lnlstm_param_shapes``): the LSTM's ``weight_ih_l{k}`` [4H, I_k],
``weight_hh_l{k}`` [4H, H], ``bias_ih_l{k}`` [4H], ``bias_hh_l{k}`` [4H] (the two
biases only with bias=True), then ``weight_ln_ih_l{k}`` [4H] (γ_ih),
``weight_ln_hh_l{k}`` [4H] (γ_hh), ``weight_ln_c_l{k}`` [H] (γ_c), ``bias_ln_c_l{k}``
[H] (β_c). The layer-norm parameters are part of the cell and present whatever
``bias`` says. I_0 = input_size, I_k = D*H for k > 0, D = 2 if bidirectional else 1.
Initialisation, torch-like: the layer-norm gains 1 and β_c 0 (as
torch.nn.LayerNorm), every other parameter U(-1/sqrt(H), 1/sqrt(H)) (as
torch.nn.LSTM).
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

__all__ = ["lnlstm_forward", "lnlstm_backward", "lnlstm_cell_forward",
           "lnlstm_param_shapes", "LN_EPS"]

LN_EPS = 1e-5          # as torch.nn.LayerNorm's default

sigmoid = stack.sigmoid


def _layer_norm(v):
    """(v − mean) / sqrt(var + LN_EPS) over the last axis, without gain or bias.
    Returns the normalised v and 1/sqrt(var + LN_EPS) [..., 1] (for backward)."""
    centred = v - np.mean(v, axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(np.mean(centred ** 2, axis=-1, keepdims=True) + LN_EPS)
    return centred * rstd, rstd


def _layer_norm_backward(d_norm, norm, rstd):
    """Gradient with respect to v, given the gradient d_norm of norm = _layer_norm(v)."""
    return rstd * (d_norm - np.mean(d_norm, axis=-1, keepdims=True)
                   - norm * np.mean(d_norm * norm, axis=-1, keepdims=True))


class _LNLSTMCell:
    """The layer-norm LSTM cell: states (h [H], c [H]), gates i, f, g, o, optional
    bias; the layer-norm gains γ_ih, γ_hh, γ_c and bias β_c always."""

    def __init__(self, hidden_size, bias=True):
        self.H, self.bias = hidden_size, bias
        self.state_sizes = (hidden_size, hidden_size)           # (h, c)

    def param_shapes(self, input_size):
        H = self.H
        shapes = {"weight_ih": (4 * H, input_size), "weight_hh": (4 * H, H)}
        if self.bias:
            shapes.update(bias_ih=(4 * H,), bias_hh=(4 * H,))
        shapes.update(weight_ln_ih=(4 * H,), weight_ln_hh=(4 * H,), weight_ln_c=(H,),
                      bias_ln_c=(H,))
        return shapes

    def step(self, w, wx, rh, state):
        """a = LN(wx) γ_ih + LN(rh) γ_hh + b_ih + b_hh     (wx = x_t W_ih^T, rh = h_{t-1} W_hh^T)
        i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
        c_t = f c_{t-1} + i g
        h_t = o tanh(LN(c_t) γ_c + β_c)"""
        c_prev = state[1]
        n_ih, rstd_ih = _layer_norm(wx)                         # [B,4H], [B,1]
        n_hh, rstd_hh = _layer_norm(rh)
        a = n_ih * w["weight_ln_ih"] + n_hh * w["weight_ln_hh"]
        if self.bias:
            a = a + (w["bias_ih"] + w["bias_hh"])
        a_i, a_f, a_g, a_o = np.split(a, 4, axis=-1)
        i, f, g, o = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g), sigmoid(a_o)
        c = f * c_prev + i * g
        n_c, rstd_c = _layer_norm(c)                            # [B,H], [B,1]
        tanh_c = np.tanh(n_c * w["weight_ln_c"] + w["bias_ln_c"])
        return (o * tanh_c, c), dict(c_prev=c_prev, i=i, f=f, g=g, o=o, n_ih=n_ih,
                                     rstd_ih=rstd_ih, n_hh=n_hh, rstd_hh=rstd_hh, n_c=n_c,
                                     rstd_c=rstd_c, tanh_c=tanh_c)

    def step_backward(self, w, s, d_state):
        dh, dc = d_state
        i, f, g, o, tanh_c = s["i"], s["f"], s["g"], s["o"], s["tanh_c"]
        # h_t = o tanh(LN(c_t) γ_c + β_c)
        da_o = dh * tanh_c * o * (1.0 - o)
        d_pre = dh * o * (1.0 - tanh_c ** 2)                    # d(LN(c_t) γ_c + β_c)
        d_w = dict(weight_ln_c=np.sum(d_pre * s["n_c"], axis=0), bias_ln_c=np.sum(d_pre, axis=0))
        dc = dc + _layer_norm_backward(d_pre * w["weight_ln_c"], s["n_c"], s["rstd_c"])
        # c_t = f c_{t-1} + i g
        da_i = dc * g * i * (1.0 - i)
        da_f = dc * s["c_prev"] * f * (1.0 - f)
        da_g = dc * i * (1.0 - g ** 2)
        da = np.concatenate([da_i, da_f, da_g, da_o], axis=-1)  # [B,4H]
        # a = LN(wx) γ_ih + LN(rh) γ_hh + b_ih + b_hh
        if self.bias:                           # both biases get the same gradient
            d_w["bias_ih"] = d_w["bias_hh"] = np.sum(da, axis=0)
        d_w["weight_ln_ih"] = np.sum(da * s["n_ih"], axis=0)
        d_w["weight_ln_hh"] = np.sum(da * s["n_hh"], axis=0)
        d_wx = _layer_norm_backward(da * w["weight_ln_ih"], s["n_ih"], s["rstd_ih"])   # [B,4H]
        d_rh = _layer_norm_backward(da * w["weight_ln_hh"], s["n_hh"], s["rstd_hh"])   # [B,4H]
        return d_wx, d_rh, (0.0, dc * f), d_w


def lnlstm_param_shapes(input_size, hidden_size, num_layers=1, bias=True, bidirectional=False):
    """Names and shapes of the layer-norm LSTM's parameters, in registration order.

    Parameters
    ----------
    input_size : int
        I, the input width of layer 0.
    hidden_size : int
        The hidden size H.
    num_layers : int, default 1
        The number of layers L.
    bias : bool, default True
        Include ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (the layer-norm
        parameters are there whatever ``bias`` says).
    bidirectional : bool, default False
        Add the ``_reverse`` direction of every layer.

    Returns
    -------
    dict of str to tuple of int
        ``{name: shape}``, layer by layer, direction by direction, in the order
        of the module docstring: ``weight_ih_l{k}`` [4H, I_k],
        ``weight_hh_l{k}`` [4H, H], ``bias_ih_l{k}`` and ``bias_hh_l{k}``
        [4H], ``weight_ln_ih_l{k}`` and ``weight_ln_hh_l{k}`` [4H],
        ``weight_ln_c_l{k}`` and ``bias_ln_c_l{k}`` [H] (I_0 = I,
        I_k = D*H for k > 0).
    """
    return stack.param_shapes(_LNLSTMCell(hidden_size, bias), input_size, num_layers,
                              bidirectional)


def lnlstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh, w_ln_ih, w_ln_hh, w_ln_c, b_ln_c):
    """One layer-norm LSTM step in float64.

    Parameters
    ----------
    x : array_like, [B,I] or [I]
        The step's input, batched or not.
    h : array_like, [B,H] or [H]
        The h before the step.
    c : array_like, [B,H] or [H]
        The c before the step (un-normalised).
    w_ih : array_like, [4H,I]
        Input weights, rows i, f, g, o.
    w_hh : array_like, [4H,H]
        Recurrent weights.
    b_ih : array_like, [4H], or None
        The input-side bias (a required argument). None: zeros, or no bias if
        ``b_hh`` is None too.
    b_hh : array_like, [4H], or None
        The recurrent bias (a required argument). None: zeros, or no bias if
        ``b_ih`` is None too.
    w_ln_ih : array_like, [4H]
        γ_ih, the gain of LN(x W_ih^T).
    w_ln_hh : array_like, [4H]
        γ_hh, the gain of LN(h W_hh^T).
    w_ln_c : array_like, [H]
        γ_c, the gain of LN(c_t).
    b_ln_c : array_like, [H]
        β_c, the bias of LN(c_t).

    Returns
    -------
    h1 : numpy.ndarray, float64
        The h after the step, shaped as ``c``.
    c1 : numpy.ndarray, float64
        The c after the step, un-normalised, shaped as ``c``.
    """
    bias = b_ih is not None or b_hh is not None
    w = dict(weight_ih=w_ih, weight_hh=w_hh, weight_ln_ih=w_ln_ih, weight_ln_hh=w_ln_hh,
             weight_ln_c=w_ln_c, bias_ln_c=b_ln_c)
    if bias:
        w.update(bias_ih=0.0 if b_ih is None else b_ih, bias_hh=0.0 if b_hh is None else b_hh)
    return stack.cell_forward(_LNLSTMCell(np.shape(c)[-1], bias), w, x, (h, c))


def lnlstm_forward(x, params, *, num_layers, hidden_size, bidirectional=False, bias=True,
                   h0=None, c0=None, lengths=None, dropout_masks=None, zoneout=0.0,
                   zoneout_masks=None, training=False, dtype=np.float64):
    """Multi-layer layer-norm LSTM forward in plain NumPy: the oracle (module docstring).

    Parameters
    ----------
    x : array_like, [T,B,I]
        The input, time-major, batched only.
    params : dict of str to array_like
        Keyed as :func:`lnlstm_param_shapes` (suffix ``_reverse`` for
        direction 1). Arrays or anything :func:`numpy.asarray` takes.
    num_layers : int
        The number of layers L.
    hidden_size : int
        The hidden size H.
    bidirectional : bool, default False
        D = 2 if True, else 1.
    bias : bool, default True
        Use ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
    h0 : array_like, [D*L,B,H], optional
        The initial h; None: zeros.
    c0 : array_like, [D*L,B,H], optional
        The initial c; None: zeros.
    lengths : array_like of int, [B], optional
        Each row's length, values in [1, T]; None: all T.
    dropout_masks : list of array_like, optional
        num_layers-1 arrays [T,B,D*H]: the output of layer k
        (k < num_layers-1) is multiplied elementwise by ``dropout_masks[k]``
        before it feeds layer k+1. They apply whenever given, as in
        :func:`fastlstm.reference.lstm_forward`. None: no dropout.
    zoneout : float, default 0.0
        p, zoneout on h (module docstring). ``training=False``: h mixed as
        p·h_{t-1} + (1-p)·h_t. ``training=True``: must be 0 unless
        ``zoneout_masks`` is given.
    zoneout_masks : list of array_like, optional
        ``training=True`` only: num_layers arrays [T,B,D*H], 1 keeps h_{t-1}.
        None: no zoneout in training.
    training : bool, default False
        Selects how zoneout applies: with masks (True) or with p (False).
    dtype : numpy dtype, default numpy.float64
        The computation dtype.

    Returns
    -------
    y : numpy.ndarray, [T,B,D*H]
        The last layer's output.
    h_n : numpy.ndarray, [D*L,B,H]
        The final h of each layer and direction.
    c_n : numpy.ndarray, [D*L,B,H]
        The final c, un-normalised.
    cache : dict
        Opaque, for :func:`lnlstm_backward`.

    Raises
    ------
    ValueError
        If ``zoneout_masks`` is given with ``training=False``;
        ``training=True`` has ``zoneout`` != 0 and no masks; ``zoneout_masks``
        is not num_layers arrays [T,B,D*H].
    KeyError
        If ``params`` lacks a parameter.
    """
    y, (h_n, c_n), cache = stack.forward(
        _LNLSTMCell(hidden_size, bias), x, params, num_layers=num_layers,
        bidirectional=bidirectional, state0=(h0, c0), lengths=lengths,
        dropout_masks=dropout_masks, zoneout=zoneout, zoneout_masks=zoneout_masks,
        training=training, dtype=dtype)
    return y, h_n, c_n, cache


def lnlstm_backward(cache, dy, dh_n=None, dc_n=None):
    """Back-propagation through time through :func:`lnlstm_forward`, in plain NumPy.

    Parameters
    ----------
    cache : dict
        What :func:`lnlstm_forward` returned.
    dy : array_like, [T,B,D*H]
        The gradient with respect to ``y``. With lengths, its values past a
        row's length are ignored.
    dh_n : array_like, [D*L,B,H], optional
        The gradient with respect to ``h_n``; None: zeros.
    dc_n : array_like, [D*L,B,H], optional
        The gradient with respect to ``c_n``; None: zeros.

    Returns
    -------
    dx : numpy.ndarray, [T,B,I]
        The gradient with respect to ``x``.
    dh0 : numpy.ndarray, [D*L,B,H]
        The gradient with respect to ``h0``.
    dc0 : numpy.ndarray, [D*L,B,H]
        The gradient with respect to ``c0``.
    grads : dict of str to numpy.ndarray
        Keyed like ``params``, same shapes.
    """
    dx, (dh0, dc0), grads = stack.backward(cache, dy, (dh_n, dc_n))
    return dx, dh0, dc0, grads
