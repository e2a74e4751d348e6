"""The stack every NumPy reference cell runs in, written once: layers, the two
directions, variable lengths, dropout and zoneout masks, the caches, and the
backward walk over layers, directions and time.

The cells (``reference._LSTMCell``, ``reference_gru._GRUCell``,
``reference_lnlstm._LNLSTMCell``) state only their own facts and maths; this
module knows nothing of gates. Like the cell modules it is plain NumPy, a loop
over time, one step at a time, and the public entry points stay in the cell
modules (``reference.lstm_forward``, ...).

The stack
---------
Layers stack; a bidirectional layer runs a reversed pass and concatenates
[forward, reverse] on the feature axis. Dropout applies between layers, never
after the last one, as given masks: ``dropout_masks[k]`` [T,B,D*Hh] multiplies
layer k's output before it feeds layer k+1 (the mask holds the 1/(1-p) scale).
Hh is the width of a direction's output, the cell's h; D = 2 if bidirectional
else 1; the input width of layer k > 0 is D*Hh.

Zoneout on h (haste's), optional. With p = ``zoneout`` and h̃_t the cell's new h:

    training, mask m (1 keeps the previous value):  h_t = m ⊙ h_{t-1} + (1 − m) ⊙ h̃_t
    eval (training=False):                          h_t = p·h_{t-1} + (1 − p)·h̃_t

The zoned-out h_t is both the step's output and the next step's state; the other
states (an LSTM's c) are not zoned out. The masks are inputs (nothing here draws
random numbers); the mask of layer k is [T,B,D*Hh], laid out like that layer's
output: direction d of step t uses m[t, :, d*Hh:(d+1)*Hh], for the reverse
direction too (indexed by the time position, not the step count). haste's own
mask has the opposite sense (1 keeps the new value): pass 1 − mask.

Variable lengths (as torch with packed sequences): row b only has steps
t < lengths[b]. The forward direction runs t = 0 .. lengths[b]-1; the reverse
direction starts at t = lengths[b]-1 and runs down to t = 0. Outputs at
t >= lengths[b] are zero, the final states hold each row's last valid state, the
input at padded positions is never read, and an upstream gradient there is
ignored. Here that is written as one masked loop over all T steps: a row whose
step t is padding keeps all its states unchanged through that step (zoneout
included).

Parameters are named ``{stem}_l{k}`` for layer k's forward direction and
``{stem}_l{k}_reverse`` for its reverse one; the cell lists its stems.

What a cell states
------------------
- ``state_sizes``: the widths of its states, h first: (Hout, H) for (h, c), or
  (H,) for (h). h is the direction's output and the input of the recurrent
  product.
- ``param_shapes(I)``: {stem: shape} of one direction's parameters for a layer of
  input width I, in registration order. Every cell has ``weight_ih`` [G, I] and
  ``weight_hh`` [G, Hh] (G = gates × H rows); the stack owns their two products
  and their gradients.
- ``step(w, wx, rh, state) -> (new_state, saved)``: one step, given this
  direction's parameters w {stem: array}, the two products wx = x_t W_ih^T and
  rh = h_{t-1} W_hh^T [B,G], and the states before the step. ``saved`` holds what
  ``step_backward`` needs.
- ``step_backward(w, saved, d_state) -> (d_wx, d_rh, d_state_prev, d_w)``: given
  the gradient d_state reaching the step's new states, the gradients of the two
  products wx and rh [B,G], the gradient reaching the previous states by any
  other way than rh (0.0 where there is none), and d_w {stem: array}, this step's
  gradient of the cell's other parameters.
"""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def suffix(layer, direction):
    """The parameter name suffix of one direction of one layer."""
    return f"_l{layer}" + ("_reverse" if direction == 1 else "")


def param_shapes(cell, input_size, num_layers, bidirectional):
    """{name: shape} of a stack's parameters: layer by layer, direction by direction,
    each direction in the cell's order."""
    D = 2 if bidirectional else 1
    return {stem + suffix(l, d): shape
            for l in range(num_layers) for d in range(D)
            for stem, shape in cell.param_shapes(
                input_size if l == 0 else D * cell.state_sizes[0]).items()}


def cell_forward(cell, w, x, state):
    """One step of the cell in float64, on [B,·] or unbatched [·] arrays (the oracle for
    the *Cell layers). w: {stem: array}. Returns the new state tuple."""
    w = {stem: np.asarray(a, dtype=np.float64) for stem, a in w.items()}
    x = np.asarray(x, dtype=np.float64)
    state = tuple(np.asarray(s, dtype=np.float64) for s in state)
    new_state, _ = cell.step(w, x @ w["weight_ih"].T, state[0] @ w["weight_hh"].T, state)
    return new_state


# ----------------------------------------------------------------------------
# one direction of one layer
# ----------------------------------------------------------------------------

def _direction_forward(cell, x, valid, reverse, w, state, keep):
    """x [T,B,In], valid [T,B] bool, state: the initial states, keep: None (no zoneout)
    or [T,B,Hh], the weight of h_{t-1} in the zoned-out h_t. Returns y [T,B,Hh], the
    final states and the per-step values backward needs."""
    T = x.shape[0]
    y = np.zeros((T,) + state[0].shape, dtype=x.dtype)
    steps = [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        v = valid[t][:, None]                                   # [B,1]
        h_prev = state[0]
        new, saved = cell.step(w, x[t] @ w["weight_ih"].T, h_prev @ w["weight_hh"].T, state)
        h = new[0]
        if keep is not None:                                    # zoneout (h only)
            h = keep[t] * h_prev + (1.0 - keep[t]) * h
        steps[t] = dict(v=v, x=x[t], h_prev=h_prev, cell=saved)
        # a padded step leaves the states as they are and outputs zero
        state = tuple(np.where(v, a, b) for a, b in zip((h,) + tuple(new[1:]), state))
        y[t] = np.where(v, h, 0.0)
    return y, state, steps


def _direction_backward(cell, steps, dy, d_state, reverse, w, keep):
    """BPTT through one direction. dy [T,B,Hh] (gradient of this direction's output),
    d_state: gradient of its final states. Returns dx [T,B,In], the gradient of the
    initial states and the gradients of w (same stems)."""
    T = len(steps)
    g_w = {stem: np.zeros_like(a) for stem, a in w.items()}
    dx = np.zeros((T,) + steps[0]["x"].shape, dtype=dy.dtype)
    for t in (range(T) if reverse else range(T - 1, -1, -1)):
        s = steps[t]
        v = s["v"]
        # gradient reaching this step's states (h_t also from y_t); zero for a padded step
        d = [np.where(v, d_state[0] + dy[t], 0.0)] + [np.where(v, a, 0.0) for a in d_state[1:]]
        dh_kept = 0.0
        if keep is not None:                    # h_t = k h_{t-1} + (1-k) h̃_t
            dh_kept = keep[t] * d[0]
            d[0] = (1.0 - keep[t]) * d[0]
        d_wx, d_rh, d_prev, d_w = cell.step_backward(w, s["cell"], tuple(d))
        for stem, g in d_w.items():
            g_w[stem] += g
        g_w["weight_ih"] += d_wx.T @ s["x"]
        g_w["weight_hh"] += d_rh.T @ s["h_prev"]
        dx[t] = d_wx @ w["weight_ih"]
        d_prev = (dh_kept + d_prev[0] + d_rh @ w["weight_hh"],) + tuple(d_prev[1:])
        # a padded step passes the state gradient through unchanged
        d_state = tuple(np.where(v, a, b) for a, b in zip(d_prev, d_state))
    return dx, d_state, g_w


# ----------------------------------------------------------------------------
# the stack
# ----------------------------------------------------------------------------

def _zoneout_keep(zoneout, zoneout_masks, training, T, B, D, Hh, L, dtype):
    """Per layer, None or the [T,B,D*Hh] weight of h_{t-1} in the zoned-out h_t."""
    if not training:
        if zoneout_masks is not None:
            raise ValueError("zoneout_masks are for training=True; eval uses zoneout as p")
        if zoneout == 0.0:
            return [None] * L
        return [np.full((T, B, D * Hh), zoneout, dtype) for _ in range(L)]
    if zoneout_masks is None:
        if zoneout != 0.0:
            raise ValueError("training with zoneout > 0 needs zoneout_masks "
                             f"(num_layers={L} arrays [T,B,D*H]=[{T},{B},{D * Hh}])")
        return [None] * L
    if len(zoneout_masks) != L:
        raise ValueError(f"zoneout_masks: expected {L} arrays, got {len(zoneout_masks)}")
    keep = [np.asarray(m, dtype=dtype) for m in zoneout_masks]
    for m in keep:
        if m.shape != (T, B, D * Hh):
            raise ValueError(f"zoneout_masks: expected shape {(T, B, D * Hh)}, got {m.shape}")
    return keep


def _direction_slice(a, d, Hh):
    """Direction d's part [T,B,Hh] of a layer-shaped [T,B,D*Hh] array (None stays None)."""
    return None if a is None else a[:, :, d * Hh:(d + 1) * Hh]


def forward(cell, x, params, *, num_layers, bidirectional, state0, lengths, dropout_masks,
            zoneout, zoneout_masks, training, dtype):
    """x [T,B,I]; params {name: array-like}; state0: per state of the cell, [D*L,B,size]
    or None (zeros). The other arguments as the public forwards document them.
    Returns y [T,B,D*Hh], the final states (a tuple, each [D*L,B,size]) and the cache."""
    x = np.asarray(x, dtype=dtype)
    T, B, I = x.shape
    L = num_layers
    D = 2 if bidirectional else 1
    Hh = cell.state_sizes[0]
    state0 = [np.zeros((D * L, B, n), dtype) if s is None else np.asarray(s, dtype=dtype)
              for s, n in zip(state0, cell.state_sizes)]
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    valid = np.arange(T)[:, None] < lengths[None, :]           # [T,B]
    masks = None if dropout_masks is None else [np.asarray(m, dtype=dtype)
                                                 for m in dropout_masks]
    keep = _zoneout_keep(zoneout, zoneout_masks, training, T, B, D, Hh, L, dtype)
    weights = [[{stem: np.asarray(params[stem + suffix(l, d)], dtype=dtype)
                 for stem in cell.param_shapes(I if l == 0 else D * Hh)}
                for d in range(D)] for l in range(L)]          # weights[l][d]: {stem: array}

    state_n = [np.zeros_like(s) for s in state0]
    layer_in = np.where(valid[:, :, None], x, 0.0)   # padded input is never read
    steps = []
    for l in range(L):
        outs, layer_steps = [], []
        for d in range(D):
            k = l * D + d
            y_d, final, st = _direction_forward(
                cell, layer_in, valid, d == 1, weights[l][d], tuple(s[k] for s in state0),
                _direction_slice(keep[l], d, Hh))
            for s_n, s in zip(state_n, final):
                s_n[k] = s
            outs.append(y_d)
            layer_steps.append(st)
        steps.append(layer_steps)
        layer_in = np.concatenate(outs, axis=2)        # [T,B,D*Hh]
        if l < L - 1 and masks is not None:
            layer_in = layer_in * masks[l]
    cache = dict(cell=cell, steps=steps, weights=weights, masks=masks, keep=keep,
                 dims=(T, B, L, D), dtype=dtype)
    return layer_in, tuple(state_n), cache


def backward(cache, dy, d_state_n):
    """dy [T,B,D*Hh]; d_state_n: per state, the gradient of its final value [D*L,B,size]
    or None (zeros). Returns dx [T,B,I], the gradients of the initial states (a tuple)
    and grads (dict keyed like params, same shapes)."""
    cell = cache["cell"]
    T, B, L, D = cache["dims"]
    dtype = cache["dtype"]
    Hh = cell.state_sizes[0]
    dy = np.asarray(dy, dtype=dtype)
    d_state_n = [np.zeros((D * L, B, n), dtype) if g is None else np.asarray(g, dtype=dtype)
                 for g, n in zip(d_state_n, cell.state_sizes)]
    d_state0 = [np.zeros_like(g) for g in d_state_n]
    grads = {}
    d_out = dy                                        # gradient of layer l's output
    for l in range(L - 1, -1, -1):
        d_in = 0.0
        for d in range(D):
            k = l * D + d
            dx_d, d_first, g_w = _direction_backward(
                cell, cache["steps"][l][d], d_out[:, :, d * Hh:(d + 1) * Hh],
                tuple(g[k] for g in d_state_n), d == 1, cache["weights"][l][d],
                _direction_slice(cache["keep"][l], d, Hh))
            for g0, g in zip(d_state0, d_first):
                g0[k] = g
            d_in = d_in + dx_d
            grads.update({stem + suffix(l, d): g for stem, g in g_w.items()})
        if l > 0 and cache["masks"] is not None:
            d_in = d_in * cache["masks"][l - 1]
        d_out = d_in
    return d_out, tuple(d_state0), grads
