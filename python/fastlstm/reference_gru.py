"""Plain NumPy reference of the GRU: the readable spec and the test oracle.

Written like ``fastlstm.reference`` (the LSTM one): a loop over time, one step at a
time, in float64 by default, NumPy only. It is tested against ``torch.nn.GRU``,
against an independent torch implementation of zoneout, and against finite
differences (``tests/test_reference_gru.py``).

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

The zoned-out h_t is both the step's output and the next step's state. The masks
are inputs (this module draws nothing); the mask of layer k is [T,B,D*H], laid out
like that layer's output: direction d of step t uses m[t, :, d*H:(d+1)*H], for
the reverse direction too (indexed by the time position, not the step count).
haste's own mask has the opposite sense (1 keeps the new value): pass 1 − mask.

Layers stack; a bidirectional layer runs a reversed pass and concatenates
[forward, reverse] on the feature axis; dropout applies between layers, never
after the last one, as a given mask that multiplies the layer's (zoned-out)
output (the mask holds the 1/(1-p) scale, as in ``reference.lstm_forward``).

Parameters use torch.nn.GRU's state_dict names and shapes, for layer k:
``weight_ih_l{k}`` [3H, I_k], ``weight_hh_l{k}`` [3H, H], ``bias_ih_l{k}`` [3H],
``bias_hh_l{k}`` [3H] (rows r, z, n); the reverse direction adds the suffix
``_reverse``. I_0 = input_size, I_k = D*H for k > 0, D = 2 if bidirectional else 1.
``gru_param_shapes`` lists them in torch's registration order.

Variable lengths, as ``fastlstm.reference`` (torch with packed sequences): row b
only has steps t < lengths[b]; the reverse direction starts at t = lengths[b]-1.
Outputs at t >= lengths[b] are zero, h_n holds each row's last valid state, the
input at padded positions is never read, and an upstream gradient there is
ignored. Written as one masked loop over all T steps: a row whose step t is
padding keeps its state unchanged through that step (zoneout included).
"""

import numpy as np

__all__ = ["gru_forward", "gru_backward", "gru_cell_forward", "gru_param_shapes"]


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _suffix(direction):
    return "_reverse" if direction == 1 else ""


def gru_param_shapes(input_size, hidden_size, num_layers=1, bias=True, bidirectional=False):
    """{name: shape} of torch.nn.GRU's parameters, in torch's registration order."""
    D = 2 if bidirectional else 1
    H = hidden_size
    shapes = {}
    for l in range(num_layers):
        I_l = input_size if l == 0 else D * H
        for d in range(D):
            sfx = f"_l{l}{_suffix(d)}"
            shapes["weight_ih" + sfx] = (3 * H, I_l)
            shapes["weight_hh" + sfx] = (3 * H, H)
            if bias:
                shapes["bias_ih" + sfx] = (3 * H,)
                shapes["bias_hh" + sfx] = (3 * H,)
    return shapes


def gru_cell_forward(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU step in float64 (the oracle for GRUCell).

    x [B,I] or [I], h [B,H] or [H], w_ih [3H,I], w_hh [3H,H], b_ih/b_hh [3H] or None.
    Returns h'.
    """
    f64 = lambda a: None if a is None else np.asarray(a, dtype=np.float64)
    x, h, w_ih, w_hh, b_ih, b_hh = f64(x), f64(h), f64(w_ih), f64(w_hh), f64(b_ih), f64(b_hh)
    gi = x @ w_ih.T + (0.0 if b_ih is None else b_ih)         # input side   [.,3H]
    gh = h @ w_hh.T + (0.0 if b_hh is None else b_hh)         # hidden side  [.,3H]
    gi_r, gi_z, gi_n = np.split(gi, 3, axis=-1)
    gh_r, gh_z, gh_n = np.split(gh, 3, axis=-1)
    r, z = _sigmoid(gi_r + gh_r), _sigmoid(gi_z + gh_z)
    n = np.tanh(gi_n + r * gh_n)
    return (1.0 - z) * n + z * h


# ----------------------------------------------------------------------------
# one direction of one layer
# ----------------------------------------------------------------------------

def _direction_forward(x, valid, reverse, w, h0, keep):
    """x [T,B,In], valid [T,B] bool, w: dict of this direction's weights (w_ih, w_hh,
    b_ih, b_hh), keep: None (no zoneout) or [T,B,H], the weight of h_{t-1} in the
    zoned-out h_t. Returns y [T,B,H], h_n and the per-step values backward needs."""
    T = x.shape[0]
    h = h0
    y = np.zeros((T,) + h0.shape, dtype=x.dtype)
    steps = [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        v = valid[t][:, None]                                   # [B,1]
        gi = x[t] @ w["w_ih"].T + w["b_ih"]                     # [B,3H]
        gh = h @ w["w_hh"].T + w["b_hh"]                        # [B,3H]
        gi_r, gi_z, gi_n = np.split(gi, 3, axis=1)
        gh_r, gh_z, gh_n = np.split(gh, 3, axis=1)
        r, z = _sigmoid(gi_r + gh_r), _sigmoid(gi_z + gh_z)
        n = np.tanh(gi_n + r * gh_n)
        h_new = (1.0 - z) * n + z * h
        if keep is not None:                                    # zoneout
            h_new = keep[t] * h + (1.0 - keep[t]) * h_new
        steps[t] = dict(v=v, x=x[t], h_prev=h, r=r, z=z, n=n, gh_n=gh_n)
        # a padded step leaves the state as it is and outputs zero
        h = np.where(v, h_new, h)
        y[t] = np.where(v, h_new, 0.0)
    return y, h, steps


def _direction_backward(steps, dy, dh_n, reverse, w, keep):
    """BPTT through one direction. dy [T,B,H] (gradient of this direction's output),
    dh_n: gradient of its final state. Returns dx [T,B,In], dh0 and the gradients of w
    (same keys)."""
    T = len(steps)
    g_w = {k: np.zeros_like(a) for k, a in w.items()}
    dx = np.zeros((T,) + steps[0]["x"].shape, dtype=dy.dtype)
    dh = dh_n
    for t in (range(T) if reverse else range(T - 1, -1, -1)):
        s = steps[t]
        v = s["v"]
        dh_t = np.where(v, dh + dy[t], 0.0)     # gradient reaching h_t; zero if padded
        dh_prev = 0.0
        if keep is not None:                    # h_t = k h_{t-1} + (1-k) h̃_t
            dh_prev = keep[t] * dh_t
            dh_t = (1.0 - keep[t]) * dh_t
        r, z, n, h_prev = s["r"], s["z"], s["n"], s["h_prev"]
        # h̃_t = (1-z) n + z h_{t-1}
        dh_prev = dh_prev + dh_t * z
        da_z = dh_t * (h_prev - n) * z * (1.0 - z)
        da_n = dh_t * (1.0 - z) * (1.0 - n ** 2)
        # n = tanh(gi_n + r gh_n)
        da_r = da_n * s["gh_n"] * r * (1.0 - r)
        dgi = np.concatenate([da_r, da_z, da_n], axis=1)        # [B,3H]
        dgh = np.concatenate([da_r, da_z, da_n * r], axis=1)    # [B,3H]
        g_w["w_ih"] += dgi.T @ s["x"]
        g_w["w_hh"] += dgh.T @ h_prev
        g_w["b_ih"] += np.sum(dgi, axis=0)
        g_w["b_hh"] += np.sum(dgh, axis=0)
        dx[t] = dgi @ w["w_ih"]
        # a padded step passes the state gradient through unchanged
        dh = np.where(v, dh_prev + dgh @ w["w_hh"], dh)
    return dx, dh, g_w


# ----------------------------------------------------------------------------
# the stacked, optionally bidirectional GRU
# ----------------------------------------------------------------------------

def _zoneout_keep(zoneout, zoneout_masks, training, T, B, D, H, L, dtype):
    """Per layer, None or the [T,B,D*H] weight of h_{t-1} in the zoned-out h_t."""
    if not training:
        if zoneout_masks is not None:
            raise ValueError("zoneout_masks are for training=True; eval uses zoneout as p")
        if zoneout == 0.0:
            return [None] * L
        return [np.full((T, B, D * H), zoneout, dtype) for _ in range(L)]
    if zoneout_masks is None:
        if zoneout != 0.0:
            raise ValueError("training with zoneout > 0 needs zoneout_masks "
                             f"(num_layers={L} arrays [T,B,D*H]=[{T},{B},{D * H}])")
        return [None] * L
    if len(zoneout_masks) != L:
        raise ValueError(f"zoneout_masks: expected {L} arrays, got {len(zoneout_masks)}")
    keep = [np.asarray(m, dtype=dtype) for m in zoneout_masks]
    for m in keep:
        if m.shape != (T, B, D * H):
            raise ValueError(f"zoneout_masks: expected shape {(T, B, D * H)}, got {m.shape}")
    return keep


def _direction_slice(a, d, H):
    """Direction d's part [T,B,H] of a layer-shaped [T,B,D*H] array (None stays None)."""
    return None if a is None else a[:, :, d * H:(d + 1) * H]


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
    x = np.asarray(x, dtype=dtype)
    T, B, _ = x.shape
    L, H = num_layers, hidden_size
    D = 2 if bidirectional else 1
    h0 = np.zeros((D * L, B, H), dtype) if h0 is None else np.asarray(h0, dtype=dtype)
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    valid = np.arange(T)[:, None] < lengths[None, :]           # [T,B]
    masks = None if dropout_masks is None else [np.asarray(m, dtype=dtype)
                                                 for m in dropout_masks]
    keep = _zoneout_keep(zoneout, zoneout_masks, training, T, B, D, H, L, dtype)

    def get(name):
        return np.asarray(params[name], dtype=dtype)

    weights = []          # weights[l][d]: dict for _direction_forward
    for l in range(L):
        per_dir = []
        for d in range(D):
            sfx = f"_l{l}{_suffix(d)}"
            zero = np.zeros(3 * H, dtype)
            per_dir.append(dict(
                w_ih=get("weight_ih" + sfx), w_hh=get("weight_hh" + sfx),
                b_ih=get("bias_ih" + sfx) if bias else zero,
                b_hh=get("bias_hh" + sfx) if bias else zero.copy()))
        weights.append(per_dir)

    h_n = np.zeros((D * L, B, H), dtype)
    layer_in = np.where(valid[:, :, None], x, 0.0)   # padded input is never read
    steps = []
    for l in range(L):
        outs, layer_steps = [], []
        for d in range(D):
            y_d, h_n[l * D + d], st = _direction_forward(
                layer_in, valid, d == 1, weights[l][d], h0[l * D + d],
                _direction_slice(keep[l], d, H))
            outs.append(y_d)
            layer_steps.append(st)
        steps.append(layer_steps)
        layer_in = np.concatenate(outs, axis=2)        # [T,B,D*H]
        if l < L - 1 and masks is not None:
            layer_in = layer_in * masks[l]
    cache = dict(steps=steps, weights=weights, masks=masks, keep=keep,
                 dims=(T, B, L, D, H), bias=bias, dtype=dtype)
    return layer_in, h_n, cache


def gru_backward(cache, dy, dh_n=None):
    """Returns dx [T,B,I], dh0 [D*L,B,H], grads (dict keyed like params, same shapes)."""
    T, B, L, D, H = cache["dims"]
    dtype = cache["dtype"]
    dy = np.asarray(dy, dtype=dtype)
    dh_n = np.zeros((D * L, B, H), dtype) if dh_n is None else np.asarray(dh_n, dtype=dtype)
    dh0 = np.zeros_like(dh_n)
    grads = {}
    d_out = dy                                        # gradient of layer l's output
    for l in range(L - 1, -1, -1):
        d_in = 0.0
        for d in range(D):
            k = l * D + d
            dx_d, dh0[k], g_w = _direction_backward(
                cache["steps"][l][d], d_out[:, :, d * H:(d + 1) * H], dh_n[k], d == 1,
                cache["weights"][l][d], _direction_slice(cache["keep"][l], d, H))
            d_in = d_in + dx_d
            sfx = f"_l{l}{_suffix(d)}"
            grads["weight_ih" + sfx] = g_w["w_ih"]
            grads["weight_hh" + sfx] = g_w["w_hh"]
            if cache["bias"]:
                grads["bias_ih" + sfx] = g_w["b_ih"]
                grads["bias_hh" + sfx] = g_w["b_hh"]
        if l > 0 and cache["masks"] is not None:
            d_in = d_in * cache["masks"][l - 1]
        d_out = d_in
    return d_out, dh0, grads
