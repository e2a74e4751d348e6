"""One recurrent layer (LSTM, GRU or layer-norm LSTM) in plain torch ops: the
kernels' maths, differentiable to any order and under every torch.func
transform.

fastlstm.torch runs it where the kernels cannot give the right answer on
their own: a backward with ``create_graph=True`` (double backward, gradient
penalties, Hessian-vector products), forward-mode AD (``torch.func.jvp``,
``jacfwd``, ``torch.autograd.forward_ad``) and an empty batch; and, for the
layer-norm LSTM, which torch has no op of, wherever the kernels cannot run
(CUDA tensors, float16 / bfloat16). Layers that torch's own op covers
(``torch.lstm`` / ``torch.gru``: no lengths, no peepholes, no zoneout or cell
clip, no torch.func transform, under which those ops fail) run it; the rest
run a step loop at the speed of a Python RNN, over the equations of
torch.nn.LSTM / torch.nn.GRU / the layer-norm LSTM (per cell an input side
for all steps at once and a step function; one loop), with zoneout on h
(h_t = k*h_{t-1} + (1-k)*h~_t) and the LSTM's cell clip (every gate
pre-activation, peepholes added, clamped to [-clip, clip]: zero gradient
where clamped), as `fastlstm.reference` / `reference_gru` /
`reference_lnlstm`.

A direction's weights are keyed by the cell spec's parameter names
(``weight_ih``, ``weight_hh``, ``bias_ih``, ...; None where the layer has no
such parameter): the op's `weights` order is the spec's (`fastlstm._spec`).
"""
from typing import Optional

import torch
from torch import Tensor

from .. import _spec

LN_EPS = _spec.SPECS["lnlstm"]["norm_eps"]


def _lstm_input(x, w):
    """x W_ih^T + b_ih + b_hh [..,4H]: the LSTM adds both biases on the input side."""
    xw = torch.matmul(x, w["weight_ih"].t())
    return xw if w["bias_ih"] is None else xw + (w["bias_ih"] + w["bias_hh"])


def _lstm_step(xw_t, state, w, clip=0.0):
    """One LSTM step: xw_t = `_lstm_input` at t [B,4H]; state (h, c);
    clip > 0: ONNX's clip of the gate pre-activations (peepholes added)."""
    h, c = state
    gi, gf, gg, go = (xw_t + torch.matmul(h, w["weight_hh"].t())).chunk(4, dim=-1)
    w_ph = w.get("weight_ph")
    if w_ph is not None:
        gi, gf = gi + w_ph[0] * c, gf + w_ph[1] * c
    if clip:
        gi, gf, gg = (torch.clamp(a, -clip, clip) for a in (gi, gf, gg))
    c_new = torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gg)
    if w_ph is not None:
        go = go + w_ph[2] * c_new
    if clip:
        go = torch.clamp(go, -clip, clip)
    h_new = torch.sigmoid(go) * torch.tanh(c_new)
    if w.get("weight_hr") is not None:
        h_new = torch.matmul(h_new, w["weight_hr"].t())
    return (h_new, c_new)


def _gru_input(x, w):
    """x W_ih^T + b_ih [..,3H]: the GRU's b_hh sits inside r ⊙ (.)."""
    xw = torch.matmul(x, w["weight_ih"].t())
    return xw if w["bias_ih"] is None else xw + w["bias_ih"]


def _gru_step(xw_t, state, w, clip=0.0):
    """One GRU step (torch.nn.GRU: gates r, z, n; b_hn inside r ⊙ (.)):
    xw_t = `_gru_input` at t [B,3H]; state (h,). (The GRU has no clip.)"""
    h, = state
    hw = torch.matmul(h, w["weight_hh"].t())
    if w["bias_hh"] is not None:
        hw = hw + w["bias_hh"]
    xr, xz, xn = xw_t.chunk(3, dim=-1)
    hr, hz, hn = hw.chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return ((1 - z) * n + z * h,)


def _ln(v):
    """LN(v) = (v - mean v) / sqrt(var v + eps) over the last axis (biased
    variance, no gain or bias), as torch.nn.LayerNorm and the kernels."""
    return torch.nn.functional.layer_norm(v, v.shape[-1:], eps=LN_EPS)


def _lnlstm_input(x, w):
    """LN(x W_ih^T)⊙γ_ih + b_ih + b_hh [..,4H]: the input side of the
    layer-norm LSTM, which normalises W x apart from R h."""
    a = _ln(torch.matmul(x, w["weight_ih"].t())) * w["weight_ln_ih"]
    return a if w["bias_ih"] is None else a + (w["bias_ih"] + w["bias_hh"])


def _lnlstm_step(xw_t, state, w, clip=0.0):
    """One layer-norm LSTM step (Ba et al. 2016, as haste's LayerNormLSTM,
    `fastlstm.reference_lnlstm`): xw_t = `_lnlstm_input` at t [B,4H];
    state (h, c); c_n is the un-normalised c. (It has no clip.)"""
    h, c = state
    a = xw_t + _ln(torch.matmul(h, w["weight_hh"].t())) * w["weight_ln_hh"]
    gi, gf, gg, go = a.chunk(4, dim=-1)
    c_new = torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gg)
    h_new = torch.sigmoid(go) * torch.tanh(_ln(c_new) * w["weight_ln_c"] + w["bias_ln_c"])
    return (h_new, c_new)


# per cell: the input side of every step at once, and one step
_CELL_MATHS = {"lstm": (_lstm_input, _lstm_step), "gru": (_gru_input, _gru_step),
               "lnlstm": (_lnlstm_input, _lnlstm_step)}
# torch's own op of a cell, where it has one (same weights, same order)
_TORCH_OP = {"lstm": torch.lstm, "gru": torch.gru}


def has_torch_op(cell: str) -> bool:
    """Whether torch has an op of its own for the cell (torch.lstm / torch.gru)."""
    return cell in _TORCH_OP


def _direction(cell: str, w: list, bias: bool, proj: bool, peephole: bool) -> dict:
    """One direction's weights (the op's order: the cell spec's) by their
    spec names, None for the spec's parameters this layer has not."""
    d = dict.fromkeys(p["name"] for p in _spec.SPECS[cell]["params"])
    d.update(zip((p["name"] for p in _spec.direction_params(cell, bias, proj, peephole)), w))
    return d


def layer(cell: str, x: Tensor, weights: list, states: list, lengths: Optional[Tensor],
          hidden_size: int, proj_size: int, bidirectional: bool, bias: bool, peephole: bool,
          zoneout_mask: Optional[Tensor] = None, zoneout: float = 0.0, cell_clip: float = 0.0):
    """x [T,B,I], weights as the layer op takes them, states [h0 [D,B,Ho]] plus
    c0 [D,B,H] for the LSTMs, lengths int [B] or None -> y [T,B,D*Ho] and the
    list of final states. Past a row's length its output is zero and its
    state is held; the reverse direction starts at each row's last element.
    Zoneout: h_t = k*h_{t-1} + (1-k)*h~_t, k = zoneout_mask[t, :, d*Ho:(d+1)*Ho]
    (1 keeps h_{t-1}; a constant, not differentiated) or k = zoneout without a
    mask (0: none); the zoned h is the output and the next state, c is not
    zoned. cell_clip > 0: the LSTM's gate pre-activations clamped to
    [-cell_clip, cell_clip] (0: none)."""
    zoned = zoneout_mask is not None or zoneout > 0.0
    if (has_torch_op(cell) and lengths is None and not peephole and not zoned
            and not cell_clip and torch._C._functorch.peek_interpreter_stack() is None):
        # the same weights in the same order as torch.nn.LSTM's / GRU's _flat_weights
        hx = tuple(states) if len(states) == 2 else states[0]
        out = _TORCH_OP[cell](x, hx, list(weights), bias, 1, 0.0, False, bidirectional, False)
        return out[0], list(out[1:])
    T = x.shape[0]
    D = 2 if bidirectional else 1
    per_dir = len(weights) // D
    input_side, step = _CELL_MATHS[cell]
    valid = None
    if lengths is not None:  # [T,B,1]: step t is inside row b
        steps = torch.arange(T, device=x.device)
        valid = (steps[:, None] < lengths.to(x.device)[None, :]).unsqueeze(-1)
    Ho = proj_size or hidden_size
    keep = None
    if zoneout_mask is not None:  # a constant of this call: no gradient flows into it
        keep = zoneout_mask.detach()
    ys, finals = [], [[] for _ in states]
    for d in range(D):
        w = _direction(cell, list(weights[d * per_dir:(d + 1) * per_dir]), bias,
                       proj_size > 0, peephole)
        xw = input_side(x, w)  # [T,B,GH], the input side of every step
        state = tuple(s[d] for s in states)
        out = [None] * T
        for t in (range(T) if d == 0 else reversed(range(T))):
            new = step(xw[t], state, w, cell_clip)
            if zoned:  # zoneout on h: the zoned h is the output and the next state
                k = zoneout if keep is None else keep[t, :, d * Ho:(d + 1) * Ho]
                new = (k * state[0] + (1 - k) * new[0],) + tuple(new[1:])
            if valid is None:
                state, out[t] = new, new[0]
            else:
                m = valid[t]
                state = tuple(torch.where(m, a, b) for a, b in zip(new, state))
                out[t] = torch.where(m, new[0], torch.zeros_like(new[0]))
        ys.append(torch.stack(out))
        for f, s in zip(finals, state):
            f.append(s)
    return torch.cat(ys, dim=-1), [torch.stack(f) for f in finals]
