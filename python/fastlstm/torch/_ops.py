"""The custom ops ``fastlstm::lstm_layer`` / ``lstm_layer_backward`` (fake
kernels, autograd, vmap rules) and the eager autograd Function over the same
kernels. A backward that must itself be differentiable (``create_graph``)
runs through `_autodiff`, the same maths in torch ops."""
from typing import Optional

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from .. import _checks, _core, _spec, functional
from .._checks import DTypeError
from .._runtime import resolve_isa
from . import _autodiff

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
    dims = _core.LayerDims(T=T, B=B, I=I, H=H, P=P, D=D, peephole=bool(peephole))
    return dims, params, dtype, config


def _state(t: Tensor, name: str, dtype, shape) -> np.ndarray:
    return _checks.shaped(_np(t), name, dtype, shape)


def _lengths(lengths: Optional[Tensor], B: int, T: int):
    return None if lengths is None else _checks.lengths_array(_np(lengths), B, T)


def _workspace_per_row(dims, isa: str, itemsize: int) -> int:
    """Workspace elements per (t, b) row; the op sizes it for all T*B rows so
    that its shape never depends on the values of `lengths`."""
    one_row = _core.LayerDims(T=1, B=1, I=dims.I, H=dims.H, P=dims.P, D=dims.D,
                              peephole=dims.peephole)
    return _core.workspace_size(one_row, None, isa, itemsize)


def _run_forward(packed_layer, dims, dtype, isa: str, nt: int, x: np.ndarray, h0, c0, lens,
                 training: bool):
    """The forward kernel of one layer -> y, h_n, c_n, workspace (empty unless
    training; sized for all T*B rows, so its shape does not depend on lengths)."""
    T, B, H, P, D = dims.T, dims.B, dims.H, dims.P, dims.D
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
    T, B, I, H, P, D = dims.T, dims.B, dims.I, dims.H, dims.P, dims.D
    peephole = dims.peephole
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
               for sfx in _spec.suffixes(D == 2)]
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
    T, B, H, P, D = dims.T, dims.B, dims.H, dims.P, dims.D
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
    per_row = _workspace_per_row(_core.LayerDims(T=1, B=1, I=I, H=H, P=P, D=D,
                                                 peephole=bool(peephole)),
                                 resolve_isa(), x.element_size())
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


def _autodiff_grads(inputs: list, grads: tuple, lengths, cfg) -> list:
    """The vector-Jacobian product of one layer at `inputs` (x, h0, c0, *weights)
    for `grads` (dy, dh_n, dc_n), through `_autodiff`'s torch ops. Under
    ``create_graph`` it is a graph that can be differentiated again; it also
    takes grads that the older vmap batched (gradgradcheck's batched checks),
    which have no NumPy view. None where an input needs no gradient."""
    need = [i for i, t in enumerate(inputs) if t.requires_grad]
    out = [None] * len(inputs)
    if not need:
        return out
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        # differentiate with respect to fresh aliases: only this call's own paths
        # count (a weight that also reaches h0 through an earlier call is
        # differentiated there, by the outer backward)
        local = [t.view_as(t) if t.requires_grad else t for t in inputs]
        x, h0, c0, *weights = local
        y, hn, cn = _autodiff.lstm_layer(x, weights, h0, c0, lengths, *cfg)
        g = torch.autograd.grad((y, hn, cn), [local[i] for i in need],
                                [torch.zeros_like(o) if d is None else d
                                 for o, d in zip((y, hn, cn), grads)],
                                create_graph=create_graph, allow_unused=True)
    for i, gi in zip(need, g):
        out[i] = torch.zeros_like(inputs[i]) if gi is None else gi
    return out


def _transforms_active() -> bool:
    """A torch.func transform (vmap, grad, jvp, ...) wraps the tensors here."""
    return torch._C._functorch.peek_interpreter_stack() is not None


def route(grad: bool, rows: int) -> str:
    """Which path one call of a module takes (see the table in fastlstm.torch):
    'ops' (compiling, tracing, torch.func.vmap without autograd), 'autodiff'
    (forward-mode AD, an empty batch, autograd under torch.func), 'eager'
    (autograd) or 'infer'. grad: the call needs autograd; rows: its batch."""
    if torch.compiler.is_compiling():
        return "ops"  # (dynamo's own functorch state is not the caller's)
    if fwAD._current_level >= 0 or rows == 0 or (grad and _transforms_active()):
        return "autodiff"
    if torch.jit.is_tracing() or _transforms_active():
        return "ops"
    return "eager" if grad else "infer"


def cached_pack(owner, weights: list, dtype, build):
    """`owner`'s packed inference weights (`build(isa)` packs them), kept in
    ``owner._fl_cache`` until the ISA changes, a weight tensor is replaced or
    its data pointer or version moves. The cache holds the tensors themselves,
    so a freed weight's memory cannot come back under the same address."""
    if owner.weights_dtype == "bfloat16" and dtype != torch.float32:
        raise DTypeError(f"weights_dtype='bfloat16' needs float32 parameters, got {dtype}")
    isa = resolve_isa()
    key = (isa, dtype, tuple((w.data_ptr(), w._version) for w in weights))
    cache = owner._fl_cache
    if cache is not None and cache[0] == key and all(a is b for a, b in zip(cache[1], weights)):
        return cache[2]
    packed = build(isa)
    owner._fl_cache = (key, tuple(weights), packed)
    return packed


class KernelModule(torch.nn.Module):
    """What fastlstm.torch's modules share around their packed-weights cache
    (``_fl_cache``, see `cached_pack`): copies and pickles drop it,
    `params_changed()` drops it, and torch.jit.script is refused."""

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fl_cache"] = None  # packed weights are rebuilt on demand
        return state

    def __setstate__(self, state):
        state.setdefault("weights_dtype", None)  # pickled before weights_dtype existed
        super().__setstate__(state)

    def __prepare_scriptable__(self):
        raise RuntimeError(f"fastlstm.torch.{type(self).__name__} cannot be compiled by "
                           f"torch.jit.script (its forward runs Python around custom ops). "
                           f"Use torch.jit.trace, torch.compile or torch.export, which "
                           f"record torch.ops.fastlstm.lstm_layer")

    def params_changed(self) -> None:
        """Drop the packed inference weights (after writes through `.data`)."""
        self._fl_cache = None


def _needs_autodiff(grads) -> bool:
    """The backward must run `_autodiff_grads`: under create_graph, or on
    grads batched by the older vmap (its fallback cannot loop over an op
    that returns a tensor list)."""
    return torch.is_grad_enabled() or any(
        g is not None and torch._C._functorch.is_legacy_batchedtensor(g) for g in grads)


def _setup_context(ctx, inputs, output):
    x, weights, h0, c0, lengths, H, P, bidirectional, bias, peephole, training = inputs
    ctx.config = (H, P, bidirectional, bias, peephole)
    ctx.training = training
    ctx.n_weights = len(weights)
    ctx.mark_non_differentiable(output[3])
    ctx.save_for_backward(x, h0, c0, output[3], lengths, *weights)


def _lstm_layer_grad(ctx, dy, dh_n, dc_n, _dws):
    x, h0, c0, ws, lengths, *weights = ctx.saved_tensors
    if _needs_autodiff((dy, dh_n, dc_n)):
        g = _autodiff_grads([x, h0, c0, *weights], (dy, dh_n, dc_n), lengths, ctx.config)
        return g[0], g[3:], g[1], g[2], None, None, None, None, None, None, None
    if not ctx.training:
        raise RuntimeError("fastlstm::lstm_layer: backward needs a call with training=True "
                           "(it saves the workspace BPTT reads)")
    out = lstm_layer_backward(x, weights, c0, lengths, ws, dy, dh_n, dc_n, *ctx.config)
    return out[0], out[3:], out[1], out[2], None, None, None, None, None, None, None


lstm_layer.register_autograd(_lstm_layer_grad, setup_context=_setup_context)


def _not_differentiable(ctx, *grads):
    raise RuntimeError("fastlstm::lstm_layer_backward is not differentiable: for second "
                       "derivatives differentiate fastlstm::lstm_layer with "
                       "create_graph=True, which runs a differentiable backward")


lstm_layer_backward.register_autograd(_not_differentiable,
                                      setup_context=lambda ctx, inputs, output: None)


# --------------------------------------------------------------------------- vmap


def _select(arg, dim, i):
    """Sample i of a vmapped argument (tensor or tensor list) with in_dim `dim`."""
    if isinstance(arg, (list, tuple)):
        dims = dim if isinstance(dim, (list, tuple)) else [dim] * len(arg)
        return [_select(a, d, i) for a, d in zip(arg, dims)]
    return arg if dim is None or arg is None else arg.select(dim, i)


def _vmap_loop(op, info, in_dims, args):
    """The op once per sample, outputs stacked on dim 0: right for any mix of
    batched arguments (per-sample weights, per-sample weight gradients)."""
    outs = [op(*_select(list(args), list(in_dims), i)) for i in range(info.batch_size)]
    stacked = [torch.stack([o[j] for o in outs]) for j in range(len(outs[0]))]
    return type(outs[0])(stacked), type(outs[0])([0] * len(stacked))


def _has_batch_dim(dim) -> bool:
    if isinstance(dim, (list, tuple)):
        return any(d is not None for d in dim)
    return dim is not None


@torch.library.register_vmap("fastlstm::lstm_layer")
def _lstm_layer_vmap(info, in_dims, x, weights, h0, c0, lengths, *cfg):
    training = cfg[-1]
    if training or _has_batch_dim(in_dims[1]):
        return _vmap_loop(lstm_layer, info, in_dims, (x, weights, h0, c0, lengths, *cfg))
    # inference with shared weights: the samples are more rows of one batch
    N = info.batch_size

    def rows(t, dim, axis):  # [.., B, ..] per sample -> [.., N*B, ..], samples outer
        t = t.unsqueeze(0).expand(N, *t.shape) if dim is None else t.movedim(dim, 0)
        t = t.movedim(0, axis)
        return t.reshape(*t.shape[:axis], -1, *t.shape[axis + 2:])

    xs = rows(x, in_dims[0], 1)
    B = xs.shape[1] // N
    lens = None if lengths is None else rows(lengths, in_dims[4], 0)
    y, hn, cn, ws = lstm_layer(xs, weights, rows(h0, in_dims[2], 1), rows(c0, in_dims[3], 1),
                               lens, *cfg)

    def split(t, axis):  # [.., N*B, ..] -> [N, .., B, ..]
        return t.reshape(*t.shape[:axis], N, B, *t.shape[axis + 1:]).movedim(axis, 0)

    return (split(y, 1), split(hn, 1), split(cn, 1), ws.new_empty((N, 0))), (0, 0, 0, 0)


@torch.library.register_vmap("fastlstm::lstm_layer_backward")
def _lstm_layer_backward_vmap(info, in_dims, *args):
    return _vmap_loop(lstm_layer_backward, info, in_dims, args)


# --------------------------------------------------------------------------- eager


class _EagerLayer(torch.autograd.Function):
    """`lstm_layer` + `lstm_layer_backward` for eager autograd: the weights are
    packed once (with the backward panels) and kept for the backward, where
    the op pair packs in each (an op cannot pass packed weights on)."""

    @staticmethod
    def forward(ctx, x, h0, c0, lengths, cfg, *weights):
        pl, dims, dtype, isa, nt, xn, h0n, c0n, lens = _prepare(x, list(weights), h0, c0,
                                                                lengths, *cfg, True)
        y, hn, cn, ws = _run_forward(pl, dims, dtype, isa, nt, xn, h0n, c0n, lens, True)
        ctx.save_for_backward(x, h0, c0, *weights)  # version-checked by autograd
        ctx.kernel = (pl, dims, dtype, isa, cfg, lengths, lens, ws)
        return y, hn, cn

    @staticmethod
    def backward(ctx, dy, dh_n, dc_n):
        x, h0, c0, *weights = ctx.saved_tensors
        pl, dims, dtype, isa, cfg, lengths, lens, ws = ctx.kernel
        if _needs_autodiff((dy, dh_n, dc_n)):
            g = _autodiff_grads([x, h0, c0, *weights], (dy, dh_n, dc_n), lengths, cfg)
            return (g[0], g[1], g[2], None, None) + tuple(g[3:])
        if _transforms_active():  # torch.func.vmap over the backward: the op has the rule
            out = lstm_layer_backward(x, weights, c0, lengths, ws, dy, dh_n, dc_n, *cfg)
        else:
            out = _run_backward(pl, dims, dtype, isa, torch.get_num_threads(), cfg[3], _np(x),
                                _np(c0), lens, ws, dy, dh_n, dc_n)
        return (out[0], out[1], out[2], None, None) + tuple(out[3:])


def _infer_layer(packed, k: int, x: Tensor, h0: Tensor, c0: Tensor, lengths):
    """Layer k of `packed` without autograd: y, h_n, c_n."""
    _, H, _, P, bidirectional, _, peephole = packed.config
    T, B, In = x.shape
    dims = _core.LayerDims(T=T, B=B, I=In, H=H, P=P, D=2 if bidirectional else 1,
                           peephole=bool(peephole))
    y, hn, cn, _ = _run_forward(packed.layers[k], dims, packed.dtype, packed.isa,
                                torch.get_num_threads(), _np(x), _np(h0), _np(c0),
                                _lengths(lengths, B, T), False)
    return y, hn, cn
