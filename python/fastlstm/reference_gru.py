"""Plain NumPy reference of the GRU: the readable spec and the test oracle.

Written like ``fastlstm.reference`` (the LSTM one): a loop over time, one step at a
time, in float64 by default, NumPy only. It is tested against ``torch.nn.GRU``,
against an independent torch implementation of zoneout, and against finite
differences (``tests/test_reference_gru.py``).

This module holds the GRU cell: its parameters, one step forward and one step
backward (``_GRUCell``). Layers, directions, lengths, dropout and zoneout are the
stack's, written once for every cell in ``fastlstm._reference_stack``.

The model
---------
torch.nn.GRU's, gate order r, z, n. For each step t, with x_t [B,I], h_{t-1} [B,H]::

    r = σ(x_t W_ir^T + b_ir + h_{t-1} W_hr^T + b_hr)
    z = σ(x_t W_iz^T + b_iz + h_{t-1} W_hz^T + b_hz)
    n = tanh(x_t W_in^T + b_in + r ⊙ (h_{t-1} W_hn^T + b_hn))    # b_hn stays inside r ⊙ (.)
    h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

Zoneout on h (haste's GRU), optional. With p = ``zoneout``::

    training, mask m (1 keeps the previous value):  h_t ← m ⊙ h_{t-1} + (1 − m) ⊙ h_t
    eval (training=False):                          h_t ← p·h_{t-1} + (1 − p)·h_t

Layers stack; a bidirectional layer runs a reversed pass and concatenates
[forward, reverse] on the feature axis; dropout applies between layers, never
after the last one. Variable lengths as torch with packed sequences: row b only
has steps t < lengths[b], the reverse direction starting at t = lengths[b]-1.
``fastlstm._reference_stack`` states all of that precisely (zoneout and dropout
masks: their layout and sense).

Parameters use torch.nn.GRU's state_dict names and shapes, for layer k:
``weight_ih_l{k}`` [3H, I_k], ``weight_hh_l{k}`` [3H, H], ``bias_ih_l{k}`` [3H],
``bias_hh_l{k}`` [3H] (rows r, z, n); the reverse direction adds the suffix
``_reverse``. I_0 = input_size, I_k = D*H for k > 0, D = 2 if bidirectional else 1.
``gru_param_shapes`` lists them in torch's registration order.
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

__all__ = ["gru_forward", "gru_backward", "gru_cell_forward", "gru_param_shapes"]

sigmoid = stack.sigmoid


class _GRUCell:
    """The GRU cell: one state h [H], gates r, z, n, optional bias."""

    def __init__(self, hidden_size, bias=True):
        self.H, self.bias = hidden_size, bias
        self.state_sizes = (hidden_size,)

    def param_shapes(self, input_size):
        H = self.H
        shapes = {"weight_ih": (3 * H, input_size), "weight_hh": (3 * H, H)}
        if self.bias:
            shapes.update(bias_ih=(3 * H,), bias_hh=(3 * H,))
        return shapes

    def step(self, w, wx, rh, state):
        """gi = wx + b_ih,  gh = rh + b_hh                  (wx = x_t W_ih^T, rh = h_{t-1} W_hh^T)
        r = σ(gi_r + gh_r)   z = σ(gi_z + gh_z)   n = tanh(gi_n + r gh_n)
        h_t = (1 − z) n + z h_{t-1}"""
        h_prev = state[0]
        gi, gh = wx, rh                                         # input, hidden side [B,3H]
        if self.bias:
            gi, gh = gi + w["bias_ih"], gh + w["bias_hh"]
        gi_r, gi_z, gi_n = np.split(gi, 3, axis=-1)
        gh_r, gh_z, gh_n = np.split(gh, 3, axis=-1)
        r, z = sigmoid(gi_r + gh_r), sigmoid(gi_z + gh_z)
        n = np.tanh(gi_n + r * gh_n)
        return ((1.0 - z) * n + z * h_prev,), dict(h_prev=h_prev, r=r, z=z, n=n, gh_n=gh_n)

    def step_backward(self, w, s, d_state):
        (dh,) = d_state
        r, z, n, h_prev = s["r"], s["z"], s["n"], s["h_prev"]
        # h_t = (1-z) n + z h_{t-1}
        dh_prev = dh * z
        da_z = dh * (h_prev - n) * z * (1.0 - z)
        da_n = dh * (1.0 - z) * (1.0 - n ** 2)
        # n = tanh(gi_n + r gh_n)
        da_r = da_n * s["gh_n"] * r * (1.0 - r)
        dgi = np.concatenate([da_r, da_z, da_n], axis=-1)        # [B,3H]
        dgh = np.concatenate([da_r, da_z, da_n * r], axis=-1)    # [B,3H]
        d_w = dict(bias_ih=np.sum(dgi, axis=0), bias_hh=np.sum(dgh, axis=0)) if self.bias else {}
        return dgi, dgh, (dh_prev,), d_w


def gru_param_shapes(input_size, hidden_size, num_layers=1, bias=True, bidirectional=False):
    """Names and shapes of torch.nn.GRU's parameters, in torch's registration order.

    Parameters
    ----------
    input_size : int
        I, the input width of layer 0.
    hidden_size : int
        The hidden size H.
    num_layers : int, default 1
        The number of layers L.
    bias : bool, default True
        Include ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
    bidirectional : bool, default False
        Add the ``_reverse`` direction of every layer.

    Returns
    -------
    dict of str to tuple of int
        ``{name: shape}``: ``weight_ih_l{k}`` [3H, I_k], ``weight_hh_l{k}``
        [3H, H], ``bias_ih_l{k}`` and ``bias_hh_l{k}`` [3H], layer by layer,
        direction by direction (I_0 = I, I_k = D*H for k > 0).
    """
    return stack.param_shapes(_GRUCell(hidden_size, bias), input_size, num_layers,
                              bidirectional)


def gru_cell_forward(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU step in float64 (the oracle for GRUCell).

    Parameters
    ----------
    x : array_like, [B,I] or [I]
        The step's input, batched or not.
    h : array_like, [B,H] or [H]
        The state before the step.
    w_ih : array_like, [3H,I]
        Input weights, rows r, z, n.
    w_hh : array_like, [3H,H]
        Recurrent weights.
    b_ih : array_like, [3H], optional
        The input-side bias. None: zeros, or no bias if ``b_hh`` is None too.
    b_hh : array_like, [3H], optional
        The recurrent bias (b_hn stays inside r ⊙ (.)). None: zeros, or no
        bias if ``b_ih`` is None too.

    Returns
    -------
    h1 : numpy.ndarray, float64
        The state after the step, shaped as ``h``.
    """
    bias = b_ih is not None or b_hh is not None
    w = dict(weight_ih=w_ih, weight_hh=w_hh)
    if bias:
        w.update(bias_ih=0.0 if b_ih is None else b_ih, bias_hh=0.0 if b_hh is None else b_hh)
    return stack.cell_forward(_GRUCell(np.shape(h)[-1], bias), w, x, (h,))[0]


def gru_forward(x, params, *, num_layers, hidden_size, bidirectional=False, bias=True,
                h0=None, lengths=None, dropout_masks=None, zoneout=0.0, zoneout_masks=None,
                training=False, dtype=np.float64):
    """Multi-layer GRU forward in plain NumPy: the oracle (module docstring: the model).

    Parameters
    ----------
    x : array_like, [T,B,I]
        The input, time-major, batched only.
    params : dict of str to array_like
        torch.nn.GRU's state_dict keys: ``weight_ih_l{k}``, ``weight_hh_l{k}``,
        ``bias_ih_l{k}``, ``bias_hh_l{k}`` (with ``bias``), suffix ``_reverse``
        for direction 1. Arrays or anything :func:`numpy.asarray` takes.
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
    cache : dict
        Opaque, for :func:`gru_backward`.

    Raises
    ------
    ValueError
        If ``zoneout_masks`` is given with ``training=False``;
        ``training=True`` has ``zoneout`` != 0 and no masks; ``zoneout_masks``
        is not num_layers arrays [T,B,D*H].
    KeyError
        If ``params`` lacks a parameter.
    """
    y, (h_n,), cache = stack.forward(
        _GRUCell(hidden_size, bias), x, params, num_layers=num_layers,
        bidirectional=bidirectional, state0=(h0,), lengths=lengths,
        dropout_masks=dropout_masks, zoneout=zoneout, zoneout_masks=zoneout_masks,
        training=training, dtype=dtype)
    return y, h_n, cache


def gru_backward(cache, dy, dh_n=None):
    """Back-propagation through time through :func:`gru_forward`, in plain NumPy.

    Parameters
    ----------
    cache : dict
        What :func:`gru_forward` returned.
    dy : array_like, [T,B,D*H]
        The gradient with respect to ``y``. With lengths, its values past a
        row's length are ignored.
    dh_n : array_like, [D*L,B,H], optional
        The gradient with respect to ``h_n``; None: zeros.

    Returns
    -------
    dx : numpy.ndarray, [T,B,I]
        The gradient with respect to ``x``.
    dh0 : numpy.ndarray, [D*L,B,H]
        The gradient with respect to ``h0``.
    grads : dict of str to numpy.ndarray
        Keyed like ``params``, same shapes.
    """
    dx, (dh0,), grads = stack.backward(cache, dy, (dh_n,))
    return dx, dh0, grads
