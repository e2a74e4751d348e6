"""Plain NumPy reference of the layer-norm LSTM: the readable spec and the test oracle.

Written like ``fastlstm.reference`` (the LSTM one): a loop over time, one step at a
time, in float64 by default, NumPy only. It is tested against an independent torch
autograd implementation of the equations and against finite differences
(``tests/test_reference_lnlstm.py``).

The model
---------
The layer-norm LSTM of Ba et al. 2016 as haste's LayerNormLSTM computes it, with
torch's gate order i, f, g, o. With LN(v) = (v − mean(v)) / sqrt(var(v) + 1e-5) over
the last axis (biased variance, as torch.nn.LayerNorm), for each step t with
x_t [B,I], h_{t-1} [B,H]:

    a_t = LN(x_t W_ih^T) ⊙ γ_ih + LN(h_{t-1} W_hh^T) ⊙ γ_hh + b_ih + b_hh     # [B,4H]
    i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
    c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ tanh(LN(c_t) ⊙ γ_c + β_c)

The two products are normalised apart, each over all 4H gate rows at once; c_t is
kept un-normalised (it is the state and c_n). Zoneout on h (haste), optional, with
p = ``zoneout``:

    training, mask m (1 keeps the previous value):  h_t ← m ⊙ h_{t-1} + (1 − m) ⊙ h_t
    eval (training=False):                          h_t ← p·h_{t-1} + (1 − p)·h_t

The zoned-out h_t is both the step's output and the next state; c is not zoned
out. The masks are inputs (this module draws nothing); the mask of layer k is
[T,B,D*H], laid out like that layer's output: direction d of step t uses
m[t, :, d*H:(d+1)*H], for the reverse direction too. haste's own mask has the
opposite sense (1 keeps the new value): pass 1 − mask.

Layers stack; a bidirectional layer runs a reversed pass and concatenates
[forward, reverse] on the feature axis; dropout applies between layers, never
after the last one, as a given mask that multiplies the layer's output (the mask
holds the 1/(1-p) scale, as in ``reference.lstm_forward``).

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

Variable lengths, as ``fastlstm.reference`` (torch with packed sequences): row b
only has steps t < lengths[b]; the reverse direction starts at t = lengths[b]-1.
Outputs at t >= lengths[b] are zero, h_n / c_n hold each row's last valid state,
the input at padded positions is never read, and an upstream gradient there is
ignored. Written as one masked loop over all T steps: a row whose step t is
padding keeps its state unchanged through that step.
"""

import numpy as np

__all__ = ["lnlstm_forward", "lnlstm_backward", "lnlstm_cell_forward",
           "lnlstm_param_shapes", "LN_EPS"]

LN_EPS = 1e-5          # as torch.nn.LayerNorm's default


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _suffix(direction):
    return "_reverse" if direction == 1 else ""


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


def lnlstm_param_shapes(input_size, hidden_size, num_layers=1, bias=True, bidirectional=False):
    """{name: shape} of the layer-norm LSTM's parameters, in registration order."""
    D = 2 if bidirectional else 1
    H = hidden_size
    shapes = {}
    for l in range(num_layers):
        I_l = input_size if l == 0 else D * H
        for d in range(D):
            sfx = f"_l{l}{_suffix(d)}"
            shapes["weight_ih" + sfx] = (4 * H, I_l)
            shapes["weight_hh" + sfx] = (4 * H, H)
            if bias:
                shapes["bias_ih" + sfx] = (4 * H,)
                shapes["bias_hh" + sfx] = (4 * H,)
            shapes["weight_ln_ih" + sfx] = (4 * H,)
            shapes["weight_ln_hh" + sfx] = (4 * H,)
            shapes["weight_ln_c" + sfx] = (H,)
            shapes["bias_ln_c" + sfx] = (H,)
    return shapes


def lnlstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh, w_ln_ih, w_ln_hh, w_ln_c, b_ln_c):
    """One layer-norm LSTM step in float64.

    x [B,I] or [I], h [B,H] or [H], c [B,H] or [H], w_ih [4H,I], w_hh [4H,H],
    b_ih/b_hh [4H] or None, w_ln_ih/w_ln_hh [4H], w_ln_c/b_ln_c [H]. Returns (h', c').
    """
    f64 = lambda a: None if a is None else np.asarray(a, dtype=np.float64)
    x, h, c, w_ih, w_hh = f64(x), f64(h), f64(c), f64(w_ih), f64(w_hh)
    b = (0.0 if b_ih is None else f64(b_ih)) + (0.0 if b_hh is None else f64(b_hh))
    a = (_layer_norm(x @ w_ih.T)[0] * f64(w_ln_ih) + _layer_norm(h @ w_hh.T)[0] * f64(w_ln_hh)
         + b)
    a_i, a_f, a_g, a_o = np.split(a, 4, axis=-1)
    c_new = _sigmoid(a_f) * c + _sigmoid(a_i) * np.tanh(a_g)
    h_new = _sigmoid(a_o) * np.tanh(_layer_norm(c_new)[0] * f64(w_ln_c) + f64(b_ln_c))
    return h_new, c_new


# ----------------------------------------------------------------------------
# one direction of one layer
# ----------------------------------------------------------------------------

def _direction_forward(x, valid, reverse, w, h0, c0, keep):
    """x [T,B,In], valid [T,B] bool, w: dict of this direction's weights (w_ih, w_hh, b,
    ln_ih, ln_hh, ln_c, b_ln_c), keep: None (no zoneout) or [T,B,H], the weight of h_{t-1}
    in the zoned-out h_t. Returns y [T,B,H], h_n, c_n and the per-step values backward
    needs."""
    T = x.shape[0]
    h, c = h0, c0
    y = np.zeros((T,) + h0.shape, dtype=x.dtype)
    steps = [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        v = valid[t][:, None]                                   # [B,1]
        n_ih, rstd_ih = _layer_norm(x[t] @ w["w_ih"].T)         # [B,4H], [B,1]
        n_hh, rstd_hh = _layer_norm(h @ w["w_hh"].T)
        a = n_ih * w["ln_ih"] + n_hh * w["ln_hh"] + w["b"]      # [B,4H]
        a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)
        i, f, g, o = _sigmoid(a_i), _sigmoid(a_f), np.tanh(a_g), _sigmoid(a_o)
        c_new = f * c + i * g
        n_c, rstd_c = _layer_norm(c_new)                        # [B,H], [B,1]
        tanh_c = np.tanh(n_c * w["ln_c"] + w["b_ln_c"])
        h_new = o * tanh_c
        if keep is not None:                                    # zoneout (h only)
            h_new = keep[t] * h + (1.0 - keep[t]) * h_new
        steps[t] = dict(v=v, x=x[t], h_prev=h, c_prev=c, i=i, f=f, g=g, o=o,
                        n_ih=n_ih, rstd_ih=rstd_ih, n_hh=n_hh, rstd_hh=rstd_hh,
                        n_c=n_c, rstd_c=rstd_c, tanh_c=tanh_c)
        # a padded step leaves the state as it is and outputs zero
        h = np.where(v, h_new, h)
        c = np.where(v, c_new, c)
        y[t] = np.where(v, h_new, 0.0)
    return y, h, c, steps


def _direction_backward(steps, dy, dh_n, dc_n, reverse, w, keep):
    """BPTT through one direction. dy [T,B,H] (gradient of this direction's output),
    dh_n, dc_n: gradient of its final state. Returns dx [T,B,In], dh0, dc0 and the
    gradients of w (same keys)."""
    T = len(steps)
    g_w = {k: np.zeros_like(a) for k, a in w.items()}
    dx = np.zeros((T,) + steps[0]["x"].shape, dtype=dy.dtype)
    dh, dc = dh_n, dc_n
    for t in (range(T) if reverse else range(T - 1, -1, -1)):
        s = steps[t]
        v = s["v"]
        # gradient reaching this step's h_t and c_t; zero for a padded step
        dh_t = np.where(v, dh + dy[t], 0.0)
        dc_t = np.where(v, dc, 0.0)
        dh_prev = 0.0
        if keep is not None:                    # h_t = k h_{t-1} + (1-k) h̃_t
            dh_prev = keep[t] * dh_t
            dh_t = (1.0 - keep[t]) * dh_t
        i, f, g, o, tanh_c = s["i"], s["f"], s["g"], s["o"], s["tanh_c"]
        # h̃_t = o tanh(LN(c_t) γ_c + β_c)
        da_o = dh_t * tanh_c * o * (1.0 - o)
        d_pre = dh_t * o * (1.0 - tanh_c ** 2)                  # d(LN(c_t) γ_c + β_c)
        g_w["ln_c"] += np.sum(d_pre * s["n_c"], axis=0)
        g_w["b_ln_c"] += np.sum(d_pre, axis=0)
        dc_t = dc_t + _layer_norm_backward(d_pre * w["ln_c"], s["n_c"], s["rstd_c"])
        # c_t = f c_{t-1} + i g
        da_i = dc_t * g * i * (1.0 - i)
        da_f = dc_t * s["c_prev"] * f * (1.0 - f)
        da_g = dc_t * i * (1.0 - g ** 2)
        dc_prev = dc_t * f
        da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)   # [B,4H]
        # a = LN(x W_ih^T) γ_ih + LN(h W_hh^T) γ_hh + b
        g_w["b"] += np.sum(da, axis=0)
        g_w["ln_ih"] += np.sum(da * s["n_ih"], axis=0)
        g_w["ln_hh"] += np.sum(da * s["n_hh"], axis=0)
        d_wx = _layer_norm_backward(da * w["ln_ih"], s["n_ih"], s["rstd_ih"])   # [B,4H]
        d_rh = _layer_norm_backward(da * w["ln_hh"], s["n_hh"], s["rstd_hh"])   # [B,4H]
        g_w["w_ih"] += d_wx.T @ s["x"]
        g_w["w_hh"] += d_rh.T @ s["h_prev"]
        dx[t] = d_wx @ w["w_ih"]
        # a padded step passes the state gradient through unchanged
        dh = np.where(v, dh_prev + d_rh @ w["w_hh"], dh)
        dc = np.where(v, dc_prev, dc)
    return dx, dh, dc, g_w


# ----------------------------------------------------------------------------
# the stacked, optionally bidirectional layer-norm LSTM
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


def lnlstm_forward(x, params, *, num_layers, hidden_size, bidirectional=False, bias=True,
                   h0=None, c0=None, lengths=None, dropout_masks=None, zoneout=0.0,
                   zoneout_masks=None, training=False, dtype=np.float64):
    """x: [T,B,I] time-major, batched only. params: dict keyed as lnlstm_param_shapes
    (suffix _reverse for direction 1), arrays or anything np.asarray takes.
    h0, c0: [D*L,B,H] or None (zeros). lengths: int array [B] (values in [1,T]) or None.
    dropout_masks: None or list of num_layers-1 arrays [T,B,D*H]; the output of layer k
    (k < num_layers-1) is multiplied elementwise by dropout_masks[k] before it feeds layer k+1.
    zoneout, zoneout_masks, training: zoneout on h (module docstring). training=True:
    zoneout_masks is None (no zoneout; then zoneout must be 0) or a list of num_layers
    arrays [T,B,D*H] (1 keeps h_{t-1}). training=False: zoneout = p mixes
    p·h_{t-1} + (1-p)·h_t, and zoneout_masks must be None. Dropout masks apply whenever
    given, as in reference.lstm_forward.
    dtype: computation dtype (float64 by default).
    Returns y [T,B,D*H], h_n [D*L,B,H], c_n [D*L,B,H] (un-normalised), cache (for backward)."""
    x = np.asarray(x, dtype=dtype)
    T, B, _ = x.shape
    L, H = num_layers, hidden_size
    D = 2 if bidirectional else 1
    h0 = np.zeros((D * L, B, H), dtype) if h0 is None else np.asarray(h0, dtype=dtype)
    c0 = np.zeros((D * L, B, H), dtype) if c0 is None else np.asarray(c0, dtype=dtype)
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
            b = get("bias_ih" + sfx) + get("bias_hh" + sfx) if bias else np.zeros(4 * H, dtype)
            per_dir.append(dict(
                w_ih=get("weight_ih" + sfx), w_hh=get("weight_hh" + sfx), b=b,
                ln_ih=get("weight_ln_ih" + sfx), ln_hh=get("weight_ln_hh" + sfx),
                ln_c=get("weight_ln_c" + sfx), b_ln_c=get("bias_ln_c" + sfx)))
        weights.append(per_dir)

    h_n = np.zeros((D * L, B, H), dtype)
    c_n = np.zeros((D * L, B, H), dtype)
    layer_in = np.where(valid[:, :, None], x, 0.0)   # padded input is never read
    steps = []
    for l in range(L):
        outs, layer_steps = [], []
        for d in range(D):
            k = l * D + d
            y_d, h_n[k], c_n[k], st = _direction_forward(
                layer_in, valid, d == 1, weights[l][d], h0[k], c0[k],
                _direction_slice(keep[l], d, H))
            outs.append(y_d)
            layer_steps.append(st)
        steps.append(layer_steps)
        layer_in = np.concatenate(outs, axis=2)        # [T,B,D*H]
        if l < L - 1 and masks is not None:
            layer_in = layer_in * masks[l]
    cache = dict(steps=steps, weights=weights, masks=masks, keep=keep,
                 dims=(T, B, L, D, H), bias=bias, dtype=dtype)
    return layer_in, h_n, c_n, cache


def lnlstm_backward(cache, dy, dh_n=None, dc_n=None):
    """Returns dx [T,B,I], dh0 [D*L,B,H], dc0 [D*L,B,H], grads (dict keyed like params,
    same shapes)."""
    T, B, L, D, H = cache["dims"]
    dtype = cache["dtype"]
    dy = np.asarray(dy, dtype=dtype)
    dh_n = np.zeros((D * L, B, H), dtype) if dh_n is None else np.asarray(dh_n, dtype=dtype)
    dc_n = np.zeros((D * L, B, H), dtype) if dc_n is None else np.asarray(dc_n, dtype=dtype)
    dh0 = np.zeros_like(dh_n)
    dc0 = np.zeros_like(dc_n)
    grads = {}
    d_out = dy                                        # gradient of layer l's output
    for l in range(L - 1, -1, -1):
        d_in = 0.0
        for d in range(D):
            k = l * D + d
            dx_d, dh0[k], dc0[k], g_w = _direction_backward(
                cache["steps"][l][d], d_out[:, :, d * H:(d + 1) * H], dh_n[k], dc_n[k],
                d == 1, cache["weights"][l][d], _direction_slice(cache["keep"][l], d, H))
            d_in = d_in + dx_d
            sfx = f"_l{l}{_suffix(d)}"
            grads["weight_ih" + sfx] = g_w["w_ih"]
            grads["weight_hh" + sfx] = g_w["w_hh"]
            if cache["bias"]:       # b = b_ih + b_hh: both get the same gradient
                grads["bias_ih" + sfx] = g_w["b"]
                grads["bias_hh" + sfx] = g_w["b"].copy()
            grads["weight_ln_ih" + sfx] = g_w["ln_ih"]
            grads["weight_ln_hh" + sfx] = g_w["ln_hh"]
            grads["weight_ln_c" + sfx] = g_w["ln_c"]
            grads["bias_ln_c" + sfx] = g_w["b_ln_c"]
        if l > 0 and cache["masks"] is not None:
            d_in = d_in * cache["masks"][l - 1]
        d_out = d_in
    return d_out, dh0, dc0, grads
