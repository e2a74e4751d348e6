"""Parameter names and shapes as torch.nn.LSTM has them, written out
independently of fastlstm (an oracle for the tests)."""


def param_shapes(I, H, L, D, bias, P, peephole):
    Hout = P or H
    shapes = {}
    for l in range(L):
        I_l = I if l == 0 else D * Hout
        for sfx in ["", "_reverse"][:D]:
            s = f"_l{l}{sfx}"
            shapes["weight_ih" + s] = (4 * H, I_l)
            shapes["weight_hh" + s] = (4 * H, Hout)
            if bias:
                shapes["bias_ih" + s] = (4 * H,)
                shapes["bias_hh" + s] = (4 * H,)
            if P:
                shapes["weight_hr" + s] = (Hout, H)
            if peephole:
                shapes["weight_ph" + s] = (3, H)
    return shapes
