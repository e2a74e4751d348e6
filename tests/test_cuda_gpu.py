"""fastlstm.torch's LSTM and GRU on the CUDA backend, on a GPU: parity with
torch.nn.LSTM / GRU on cuDNN (outputs and every gradient), float64
gradchecks, the features cuDNN lacks against fastlstm's own CPU kernels,
streams, determinism and the errors. Every test needs a CUDA device and a
FASTLSTM_CUDA=ON build whose backend can run (fastlstm.cuda.is_available());
without them the module skips, saying why."""
import pytest

torch = pytest.importorskip("torch")
import fastlstm.cuda  # noqa: E402

pytestmark = pytest.mark.cuda
if not torch.cuda.is_available():
    pytest.skip("no CUDA device for torch", allow_module_level=True)
if not fastlstm.cuda.is_available():
    pytest.skip(f"fastlstm's CUDA backend cannot run: {fastlstm.cuda.unavailable_reason()}",
                allow_module_level=True)

import fastlstm.torch as flt  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

DEV = torch.device("cuda")


@pytest.fixture(autouse=True)
def _exact_cudnn():
    """cuDNN in full float32 (no TF32), as the tolerances below assume."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _pair(cell, dtype, seed=0, **kw):
    torch.manual_seed(seed)
    Ref, Ours = (torch.nn.LSTM, flt.LSTM) if cell == "lstm" else (torch.nn.GRU, flt.GRU)
    ref = Ref(**kw).to(DEV, dtype)
    ours = Ours(**kw).to(DEV, dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _run(m, x, hx, lengths):
    x = x.clone().requires_grad_()
    hx = None if hx is None else tuple(h.clone().requires_grad_() for h in hx)
    arg = hx if hx is None or len(hx) == 2 else hx[0]
    inp = x if lengths is None else pack_padded_sequence(x, lengths, enforce_sorted=False,
                                                         batch_first=m.batch_first)
    y, fin = m(inp, arg)
    if lengths is not None:
        y, _ = pad_packed_sequence(y, batch_first=m.batch_first, total_length=x.shape[
            1 if m.batch_first else 0])
    fin = list(fin) if isinstance(fin, tuple) else [fin]
    g = torch.Generator(device=DEV).manual_seed(5)
    outs = [y, *fin]
    grads = [torch.randn(o.shape, generator=g, device=DEV, dtype=o.dtype) for o in outs]
    ins = [x, *(hx or ()), *m.parameters()]
    return outs, torch.autograd.grad(outs, ins, grads)


def _rel_close(got, want, rtol):
    for a, b in zip(got, want):
        scale = b.abs().max().clamp_min(1.0)
        err = (a - b).abs().max()
        assert err <= rtol * scale, f"max|diff| {err:.3e} > {rtol * scale:.3e}"


CONFIGS = [  # cell, kwargs, T, B, lengths
    ("lstm", dict(input_size=32, hidden_size=64), 20, 8, None),
    ("lstm", dict(input_size=16, hidden_size=48, num_layers=2, bidirectional=True), 12, 5,
     [12, 3, 7, 1, 9]),
    ("lstm", dict(input_size=24, hidden_size=40, proj_size=16, num_layers=2), 10, 4, None),
    ("lstm", dict(input_size=8, hidden_size=32, batch_first=True, bias=False), 9, 3, [9, 4, 2]),
    ("gru", dict(input_size=32, hidden_size=64), 20, 8, None),
    ("gru", dict(input_size=16, hidden_size=48, num_layers=2, bidirectional=True), 12, 5,
     [12, 3, 7, 1, 9]),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c[0]}-{c[2]}x{c[3]}")
def test_parity_with_cudnn_float32(cfg):
    cell, kw, T, B, lengths = cfg
    ref, ours = _pair(cell, torch.float32, **kw)
    g = torch.Generator(device=DEV).manual_seed(1)
    shape = (B, T, kw["input_size"]) if kw.get("batch_first") else (T, B, kw["input_size"])
    x = torch.randn(shape, generator=g, device=DEV)
    lens = None if lengths is None else torch.tensor(lengths)
    want_o, want_g = _run(ref, x, None, lens)
    got_o, got_g = _run(ours, x, None, lens)
    _rel_close(got_o, want_o, 1e-5)
    _rel_close(got_g, want_g, 1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradcheck_float64(cell):
    kw = dict(input_size=3, hidden_size=4, bidirectional=True)
    if cell == "lstm":
        kw["proj_size"] = 2
    _, ours = _pair(cell, torch.float64, **kw)
    x = torch.randn(5, 2, 3, device=DEV, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda x, *p: ours(x)[0], (x, *ours.parameters()))


def test_peepholes_zoneout_clip_match_the_cpu_kernels():
    """cuDNN has none of them: fastlstm's CPU kernels are the peer."""
    torch.manual_seed(0)
    gpu = flt.LSTM(6, 10, num_layers=2, bidirectional=True, peephole=True, zoneout=0.2,
                   cell_clip=0.8, dtype=torch.float64).to(DEV)
    cpu = flt.LSTM(6, 10, num_layers=2, bidirectional=True, peephole=True, zoneout=0.2,
                   cell_clip=0.8, dtype=torch.float64)
    cpu.load_state_dict(gpu.state_dict())
    x = torch.randn(7, 3, 6, dtype=torch.float64)
    y_gpu, _ = gpu(x.to(DEV).requires_grad_())
    masks = [m.cpu() for m in gpu.zoneout_masks]
    y_gpu.sum().backward()
    # the CPU kernels, layer by layer through the op, with the GPU call's masks
    inp = x.clone().requires_grad_()
    zeros = torch.zeros(2, 3, 10, dtype=torch.float64)
    for k in range(2):
        inp = torch.ops.fastlstm.lstm_layer(inp, cpu._layer_weights(k), zeros, zeros, None, 10,
                                            0, True, True, True, True, masks[k], 0.2, 0.8)[0]
    y_cpu = inp
    torch.testing.assert_close(y_gpu.cpu(), y_cpu.detach(), rtol=1e-12, atol=1e-12)
    y_cpu.sum().backward()
    for (n, p), q in zip(gpu.named_parameters(), cpu.parameters()):
        torch.testing.assert_close(p.grad.cpu(), q.grad, rtol=1e-10, atol=1e-10, msg=n)


def test_runs_on_the_current_stream_and_is_deterministic():
    ref, ours = _pair("lstm", torch.float32, input_size=32, hidden_size=64, num_layers=2)
    x = torch.randn(30, 16, 32, device=DEV)
    with torch.no_grad():
        want, _ = ours(x)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            got, _ = ours(x)
        torch.cuda.current_stream().wait_stream(s)
    assert torch.equal(got, want)
    xg = x.clone().requires_grad_()
    g1 = torch.autograd.grad(ours(xg)[0].sum(), [xg, *ours.parameters()])
    g2 = torch.autograd.grad(ours(xg)[0].sum(), [xg, *ours.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_lengths_on_the_device_and_the_host_agree():
    _, ours = _pair("gru", torch.float32, input_size=8, hidden_size=16)
    x = torch.randn(6, 3, 8, device=DEV)
    lens = torch.tensor([6, 2, 4])
    a = ours(pack_padded_sequence(x, lens, enforce_sorted=False))[1]
    b = ours(pack_padded_sequence(x, lens.to(DEV), enforce_sorted=False))[1]
    assert torch.equal(a, b)


def test_errors():
    _, ours = _pair("lstm", torch.float32, input_size=8, hidden_size=16)
    x = torch.randn(5, 2, 8, device=DEV)
    with pytest.raises(RuntimeError):  # a state on the CPU
        ours(x, (torch.zeros(1, 2, 16), torch.zeros(1, 2, 16)))
    with pytest.raises(ValueError, match="lengths"):
        torch.ops.fastlstm.lstm_layer(x, list(ours.parameters()), torch.zeros(1, 2, 16,
                                      device=DEV), torch.zeros(1, 2, 16, device=DEV),
                                      torch.tensor([6, 1]), 16, 0, False, True, False, False)
    cpu_w = [p.detach().cpu() for p in ours.parameters()]
    with pytest.raises(TypeError, match="weight_ih_l0: expected torch.float32 on cuda"):
        torch.ops.fastlstm.lstm_layer(x, cpu_w, torch.zeros(1, 2, 16, device=DEV),
                                      torch.zeros(1, 2, 16, device=DEV), None, 16, 0, False,
                                      True, False, False)
    ln = flt.LayerNormLSTM(8, 16).to(DEV)
    y, _ = ln(x)  # the layer-norm LSTM on CUDA: its maths in torch ops
    assert y.is_cuda


def test_bfloat16_weights_are_cpu_only():
    bf = flt.LSTM(8, 16, weights_dtype="bfloat16").to(DEV)
    with torch.no_grad(), pytest.raises(TypeError, match="CPU kernels only"):
        bf(torch.randn(5, 2, 8, device=DEV))
