"""fastlstm.torch's CUDA path on the host: the CUDA kernels of the layer ops
(fastlstm/torch/_cuda.py and the registrations in _ops.py) run with the
CUDA drivers compiled for the host (tests/_cuda_emu.py) in place of the
extension's entries, on CPU tensors, against torch.nn.LSTM / GRU. That
checks, without a GPU, everything between the op and the device: the
argument unpacking, the checks, the weight and gradient order, the states,
lengths, zoneout masks and the buffers' sizes."""
import _cuda_emu
import pytest

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

from fastlstm import _core, _spec  # noqa: E402
from fastlstm._checks import DTypeError, ShapeError  # noqa: E402
from fastlstm.torch import _cuda, _ops  # noqa: E402


@pytest.fixture
def on_emu(emu, monkeypatch):
    """_cuda's kernel entries -> the emulated drivers."""
    tables = {torch.float32: _cuda_emu.entries(emu, "f32"),
              torch.float64: _cuda_emu.entries(emu, "f64")}
    monkeypatch.setattr(_cuda, "entry",
                        lambda kind, dtype: tables[dtype][kind == "backward"])


def _torch_layer(cell, seed, I, H, P, bidirectional, bias, dtype):
    torch.manual_seed(seed)
    kw = dict(proj_size=P) if cell == "lstm" else {}
    Mod = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
    return Mod(I, H, bias=bias, bidirectional=bidirectional, **kw).to(dtype)


def _reference(m, x, states, lengths, d_out):
    """torch's outputs and gradients (x, states, then parameters in op order)."""
    x = x.clone().requires_grad_()
    states = [s.clone().requires_grad_() for s in states]
    hx = tuple(states) if len(states) == 2 else states[0]
    if lengths is None:
        y, fin = m(x, hx)
    else:
        y, fin = m(pack_padded_sequence(x, lengths, enforce_sorted=False), hx)
        y, _ = pad_packed_sequence(y, total_length=x.shape[0])
    fin = list(fin) if isinstance(fin, tuple) else [fin]
    params = list(m.parameters())
    g = torch.autograd.grad([y, *fin], [x, *states, *params], list(d_out))
    return [y.detach(), *[f.detach() for f in fin]], list(g)


CASES = [  # cell, T, B, I, H, P, bidirectional, bias, lengths
    ("lstm", 5, 3, 4, 6, 0, False, True, None),
    ("lstm", 6, 3, 5, 4, 0, True, True, [6, 2, 4]),
    ("lstm", 4, 2, 3, 5, 3, True, False, [3, 4]),
    ("gru", 5, 3, 4, 6, 0, False, True, None),
    ("gru", 6, 4, 3, 5, 0, True, True, [1, 6, 3, 5]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_cuda_op_kernels_match_torch(on_emu, case, dtype):
    cell, T, B, I, H, P, bidi, bias, lengths = case
    m = _torch_layer(cell, CASES.index(case), I, H, P, bidi, bias, dtype)
    D, Ho = 2 if bidi else 1, P or H
    g = torch.Generator().manual_seed(7)
    x = torch.randn(T, B, I, generator=g, dtype=dtype)
    shapes = [(D, B, Ho), (D, B, H)][:_ops.n_states(cell)]
    states = [torch.randn(s, generator=g, dtype=dtype) for s in shapes]
    lens = None if lengths is None else torch.tensor(lengths)
    d_out = [torch.randn(T, B, D * Ho, generator=g, dtype=dtype)] + [
        torch.randn(s, generator=g, dtype=dtype) for s in shapes]
    if lens is not None:  # torch's padded output has no gradient past a length
        d_out[0] = d_out[0] * (torch.arange(T)[:, None] < lens[None, :]).unsqueeze(-1)
    want_out, want_grads = _reference(m, x, states, lens, d_out)

    names = _spec.layer_weight_names(cell, 0, bidi, bias, P > 0, False)
    weights = [getattr(m, n).detach() for n in names]
    cfg = (H, P, bidi, bias, False)
    op_cfg = _ops._op_cfg(cell, cfg)
    layer_k = _ops._OPS[cell][0]._backend_fns["cuda"]
    backward_k = _ops._OPS[cell][1]._backend_fns["cuda"]
    out = layer_k(x, weights, *states, lens, *op_cfg, True)
    y, finals, ws = out[0], list(out[1:-1]), out[-1]
    got_grads = backward_k(x, weights, *states[1:], lens, ws, *d_out, *op_cfg)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-5)
    for a, b in zip([y, *finals], want_out):
        torch.testing.assert_close(a, b, **tol)
    assert len(got_grads) == 1 + len(states) + len(weights)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, **tol)
    D = 2 if bidi else 1  # the fake kernel's size: T*B rows of one row's
    assert ws.numel() == _core.cuda_workspace_size(_ops._dims(cell, T, B, I, H, P, D, False))
    assert ws.numel() == T * B * _core.cuda_workspace_size(_ops._dims(cell, 1, 1, I, H, P, D,
                                                                      False))
    # inference: no workspace, the same outputs
    y2, *rest = layer_k(x, weights, *states, lens, *op_cfg, False)
    assert rest[-1].numel() == 0
    torch.testing.assert_close(y2, y, rtol=0, atol=0)


def test_cuda_op_zoneout_mask_and_clip_reach_the_kernels(on_emu):
    """The mask and cell clip go through: the kernels' y moves with them, and
    equals the CPU op's (the same maths) on the same inputs."""
    T, B, I, H = 5, 3, 4, 6
    m = _torch_layer("lstm", 0, I, H, 0, False, True, torch.float64)
    weights = [p.detach() for p in m.parameters()]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64)
    h0, c0 = torch.zeros(1, B, H, dtype=x.dtype), torch.zeros(1, B, H, dtype=x.dtype)
    mask = (torch.rand(T, B, H, generator=g) < 0.3).to(x.dtype)
    args = (x, weights, h0, c0, None, H, 0, False, True, False, False)
    layer_k = _ops._OPS["lstm"][0]._backend_fns["cuda"]
    plain = layer_k(*args)[0]
    zoned = layer_k(*args, mask, 0.3, 0.5)[0]
    assert not torch.allclose(plain, zoned)
    cpu = torch.ops.fastlstm.lstm_layer(*args, mask, 0.3, 0.5)[0]
    torch.testing.assert_close(zoned, cpu, rtol=1e-12, atol=1e-12)


def _call_args(dtype=torch.float32):
    m = _torch_layer("lstm", 0, 3, 4, 0, False, True, dtype)
    x = torch.randn(5, 2, 3, dtype=dtype)
    return x, [p.detach() for p in m.parameters()], (4, 0, False, True, False)


def test_cuda_call_checks_weights_states_lengths_and_mask():
    x, w, cfg = _call_args()
    zo = (None, 0.0, 0.0)
    with pytest.raises(DTypeError, match="weight_hh_l0: expected torch.float32"):
        _cuda.Call("lstm", x, [w[0], w[1].double(), *w[2:]], None, cfg, zo)
    with pytest.raises(ShapeError, match=r"weight_ih_l0: expected shape \(16, 3\)"):
        _cuda.Call("lstm", x, [w[0][:, :2], *w[1:]], None, cfg, zo)
    with pytest.raises(ValueError, match="weights: expected 4 tensors"):
        _cuda.Call("lstm", x, w[:3], None, cfg, zo)
    with pytest.raises(ValueError, match=r"lengths: every value must be in \[1, 5\]"):
        _cuda.Call("lstm", x, w, torch.tensor([6, 1]), cfg, zo)
    with pytest.raises(ShapeError, match="zoneout_mask: expected shape"):
        _cuda.Call("lstm", x, w, None, cfg, (torch.zeros(5, 2, 3), 0.1, 0.0))
    with pytest.raises(TypeError, match="float32 or float64"):
        _cuda.Call("lstm", x.half(), w, None, cfg, zo)
    call = _cuda.Call("lstm", x, w, torch.tensor([5, 5]), cfg, zo)
    assert call.lengths is None  # every row full: the kernels take no lengths
    call = _cuda.Call("lstm", x, w, torch.tensor([5, 2]), cfg, zo)
    assert call.lengths.tolist() == [5, 2] and call.lengths.dtype == torch.int64
    with pytest.raises(ShapeError, match=r"h0: expected shape \(1, 2, 4\)"):
        _cuda.forward("lstm", x, w, [torch.zeros(1, 3, 4), torch.zeros(1, 2, 4)], None, cfg,
                      False, zo, kernel=lambda *a: None)


def test_cuda_backward_refuses_a_foreign_workspace():
    x, w, cfg = _call_args()
    dy = torch.zeros(5, 2, 4)
    with pytest.raises(ValueError, match="workspace: expected the workspace"):
        _cuda.backward("lstm", x, w, None, None, torch.zeros(3), dy, [None, None], cfg,
                       (None, 0.0, 0.0), kernel=lambda *a: None)


def test_lnlstm_op_has_a_cuda_kernel_that_says_it_has_none():
    with pytest.raises(NotImplementedError, match="no CUDA kernel"):
        _ops._OPS["lnlstm"][0]._backend_fns["cuda"]()
