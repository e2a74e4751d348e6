"""Plain NumPy reference of the LSTM: the readable spec and the test oracle.

Nothing here is fast and nothing here is clever. It loops over time, one step at a
time, in float64 by default, and depends only on NumPy. The compiled kernels are
tested against it, and it is itself tested against ``torch.nn.LSTM`` and against
finite differences (``tests/test_reference.py``).

The model
---------
Gate order i, f, g, o (as torch). For each step t, with x_t [B,I], h_{t-1} [B,H]:

    gates = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh            # [B,4H]
    i = σ(gates_i + p_i⊙c_{t-1})   f = σ(gates_f + p_f⊙c_{t-1})  # p_*: peepholes, optional
    g = tanh(gates_g)
    c_t = f⊙c_{t-1} + i⊙g
    o = σ(gates_o + p_o⊙c_t)
    h_t = o⊙tanh(c_t)         (with proj_size>0: h_t = (o⊙tanh(c_t)) W_hr^T)

Layers stack; a bidirectional layer runs a reversed pass and concatenates
[forward, reverse] on the feature axis; dropout applies between layers, never
after the last one.

Parameters use torch.nn.LSTM's state_dict names and shapes, for layer k:
``weight_ih_l{k}`` [4H, I_k], ``weight_hh_l{k}`` [4H, Hout], ``bias_ih_l{k}`` [4H],
``bias_hh_l{k}`` [4H], ``weight_hr_l{k}`` [Hout, H] (only with proj_size > 0),
``weight_ph_l{k}`` [3, H] with rows (p_i, p_f, p_o) (only with peephole); the
reverse direction adds the suffix ``_reverse``. Hout = proj_size or hidden_size,
I_0 = input_size, I_k = D*Hout for k > 0, D = 2 if bidirectional else 1.

Variable lengths (as torch with packed sequences): row b only has steps
t < lengths[b]. The forward direction runs t = 0 .. lengths[b]-1; the reverse
direction starts at t = lengths[b]-1 and runs down to t = 0. Outputs at
t >= lengths[b] are zero, h_n / c_n hold each row's last valid state, the input
at padded positions is never read, and an upstream gradient there is ignored.
Here that is written as one masked loop over all T steps: a row whose step t is
padding keeps its state unchanged through that step.
"""

import numpy as np

__all__ = ["lstm_forward", "lstm_backward", "lstm_cell_forward"]


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _suffix(direction):
    return "_reverse" if direction == 1 else ""


def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None, w_ph=None):
    """One LSTM step in float64 (the oracle for LSTMCell).

    x [B,I] or [I], h [B,Hout] or [Hout], c [B,H] or [H], w_ih [4H,I],
    w_hh [4H,Hout], b_ih/b_hh [4H] or None, w_ph [3,H] (rows i, f, o) or None.
    Returns (h', c').
    """
    f64 = lambda a: None if a is None else np.asarray(a, dtype=np.float64)
    x, h, c, w_ih, w_hh = f64(x), f64(h), f64(c), f64(w_ih), f64(w_hh)
    b_ih, b_hh, w_ph = f64(b_ih), f64(b_hh), f64(w_ph)
    gates = x @ w_ih.T + h @ w_hh.T
    if b_ih is not None:
        gates = gates + b_ih
    if b_hh is not None:
        gates = gates + b_hh
    a_i, a_f, a_g, a_o = np.split(gates, 4, axis=-1)
    if w_ph is not None:
        a_i = a_i + w_ph[0] * c
        a_f = a_f + w_ph[1] * c
    i, f, g = _sigmoid(a_i), _sigmoid(a_f), np.tanh(a_g)
    c_new = f * c + i * g
    if w_ph is not None:
        a_o = a_o + w_ph[2] * c_new
    o = _sigmoid(a_o)
    return o * np.tanh(c_new), c_new


# ----------------------------------------------------------------------------
# one direction of one layer
# ----------------------------------------------------------------------------

def _direction_forward(x, valid, reverse, w, h0, c0):
    """x [T,B,In], valid [T,B] bool, w: dict of this direction's weights
    (w_ih, w_hh, b, w_ph or None, w_hr or None). Returns y [T,B,Hout], h_n, c_n,
    and the per-step values that backward needs."""
    T = x.shape[0]
    h, c = h0, c0
    y = np.zeros((T,) + h0.shape, dtype=x.dtype)
    steps = [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        v = valid[t][:, None]                                   # [B,1]
        gates = x[t] @ w["w_ih"].T + h @ w["w_hh"].T + w["b"]   # [B,4H]
        a_i, a_f, a_g, a_o = np.split(gates, 4, axis=1)
        if w["w_ph"] is not None:
            a_i = a_i + w["w_ph"][0] * c
            a_f = a_f + w["w_ph"][1] * c
        i, f, g = _sigmoid(a_i), _sigmoid(a_f), np.tanh(a_g)
        c_new = f * c + i * g
        if w["w_ph"] is not None:
            a_o = a_o + w["w_ph"][2] * c_new
        o = _sigmoid(a_o)
        tanh_c = np.tanh(c_new)
        m = o * tanh_c                                          # [B,H]
        h_new = m @ w["w_hr"].T if w["w_hr"] is not None else m
        steps[t] = dict(v=v, x=x[t], h_prev=h, c_prev=c, i=i, f=f, g=g, o=o,
                        c=c_new, tanh_c=tanh_c, m=m)
        # a padded step leaves the state as it is and outputs zero
        h = np.where(v, h_new, h)
        c = np.where(v, c_new, c)
        y[t] = np.where(v, h_new, 0.0)
    return y, h, c, steps


def _direction_backward(steps, dy, dh_n, dc_n, reverse, w):
    """BPTT through one direction. dy [T,B,Hout] (gradient of this direction's
    output), dh_n, dc_n: gradient of its final state. Returns dx [T,B,In], dh0,
    dc0 and the gradients of w (same keys)."""
    T = len(steps)
    g_w = {k: (None if a is None else np.zeros_like(a)) for k, a in w.items()}
    dx = np.zeros((T,) + steps[0]["x"].shape, dtype=dy.dtype)
    dh, dc = dh_n, dc_n
    for t in (range(T) if reverse else range(T - 1, -1, -1)):
        s = steps[t]
        v = s["v"]
        # gradient reaching this step's h_t and c_t; zero for a padded step
        dh_t = np.where(v, dh + dy[t], 0.0)
        dc_t = np.where(v, dc, 0.0)
        if w["w_hr"] is not None:               # h_t = m W_hr^T
            g_w["w_hr"] += dh_t.T @ s["m"]
            dm = dh_t @ w["w_hr"]
        else:
            dm = dh_t
        i, f, g, o, c, tanh_c = s["i"], s["f"], s["g"], s["o"], s["c"], s["tanh_c"]
        do = dm * tanh_c
        dc_t = dc_t + dm * o * (1.0 - tanh_c ** 2)
        da_o = do * o * (1.0 - o)
        if w["w_ph"] is not None:               # o = σ(a_o + p_o c_t)
            dc_t = dc_t + da_o * w["w_ph"][2]
            g_w["w_ph"][2] += np.sum(da_o * c, axis=0)
        # c_t = f c_{t-1} + i g
        da_i = dc_t * g * i * (1.0 - i)
        da_f = dc_t * s["c_prev"] * f * (1.0 - f)
        da_g = dc_t * i * (1.0 - g ** 2)
        dc_prev = dc_t * f
        if w["w_ph"] is not None:               # i, f see p_i c_{t-1}, p_f c_{t-1}
            dc_prev = dc_prev + da_i * w["w_ph"][0] + da_f * w["w_ph"][1]
            g_w["w_ph"][0] += np.sum(da_i * s["c_prev"], axis=0)
            g_w["w_ph"][1] += np.sum(da_f * s["c_prev"], axis=0)
        dgates = np.concatenate([da_i, da_f, da_g, da_o], axis=1)   # [B,4H]
        g_w["w_ih"] += dgates.T @ s["x"]
        g_w["w_hh"] += dgates.T @ s["h_prev"]
        g_w["b"] += np.sum(dgates, axis=0)
        dx[t] = dgates @ w["w_ih"]
        # a padded step passes the state gradient through unchanged
        dh = np.where(v, dgates @ w["w_hh"], dh)
        dc = np.where(v, dc_prev, dc)
    return dx, dh, dc, g_w


# ----------------------------------------------------------------------------
# the stacked, optionally bidirectional LSTM
# ----------------------------------------------------------------------------

def lstm_forward(x, params, *, num_layers, hidden_size, proj_size=0, bidirectional=False,
                 bias=True, peephole=False, h0=None, c0=None, lengths=None,
                 dropout_masks=None, dtype=np.float64):
    """x: [T,B,I] time-major, batched only. params: dict with torch.nn.LSTM state_dict keys
    (weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, weight_hr_l{k} if proj_size>0,
    weight_ph_l{k} [3,H] rows (i,f,o) if peephole, suffix _reverse for direction 1), arrays or
    anything np.asarray takes.
    h0: [D*L,B,Hout] or None (zeros), c0: [D*L,B,H] or None. Hout = proj_size or hidden_size.
    lengths: int array [B] (values in [1,T]) or None (= all T).
    dropout_masks: None or list of num_layers-1 arrays [T,B,D*Hout]; the output of layer k
    (k < num_layers-1) is multiplied elementwise by dropout_masks[k] before it feeds layer k+1.
    dtype: computation dtype (float64 by default; the benchmark may pass float32).
    Returns y [T,B,D*Hout], h_n [D*L,B,Hout], c_n [D*L,B,H], cache (opaque, for backward)."""
    x = np.asarray(x, dtype=dtype)
    T, B, _ = x.shape
    L, H = num_layers, hidden_size
    D = 2 if bidirectional else 1
    Hout = proj_size if proj_size > 0 else H
    h0 = np.zeros((D * L, B, Hout), dtype) if h0 is None else np.asarray(h0, dtype=dtype)
    c0 = np.zeros((D * L, B, H), dtype) if c0 is None else np.asarray(c0, dtype=dtype)
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    valid = np.arange(T)[:, None] < lengths[None, :]           # [T,B]
    masks = None if dropout_masks is None else [np.asarray(m, dtype=dtype)
                                                 for m in dropout_masks]

    def get(name):
        return np.asarray(params[name], dtype=dtype)

    weights = []          # weights[l][d]: dict for _direction_forward
    for l in range(L):
        per_dir = []
        for d in range(D):
            sfx = f"_l{l}{_suffix(d)}"
            w_ih, w_hh = get("weight_ih" + sfx), get("weight_hh" + sfx)
            b = get("bias_ih" + sfx) + get("bias_hh" + sfx) if bias else np.zeros(4 * H, dtype)
            per_dir.append(dict(
                w_ih=w_ih, w_hh=w_hh, b=b,
                w_ph=get("weight_ph" + sfx) if peephole else None,
                w_hr=get("weight_hr" + sfx) if proj_size > 0 else None))
        weights.append(per_dir)

    h_n = np.zeros((D * L, B, Hout), dtype)
    c_n = np.zeros((D * L, B, H), dtype)
    layer_in = np.where(valid[:, :, None], x, 0.0)   # padded input is never read
    steps = []
    for l in range(L):
        outs, layer_steps = [], []
        for d in range(D):
            y_d, h_n[l * D + d], c_n[l * D + d], st = _direction_forward(
                layer_in, valid, d == 1, weights[l][d], h0[l * D + d], c0[l * D + d])
            outs.append(y_d)
            layer_steps.append(st)
        steps.append(layer_steps)
        layer_in = np.concatenate(outs, axis=2)        # [T,B,D*Hout]
        if l < L - 1 and masks is not None:
            layer_in = layer_in * masks[l]
    y = layer_in
    cache = dict(steps=steps, weights=weights, masks=masks, dims=(T, B, L, D, H, Hout),
                 bias=bias, peephole=peephole, proj_size=proj_size, dtype=dtype)
    return y, h_n, c_n, cache


def lstm_backward(cache, dy, dh_n=None, dc_n=None):
    """Returns dx [T,B,I], dh0 [D*L,B,Hout], dc0 [D*L,B,H], grads (dict keyed like params,
    same shapes)."""
    T, B, L, D, H, Hout = cache["dims"]
    dtype = cache["dtype"]
    dy = np.asarray(dy, dtype=dtype)
    dh_n = np.zeros((D * L, B, Hout), dtype) if dh_n is None else np.asarray(dh_n, dtype=dtype)
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
                cache["steps"][l][d], d_out[:, :, d * Hout:(d + 1) * Hout],
                dh_n[k], dc_n[k], d == 1, cache["weights"][l][d])
            d_in = d_in + dx_d
            sfx = f"_l{l}{_suffix(d)}"
            grads["weight_ih" + sfx] = g_w["w_ih"]
            grads["weight_hh" + sfx] = g_w["w_hh"]
            if cache["bias"]:       # b = b_ih + b_hh: both get the same gradient
                grads["bias_ih" + sfx] = g_w["b"]
                grads["bias_hh" + sfx] = g_w["b"].copy()
            if cache["proj_size"] > 0:
                grads["weight_hr" + sfx] = g_w["w_hr"]
            if cache["peephole"]:
                grads["weight_ph" + sfx] = g_w["w_ph"]
        if l > 0 and cache["masks"] is not None:
            d_in = d_in * cache["masks"][l - 1]
        d_out = d_in
    return d_out, dh0, dc0, grads
