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
torch.nn.GRU's, gate order r, z, n. For each step t, with x_t [B,I], h_{t-1} [B,H]:

    r = σ(x_t W_ir^T + b_ir + h_{t-1} W_hr^T + b_hr)
    z = σ(x_t W_iz^T + b_iz + h_{t-1} W_hz^T + b_hz)
    n = tanh(x_t W_in^T + b_in + r ⊙ (h_{t-1} W_hn^T + b_hn))    # b_hn stays inside r ⊙ (.)
    h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

Zoneout on h (haste's GRU), optional. With p = ``zoneout``:

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
    """{name: shape} of torch.nn.GRU's parameters, in torch's registration order."""
    return stack.param_shapes(_GRUCell(hidden_size, bias), input_size, num_layers,
                              bidirectional)


def gru_cell_forward(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU step in float64 (the oracle for GRUCell).

    x [B,I] or [I], h [B,H] or [H], w_ih [3H,I], w_hh [3H,H], b_ih/b_hh [3H] or None.
    Returns h'.
    """
    bias = b_ih is not None or b_hh is not None
    w = dict(weight_ih=w_ih, weight_hh=w_hh)
    if bias:
        w.update(bias_ih=0.0 if b_ih is None else b_ih, bias_hh=0.0 if b_hh is None else b_hh)
    return stack.cell_forward(_GRUCell(np.shape(h)[-1], bias), w, x, (h,))[0]


def gru_forward(x, params, *, num_layers, hidden_size, bidirectional=False, bias=True,
                h0=None, lengths=None, dropout_masks=None, zoneout=0.0, zoneout_masks=None,
                training=False, dtype=np.float64):
    """x: [T,B,I] time-major, batched only. params: dict with torch.nn.GRU state_dict keys
    (weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, suffix _reverse for
    direction 1), arrays or anything np.asarray takes.
    h0: [D*L,B,H] or None (zeros). lengths: int array [B] (values in [1,T]) or None (= all T).
    dropout_masks: None or list of num_layers-1 arrays [T,B,D*H]; the output of layer k
    (k < num_layers-1) is multiplied elementwise by dropout_masks[k] before it feeds layer k+1.
    zoneout, zoneout_masks, training: zoneout on h (module docstring). training=True:
    zoneout_masks is None (no zoneout; then zoneout must be 0) or a list of num_layers
    arrays [T,B,D*H] (1 keeps h_{t-1}). training=False: zoneout = p mixes
    p·h_{t-1} + (1-p)·h_t, and zoneout_masks must be None. Dropout masks apply whenever
    given, as in reference.lstm_forward.
    dtype: computation dtype (float64 by default).
    Returns y [T,B,D*H], h_n [D*L,B,H], cache (opaque, for backward)."""
    y, (h_n,), cache = stack.forward(
        _GRUCell(hidden_size, bias), x, params, num_layers=num_layers,
        bidirectional=bidirectional, state0=(h0,), lengths=lengths,
        dropout_masks=dropout_masks, zoneout=zoneout, zoneout_masks=zoneout_masks,
        training=training, dtype=dtype)
    return y, h_n, cache


def gru_backward(cache, dy, dh_n=None):
    """Returns dx [T,B,I], dh0 [D*L,B,H], grads (dict keyed like params, same shapes)."""
    dx, (dh0,), grads = stack.backward(cache, dy, (dh_n,))
    return dx, dh0, grads
