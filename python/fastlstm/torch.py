"""fastlstm inside PyTorch: `fastlstm.torch.LSTM`, a drop-in torch.nn.LSTM.

`LSTM` mirrors `torch.nn.LSTM` (torch.compile graph breaks on instances of
that class, so it is not a subclass): same constructor, parameters,
state_dict, `.to()`/`.double()`, `flatten_parameters()`, PackedSequence,
unbatched and batch_first input, and `hx`; `peephole=True` is the one extra
keyword. On the CPU in float32/float64 every layer runs fastlstm's kernels:
- under torch.compile/export, through two custom operators,
  ``torch.ops.fastlstm.lstm_layer`` and ``lstm_layer_backward``, with fake
  (meta) kernels and autograd registered: one op per layer, no graph break;
- in eager training, through an autograd Function over the same kernels that
  packs the weights once per step and keeps them for backward;
- in eager inference, on packed weights kept until a parameter's version
  counter moves, which every in-place torch op does (optimizer steps,
  `load_state_dict`, `nn.init`). Writes through `param.data` bypass the
  counter: call `lstm.params_changed()` after them.
Elsewhere (CUDA tensors, bfloat16, float16) the layer runs torch's own LSTM op.

Tensors reach the kernels as NumPy views, without copies when they are
contiguous. Kernels use `torch.get_num_threads()` threads. Importing this
module imports torch; `import fastlstm` does not.
"""
import math
import warnings
from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import _checks, _core, functional
from ._runtime import resolve_isa

__all__ = ["LSTM", "lstm_layer", "lstm_layer_backward"]

_DTYPES = (torch.float32, torch.float64)
_TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


# --------------------------------------------------------------------------- ops
#
# One layer (one or two directions). `weights` holds, per direction, w_ih, w_hh,
# then b_ih, b_hh (bias), w_hr (proj_size > 0), w_ph (peephole), in torch's
# names and shapes; the flags say which are present.


def _np(t: Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor (a copy only when it is not contiguous)."""
    return t.detach().contiguous().numpy()


def _names(bidirectional: bool, bias: bool, proj: bool, peephole: bool) -> list:
    """The functional parameter names (layer 0) in the order of `weights`."""
    return functional.layer_weight_names(0, bidirectional, bias, proj, peephole)


def _layer_args(x, weights, hidden_size, proj_size, bidirectional, bias, peephole):
    """Checked (dims, params dict, dtype, config) of one layer call."""
    if x.device.type != "cpu" or x.dtype not in _DTYPES:
        raise TypeError(f"x: expected a CPU float32 or float64 tensor, got {x.dtype} on "
                        f"{x.device}")
    if x.dim() != 3:
        raise ValueError(f"x: expected a 3-D [T,B,I] tensor, got shape {tuple(x.shape)}")
    names = _names(bidirectional, bias, proj_size > 0, peephole)
    if len(weights) != len(names):
        raise ValueError(f"weights: expected {len(names)} tensors ({', '.join(names)}), got "
                         f"{len(weights)}")
    T, B, I = x.shape
    H, P, D = hidden_size, proj_size, 2 if bidirectional else 1
    dtype = np.dtype(str(x.dtype).removeprefix("torch."))
    for n, w in zip(names, weights):
        if w.device.type != "cpu":
            raise TypeError(f"{n}: expected a CPU tensor, got one on {w.device}")
    params, _ = functional._checked_params({n: _np(w) for n, w in zip(names, weights)}, I, H,
                                           1, bias, bidirectional, P, peephole, dtype)
    config = (I, H, 1, P, bool(bidirectional), bool(bias), bool(peephole))
    return (T, B, I, H, P, D, bool(peephole)), params, dtype, config


def _state(t: Tensor, name: str, dtype, shape) -> np.ndarray:
    return _checks.shaped(_np(t), name, dtype, shape)


def _lengths(lengths: Optional[Tensor], B: int, T: int):
    return None if lengths is None else _checks.lengths_array(_np(lengths), B, T)


def _workspace_per_row(dims, isa: str, itemsize: int) -> int:
    """Workspace elements per (t, b) row; the op sizes it for all T*B rows so
    that its shape never depends on the values of `lengths`."""
    _, _, I, H, P, D, peephole = dims
    return _core.workspace_size((1, 1, I, H, P, D, peephole), None, isa, itemsize)


def _run_forward(packed_layer, dims, dtype, isa: str, nt: int, x: np.ndarray, h0, c0, lens,
                 training: bool):
    """The forward kernel of one layer -> y, h_n, c_n, workspace (empty unless
    training; sized for all T*B rows, so its shape does not depend on lengths)."""
    T, B, _, H, P, D, _ = dims
    Ho, tdt = P or H, _TORCH_DTYPE[dtype]
    y = torch.empty((T, B, D * Ho), dtype=tdt)
    hn = torch.empty((D, B, Ho), dtype=tdt)
    cn = torch.empty((D, B, H), dtype=tdt)
    ws = torch.empty(T * B * _workspace_per_row(dims, isa, dtype.itemsize) if training else 0,
                     dtype=tdt)
    wsn = None
    if training:
        need = _core.workspace_size(dims, lens, isa, dtype.itemsize)
        ws[need:].zero_()  # rows past sum(lengths): defined output
        wsn = ws.numpy()[:need]
    functional._kernel("forward", dtype)(dims, packed_layer, x, lens, h0, c0, y.numpy(),
                                         hn.numpy(), cn.numpy(), wsn, nt, isa)
    return y, hn, cn, ws


def _run_backward(packed_layer, dims, dtype, isa: str, nt: int, bias: bool, x: np.ndarray, c0,
                  lens, ws: Tensor, dy, dh_n, dc_n) -> list:
    """The BPTT kernel of one layer -> [dx, dh0, dc0] + the weight gradients in
    the order of `_names`."""
    T, B, I, H, P, D, peephole = dims
    Ho, tdt = P or H, _TORCH_DTYPE[dtype]
    need = _core.workspace_size(dims, lens, isa, dtype.itemsize)
    if ws.dtype != tdt or ws.dim() != 1 or ws.numel() < need:
        raise ValueError(f"workspace: expected the workspace of a training-mode lstm_layer "
                         f"call (at least {need} elements of {tdt}), got {ws.numel()} of "
                         f"{ws.dtype}")
    names = _names(D == 2, bias, P > 0, peephole)
    shapes = functional.param_shapes(I, H, 1, bias, D == 2, P, peephole)
    grads = {n: torch.zeros(shapes[n], dtype=tdt) for n in names}
    gnp = {n: g.numpy() for n, g in grads.items()}
    per_dir = [tuple(None if n is None else gnp[n] for n in
                     functional._direction_weights(gnp, 0, sfx, bias, peephole, P)[0])
               for sfx in functional._suffixes(D == 2)]
    dx = torch.empty((T, B, I), dtype=tdt)
    dh0 = torch.empty((D, B, Ho), dtype=tdt)
    dc0 = torch.empty((D, B, H), dtype=tdt)
    functional._kernel("backward", dtype)(
        dims, packed_layer, per_dir, x, lens, c0, _np(ws)[:need],
        _state(dy, "dy", dtype, (T, B, D * Ho)), _state(dh_n, "dh_n", dtype, (D, B, Ho)),
        _state(dc_n, "dc_n", dtype, (D, B, H)), dx.numpy(), dh0.numpy(), dc0.numpy(), nt, isa)
    return [dx, dh0, dc0] + [grads[n] for n in names]


def _prepare(x, weights, h0, c0, lengths, hidden_size, proj_size, bidirectional, bias,
             peephole, with_backward):
    """Checked arguments of one layer call and its packed weights."""
    dims, params, dtype, config = _layer_args(x, weights, hidden_size, proj_size,
                                              bidirectional, bias, peephole)
    T, B, _, H, P, D, _ = dims
    isa, nt = resolve_isa(), torch.get_num_threads()
    h0n = None if h0 is None else _state(h0, "h0", dtype, (D, B, P or H))
    c0n = _state(c0, "c0", dtype, (D, B, H))
    packed = functional._pack_checked(params, config, dtype, isa, with_backward, nt)
    return packed.layers[0], dims, dtype, isa, nt, _np(x), h0n, c0n, _lengths(lengths, B, T)


@torch.library.custom_op("fastlstm::lstm_layer", mutates_args=(), device_types="cpu")
def lstm_layer(x: Tensor, weights: list[Tensor], h0: Tensor, c0: Tensor,
               lengths: Optional[Tensor], hidden_size: int, proj_size: int,
               bidirectional: bool, bias: bool, peephole: bool,
               training: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One LSTM layer: x [T,B,I], h0 [D,B,Ho], c0 [D,B,H], lengths int64 [B] or
    None -> y [T,B,D*Ho], h_n [D,B,Ho], c_n [D,B,H], workspace (what
    `lstm_layer_backward` needs when training, else empty)."""
    pl, dims, dtype, isa, nt, xn, h0n, c0n, lens = _prepare(
        x, weights, h0, c0, lengths, hidden_size, proj_size, bidirectional, bias, peephole,
        False)
    return _run_forward(pl, dims, dtype, isa, nt, xn, h0n, c0n, lens, training)


@lstm_layer.register_fake
def _lstm_layer_fake(x, weights, h0, c0, lengths, hidden_size, proj_size, bidirectional, bias,
                     peephole, training):
    T, B, I = x.shape
    H, P, D = hidden_size, proj_size, 2 if bidirectional else 1
    Ho = P or H
    per_row = _workspace_per_row((1, 1, I, H, P, D, peephole), resolve_isa(),
                                 x.element_size())
    return (x.new_empty((T, B, D * Ho)), x.new_empty((D, B, Ho)), x.new_empty((D, B, H)),
            x.new_empty((T * B * per_row if training else 0,)))


@torch.library.custom_op("fastlstm::lstm_layer_backward", mutates_args=(), device_types="cpu")
def lstm_layer_backward(x: Tensor, weights: list[Tensor], c0: Tensor, lengths: Optional[Tensor],
                        workspace: Tensor, dy: Tensor, dh_n: Tensor, dc_n: Tensor,
                        hidden_size: int, proj_size: int, bidirectional: bool, bias: bool,
                        peephole: bool) -> list[Tensor]:
    """BPTT through `lstm_layer(..., training=True)`: returns [dx, dh0, dc0] and
    then one gradient per tensor of `weights`, in its order."""
    pl, dims, dtype, isa, nt, xn, _, c0n, lens = _prepare(
        x, weights, None, c0, lengths, hidden_size, proj_size, bidirectional, bias, peephole,
        True)
    return _run_backward(pl, dims, dtype, isa, nt, bias, xn, c0n, lens, workspace, dy, dh_n,
                         dc_n)


@lstm_layer_backward.register_fake
def _lstm_layer_backward_fake(x, weights, c0, lengths, workspace, dy, dh_n, dc_n, hidden_size,
                              proj_size, bidirectional, bias, peephole):
    T, B, I = x.shape
    H, P, D = hidden_size, proj_size, 2 if bidirectional else 1
    return ([x.new_empty((T, B, I)), x.new_empty((D, B, P or H)), x.new_empty((D, B, H))]
            + [w.new_empty(w.shape) for w in weights])


def _setup_context(ctx, inputs, output):
    x, weights, h0, c0, lengths, H, P, bidirectional, bias, peephole, training = inputs
    ctx.config = (H, P, bidirectional, bias, peephole)
    ctx.training = training
    ctx.has_lengths = lengths is not None
    ctx.mark_non_differentiable(output[3])
    ctx.save_for_backward(x, c0, output[3], *([lengths] if lengths is not None else []),
                          *weights)


def _lstm_layer_grad(ctx, dy, dh_n, dc_n, _dws):
    if not ctx.training:
        raise RuntimeError("fastlstm::lstm_layer: backward needs a call with training=True "
                           "(it saves the workspace BPTT reads)")
    x, c0, ws, *rest = ctx.saved_tensors
    lengths = rest[0] if ctx.has_lengths else None
    weights = rest[1:] if ctx.has_lengths else rest
    out = lstm_layer_backward(x, list(weights), c0, lengths, ws, dy, dh_n, dc_n, *ctx.config)
    dx, dh0, dc0, dw = out[0], out[1], out[2], out[3:]
    return dx, list(dw), dh0, dc0, None, None, None, None, None, None, None


lstm_layer.register_autograd(_lstm_layer_grad, setup_context=_setup_context)


class _EagerLayer(torch.autograd.Function):
    """`lstm_layer` + `lstm_layer_backward` for eager autograd: the weights are
    packed once (with the backward panels) and kept for the backward, where
    the op pair packs in each (an op cannot pass packed weights on)."""

    @staticmethod
    def forward(ctx, x, h0, c0, lengths, cfg, *weights):
        pl, dims, dtype, isa, nt, xn, h0n, c0n, lens = _prepare(x, list(weights), h0, c0,
                                                                lengths, *cfg, True)
        y, hn, cn, ws = _run_forward(pl, dims, dtype, isa, nt, xn, h0n, c0n, lens, True)
        ctx.save_for_backward(x, c0)  # version-checked by autograd
        ctx.kernel = (pl, dims, dtype, isa, cfg[3], lens, ws)
        return y, hn, cn

    @staticmethod
    def backward(ctx, dy, dh_n, dc_n):
        x, c0 = ctx.saved_tensors
        pl, dims, dtype, isa, bias, lens, ws = ctx.kernel
        out = _run_backward(pl, dims, dtype, isa, torch.get_num_threads(), bias, _np(x), _np(c0),
                            lens, ws, dy, dh_n, dc_n)
        return (out[0], out[1], out[2], None, None) + tuple(out[3:])


# --------------------------------------------------------------------------- module


class LSTM(torch.nn.Module):
    """torch.nn.LSTM on fastlstm's CPU kernels, with the same constructor,
    parameters (names, shapes, order, init) and forward. `peephole=True` adds
    ``weight_ph_l{k}[_reverse]`` [3, hidden_size] (rows i, f, o) after them.

    It mirrors torch.nn.LSTM rather than subclassing it: torch.compile graph
    breaks on every torch.nn.LSTM instance, subclasses included."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None,
                 peephole: bool = False):
        super().__init__()
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size),
                        ("num_layers", num_layers), ("proj_size", proj_size)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
        if input_size < 1 or hidden_size < 1 or num_layers < 1:
            raise ValueError(f"input_size, hidden_size and num_layers must be >= 1, got "
                             f"{input_size}, {hidden_size}, {num_layers}")
        if not 0 <= proj_size < hidden_size:
            raise ValueError(f"proj_size: expected 0 <= proj_size < hidden_size, got "
                             f"{proj_size}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
                or not 0 <= dropout <= 1:
            raise ValueError(f"dropout: expected a number in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"dropout option adds dropout after all but last recurrent layer, "
                          f"so non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}")
        self.mode = "LSTM"
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        self.bidirectional, self.proj_size = bool(bidirectional), proj_size
        self.peephole = bool(peephole)
        self._fl_cache = None
        factory = {"device": device, "dtype": dtype}
        shapes = functional.param_shapes(input_size, hidden_size, num_layers, self.bias,
                                         self.bidirectional, proj_size, self.peephole)
        for name, shape in shapes.items():  # torch's order, peepholes last
            self.register_parameter(name, torch.nn.Parameter(torch.empty(shape, **factory)))
        self._flat_weights_names = [n for n in shapes if not n.startswith("weight_ph")]
        per_dir = 2 + 2 * self.bias + (proj_size > 0) + self.peephole
        self._all_weights = [[n for n in self._layer_names(k)[d * per_dir:(d + 1) * per_dir]
                              if not n.startswith("weight_ph")]
                             for k in range(num_layers) for d in range(self._D)]
        self.reset_parameters()

    @property
    def _D(self) -> int:
        return 2 if self.bidirectional else 1

    def _layer_names(self, k: int) -> list:
        """Layer k's parameter names in the op's `weights` order."""
        return functional.layer_weight_names(k, self.bidirectional, self.bias,
                                             self.proj_size > 0, self.peephole)

    def reset_parameters(self) -> None:
        """torch's init: every parameter U(-1/sqrt(H), 1/sqrt(H)), in order."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            torch.nn.init.uniform_(p, -bound, bound)

    @property
    def _flat_weights(self) -> list:
        return [getattr(self, n) for n in self._flat_weights_names]

    @property
    def all_weights(self) -> list:
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """A no-op, as torch.nn.LSTM's on the CPU: the kernels pack the weights."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        for name, default in (("proj_size", 0), ("num_layers", 1), ("bias", True),
                              ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("peephole", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fl_cache"] = None  # packed weights are rebuilt on demand
        return state

    def params_changed(self) -> None:
        """Drop the packed inference weights (after writes through `.data`)."""
        self._fl_cache = None

    def _layer_weights(self, k: int) -> list:
        return [getattr(self, n) for n in self._layer_names(k)]

    def _runs_here(self, x: Tensor) -> bool:
        ok = x.device.type == "cpu" and x.dtype in _DTYPES and all(
            p.device.type == "cpu" and p.dtype == x.dtype for p in self.parameters())
        if not ok and self.peephole:
            raise TypeError(f"fastlstm.torch.LSTM: peepholes need CPU float32/float64 input "
                            f"and parameters of the same dtype, got {x.dtype} on {x.device}")
        return ok

    def forward(self, input, hx=None):  # noqa: A002 (torch's name)
        x0 = input.data if isinstance(input, PackedSequence) else input
        if not self._runs_here(x0):
            return self._torch_forward(input, hx)
        x, lengths, unbatched = self._time_major(input)
        B = x.shape[1]
        h0, c0 = self._initial_state(hx, x, unbatched)
        y, hn, cn = self._run(x, h0, c0, lengths)
        if isinstance(input, PackedSequence):
            order = input.sorted_indices
            if order is None:
                order = torch.arange(B)
            data = pack_padded_sequence(y[:, order], lengths[order], enforce_sorted=True).data
            return (PackedSequence(data, input.batch_sizes, input.sorted_indices,
                                   input.unsorted_indices), (hn, cn))
        if unbatched:
            return y.squeeze(1), (hn.squeeze(1), cn.squeeze(1))
        return (y.transpose(0, 1) if self.batch_first else y), (hn, cn)

    def _torch_forward(self, input, hx):
        """torch's own LSTM op, for devices and dtypes the kernels do not cover."""
        x = input.data if isinstance(input, PackedSequence) else input
        unbatched = not isinstance(input, PackedSequence) and x.dim() == 2
        B = x.shape[1 if not self.batch_first else 0] if x.dim() == 3 else 1
        if isinstance(input, PackedSequence):
            B = int(input.batch_sizes[0])
        if hx is None:
            shape = (self._D * self.num_layers, B)
            hx = (x.new_zeros(shape + (self.proj_size or self.hidden_size,)),
                  x.new_zeros(shape + (self.hidden_size,)))
            if unbatched:
                hx = (hx[0].squeeze(1), hx[1].squeeze(1))
        h, c = hx
        if unbatched:
            h, c = h.unsqueeze(1), c.unsqueeze(1)
        if isinstance(input, PackedSequence):
            if input.sorted_indices is not None:
                h, c = h.index_select(1, input.sorted_indices), \
                    c.index_select(1, input.sorted_indices)
            y, hn, cn = torch.lstm(input.data, input.batch_sizes, (h, c), self._flat_weights,
                                   self.bias, self.num_layers, self.dropout, self.training,
                                   self.bidirectional)
            if input.unsorted_indices is not None:
                hn, cn = hn.index_select(1, input.unsorted_indices), \
                    cn.index_select(1, input.unsorted_indices)
            return (PackedSequence(y, input.batch_sizes, input.sorted_indices,
                                   input.unsorted_indices), (hn, cn))
        xb = x.unsqueeze(1) if unbatched else x
        y, hn, cn = torch.lstm(xb, (h, c), self._flat_weights, self.bias, self.num_layers,
                               self.dropout, self.training, self.bidirectional,
                               self.batch_first)
        if unbatched:
            return y.squeeze(1), (hn.squeeze(1), cn.squeeze(1))
        return y, (hn, cn)

    def _time_major(self, input):
        """x [T,B,I], lengths int64 [B] or None, unbatched."""
        if isinstance(input, PackedSequence):
            x, lengths = pad_packed_sequence(input)  # batch in the caller's order
            return x, lengths.to(torch.int64), False
        if input.dim() not in (2, 3):
            raise ValueError(f"input: expected a 2-D (unbatched) or 3-D (batched) tensor, got "
                             f"{input.dim()}-D")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"input: expected input_size {self.input_size} in the last "
                             f"dimension, got shape {tuple(input.shape)}")
        if input.dim() == 2:
            return input.unsqueeze(1), None, True
        return (input.transpose(0, 1) if self.batch_first else input), None, False

    def _initial_state(self, hx, x: Tensor, unbatched: bool):
        L, D = self.num_layers, 2 if self.bidirectional else 1
        B, H = x.shape[1], self.hidden_size
        Ho = self.proj_size or H
        if hx is None:
            return (x.new_zeros((D * L, B, Ho)), x.new_zeros((D * L, B, H)))
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError("hx: expected a tuple (h_0, c_0)")
        out = []
        for name, t, shape in (("h_0", hx[0], (D * L, B, Ho)), ("c_0", hx[1], (D * L, B, H))):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name}: expected a Tensor, got {type(t).__name__}")
            if unbatched:
                if t.dim() != 2:
                    raise ValueError(f"{name}: for unbatched input expected a 2-D tensor, got "
                                     f"{t.dim()}-D")
                t = t.unsqueeze(1)
            if tuple(t.shape) != shape:
                want = (shape[0], shape[2]) if unbatched else shape
                got = (t.shape[0], t.shape[2]) if unbatched else tuple(t.shape)
                raise ValueError(f"{name}: expected shape {want}, got {tuple(got)}")
            if t.dtype != x.dtype or t.device != x.device:
                raise TypeError(f"{name}: expected {x.dtype} on {x.device}, got {t.dtype} on "
                                f"{t.device}")
            out.append(t)
        return tuple(out)

    def _run(self, x, h0, c0, lengths):
        L, D = self.num_layers, 2 if self.bidirectional else 1
        weights = [self._layer_weights(k) for k in range(L)]
        grad = torch.is_grad_enabled() and (
            x.requires_grad or h0.requires_grad or c0.requires_grad
            or any(w.requires_grad for ws in weights for w in ws))
        cfg = (self.hidden_size, self.proj_size, self.bidirectional, self.bias, self.peephole)
        # compiled: the ops; eager training: one pack per step kept for backward;
        # eager inference: packed weights kept until a parameter changes
        compiling = torch.compiler.is_compiling()
        packed = None if grad or compiling else self._packed(weights, x.dtype)
        hns, cns, inp = [], [], x
        for k in range(L):
            sl = slice(k * D, (k + 1) * D)
            if compiling:
                y, hn, cn, _ = torch.ops.fastlstm.lstm_layer(inp, weights[k], h0[sl], c0[sl],
                                                             lengths, *cfg, grad)
            elif grad:
                y, hn, cn = _EagerLayer.apply(inp, h0[sl], c0[sl], lengths, cfg, *weights[k])
            else:
                y, hn, cn = _infer_layer(packed, k, inp, h0[sl], c0[sl], lengths)
            if k < L - 1 and self.dropout > 0 and self.training:
                y = torch.nn.functional.dropout(y, self.dropout, training=True)
            hns.append(hn)
            cns.append(cn)
            inp = y
        return inp, torch.cat(hns), torch.cat(cns)

    def _packed(self, weights, dtype):
        """Packed inference weights, rebuilt when a parameter's version moves."""
        flat = [w for ws in weights for w in ws]
        key = (resolve_isa(), dtype, tuple((w.data_ptr(), w._version) for w in flat))
        if self._fl_cache is not None and self._fl_cache[0] == key:
            return self._fl_cache[1]
        params = {n: _np(w) for k, ws in enumerate(weights)
                  for n, w in zip(self._layer_names(k), ws)}
        packed = functional.pack(params, input_size=self.input_size,
                                 hidden_size=self.hidden_size, num_layers=self.num_layers,
                                 proj_size=self.proj_size, bidirectional=self.bidirectional,
                                 bias=self.bias, peephole=self.peephole, isa=key[0])
        self._fl_cache = (key, packed)
        return packed


def _infer_layer(packed, k: int, x: Tensor, h0: Tensor, c0: Tensor, lengths):
    """Layer k of `packed` without autograd: y, h_n, c_n."""
    _, H, _, P, bidirectional, _, peephole = packed.config
    T, B, In = x.shape
    dims = (T, B, In, H, P, 2 if bidirectional else 1, peephole)
    y, hn, cn, _ = _run_forward(packed.layers[k], dims, packed.dtype, packed.isa,
                                torch.get_num_threads(), _np(x), _np(h0), _np(c0),
                                _lengths(lengths, B, T), False)
    return y, hn, cn
