"""`fastlstm.torch.LSTM`: torch.nn.LSTM's interface on fastlstm's kernels."""
import math
import numbers
import warnings

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .. import functional
from .._checks import DTypeError, ShapeError
from . import _autodiff
from ._ops import (_DTYPES, KernelModule, _EagerLayer, _infer_layer, _np, cached_pack,
                   route)

__all__ = ["LSTM"]


def check_rnn_config(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                     bidirectional, proj_size, peephole) -> None:
    """torch.nn.RNNBase's constructor checks, in its order, types and messages,
    plus the ones it leaves to a later crash (or to none)."""
    if (not isinstance(dropout, numbers.Number) or isinstance(dropout, bool)
            or not 0 <= dropout <= 1):
        raise ValueError("dropout should be a number in range [0, 1] representing the "
                         "probability of an element being zeroed")
    if dropout > 0 and num_layers == 1:
        warnings.warn(f"dropout option adds dropout after all but last recurrent layer, so "
                      f"non-zero dropout expects num_layers greater than 1, but got "
                      f"dropout={dropout} and num_layers={num_layers}", stacklevel=3)
    for name, v in (("bias", bias), ("batch_first", batch_first),
                    ("bidirectional", bidirectional), ("peephole", peephole)):
        if not isinstance(v, bool):
            raise TypeError(f"{name} should be of type bool, got: {type(v).__name__}")
    for name, v in (("input_size", input_size), ("hidden_size", hidden_size),
                    ("num_layers", num_layers), ("proj_size", proj_size)):
        if not isinstance(v, int):
            raise TypeError(f"{name} should be of type int, got: {type(v).__name__}")
        if name != "proj_size" and v <= 0:
            raise ValueError(f"{name} must be greater than zero")
    if proj_size < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable "
                         "projections")
    if proj_size >= hidden_size:
        raise ValueError("proj_size has to be smaller than hidden_size")


def check_input_dtype(x: Tensor, weight: Tensor) -> None:
    """torch.nn.RNNBase.check_input's dtype rule and message."""
    if x.dtype != weight.dtype and not torch._C._is_any_autocast_enabled():
        raise ValueError(f"RNN input dtype ({x.dtype}) does not match weight dtype "
                         f"({weight.dtype}). Convert input: input.to({weight.dtype}), or "
                         f"convert model: model.to({x.dtype})")


class LSTM(KernelModule):
    """torch.nn.LSTM on fastlstm's CPU kernels, with the same constructor,
    parameters (names, shapes, order, init), forward and errors.
    `peephole=True` adds ``weight_ph_l{k}[_reverse]`` [3, hidden_size] (rows
    i, f, o) after them. `weights_dtype="bfloat16"` runs eager inference
    (no autograd) with W_ih and W_hh rounded to bfloat16, as fastlstm.LSTM.

    It mirrors torch.nn.LSTM rather than subclassing it: torch.compile graph
    breaks on every torch.nn.LSTM instance, subclasses included."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None,
                 peephole: bool = False, weights_dtype=None):
        super().__init__()
        check_rnn_config(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, peephole)
        if weights_dtype not in (None, "bfloat16"):
            raise ValueError(f"weights_dtype: expected None or 'bfloat16', got "
                             f"{weights_dtype!r}")
        self.mode = "LSTM"
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        self.peephole, self.weights_dtype = peephole, weights_dtype
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
                              ("bidirectional", False), ("peephole", False),
                              ("weights_dtype", None)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        return s

    def _layer_weights(self, k: int) -> list:
        return [getattr(self, n) for n in self._layer_names(k)]

    def _runs_here(self, x: Tensor) -> bool:
        ok = x.device.type == "cpu" and x.dtype in _DTYPES and all(
            p.device.type == "cpu" and p.dtype == x.dtype for p in self.parameters())
        if not ok and self.peephole:
            raise DTypeError(f"fastlstm.torch.LSTM: peepholes need CPU float32/float64 input "
                             f"and parameters of the same dtype, got {x.dtype} on {x.device}")
        return ok

    def forward(self, input, hx=None):  # noqa: A002 (torch's name)
        x, lengths, unbatched = self._time_major(input)
        if not self._runs_here(x):
            return self._torch_forward(input, hx)
        h0, c0 = self._initial_state(hx, x, unbatched)
        y, hn, cn = self._run(x, h0, c0, lengths)
        if isinstance(input, PackedSequence):
            order = input.sorted_indices
            if order is None:
                order = torch.arange(x.shape[1])
            # the new pack's batch_sizes (equal to the input's): pack and pad then pair up
            # in a trace, which the ONNX exporter needs
            p = pack_padded_sequence(y[:, order], lengths[order], enforce_sorted=True)
            return (PackedSequence(p.data, p.batch_sizes, input.sorted_indices,
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
        """Checked input as torch checks it -> x [T,B,I], lengths int64 [B] or
        None, unbatched."""
        packed = isinstance(input, PackedSequence)
        data = input.data if packed else input
        if not isinstance(data, Tensor):
            raise TypeError(f"input: expected a Tensor or PackedSequence, got "
                            f"{type(input).__name__}")
        if not packed and data.dim() not in (2, 3):
            raise ValueError(f"LSTM: Expected input to be 2D or 3D, got {data.dim()}D instead")
        check_input_dtype(data, self._flat_weights[0])
        if packed and data.dim() != 2:
            raise ShapeError(f"input must have 2 dimensions, got {data.dim()}")
        if data.shape[-1] != self.input_size:
            raise ShapeError(f"input.size(-1) must be equal to input_size. Expected "
                             f"{self.input_size}, got {data.shape[-1]}")
        if packed:
            x, lengths = pad_packed_sequence(input)  # batch in the caller's order
            return x, lengths.to(torch.int64), False
        if input.dim() == 2:
            x, unbatched = input.unsqueeze(1), True
        else:
            x, unbatched = (input.transpose(0, 1) if self.batch_first else input), False
        if x.shape[0] == 0:
            raise ShapeError("Expected sequence length to be larger than 0 in RNN")
        return x, None, unbatched

    def _initial_state(self, hx, x: Tensor, unbatched: bool):
        """(h_0, c_0) as [D*L,B,Ho], [D*L,B,H], checked as torch checks them."""
        L, D = self.num_layers, self._D
        B, H = x.shape[1], self.hidden_size
        Ho = self.proj_size or H
        if hx is None:
            return (x.new_zeros((D * L, B, Ho)), x.new_zeros((D * L, B, H)))
        if not isinstance(hx, (tuple, list)) or len(hx) != 2 \
                or not all(isinstance(t, Tensor) for t in hx):
            raise TypeError(f"hx: expected a tuple (h_0, c_0) of two Tensors, got "
                            f"{type(hx).__name__}")
        want = 2 if unbatched else 3
        if hx[0].dim() != want or hx[1].dim() != want:
            kind = "unbatched 2-D" if unbatched else "batched 3-D"
            raise ShapeError(f"For {kind} input, hx and cx should also be {want}-D but got "
                             f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors")
        h, c = (hx[0].unsqueeze(1), hx[1].unsqueeze(1)) if unbatched else hx
        for i, (t, shape) in enumerate(((h, (D * L, B, Ho)), (c, (D * L, B, H)))):
            if tuple(t.shape) != shape:
                raise ShapeError(f"Expected hidden[{i}] size {shape}, got {list(t.shape)}")
            if t.dtype != x.dtype or t.device != x.device:
                raise DTypeError(f"hx[{i}]: expected {x.dtype} on {x.device} (the input's), "
                                 f"got {t.dtype} on {t.device}")
        return h, c

    def _run(self, x, h0, c0, lengths):
        L, D = self.num_layers, self._D
        weights = [self._layer_weights(k) for k in range(L)]
        grad = torch.is_grad_enabled() and (
            x.requires_grad or h0.requires_grad or c0.requires_grad
            or any(w.requires_grad for ws in weights for w in ws))
        cfg = (self.hidden_size, self.proj_size, self.bidirectional, self.bias, self.peephole)
        path = route(grad, x.shape[1])
        packed = self._packed(weights, x.dtype) if path == "infer" else None
        # a traced graph keeps the op's flag: the module's mode, not this call's grad
        # mode (jit.trace's check reruns under no_grad); eval-mode traces then
        # raise on backward rather than save workspaces
        save = self.training if torch.jit.is_tracing() else grad
        hns, cns, inp = [], [], x
        for k in range(L):
            sl = slice(k * D, (k + 1) * D)
            if path == "autodiff":
                y, hn, cn = _autodiff.lstm_layer(inp, weights[k], h0[sl], c0[sl], lengths, *cfg)
            elif path == "ops":
                y, hn, cn, _ = torch.ops.fastlstm.lstm_layer(inp, weights[k], h0[sl], c0[sl],
                                                             lengths, *cfg, save)
            elif path == "eager":
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
        """Packed inference weights (see `cached_pack`)."""
        flat = [w for ws in weights for w in ws]
        params = {n: w for k, ws in enumerate(weights) for n, w in zip(self._layer_names(k), ws)}
        return cached_pack(self, flat, dtype, lambda isa: functional.pack(
            {n: _np(w) for n, w in params.items()}, input_size=self.input_size,
            hidden_size=self.hidden_size, num_layers=self.num_layers, proj_size=self.proj_size,
            bidirectional=self.bidirectional, bias=self.bias, peephole=self.peephole, isa=isa,
            weights_dtype=self.weights_dtype))
