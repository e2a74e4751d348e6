"""`fastlstm.torch.LSTMCell` and `GRUCell`: torch.nn.LSTMCell's and
torch.nn.GRUCell's interfaces on fastlstm's kernels, one step class over both
cells (`_StepCell`); the subclasses keep torch's forward (its argument forms
and errors) per cell.

A step is the layer op with T=1: x [B,I] -> [1,B,I], h (, c) [B,H] -> [1,B,H],
on the paths of _Recurrent._run. Eager inference calls the kernels' streaming entry
(`_core.cell_forward_*`) on packed weights kept until a weight is replaced or
its version counter moves, as fastlstm.LSTMCell does; a no_grad call with an
(h, c) tuple (LSTM) or an h tensor (GRU) and current packed weights goes there
straight (`_stream`).

Where the kernels cannot give torch's answer, torch's own cell op runs the
step (its results and its errors): other devices and dtypes, zero sizes,
float32 under CPU autocast (torch computes the gate products in autocast's
lower precision) and, under autograd, parameters that are inference tensors
(built under torch.inference_mode: autograd cannot save them, and torch's op
saves only what its gradient needs). Inference tensors carry no version
counter, so their packed weights are rebuilt on each call, never cached.
"""
import math

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from .. import _core, _spec, functional
from .._checks import DTypeError, ShapeError
from .._runtime import resolve_isa
from . import _autodiff
from ._ops import (_DTYPES, KernelModule, _EagerLayer, _np, _transforms_active, cached_pack,
                   call_layer, inference_tensors, require_tensor, route)

__all__ = ["LSTMCell", "GRUCell"]

_STEP = {torch.float32: _core.cell_forward_f32, torch.float64: _core.cell_forward_f64}
_CONTIGUOUS = torch.contiguous_format


def _view(t: Tensor):
    """`_np` for the streaming step: a C-contiguous NumPy view of a CPU tensor
    (a copy only when it is not contiguous), with no detach unless needed."""
    if t.requires_grad:
        t = t.detach()
    return t.numpy() if t.is_contiguous() else t.contiguous().numpy()


def _needs_grad(x: Tensor, states: list, weights) -> bool:
    """The step is recorded by autograd: grad mode, and a tensor that requires grad."""
    return torch.is_grad_enabled() and (
        x.requires_grad or any(s.requires_grad for s in states)
        or any(w.requires_grad for w in weights))


def _kernel_step(packed, x: Tensor, states: list, outs: list) -> list:
    """x [B,I] or [I]; states [h (, c)] and the contiguous outputs outs, [B,H] or [H]."""
    h, c = (states + [None])[:2]
    h1, c1 = (outs + [None])[:2]
    _STEP[x.dtype](packed.layers[0], _view(x), _view(h), None if c is None else _view(c),
                   h1.numpy(), None if c1 is None else c1.numpy(), torch.get_num_threads(),
                   packed.isa)
    return outs


class _StepCell(KernelModule):
    """torch.nn.RNNCellBase's interface for one of fastlstm's cells (`_CELL`):
    parameters from the cell spec, a step on the layer paths, the streaming
    kernel entry for no_grad steps, torch's own cell op elsewhere."""

    _CELL = "lstm"
    _TORCH_NAME = "LSTMCell"

    def _setup(self, input_size, hidden_size, bias, device, dtype, peephole, weights_dtype):
        if not isinstance(peephole, bool):
            raise TypeError(f"peephole should be of type bool, got: {type(peephole).__name__}")
        if weights_dtype not in (None, "bfloat16"):
            raise ValueError(f"weights_dtype: expected None or 'bfloat16', got "
                             f"{weights_dtype!r}")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.peephole, self.weights_dtype = peephole, weights_dtype
        self._fl_cache = None
        factory = {"device": device, "dtype": dtype}
        G = _spec.SPECS[self._CELL]["gates"]
        # torch's order and factory calls, so bad sizes raise torch's errors
        self.weight_ih = torch.nn.Parameter(torch.empty((G * hidden_size, input_size), **factory))
        self.weight_hh = torch.nn.Parameter(torch.empty((G * hidden_size, hidden_size),
                                                        **factory))
        if bias:
            self.bias_ih = torch.nn.Parameter(torch.empty(G * hidden_size, **factory))
            self.bias_hh = torch.nn.Parameter(torch.empty(G * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        if peephole:
            if input_size == 0 or hidden_size == 0:
                raise ValueError("peephole=True needs input_size and hidden_size > 0")
            self.weight_ph = torch.nn.Parameter(torch.empty((3, hidden_size), **factory))
        # the op's `weights`: the cell spec's order (w_ih, w_hh, then b_ih, b_hh, w_ph)
        self._weight_names = [p["name"] for p in _spec.direction_params(
            self._CELL, bool(bias), False, peephole)]
        self.reset_parameters()

    @property
    def _n_states(self) -> int:
        return _spec.SPECS[self._CELL]["states"]

    def reset_parameters(self) -> None:
        """torch's init: every parameter U(-1/sqrt(H), 1/sqrt(H)), in order."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for p in self.parameters():
            torch.nn.init.uniform_(p, -stdv, stdv)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.peephole:
            s += ", peephole=True"
        if self.weights_dtype is not None:
            s += f", weights_dtype={self.weights_dtype!r}"
        return s

    def _weights(self) -> list:
        return [getattr(self, n) for n in self._weight_names]

    def _runs_here(self, x: Tensor, states: list, weights, batched: bool) -> bool:
        """The kernels take the call: CPU float32/float64 everywhere, one dtype,
        states of rank 2 once batched, sizes > 0. Else torch's op runs it
        (its result or its error), or, for peepholes, which it lacks, we raise.
        Torch's op also takes float32 under CPU autocast and inference-tensor
        parameters under autograd (see the module's doc); a peephole cell
        there computes in float32, and (`_step`) in `_autodiff`'s torch ops."""
        dt = x.dtype
        ok = (dt in _DTYPES and x.is_cpu
              and all(isinstance(s, Tensor) and s.dtype == dt and s.is_cpu for s in states)
              and all(w.dtype == dt and w.is_cpu for w in weights)
              and self.input_size > 0 and self.hidden_size > 0)
        if ok and not self.peephole and (
                (dt is torch.float32 and torch.is_autocast_enabled("cpu"))
                or (_needs_grad(x, states, weights) and inference_tensors(weights))):
            return False
        if not ok and self.peephole:
            raise DTypeError(f"fastlstm.torch.{self}: peepholes need CPU "
                             f"float32/float64 input, hx and parameters of one dtype, got "
                             f"input {x.dtype} on {x.device}")
        if ok and any(s.dim() != 2 for s in states):
            if self.peephole:
                extra = 0 if batched else 1  # the unsqueeze of an unbatched call
                ranks = ", ".join(f"{s.dim() - extra}-D" for s in states)
                raise ShapeError(f"{self._TORCH_NAME}: for "
                                 f"{'batched 2-D' if batched else 'unbatched 1-D'} input, "
                                 f"hx[0] and hx[1] should be {2 - extra}-D, got ({ranks})")
            return False
        return ok

    def _check_sizes(self, x: Tensor, states: list) -> None:
        """torch's rnn cell size checks, in its order and words."""
        if x.shape[1] != self.input_size:
            raise ShapeError(f"input has inconsistent input_size: got {x.shape[1]} expected "
                             f"{self.input_size}")
        for i, t in enumerate(states):
            if x.shape[0] != t.shape[0]:
                raise ShapeError(f"Input batch size {x.shape[0]} doesn't match hidden{i} batch "
                                 f"size {t.shape[0]}")
            if t.shape[1] != self.hidden_size:
                raise ShapeError(f"hidden{i} has inconsistent hidden_size: got {t.shape[1]}, "
                                 f"expected {self.hidden_size}")

    def _step(self, x: Tensor, states: list, weights) -> list:
        """One step on checked x [B,I], states [h (, c)] [B,H] -> the new
        states, on the path fastlstm.torch's layer would take for it."""
        grad = _needs_grad(x, states, weights)
        path = route(grad, x.shape[0])
        if path == "infer":
            return self._infer(x, states, weights)
        if path == "eager" and inference_tensors(weights):
            path = "autodiff"  # (peepholes) autograd cannot save inference tensors
        cell, cfg = self._CELL, (self.hidden_size, 0, False, bool(self.bias), self.peephole)
        x3, s3 = x.unsqueeze(0), [s.unsqueeze(0) for s in states]
        if path == "autodiff":
            _, sn = _autodiff.layer(cell, x3, weights, s3, None, *cfg)
        elif path == "ops":
            save = self.training if torch.jit.is_tracing() else grad
            _, sn, _ = call_layer(cell, x3, weights, s3, None, cfg, save)
        else:
            _, *sn = _EagerLayer.apply(x3, None, (cell, *cfg), *s3, *weights)
        return [s[0] for s in sn]

    def _stream(self, x, states: list):
        """The streaming step: eager inference on x [B,I] or [I] and states
        shaped like the output, with the packed weights cached and still
        current. Only the checks that make the kernel call right (each torch
        call also costs cache lines that the weights need); None sends the
        call down the general path, which checks everything."""
        cache = self._fl_cache
        if (cache is None or torch.compiler.is_compiling() or torch.jit.is_tracing()
                or fwAD._current_level >= 0 or _transforms_active()
                or torch.is_autocast_enabled("cpu")):
            return None
        key, weights, packed = cache
        if type(x) is not Tensor or not all(type(s) is Tensor for s in states):
            return None  # (subclasses: the general path)
        dt = x.dtype
        if not (dt is key[1] and x.is_cpu and all(s.dtype is dt and s.is_cpu for s in states)):
            return None
        shape = x.shape
        if len(shape) == 2 and shape[0] > 0 and shape[1] == self.input_size:
            out = (shape[0], self.hidden_size)
        elif len(shape) == 1 and shape[0] == self.input_size:
            out = (self.hidden_size,)
        else:
            return None
        if any(s.shape != out for s in states):
            return None
        params = self._parameters  # (where functional_call puts its tensors too)
        for name, w, (ptr, version) in zip(self._weight_names, weights, key[2]):
            if params.get(name) is not w or w._version != version or w.data_ptr() != ptr:
                return None
        if key[0] != resolve_isa():
            return None
        h = states[0]
        return _kernel_step(packed, x, states,
                            [torch.empty_like(h, memory_format=_CONTIGUOUS) for _ in states])

    def _infer(self, x: Tensor, states: list, weights) -> list:
        """Eager inference: the kernels' cell entry on cached packed weights."""
        shape = (x.shape[0], self.hidden_size)
        return _kernel_step(self._packed(weights, x.dtype), x, states,
                            [torch.empty(shape, dtype=x.dtype) for _ in states])

    def _packed(self, weights, dtype):
        """Packed inference weights (see `cached_pack`)."""
        names = _spec.layer_weight_names(self._CELL, 0, False, bool(self.bias), False,
                                         self.peephole)

        def build(isa):
            return functional.pack(
                {n: _np(w) for n, w in zip(names, weights)}, input_size=self.input_size,
                hidden_size=self.hidden_size, bias=bool(self.bias), peephole=self.peephole,
                isa=isa, weights_dtype=self.weights_dtype, cell=self._CELL)

        return cached_pack(self, weights, dtype, build)


class LSTMCell(_StepCell):
    """``torch.nn.LSTMCell`` on fastlstm's CPU kernels.

    The same constructor, parameters (names, shapes, order, init),
    ``state_dict``, forward and errors as ``torch.nn.LSTMCell``, plus
    peepholes and bfloat16 weights. Like ``torch.nn.LSTMCell`` it accepts
    sizes of zero (those cells run torch's own op) and takes ``bias`` by
    truth value.

    Parameters
    ----------
    input_size : int
        I, the features of the input.
    hidden_size : int
        H, the features of h and c.
    bias : bool, default True
        Whether the cell has ``bias_ih`` and ``bias_hh`` [4H] (by truth
        value).
    device, dtype : optional
        Where and in which dtype the parameters are made, as torch's.
    peephole : bool, default False
        Add ``weight_ph`` [3, hidden_size] (rows i, f, o) after torch's
        parameters; needs ``input_size`` and ``hidden_size`` > 0.
    weights_dtype : {None, "bfloat16"}, default None
        ``"bfloat16"``: eager inference (no autograd) rounds W_ih and W_hh to
        bfloat16; float32 parameters only.

    Raises
    ------
    TypeError
        ``peephole`` is not a bool.
    ValueError
        ``weights_dtype`` is neither None nor ``"bfloat16"``, or
        ``peephole=True`` with a size of zero.

    Notes
    -----
    Sizes go to ``torch.empty`` as in ``torch.nn.LSTMCell``, so bad ones
    raise torch's errors. Training, ``torch.compile``, ``torch.jit.trace``,
    ``vmap``, ``jvp`` and double backward run the layer's paths with T=1;
    under ``torch.no_grad()`` a step with an ``(h, c)`` tuple goes straight
    to the kernels' streaming entry on cached packed weights.

    Examples
    --------
    >>> import torch, fastlstm.torch
    >>> cell = fastlstm.torch.LSTMCell(8, 16)
    >>> h, c = cell(torch.randn(4, 8))
    >>> with torch.no_grad():
    ...     h, c = cell(torch.randn(4, 8), (h, c))
    >>> h.shape
    torch.Size([4, 16])
    """

    _CELL = "lstm"
    _TORCH_NAME = "LSTMCell"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None, peephole: bool = False, weights_dtype=None):
        super().__init__()
        self._setup(input_size, hidden_size, bias, device, dtype, peephole, weights_dtype)

    def forward(self, input: Tensor, hx=None):  # noqa: A002 (torch's name)
        """One LSTM step, as ``torch.nn.LSTMCell``.

        Parameters
        ----------
        input : Tensor
            [B,I], or [I] unbatched.
        hx : tuple of Tensor or None, optional
            ``(h_0, c_0)``, each [B,H] ([H] unbatched); None (default) gives
            zeros.

        Returns
        -------
        h_1, c_1 : tuple of Tensor
            The new states, each [B,H] ([H] unbatched), the input's dtype.

        Raises
        ------
        TypeError
            ``input`` is not a Tensor (a NumPy array is told how to convert
            it); with peepholes, ``hx`` is not a tuple of two Tensors.
        ValueError
            ``input`` or an item of ``hx`` is not 1-D or 2-D.
        fastlstm.ShapeError
            (a ValueError and a RuntimeError) ``input.size(1)`` differs from
            ``input_size``, a state's batch from the input's or its size(1)
            from ``hidden_size``; with peepholes, a state's rank does not
            match the input's.
        fastlstm.DTypeError
            (a TypeError and a RuntimeError) with peepholes, input, ``hx`` and
            parameters are not CPU float32/float64 of one dtype; or
            ``weights_dtype="bfloat16"`` meets parameters that are not
            float32, in eager inference.
        RuntimeError
            torch's own errors where its cell op runs the step (other
            devices, dtypes or dtype mismatches, state ranks, an ``hx`` that
            is not two states).
        """
        require_tensor(input, "input", self)
        if type(hx) is tuple and len(hx) == 2 and not torch.is_grad_enabled():
            out = self._stream(input, list(hx))
            if out is not None:
                return tuple(out)
        # torch.nn.LSTMCell.forward's checks, in its order and words
        if input.dim() not in (1, 2):
            raise ValueError(f"LSTMCell: Expected input to be 1D or 2D, got {input.dim()}D "
                             f"instead")
        if hx is not None:
            for idx, value in enumerate(hx):
                if value.dim() not in (1, 2):
                    raise ValueError(f"LSTMCell: Expected hx[{idx}] to be 1D or 2D, got "
                                     f"{value.dim()}D instead")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        if hx is None:
            h = c = torch.zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
        elif not batched:
            h, c = hx[0].unsqueeze(0), hx[1].unsqueeze(0)  # (torch ignores hx[2:] here)
        elif isinstance(hx, (tuple, list)) and len(hx) == 2:
            h, c = hx
        else:
            return self._torch_step(x, hx, batched)  # torch's TypeError or RuntimeError
        weights = self._weights()
        if not self._runs_here(x, [h, c], weights, batched):
            return self._torch_step(x, (h, c), batched)
        self._check_sizes(x, [h, c])
        h1, c1 = self._step(x, [h, c], weights)
        return (h1, c1) if batched else (h1.squeeze(0), c1.squeeze(0))

    def _torch_step(self, x: Tensor, hx, batched: bool):
        """torch's own cell op, for devices, dtypes and arguments the kernels do
        not take: its results and its errors."""
        if self.peephole:
            raise TypeError(f"hx: expected a tuple (h_0, c_0) of two Tensors, got "
                            f"{type(hx).__name__}")
        h1, c1 = torch._VF.lstm_cell(x, hx, self.weight_ih, self.weight_hh, self.bias_ih,
                                     self.bias_hh)
        return (h1, c1) if batched else (h1.squeeze(0), c1.squeeze(0))


class GRUCell(_StepCell):
    """``torch.nn.GRUCell`` on fastlstm's CPU kernels.

    The same constructor, parameters (names, shapes, order, init: gates r,
    z, n), ``state_dict``, forward and errors as ``torch.nn.GRUCell``:
    ``h_1 = cell(input, hx=None)``, plus bfloat16 weights. Like
    ``torch.nn.GRUCell`` it accepts sizes of zero (those cells run torch's
    own op) and takes ``bias`` by truth value.

    Parameters
    ----------
    input_size : int
        I, the features of the input.
    hidden_size : int
        H, the features of h.
    bias : bool, default True
        Whether the cell has ``bias_ih`` and ``bias_hh`` [3H] (by truth
        value).
    device, dtype : optional
        Where and in which dtype the parameters are made, as torch's.
    weights_dtype : {None, "bfloat16"}, default None
        ``"bfloat16"``: eager inference (no autograd) rounds W_ih and W_hh to
        bfloat16; float32 parameters only.

    Raises
    ------
    ValueError
        ``weights_dtype`` is neither None nor ``"bfloat16"``.

    Notes
    -----
    Sizes go to ``torch.empty`` as in ``torch.nn.GRUCell``, so bad ones raise
    torch's errors. A step runs the layer's paths with T=1
    (``gru_layer``); under ``torch.no_grad()`` a step with an ``h`` tensor
    goes straight to the kernels' streaming entry on cached packed weights.

    Examples
    --------
    >>> import torch, fastlstm.torch
    >>> cell = fastlstm.torch.GRUCell(8, 16)
    >>> h = cell(torch.randn(4, 8))
    >>> h = cell(torch.randn(4, 8), h)
    >>> h.shape
    torch.Size([4, 16])
    """

    _CELL = "gru"
    _TORCH_NAME = "GRUCell"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None, weights_dtype=None):
        super().__init__()
        self._setup(input_size, hidden_size, bias, device, dtype, False, weights_dtype)

    def forward(self, input: Tensor, hx=None):  # noqa: A002 (torch's name)
        """One GRU step, as ``torch.nn.GRUCell``.

        Parameters
        ----------
        input : Tensor
            [B,I], or [I] unbatched.
        hx : Tensor or None, optional
            h_0 [B,H] ([H] unbatched); None (default) gives zeros.

        Returns
        -------
        h_1 : Tensor
            The new state, [B,H] ([H] unbatched), the input's dtype.

        Raises
        ------
        TypeError
            ``input`` is not a Tensor (a NumPy array is told how to convert
            it).
        ValueError
            ``input`` or ``hx`` is not 1-D or 2-D.
        fastlstm.ShapeError
            (a ValueError and a RuntimeError) ``input.size(1)`` differs from
            ``input_size``, h_0's batch from the input's or its size(1) from
            ``hidden_size``.
        fastlstm.DTypeError
            (a TypeError and a RuntimeError) ``weights_dtype="bfloat16"``
            meets parameters that are not float32, in eager inference.
        RuntimeError
            torch's own errors where its cell op runs the step (other
            devices, dtypes or dtype mismatches, state ranks).
        """
        require_tensor(input, "input", self)
        if type(hx) is Tensor and not torch.is_grad_enabled():
            out = self._stream(input, [hx])
            if out is not None:
                return out[0]
        # torch.nn.GRUCell.forward's checks, in its order and words
        if input.dim() not in (1, 2):
            raise ValueError(f"GRUCell: Expected input to be 1D or 2D, got {input.dim()}D "
                             f"instead")
        if hx is not None and hx.dim() not in (1, 2):
            raise ValueError(f"GRUCell: Expected hidden to be 1D or 2D, got {hx.dim()}D "
                             f"instead")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        if hx is None:
            h = torch.zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
        else:
            h = hx if batched else hx.unsqueeze(0)
        weights = self._weights()
        if not self._runs_here(x, [h], weights, batched):
            return self._torch_step(x, h, batched)
        self._check_sizes(x, [h])
        h1, = self._step(x, [h], weights)
        return h1 if batched else h1.squeeze(0)

    def _torch_step(self, x: Tensor, h, batched: bool):
        """torch's own cell op: its results and its errors."""
        h1 = torch._VF.gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih,
                                self.bias_hh)
        return h1 if batched else h1.squeeze(0)
