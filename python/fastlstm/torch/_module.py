"""`fastlstm.torch.LSTM`, `GRU` and `LayerNormLSTM`: torch.nn.LSTM's and
torch.nn.GRU's interfaces on fastlstm's kernels, one module class over every
cell (`_Recurrent`); the subclasses add only their constructor and the form
of their state (a tuple (h, c) or a tensor h)."""
import math
import numbers
import warnings

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .. import _checks, _spec, functional
from .. import cuda as _backend
from .._checks import DTypeError, ShapeError
from . import _autodiff, _cuda, _onnx
from ._ops import (_DTYPES, KernelModule, _EagerLayer, _infer_layer, _np, _transforms_active,
                   cached_pack, call_layer, inference_tensors, require_tensor, route)

__all__ = ["LSTM", "GRU", "LayerNormLSTM"]


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


class _Recurrent(KernelModule):
    """torch.nn.RNNBase's interface for one of fastlstm's cells (`_CELL`):
    parameters (names, shapes, order, init) from the cell spec, forward on the
    kernels, elsewhere torch's own op (or, for a cell torch has none of,
    `_autodiff`'s torch ops). Subclasses set `_CELL` and `mode` and say how a
    state is given and returned."""

    _CELL = "lstm"

    def _setup(self, mode, input_size, hidden_size, num_layers, bias, batch_first, dropout,
               bidirectional, proj_size, device, dtype, peephole, weights_dtype, zoneout=0.0,
               cell_clip=None):
        check_rnn_config(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, peephole)
        if weights_dtype not in (None, "bfloat16"):
            raise ValueError(f"weights_dtype: expected None or 'bfloat16', got "
                             f"{weights_dtype!r}")
        self.zoneout, self.cell_clip = _checks.zoneout_config(zoneout, cell_clip)
        self.zoneout_masks = []
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        self.peephole, self.weights_dtype = peephole, weights_dtype
        self._fl_cache = None
        factory = {"device": device, "dtype": dtype}
        shapes = functional.param_shapes(input_size, hidden_size, num_layers, self.bias,
                                         self.bidirectional, proj_size, self.peephole,
                                         cell=self._CELL)
        for name, shape in shapes.items():  # torch's order, peepholes last
            self.register_parameter(name, torch.nn.Parameter(torch.empty(shape, **factory)))
        self._flat_weights_names = [n for n in shapes if not n.startswith("weight_ph")]
        per_dir = len(_spec.direction_params(self._CELL, self.bias, proj_size > 0,
                                             self.peephole))
        self._all_weights = [[n for n in self._layer_names(k)[d * per_dir:(d + 1) * per_dir]
                              if not n.startswith("weight_ph")]
                             for k in range(num_layers) for d in range(self._D)]
        self.reset_parameters()

    @property
    def _D(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _cfg(self) -> tuple:
        """The layer ops' configuration (see fastlstm.torch._ops)."""
        return (self.hidden_size, self.proj_size, self.bidirectional, self.bias, self.peephole)

    def _layer_names(self, k: int) -> list:
        """Layer k's parameter names in the op's `weights` order."""
        return _spec.layer_weight_names(self._CELL, k, self.bidirectional, self.bias,
                                        self.proj_size > 0, self.peephole)

    def reset_parameters(self) -> None:
        """The cell spec's init, as torch's: U(-1/sqrt(H), 1/sqrt(H)) in
        order (every LSTM and GRU parameter), ones or zeros (the layer-norm
        gains and bias, as torch.nn.LayerNorm)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        init = {p["name"]: p["init"] for p in _spec.SPECS[self._CELL]["params"]}
        for name, p in self.named_parameters():
            how = init[_spec.stem(name)]
            if how == "uniform":
                torch.nn.init.uniform_(p, -bound, bound)
            elif how == "ones":
                torch.nn.init.ones_(p)
            else:
                torch.nn.init.zeros_(p)

    @property
    def _flat_weights(self) -> list:
        return [getattr(self, n) for n in self._flat_weights_names]

    @property
    def all_weights(self) -> list:
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """Do nothing, as ``torch.nn.LSTM.flatten_parameters`` does on the CPU.

        The kernels pack the weights themselves (see ``params_changed``).
        """

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        for name, default in (("proj_size", 0), ("num_layers", 1), ("bias", True),
                              ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("peephole", False),
                              ("weights_dtype", None), ("zoneout", 0.0), ("cell_clip", None)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        return s

    def _layer_weights(self, k: int) -> list:
        return [getattr(self, n) for n in self._layer_names(k)]

    def _path(self, x: Tensor):
        """Who runs the call: None (the kernels, on the path `route` picks),
        'torch' (torch's op: its result or its error) or 'autodiff' (the maths
        in torch ops, for a cell torch has no op of). The kernels take CPU
        float32/float64 input and parameters of one dtype, except float32
        under CPU autocast (whose lower-precision products torch computes) and
        inference-tensor parameters (torch.inference_mode) under autograd
        (which the kernels' backward cannot save). Peepholes, zoneout and the
        cell clip, which torch's op lacks, stay on the kernels (in float32
        under autocast) or raise where the kernels cannot run."""
        params = list(self.parameters())
        extras = [w for w, on in (("peepholes", self.peephole), ("zoneout", self.zoneout),
                                  ("cell_clip", self.cell_clip is not None)) if on]
        has_op = _autodiff.has_torch_op(self._CELL)
        ok = x.device.type == "cpu" and x.dtype in _DTYPES and all(
            p.device.type == "cpu" and p.dtype == x.dtype for p in params)
        if not ok and x.is_cuda and self._CELL in _cuda.CELLS:
            ok = _cuda.usable(x, params)
        if not ok:
            if has_op and extras:
                why = ""
                if self._CELL in _cuda.CELLS:
                    reason = _backend.unavailable_reason()
                    why = (" or on one CUDA device" if reason is None else
                           f" (or on one CUDA device with fastlstm's CUDA backend, which "
                           f"cannot run here: {reason})")
                raise DTypeError(f"fastlstm.torch.{self}: {' and '.join(extras)} "
                                 f"need float32/float64 input and parameters of the same "
                                 f"dtype on the CPU{why}, got {x.dtype} on {x.device}")
            return "torch" if has_op else "autodiff"
        autocast = x.dtype is torch.float32 and torch.is_autocast_enabled(x.device.type)
        saved_inference = torch.is_grad_enabled() and inference_tensors(params) and (
            x.requires_grad or any(p.requires_grad for p in params))
        if autocast and not extras:
            return "torch" if has_op else "autodiff"
        if saved_inference:
            return "torch" if has_op and not extras else "autodiff"
        return None

    def __getstate__(self):
        state = super().__getstate__()
        state["zoneout_masks"] = []  # the last forward's draws are not part of the model
        return state

    def __setstate__(self, state):
        # pickled before zoneout and cell_clip existed
        state.setdefault("zoneout", 0.0)
        state.setdefault("cell_clip", None)
        state.setdefault("zoneout_masks", [])
        super().__setstate__(state)

    def _layer_zoneout(self, x: Tensor) -> list:
        """Per layer, the zoneout of its call: (mask, zoneout, cell_clip) (see
        fastlstm.torch._ops.NO_ZONEOUT). In training each layer gets a fresh
        keep mask [T,B,D*Ho] ~ Bernoulli(zoneout) from torch's default
        generator; in eval() none, and the kernels mix with the constant p."""
        clip = self.cell_clip or 0.0
        if not (self.zoneout > 0.0 and self.training):
            return [(None, self.zoneout, clip)] * self.num_layers
        shape = (x.shape[0], x.shape[1], self._D * (self.proj_size or self.hidden_size))
        return [((torch.rand(shape, dtype=x.dtype, device=x.device) < self.zoneout).to(x.dtype),
                 self.zoneout, clip) for _ in range(self.num_layers)]

    # how a state is given and returned: a tuple (h, c) (LSTM) or a tensor h (GRU)
    def _states_out(self, states: list):
        raise NotImplementedError

    def _states_in(self, hx, x: Tensor, unbatched: bool) -> list:
        raise NotImplementedError

    def forward(self, input, hx=None):  # noqa: A002 (torch's name)
        """Run the layers over a sequence, as ``torch.nn.LSTM`` / ``torch.nn.GRU``.

        Below, L = ``num_layers``, D = 2 if ``bidirectional`` else 1,
        H = ``hidden_size`` and Ho = ``proj_size`` if it is > 0, else H.

        Parameters
        ----------
        input : Tensor or PackedSequence
            [T,B,I] ([B,T,I] with ``batch_first``), [T,I] unbatched, or a
            ``PackedSequence`` with [sum(lengths), I] data. Its dtype must be
            the parameters' (outside autocast).
        hx : tuple of Tensor, Tensor or None, optional
            The initial states; None (default) gives zeros. ``LSTM`` and
            ``LayerNormLSTM``: a tuple ``(h_0, c_0)``, h_0 [D*L,B,Ho] and c_0
            [D*L,B,H]; ``GRU``: the Tensor h_0 [D*L,B,H]. Unbatched input
            drops the B axis; ``batch_first`` does not apply to them. Same
            dtype and device as the input; with a ``PackedSequence``, rows in
            the caller's batch order.

        Returns
        -------
        output : Tensor or PackedSequence
            The last layer's h at every step, directions concatenated:
            [T,B,D*Ho] ([B,T,D*Ho] with ``batch_first``, [T,D*Ho]
            unbatched). A ``PackedSequence`` input gives one with the same
            ``batch_sizes``, ``sorted_indices`` and ``unsorted_indices``.
        state : tuple of Tensor or Tensor
            The states after each row's last step, layer by layer (row
            ``k*D + d`` for layer k, direction d): ``(h_n, c_n)`` for
            ``LSTM`` and ``LayerNormLSTM``, h_n [D*L,B,Ho] and c_n [D*L,B,H]
            (the layer-norm LSTM's c_n is the un-normalised c); ``h_n``
            [D*L,B,H] for ``GRU``. Unbatched input drops the B axis.

        Raises
        ------
        TypeError
            ``input`` is not a Tensor or PackedSequence (a NumPy array is
            told how to convert it), or ``hx`` is not the class's state form:
            a tuple or list of two Tensors (LSTMs), a Tensor (GRU).
        ValueError
            ``input`` is not 2-D or 3-D, or its dtype differs from the
            parameters' (torch's message), outside autocast.
        fastlstm.ShapeError
            (a ValueError and a RuntimeError, as torch raises RuntimeError)
            ``input.size(-1)`` differs from ``input_size``, the sequence
            length is 0, a ``PackedSequence``'s data is not 2-D, or a state
            has the wrong rank or shape.
        fastlstm.DTypeError
            (a TypeError and a RuntimeError) a state's dtype or device differs
            from the input's; peepholes, zoneout or a cell clip meet input or
            parameters that are not CPU float32/float64 of one dtype (torch's
            op, which would run them, has none of those); or
            ``weights_dtype="bfloat16"`` meets parameters that are not
            float32, in eager inference.
        RuntimeError
            A ``LayerNormLSTM`` runs under ONNX export (ONNX has no
            layer-norm LSTM op).

        Notes
        -----
        CUDA float32/float64 calls of the LSTM and GRU run the CUDA
        backend's kernels through the custom ops where
        ``fastlstm.cuda.is_available()``. CPU float32/float64 calls run
        fastlstm's kernels (eager training
        through an autograd Function; eager inference on cached packed
        weights; ``torch.compile``, ``torch.export``, ``torch.jit.trace`` and
        ``torch.func.vmap`` through the custom ops). Other devices and dtypes
        run torch's own op (``torch.lstm`` / ``torch.gru``, with its results
        and errors), or, for the layer-norm LSTM, the same maths in torch
        ops. In training, ``dropout`` applies to every layer's output but the
        last, and with ``zoneout > 0`` each layer draws a keep mask
        [T,B,D*Ho], kept in ``zoneout_masks`` after an eager call.

        Examples
        --------
        >>> import torch, fastlstm.torch
        >>> from torch.nn.utils.rnn import pack_padded_sequence
        >>> lstm = fastlstm.torch.LSTM(8, 16, bidirectional=True)
        >>> packed = pack_padded_sequence(torch.randn(10, 3, 8), torch.tensor([10, 7, 4]))
        >>> out, (h_n, c_n) = lstm(packed)
        >>> out.data.shape, h_n.shape
        (torch.Size([21, 32]), torch.Size([2, 3, 16]))
        """
        x, lengths, unbatched = self._time_major(input)
        path = self._path(x)
        if path == "torch":
            return self._torch_forward(input, hx)
        y, finals = self._run(x, self._states_in(hx, x, unbatched), lengths, path)
        if isinstance(input, PackedSequence):
            order = input.sorted_indices
            if order is None:
                order = torch.arange(x.shape[1])
            # the new pack's batch_sizes (equal to the input's): pack and pad then pair up
            # in a trace, which the ONNX exporter needs
            lens = lengths[order if order.device == lengths.device else order.cpu()]
            p = pack_padded_sequence(y[:, order], lens, enforce_sorted=True)
            return (PackedSequence(p.data, p.batch_sizes, input.sorted_indices,
                                   input.unsorted_indices), self._states_out(finals))
        if unbatched:
            return y.squeeze(1), self._states_out([s.squeeze(1) for s in finals])
        return (y.transpose(0, 1) if self.batch_first else y), self._states_out(finals)

    def _torch_forward(self, input, hx):
        """torch's own op (torch.lstm / torch.gru), for devices and dtypes the
        kernels do not cover."""
        x = input.data if isinstance(input, PackedSequence) else input
        unbatched = not isinstance(input, PackedSequence) and x.dim() == 2
        B = x.shape[1 if not self.batch_first else 0] if x.dim() == 3 else 1
        if isinstance(input, PackedSequence):
            B = int(input.batch_sizes[0])
        shapes = [(self.proj_size or self.hidden_size), self.hidden_size][:len(self._STATES)]
        if hx is None:
            hs = [x.new_zeros((self._D * self.num_layers, B, n)) for n in shapes]
        else:
            hs = list(hx) if self._CELL == "lstm" else [hx]
            if unbatched:
                hs = [h.unsqueeze(1) for h in hs]
        op = torch.lstm if self._CELL == "lstm" else torch.gru

        def arg(states):  # torch.lstm takes the tuple (h, c), torch.gru the tensor h
            return tuple(states) if self._CELL == "lstm" else states[0]

        if isinstance(input, PackedSequence):
            if input.sorted_indices is not None:
                hs = [h.index_select(1, input.sorted_indices) for h in hs]
            y, *finals = op(input.data, input.batch_sizes, arg(hs), self._flat_weights,
                            self.bias, self.num_layers, self.dropout, self.training,
                            self.bidirectional)
            if input.unsorted_indices is not None:
                finals = [h.index_select(1, input.unsorted_indices) for h in finals]
            return (PackedSequence(y, input.batch_sizes, input.sorted_indices,
                                   input.unsorted_indices), self._states_out(finals))
        xb = x.unsqueeze(1) if unbatched else x
        y, *finals = op(xb, arg(hs), self._flat_weights, self.bias, self.num_layers,
                        self.dropout, self.training, self.bidirectional, self.batch_first)
        if unbatched:
            return y.squeeze(1), self._states_out([h.squeeze(1) for h in finals])
        return y, self._states_out(finals)

    def _time_major(self, input):
        """Checked input as torch checks it -> x [T,B,I], lengths int64 [B] or
        None, unbatched."""
        packed = isinstance(input, PackedSequence)
        data = input.data if packed else input
        require_tensor(data if packed else input, "input", self,
                       "a Tensor or PackedSequence")
        if not packed and data.dim() not in (2, 3):
            raise ValueError(f"{self.mode}: Expected input to be 2D or 3D, got {data.dim()}D "
                             f"instead")
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

    def _state_shapes(self, B: int) -> list:
        L, D, H = self.num_layers, self._D, self.hidden_size
        return [(D * L, B, self.proj_size or H), (D * L, B, H)][:len(self._STATES)]

    def _check_state_types(self, states: list, x: Tensor) -> None:
        for i, t in enumerate(states):
            if t.dtype != x.dtype or t.device != x.device:
                name = f"hx[{i}]" if len(states) > 1 else "hx"
                raise DTypeError(f"{name}: expected {x.dtype} on {x.device} (the input's), "
                                 f"got {t.dtype} on {t.device}")

    def _run(self, x, states, lengths, path=None):
        """The layers on x [T,B,I] and states [h0 (, c0)] -> y, [h_n (, c_n)].
        path: None (the one `route` picks) or 'autodiff'."""
        _onnx.check_exportable(self._CELL)
        L, D = self.num_layers, self._D
        weights = [self._layer_weights(k) for k in range(L)]
        grad = torch.is_grad_enabled() and (
            x.requires_grad or any(s.requires_grad for s in states)
            or any(w.requires_grad for ws in weights for w in ws))
        cell, cfg = self._CELL, self._cfg
        path = path or route(grad, x.shape[1])
        if x.is_cuda and path in ("eager", "infer"):
            if path == "infer" and self.weights_dtype is not None:
                raise DTypeError(f"weights_dtype={self.weights_dtype!r}: eager inference "
                                 f"with bfloat16 weights runs on the CPU kernels only (the "
                                 f"CUDA backend has no bfloat16 kernels)")
            path = "ops"  # the CUDA kernels: the ops (and their autograd rule), no packing
        packed = self._packed(weights, x.dtype) if path == "infer" else None
        # a traced graph keeps the op's flag: the module's mode, not this call's grad
        # mode (jit.trace's check reruns under no_grad); eval-mode traces then
        # raise on backward rather than save workspaces
        save = self.training if torch.jit.is_tracing() else grad
        zos = self._layer_zoneout(x)
        if (self.training and self.zoneout > 0.0 and not torch.compiler.is_compiling()
                and not torch.jit.is_tracing() and not _transforms_active()):
            self.zoneout_masks = [zo[0] for zo in zos]  # eager only: plain tensors
        finals, inp = [[] for _ in states], x
        for k in range(L):
            s0 = [s[k * D:(k + 1) * D] for s in states]
            zo = zos[k]
            if path == "autodiff":
                y, sn = _autodiff.layer(cell, inp, weights[k], s0, lengths, *cfg, *zo)
            elif path == "ops":
                y, sn, _ = call_layer(cell, inp, weights[k], s0, lengths, cfg, save, zo)
            elif path == "eager":
                y, *sn = _EagerLayer.apply(inp, lengths, (cell, *cfg, *zo), *s0, *weights[k])
            else:
                y, sn = _infer_layer(packed, k, inp, s0, lengths, zo)
            if k < L - 1 and self.dropout > 0 and self.training:
                y = torch.nn.functional.dropout(y, self.dropout, training=True)
            for f, s in zip(finals, sn):
                f.append(s)
            inp = y
        return inp, [torch.cat(f) for f in finals]

    def _packed(self, weights, dtype):
        """Packed inference weights (see `cached_pack`)."""
        flat = [w for ws in weights for w in ws]
        params = {n: w for k, ws in enumerate(weights) for n, w in zip(self._layer_names(k), ws)}
        return cached_pack(self, flat, dtype, lambda isa: functional.pack(
            {n: _np(w) for n, w in params.items()}, input_size=self.input_size,
            hidden_size=self.hidden_size, num_layers=self.num_layers, proj_size=self.proj_size,
            bidirectional=self.bidirectional, bias=self.bias, peephole=self.peephole, isa=isa,
            weights_dtype=self.weights_dtype, cell=self._CELL))


class _TwoStates(_Recurrent):
    """A cell with states (h, c) (the LSTMs): torch.nn.LSTM's hx = (h_0, c_0)
    and (h_n, c_n)."""

    _STATES = ("h", "c")

    def _states_out(self, states: list):
        return tuple(states)

    def _states_in(self, hx, x: Tensor, unbatched: bool) -> list:
        """[h_0, c_0] as [D*L,B,Ho], [D*L,B,H], checked as torch checks them."""
        shapes = self._state_shapes(x.shape[1])
        if hx is None:
            return [x.new_zeros(s) for s in shapes]
        if not isinstance(hx, (tuple, list)) or len(hx) != 2 \
                or not all(isinstance(t, Tensor) for t in hx):
            raise TypeError(f"hx: expected a tuple (h_0, c_0) of two Tensors, got "
                            f"{type(hx).__name__}")
        want = 2 if unbatched else 3
        if hx[0].dim() != want or hx[1].dim() != want:
            kind = "unbatched 2-D" if unbatched else "batched 3-D"
            raise ShapeError(f"For {kind} input, hx and cx should also be {want}-D but got "
                             f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors")
        states = [t.unsqueeze(1) for t in hx] if unbatched else list(hx)
        for i, (t, shape) in enumerate(zip(states, shapes)):
            if tuple(t.shape) != shape:
                raise ShapeError(f"Expected hidden[{i}] size {shape}, got {list(t.shape)}")
        self._check_state_types(states, x)
        return states


class LSTM(_TwoStates):
    """``torch.nn.LSTM`` on fastlstm's CPU kernels.

    The same constructor, parameters (names, shapes, order, init),
    ``state_dict``, forward and errors as ``torch.nn.LSTM``, plus peepholes,
    bfloat16 weights, zoneout and a cell clip. It mirrors ``torch.nn.LSTM``
    rather than subclassing it: torch.compile graph breaks on every
    ``torch.nn.LSTM`` instance, subclasses included.

    Parameters
    ----------
    input_size : int
        I, the features of each input step; > 0.
    hidden_size : int
        H, the features of the cell state (and of h without projection); > 0.
    num_layers : int, default 1
        Stacked layers; > 0.
    bias : bool, default True
        Whether each layer has ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
    batch_first : bool, default False
        Input and output as [B,T,*] instead of [T,B,*] (not the states).
    dropout : float, default 0.0
        In [0, 1]: the dropout on every layer's output but the last, in
        training (``torch.nn.functional.dropout``, torch's RNG).
    bidirectional : bool, default False
        Two directions per layer, their outputs concatenated.
    proj_size : int, default 0
        In [0, hidden_size): > 0 projects h to Ho = ``proj_size`` through
        ``weight_hr_l{k}`` [Ho,H]; 0, no projection (Ho = H).
    device, dtype : optional
        Where and in which dtype the parameters are made, as torch's.
    peephole : bool, default False
        Add ``weight_ph_l{k}[_reverse]`` [3, hidden_size] (rows i, f, o),
        registered after torch's parameters.
    weights_dtype : {None, "bfloat16"}, default None
        ``"bfloat16"``: eager inference (no autograd) rounds W_ih and W_hh to
        bfloat16, as ``fastlstm.LSTM``; it needs float32 parameters.
        Autograd calls and compiled or traced graphs use the float32 weights.
    zoneout : float, default 0.0
        p in [0, 1]: haste's zoneout on h, as ``fastlstm.LSTM``'s (Notes).
    cell_clip : float or None, default None
        c > 0 clips every gate pre-activation (peepholes added) to [-c, c],
        as ONNX LSTM's ``clip``; None, no clip.

    Attributes
    ----------
    zoneout_masks : list of Tensor
        After an eager training call with ``zoneout > 0``, the keep masks it
        drew: one [T,B,D*Ho] per layer (1 keeps h_{t-1}); else empty.

    Raises
    ------
    TypeError
        ``bias``, ``batch_first``, ``bidirectional`` or ``peephole`` is not a
        bool; ``input_size``, ``hidden_size``, ``num_layers`` or
        ``proj_size`` is not an int; ``zoneout`` or ``cell_clip`` is not a
        real number.
    ValueError
        ``dropout`` is not a number in [0, 1]; ``input_size``,
        ``hidden_size`` or ``num_layers`` is not > 0; ``proj_size`` is < 0
        or >= ``hidden_size``; ``weights_dtype`` is neither None nor
        ``"bfloat16"``; ``zoneout`` is outside [0, 1]; ``cell_clip`` is not
        > 0.

    Warns
    -----
    UserWarning
        ``dropout > 0`` with ``num_layers=1``, as torch.

    Notes
    -----
    Zoneout (``zoneout=p``): in training h_t = m*h_{t-1} + (1-m)*h~_t with
    a keep mask m ~ Bernoulli(p) per element and step, drawn from torch's
    default generator (one [T,B,D*Ho] mask per layer); in ``eval()``
    h_t = p*h_{t-1} + (1-p)*h~_t. Peepholes, zoneout and the cell clip,
    which torch's op lacks, need float32/float64 input and parameters on the
    CPU, or on a CUDA device with the CUDA backend (``fastlstm.cuda``).

    Examples
    --------
    >>> import torch, fastlstm.torch
    >>> lstm = fastlstm.torch.LSTM(8, 16, num_layers=2, batch_first=True)
    >>> y, (h_n, c_n) = lstm(torch.randn(4, 10, 8))
    >>> y.shape, h_n.shape, c_n.shape
    (torch.Size([4, 10, 16]), torch.Size([2, 4, 16]), torch.Size([2, 4, 16]))
    """

    _CELL = "lstm"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None,
                 peephole: bool = False, weights_dtype=None, zoneout: float = 0.0,
                 cell_clip=None):
        super().__init__()
        self._setup("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                    bidirectional, proj_size, device, dtype, peephole, weights_dtype, zoneout,
                    cell_clip)


class LayerNormLSTM(_TwoStates):
    """The layer-norm LSTM on fastlstm's CPU kernels, with ``torch.nn.LSTM``'s interface.

    The layer-norm LSTM of Ba et al. 2016, as haste's LayerNormLSTM and
    ``fastlstm.LayerNormLSTM``, with ``torch.nn.LSTM``'s constructor,
    forward and errors, less what the cell has not: a projection,
    peepholes, a cell clip and bfloat16 weights.

    Parameters
    ----------
    input_size : int
        I, the features of each input step; > 0.
    hidden_size : int
        H, the features of h and c; > 0.
    num_layers : int, default 1
        Stacked layers; > 0.
    bias : bool, default True
        Whether each layer has ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (the
        layer-norm gains and bias are there either way).
    batch_first : bool, default False
        Input and output as [B,T,*] instead of [T,B,*] (not the states).
    dropout : float, default 0.0
        In [0, 1]: the dropout on every layer's output but the last, in
        training.
    bidirectional : bool, default False
        Two directions per layer, their outputs concatenated.
    device, dtype : optional
        Where and in which dtype the parameters are made, as torch's.
    zoneout : float, default 0.0
        p in [0, 1]: haste's zoneout on h, as in ``LSTM``.
    **kwargs
        None accepted: ``proj_size``, ``peephole``, ``cell_clip`` and
        ``weights_dtype`` (whatever their value) raise a TypeError that says
        the cell has none, as ``fastlstm.LayerNormLSTM`` does.

    Attributes
    ----------
    zoneout_masks : list of Tensor
        After an eager training call with ``zoneout > 0``, the keep masks it
        drew: one [T,B,D*H] per layer; else empty.

    Raises
    ------
    TypeError
        An unexpected keyword argument (see ``**kwargs``); ``bias``,
        ``batch_first`` or ``bidirectional`` is not a bool;
        ``input_size``, ``hidden_size`` or ``num_layers`` is not an int;
        ``zoneout`` is not a real number.
    ValueError
        ``dropout`` is not a number in [0, 1]; ``input_size``,
        ``hidden_size`` or ``num_layers`` is not > 0; ``zoneout`` is outside
        [0, 1].

    Warns
    -----
    UserWarning
        ``dropout > 0`` with ``num_layers=1``, as torch.

    Notes
    -----
    With LN(v) = (v - mean v) / sqrt(var v + 1e-5) over the last axis
    (biased variance, as ``torch.nn.LayerNorm``)::

        a = LN(x W_ih^T)*weight_ln_ih + LN(h W_hh^T)*weight_ln_hh + b_ih + b_hh
        c_t = sigmoid(a_f)*c_{t-1} + sigmoid(a_i)*tanh(a_g)
        h_t = sigmoid(a_o)*tanh(LN(c_t)*weight_ln_c + bias_ln_c)

    c_n is the un-normalised c. The parameters per layer and direction come
    from the cell spec: ``torch.nn.LSTM``'s four (U(-1/sqrt(H), 1/sqrt(H))),
    then ``weight_ln_ih_l{k}`` [4H], ``weight_ln_hh_l{k}`` [4H],
    ``weight_ln_c_l{k}`` [H] (ones) and ``bias_ln_c_l{k}`` [H] (zeros); the
    ``state_dict`` loads into ``fastlstm.LayerNormLSTM`` and back.

    On CPU float32/float64 it runs the kernels
    (``torch.ops.fastlstm.lnlstm_layer``); elsewhere (CUDA, float16,
    bfloat16), as torch has no such op, the same maths in torch ops. ONNX
    has no layer-norm LSTM op: ONNX export refuses it.

    Examples
    --------
    >>> import torch, fastlstm.torch
    >>> ln = fastlstm.torch.LayerNormLSTM(8, 16, batch_first=True)
    >>> y, (h_n, c_n) = ln(torch.randn(4, 10, 8))
    >>> y.shape, c_n.shape
    (torch.Size([4, 10, 16]), torch.Size([1, 4, 16]))
    """

    _CELL = "lnlstm"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, zoneout: float = 0.0,
                 **kwargs):
        if kwargs:  # as fastlstm.LayerNormLSTM: a TypeError, with the reason
            name = next(iter(kwargs))
            why = _LNLSTM_LACKS.get(name)
            raise TypeError(f"LayerNormLSTM.__init__() got an unexpected keyword argument "
                            f"{name!r}" + (f" (the layer-norm LSTM has no {why})" if why
                                           else ""))
        super().__init__()
        self._setup("LayerNormLSTM", input_size, hidden_size, num_layers, bias, batch_first,
                    dropout, bidirectional, 0, device, dtype, False, None, zoneout)


# the LSTM's options the layer-norm LSTM has not (its constructor's error names them)
_LNLSTM_LACKS = {"proj_size": "projection", "peephole": "peepholes",
                 "cell_clip": "cell clip", "weights_dtype": "bfloat16 weights"}


class GRU(_Recurrent):
    """``torch.nn.GRU`` on fastlstm's CPU kernels.

    The same constructor, parameters (names, shapes, order, init: gates r,
    z, n), ``state_dict``, forward and errors as ``torch.nn.GRU``:
    ``y, h_n = gru(input, h_0=None)``, plus bfloat16 weights and zoneout (no
    cell clip). It mirrors ``torch.nn.GRU`` rather than subclassing it:
    torch.compile graph breaks on every ``torch.nn.RNNBase`` instance,
    subclasses included.

    Parameters
    ----------
    input_size : int
        I, the features of each input step; > 0.
    hidden_size : int
        H, the features of h; > 0.
    num_layers : int, default 1
        Stacked layers; > 0.
    bias : bool, default True
        Whether each layer has ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
    batch_first : bool, default False
        Input and output as [B,T,*] instead of [T,B,*] (not the state).
    dropout : float, default 0.0
        In [0, 1]: the dropout on every layer's output but the last, in
        training.
    bidirectional : bool, default False
        Two directions per layer, their outputs concatenated.
    device, dtype : optional
        Where and in which dtype the parameters are made, as torch's.
    weights_dtype : {None, "bfloat16"}, default None
        ``"bfloat16"``: eager inference (no autograd) rounds W_ih and W_hh to
        bfloat16, as ``fastlstm.GRU``; it needs float32 parameters.
    zoneout : float, default 0.0
        p in [0, 1]: haste's zoneout on h, as in ``LSTM``.
    **kwargs
        None accepted: ``proj_size`` raises torch's ValueError, any other
        keyword a TypeError.

    Attributes
    ----------
    zoneout_masks : list of Tensor
        After an eager training call with ``zoneout > 0``, the keep masks it
        drew: one [T,B,D*H] per layer; else empty.

    Raises
    ------
    TypeError
        An unexpected keyword argument; ``bias``, ``batch_first`` or
        ``bidirectional`` is not a bool; ``input_size``, ``hidden_size`` or
        ``num_layers`` is not an int; ``zoneout`` is not a real number.
    ValueError
        ``proj_size`` is given (whatever its value, as torch);
        ``dropout`` is not a number in [0, 1]; ``input_size``,
        ``hidden_size`` or ``num_layers`` is not > 0; ``weights_dtype`` is
        neither None nor ``"bfloat16"``; ``zoneout`` is outside [0, 1].

    Warns
    -----
    UserWarning
        ``dropout > 0`` with ``num_layers=1``, as torch.

    Examples
    --------
    >>> import torch, fastlstm.torch
    >>> gru = fastlstm.torch.GRU(8, 16, num_layers=2, zoneout=0.1)
    >>> y, h_n = gru(torch.randn(10, 4, 8))
    >>> y.shape, h_n.shape
    (torch.Size([10, 4, 16]), torch.Size([2, 4, 16]))
    """

    _CELL = "gru"
    _STATES = ("h",)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, weights_dtype=None,
                 zoneout: float = 0.0, **kwargs):
        if "proj_size" in kwargs:  # torch's check and words
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if kwargs:
            raise TypeError(f"GRU.__init__() got an unexpected keyword argument "
                            f"{next(iter(kwargs))!r}")
        super().__init__()
        self._setup("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                    bidirectional, 0, device, dtype, False, weights_dtype, zoneout)

    def _states_out(self, states: list):
        return states[0]

    def _states_in(self, hx, x: Tensor, unbatched: bool) -> list:
        """[h_0] as [D*L,B,H], checked as torch checks it."""
        shape, = self._state_shapes(x.shape[1])
        if hx is None:
            return [x.new_zeros(shape)]
        if not isinstance(hx, Tensor):
            raise TypeError(f"hx: expected a Tensor h_0, got {type(hx).__name__}")
        want = 2 if unbatched else 3
        if hx.dim() != want:
            kind = "unbatched 2-D" if unbatched else "batched 3-D"
            raise ShapeError(f"For {kind} input, hx should also be {want}-D but got "
                             f"{hx.dim()}-D tensor")
        h = hx.unsqueeze(1) if unbatched else hx
        if tuple(h.shape) != shape:
            raise ShapeError(f"Expected hidden size {shape}, got {list(h.shape)}")
        self._check_state_types([h], x)
        return [h]
