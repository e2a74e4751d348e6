"""One LSTM layer in plain torch ops: the kernels' maths, differentiable to any
order and under every torch.func transform.

fastlstm.torch runs it where the kernels cannot give the right answer on
their own: a backward with ``create_graph=True`` (double backward, gradient
penalties, Hessian-vector products), forward-mode AD (``torch.func.jvp``,
``jacfwd``, ``torch.autograd.forward_ad``) and an empty batch. Layers that
torch's own LSTM op covers (no lengths, no peepholes, no torch.func
transform, under which that op fails) run it; the rest run a step loop at
the speed of a Python LSTM.
"""
from typing import Optional

import torch
from torch import Tensor


def lstm_layer(x: Tensor, weights: list, h0: Tensor, c0: Tensor, lengths: Optional[Tensor],
               hidden_size: int, proj_size: int, bidirectional: bool, bias: bool,
               peephole: bool):
    """x [T,B,I], weights as `torch.ops.fastlstm.lstm_layer` takes them, h0
    [D,B,Ho], c0 [D,B,H], lengths int [B] or None -> y [T,B,D*Ho], h_n
    [D,B,Ho], c_n [D,B,H]. Past a row's length its output is zero and its
    state is held; the reverse direction starts at each row's last element."""
    if lengths is None and not peephole and torch._C._functorch.peek_interpreter_stack() is None:
        # the same weights in the same order as torch.nn.LSTM's _flat_weights
        return torch.lstm(x, (h0, c0), list(weights), bias, 1, 0.0, False, bidirectional, False)
    T = x.shape[0]
    D = 2 if bidirectional else 1
    per_dir = len(weights) // D
    valid = None
    if lengths is not None:  # [T,B,1]: step t is inside row b
        steps = torch.arange(T, device=x.device)
        valid = (steps[:, None] < lengths.to(x.device)[None, :]).unsqueeze(-1)
    ys, hns, cns = [], [], []
    for d in range(D):
        w = list(weights[d * per_dir:(d + 1) * per_dir])
        w_ih, w_hh = w[0], w[1]
        b = w[2] + w[3] if bias else None
        w_hr = w[4 if bias else 2] if proj_size else None
        w_ph = w[-1] if peephole else None
        xw = torch.matmul(x, w_ih.t())  # [T,B,4H], the input side of every step
        if b is not None:
            xw = xw + b
        h, c = h0[d], c0[d]
        out = [None] * T
        for t in (range(T) if d == 0 else reversed(range(T))):
            gi, gf, gg, go = (xw[t] + torch.matmul(h, w_hh.t())).chunk(4, dim=-1)
            if w_ph is not None:
                gi, gf = gi + w_ph[0] * c, gf + w_ph[1] * c
            c_new = torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gg)
            if w_ph is not None:
                go = go + w_ph[2] * c_new
            h_new = torch.sigmoid(go) * torch.tanh(c_new)
            if w_hr is not None:
                h_new = torch.matmul(h_new, w_hr.t())
            if valid is None:
                h, c, out[t] = h_new, c_new, h_new
            else:
                m = valid[t]
                h, c = torch.where(m, h_new, h), torch.where(m, c_new, c)
                out[t] = torch.where(m, h_new, torch.zeros_like(h_new))
        ys.append(torch.stack(out))
        hns.append(h)
        cns.append(c)
    return torch.cat(ys, dim=-1), torch.stack(hns), torch.stack(cns)
