"""The CUDA kernels of the LSTM and GRU layer ops (fastlstm/cuda.h).

Each call checks its tensors (dtype, device, shape), checks ``lengths`` on
the host, allocates its outputs, workspace and scratch with torch's caching
allocator on the input's device, and queues the kernels on torch's current
stream: contiguous inputs are read in place, and nothing waits for the GPU.
The ops' CUDA registrations (`_ops._register_cuda`) route CUDA tensors
here; the forward and backward below take the kernel entry as an argument
so that the host-side tests can run this code with the drivers compiled for
the host.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .. import _checks, _core, _spec
from .. import cuda as _backend
from .._checks import DTypeError, ShapeError

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
CELLS = ("lstm", "gru")  # the cells with CUDA kernels


def entry(kind: str, dtype):
    """The extension's CUDA entry: kind 'forward' or 'backward'."""
    return getattr(_core, f"cuda_layer_{kind}_{_SUFFIX[dtype]}")


def _addr(t) -> int:
    return 0 if t is None else t.data_ptr()


def _stream(x: Tensor) -> int:
    return torch.cuda.current_stream(x.device).cuda_stream if x.is_cuda else 0


def _like(t, name: str, x: Tensor, shape) -> Tensor:
    """t checked against x (dtype, device) and shape, contiguous."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a Tensor, got {type(t).__name__}")
    if t.dtype != x.dtype or t.device != x.device:
        raise DTypeError(f"{name}: expected {x.dtype} on {x.device} (x's), got {t.dtype} on "
                         f"{t.device}")
    if tuple(t.shape) != tuple(shape):
        raise ShapeError(f"{name}: expected shape {tuple(shape)}, got {tuple(t.shape)}")
    return t.contiguous()


class Call:
    """One layer call's checked arguments: dims, the weights by name
    (contiguous), the per-direction addresses in the cell spec's order, the
    lengths on x's device (None when every row has T steps) and the zoneout
    mask."""

    def __init__(self, cell: str, x: Tensor, weights, lengths, cfg: tuple, zo: tuple):
        if x.dtype not in _SUFFIX:
            raise TypeError(f"x: expected a float32 or float64 tensor, got {x.dtype} (other "
                            f"dtypes have no fastlstm CUDA kernels)")
        if x.dim() != 3:
            raise ValueError(f"x: expected a 3-D [T,B,I] tensor, got shape {tuple(x.shape)}")
        H, P, bidirectional, bias, peephole = cfg
        T, B, I = x.shape
        D = 2 if bidirectional else 1
        self.x = x.contiguous()
        self.dims = _core.LayerDims(T=T, B=B, I=I, H=H, P=P, D=D, peephole=bool(peephole),
                                    cell=cell, zoneout=zo[1], cell_clip=zo[2])
        names = _spec.layer_weight_names(cell, 0, bidirectional, bias, P > 0, peephole)
        if len(weights) != len(names):
            raise ValueError(f"weights: expected {len(names)} tensors ({', '.join(names)}), "
                             f"got {len(weights)}")
        shapes = _spec.param_shapes(cell, I, H, 1, bias, bidirectional, P, peephole)
        self.names = names
        self.weights = {n: _like(w, n, x, shapes[n]) for n, w in zip(names, weights)}
        self.slots = [_spec.direction_slots(cell, 0, sfx, bias, P > 0, peephole)
                      for sfx in _spec.suffixes(bidirectional)]
        self.state_shapes = [(D, B, P or H), (D, B, H)][:_spec.SPECS[cell]["states"]]
        self.lengths = None
        if lengths is not None:
            lens = _checks.lengths_array(lengths.detach().cpu().numpy(), B, T)
            if lens.min() < T:  # all T: the same as none
                self.lengths = torch.from_numpy(lens).to(x.device)
        mask = zo[0]
        self.mask = None if mask is None else _like(mask, "zoneout_mask", x, (T, B, D * (P or H)))

    def addrs(self, tensors: dict) -> list:
        """Per direction, the addresses of `tensors` in the cell spec's order."""
        return [[0 if n is None else tensors[n].data_ptr() for n in slot] for slot in self.slots]

    def state(self, t, name: str, k: int):
        return None if t is None else _like(t, name, self.x, self.state_shapes[k])


def forward(cell: str, x: Tensor, weights, states: list, lengths, cfg: tuple, training: bool,
            zo: tuple, kernel=None) -> tuple:
    """The layer op on the CUDA kernels -> (y, *final states, workspace)."""
    a = Call(cell, x, weights, lengths, cfg, zo)
    d = a.dims
    s0 = [a.state(t, n, k) for k, (t, n) in enumerate(zip(states, ("h0", "c0")))]
    y = x.new_empty((d.T, d.B, d.D * (d.P or d.H)))
    finals = [x.new_empty(s) for s in a.state_shapes]
    ws = x.new_empty((_core.cuda_workspace_size(d) if training else 0,))
    scratch = x.new_empty((_core.cuda_forward_scratch_size(d),))
    h0, c0 = (s0 + [None])[:2]
    hn, cn = (finals + [None])[:2]
    (kernel or entry("forward", x.dtype))(
        d, a.addrs(a.weights), a.x.data_ptr(), _addr(a.lengths), _addr(h0), _addr(c0),
        y.data_ptr(), hn.data_ptr(), _addr(cn), _addr(ws) if training else 0,
        scratch.data_ptr(), _stream(x), _addr(a.mask))
    return (y, *finals, ws)


def backward(cell: str, x: Tensor, weights, c0, lengths, ws: Tensor, dy: Tensor,
             d_states: list, cfg: tuple, zo: tuple, kernel=None) -> list:
    """The backward op on the CUDA kernels -> [dx, dh0 (, dc0)] + the weight
    gradients in the order of `weights`."""
    a = Call(cell, x, weights, lengths, cfg, zo)
    d = a.dims
    need = _core.cuda_workspace_size(d)
    if not isinstance(ws, Tensor) or ws.dtype != x.dtype or ws.device != x.device \
            or ws.dim() != 1 or ws.numel() != need:
        raise ValueError(f"workspace: expected the workspace of a training-mode {cell}_layer "
                         f"call ({need} elements of {x.dtype} on {x.device})")
    Ho = d.P or d.H
    dy = _like(dy, "dy", x, (d.T, d.B, d.D * Ho))
    dn = [a.state(t, f"d{s}_n", k) for k, (t, s) in enumerate(zip(d_states, "hc"))]
    if len(a.state_shapes) > 1:  # checked; the CUDA backward reads c_{t-1} from the workspace
        a.state(c0, "c0", 1)
    grads = {n: torch.zeros_like(w) for n, w in a.weights.items()}
    dx = x.new_empty(tuple(x.shape))
    d0 = [x.new_empty(s) for s in a.state_shapes]
    scratch = x.new_empty((_core.cuda_backward_scratch_size(d),))
    dhn, dcn = (dn + [None])[:2]
    dh0, dc0 = (d0 + [None])[:2]
    (kernel or entry("backward", x.dtype))(
        d, a.addrs(a.weights), a.addrs(grads), a.x.data_ptr(), _addr(a.lengths),
        ws.data_ptr(), dy.data_ptr(), _addr(dhn), _addr(dcn), dx.data_ptr(), dh0.data_ptr(),
        _addr(dc0), scratch.data_ptr(), _stream(x), _addr(a.mask))
    return [dx] + d0 + [grads[n] for n in a.names]


def usable(x: Tensor, params) -> bool:
    """Whether a module call on x runs on these kernels: x a CUDA float32 or
    float64 tensor, every parameter of its dtype on its device, and the
    backend available."""
    return (x.is_cuda and x.dtype in _SUFFIX
            and all(p.device == x.device and p.dtype == x.dtype for p in params)
            and _backend.is_available())
