"""The layer-norm LSTM's equations in plain torch ops, an oracle written
apart from fastlstm (import only after importorskip("torch"))."""
import torch


def oracle(x, p, H, L, bid, bias, h0, c0, lengths=None):
    """The layer-norm LSTM's equations in plain torch ops, written here: x
    [T,B,I], p keyed by the state_dict's names, h0/c0 [D*L,B,H]. Past a row's
    length its output is zero and its state held; the reverse direction
    starts at the row's last element. Autograd (any order), forward AD and
    torch.func differentiate it."""
    def ln(v):
        return torch.nn.functional.layer_norm(v, v.shape[-1:], eps=1e-5)

    T, D = x.shape[0], 2 if bid else 1
    valid = None
    if lengths is not None:
        valid = (torch.arange(T)[:, None] < torch.as_tensor(lengths)[None, :])[..., None]
    inp, hs, cs = x, [], []
    for k in range(L):
        outs = []
        for d in range(D):
            s = f"_l{k}" + ("_reverse" if d else "")
            h, c = h0[k * D + d], c0[k * D + d]
            ys = [None] * T
            for t in (range(T) if d == 0 else reversed(range(T))):
                a = (ln(inp[t] @ p["weight_ih" + s].T) * p["weight_ln_ih" + s]
                     + ln(h @ p["weight_hh" + s].T) * p["weight_ln_hh" + s])
                if bias:
                    a = a + p["bias_ih" + s] + p["bias_hh" + s]
                i, f, g, o = a.chunk(4, dim=-1)
                c1 = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h1 = torch.sigmoid(o) * torch.tanh(ln(c1) * p["weight_ln_c" + s]
                                                   + p["bias_ln_c" + s])
                if valid is None:
                    h, c, ys[t] = h1, c1, h1
                else:
                    m = valid[t]
                    h, c = torch.where(m, h1, h), torch.where(m, c1, c)
                    ys[t] = torch.where(m, h1, torch.zeros_like(h1))
            outs.append(torch.stack(ys))
            hs.append(h)
            cs.append(c)
        inp = torch.cat(outs, dim=-1)
    return inp, torch.stack(hs), torch.stack(cs)
