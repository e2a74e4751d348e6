"""The custom ops ``fastlstm::lstm_layer`` / ``lstm_layer_backward``,
``fastlstm::gru_layer`` / ``gru_layer_backward`` and
``fastlstm::lnlstm_layer`` / ``lnlstm_layer_backward`` (the layer-norm
LSTM), with fake kernels, autograd and vmap rules, and the eager autograd
Function over the same kernels. A backward that must itself be
differentiable (``create_graph``) runs through `_autodiff`, the same maths
in torch ops.

Only the op schemas are per cell (their configuration arguments are the
options the cell spec says the cell has: the LSTM's projection and
peepholes; the GRU has no c state); everything behind them is one code path
that takes the cell name and reads its facts (states, options, parameter
order, shapes) from the cell spec (`fastlstm._spec`)."""
import numbers
from typing import Optional

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from .. import _checks, _core, _spec, functional
from .._checks import DTypeError
from .._runtime import resolve_isa
from . import _autodiff, _cuda, _onnx

_DTYPES = (torch.float32, torch.float64)
_TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


# --------------------------------------------------------------------------- ops
#
# One layer (one or two directions). `weights` holds, per direction, the cell
# spec's parameters in its order (w_ih, w_hh, then b_ih, b_hh (bias), w_hr
# (proj_size > 0), w_ph (peephole)), in torch's names and shapes; the flags say
# which are present. `states` is [h] plus [c] for the LSTM. Internally a layer's
# configuration is cfg = (hidden_size, proj_size, bidirectional, bias, peephole)
# for every cell (0 / False where a cell has no such option).
#
# The op's configuration arguments are cfg's items that the cell has (see
# `_op_cfg`): (hidden_size, proj_size, bidirectional, bias, peephole) for the
# LSTM, (hidden_size, bidirectional, bias) for the GRU and the layer-norm LSTM.
#
# Zoneout and the cell clip ride beside cfg as zo = (zoneout_mask, zoneout,
# cell_clip): zoneout_mask [T,B,D*Ho] (the op's dtype; 1 keeps h_{t-1}) or
# None, the float zoneout (the weight of h_{t-1} wherever no mask is given:
# eval()'s deterministic mix; 0 = none) and the float cell_clip (the LSTM's
# clip of the gate pre-activations to [-cell_clip, cell_clip]; 0 = none). The
# mask is an input of the ops, so the backward reuses exactly the forward's
# draws; it is not differentiated.

NO_ZONEOUT = (None, 0.0, 0.0)

def has_clip(cell: str) -> bool:
    """Whether the cell takes a cell clip (its ops then have a cell_clip argument)."""
    return _spec.SPECS[cell]["cell_clip"]


def n_states(cell: str) -> int:
    """The cell's recurrent states: 2 (h, c) for the LSTMs, 1 (h) for the GRU."""
    return _spec.SPECS[cell]["states"]


def require_tensor(value, name: str, module, what: str = "a Tensor") -> None:
    """TypeError unless value is a Tensor; a NumPy array is told its two ways
    in: torch.from_numpy, or the module's NumPy twin (fastlstm.LSTM, ...)."""
    if isinstance(value, Tensor):
        return
    hint = ""
    if isinstance(value, np.ndarray):
        twin = next(c.__name__ for c in type(module).__mro__
                    if c.__module__.startswith("fastlstm.torch"))
        hint = (f" (a numpy.ndarray: convert it with torch.from_numpy(...), or use "
                f"fastlstm.{twin}, which takes NumPy arrays)")
    raise TypeError(f"{name}: expected {what}, got {type(value).__name__}{hint}")


def _np(t: Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor (a copy only when it is not contiguous)."""
    return t.detach().contiguous().numpy()


def _names(cell: str, bidirectional: bool, bias: bool, proj: bool, peephole: bool) -> list:
    """The functional parameter names (layer 0) in the order of `weights`."""
    return _spec.layer_weight_names(cell, 0, bidirectional, bias, proj, peephole)


def _dims(cell: str, T: int, B: int, I: int, H: int, P: int, D: int, peephole,
          zoneout: float = 0.0, cell_clip: float = 0.0) -> object:
    return _core.LayerDims(T=T, B=B, I=I, H=H, P=P, D=D, peephole=bool(peephole), cell=cell,
                           zoneout=zoneout, cell_clip=cell_clip)


def check_zo(cell: str, zo, device=None) -> tuple:
    """zo = (zoneout_mask, zoneout, cell_clip) checked: the mask None or a
    Tensor on `device` (default the CPU), zoneout a float in [0, 1],
    cell_clip a float >= 0 (0 = none; LSTM only). None stands for no zoneout
    and no clip."""
    if zo is None:
        return NO_ZONEOUT
    mask, zoneout, clip = zo
    device = torch.device("cpu") if device is None else device
    if mask is not None and (not isinstance(mask, Tensor) or mask.device != device):
        raise TypeError(f"zoneout_mask: expected None or a tensor on {device} (x's), got "
                        f"{getattr(mask, 'device', type(mask).__name__)}")
    zoneout, _ = _checks.zoneout_config(zoneout)
    if isinstance(clip, bool) or not isinstance(clip, numbers.Real):
        raise TypeError(f"cell_clip: expected a float >= 0 (0 = none), got "
                        f"{type(clip).__name__}")
    if not clip >= 0.0:
        raise ValueError(f"cell_clip: expected a float >= 0 (0 = none), got {clip}")
    if clip and not has_clip(cell):
        raise ValueError(f"cell_clip: the {cell} cell has no cell clip")
    return mask, zoneout, float(clip)


def _mask_array(mask, dtype, dims):
    """The zoneout mask as the kernels' keep array [T,B,D*Ho], or None."""
    if mask is None:
        return None
    return _checks.shaped(_np(mask), "zoneout_mask", dtype,
                          (dims.T, dims.B, dims.D * (dims.P or dims.H)))


def _state_shapes(cell: str, D: int, B: int, H: int, P: int) -> list:
    """The shapes of the layer's states: h [D,B,Ho], then c [D,B,H] (LSTMs)."""
    return [(D, B, P or H), (D, B, H)][:n_states(cell)]


def _layer_args(cell, x, weights, hidden_size, proj_size, bidirectional, bias, peephole,
                zo=NO_ZONEOUT):
    """Checked (dims, params dict, dtype, config) of one layer call; zo checked."""
    if x.device.type != "cpu" or x.dtype not in _DTYPES:
        raise TypeError(f"x: expected a CPU float32 or float64 tensor, got {x.dtype} on "
                        f"{x.device}")
    if x.dim() != 3:
        raise ValueError(f"x: expected a 3-D [T,B,I] tensor, got shape {tuple(x.shape)}")
    names = _names(cell, bidirectional, bias, proj_size > 0, peephole)
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
                                           1, bias, bidirectional, P, peephole, dtype,
                                           cell=cell)
    config = (I, H, 1, P, bool(bidirectional), bool(bias), bool(peephole))
    return _dims(cell, T, B, I, H, P, D, peephole, zo[1], zo[2]), params, dtype, config


def _state(t: Tensor, name: str, dtype, shape) -> np.ndarray:
    return _checks.shaped(_np(t), name, dtype, shape)


def _lengths(lengths: Optional[Tensor], B: int, T: int):
    return None if lengths is None else _checks.lengths_array(_np(lengths), B, T)


def _workspace_per_row(cell: str, dims, isa: str, itemsize: int) -> int:
    """Workspace elements per (t, b) row; the op sizes it for all T*B rows so
    that its shape never depends on the values of `lengths`."""
    one_row = _dims(cell, 1, 1, dims.I, dims.H, dims.P, dims.D, dims.peephole)
    return _core.workspace_size(one_row, None, isa, itemsize)


def _run_forward(cell, packed_layer, dims, dtype, isa: str, nt: int, x: np.ndarray,
                 states0: list, lens, training: bool, keep=None):
    """The forward kernel of one layer -> y, [h_n (, c_n)], workspace (empty
    unless training; sized for all T*B rows, so its shape does not depend on
    lengths). states0: [h0 (, c0)] as NumPy arrays (h0 may be None: zeros);
    keep: the zoneout mask as a NumPy array [T,B,D*Ho] or None (then dims'
    zoneout is the weight of h_{t-1}, 0 = none)."""
    T, B, H, P, D = dims.T, dims.B, dims.H, dims.P, dims.D
    Ho, tdt = P or H, _TORCH_DTYPE[dtype]
    y = torch.empty((T, B, D * Ho), dtype=tdt)
    finals = [torch.empty(s, dtype=tdt) for s in _state_shapes(cell, D, B, H, P)]
    ws = torch.empty(T * B * _workspace_per_row(cell, dims, isa, dtype.itemsize)
                     if training else 0, dtype=tdt)
    wsn = None
    if training:
        need = _core.workspace_size(dims, lens, isa, dtype.itemsize)
        ws[need:].zero_()  # rows past sum(lengths): defined output
        wsn = ws.numpy()[:need]
    h0, c0 = (list(states0) + [None])[:2]
    hn, cn = ([f.numpy() for f in finals] + [None])[:2]
    functional._kernel("forward", dtype)(dims, packed_layer, x, lens, h0, c0, y.numpy(), hn,
                                         cn, wsn, nt, isa, keep)
    return y, finals, ws


def _run_backward(cell, packed_layer, dims, dtype, isa: str, nt: int, bias: bool,
                  x: np.ndarray, c0, lens, ws: Tensor, dy, d_states: list, keep=None) -> list:
    """The BPTT kernel of one layer -> [dx, dh0 (, dc0)] + the weight gradients
    in the order of `_names`. c0: the LSTM's initial cell state (None for the
    GRU); d_states: [dh_n (, dc_n)]; keep: the forward's zoneout mask (NumPy)
    or None, dims as the forward's (zoneout, cell_clip included)."""
    T, B, I, H, P, D = dims.T, dims.B, dims.I, dims.H, dims.P, dims.D
    peephole = dims.peephole
    tdt = _TORCH_DTYPE[dtype]
    need = _core.workspace_size(dims, lens, isa, dtype.itemsize)
    if ws.dtype != tdt or ws.dim() != 1 or ws.numel() < need:
        raise ValueError(f"workspace: expected the workspace of a training-mode {cell}_layer "
                         f"call (at least {need} elements of {tdt}), got {ws.numel()} of "
                         f"{ws.dtype}")
    names = _names(cell, D == 2, bias, P > 0, peephole)
    shapes = functional.param_shapes(I, H, 1, bias, D == 2, P, peephole, cell=cell)
    grads = {n: torch.zeros(shapes[n], dtype=tdt) for n in names}
    gnp = {n: g.numpy() for n, g in grads.items()}
    per_dir = [tuple(None if n is None else gnp[n] for n in
                     functional._direction_weights(gnp, 0, sfx, bias, peephole, P, cell)[0])
               for sfx in _spec.suffixes(D == 2)]
    shp = _state_shapes(cell, D, B, H, P)
    dn = [_state(g, f"d{s}_n", dtype, sh) for g, s, sh in zip(d_states, "hc", shp)]
    dx = torch.empty((T, B, I), dtype=tdt)
    d0 = [torch.empty(sh, dtype=tdt) for sh in shp]
    dh_n, dc_n = (dn + [None])[:2]
    dh0, dc0 = ([t.numpy() for t in d0] + [None])[:2]
    functional._kernel("backward", dtype)(
        dims, packed_layer, per_dir, x, lens, c0, _np(ws)[:need],
        _state(dy, "dy", dtype, (T, B, D * (P or H))), dh_n, dc_n, dx.numpy(), dh0, dc0, nt,
        isa, keep)
    return [dx] + d0 + [grads[n] for n in names]


def _prepare(cell, x, weights, states, lengths, hidden_size, proj_size, bidirectional, bias,
             peephole, with_backward, zo=NO_ZONEOUT):
    """Checked arguments of one layer call and its packed weights. states:
    [h0 (, c0)], each a Tensor or None (not given: the backward needs no h0).
    zo: see NO_ZONEOUT; the last item returned is the zoneout mask as the
    kernels' keep array (or None)."""
    zo = check_zo(cell, zo)
    dims, params, dtype, config = _layer_args(cell, x, weights, hidden_size, proj_size,
                                              bidirectional, bias, peephole, zo)
    T, B, H, P, D = dims.T, dims.B, dims.H, dims.P, dims.D
    isa, nt = resolve_isa(), torch.get_num_threads()
    s0 = [None if t is None else _state(t, name, dtype, shape)
          for t, name, shape in zip(states, ("h0", "c0"), _state_shapes(cell, D, B, H, P))]
    packed = functional._pack_checked(params, config, dtype, isa, with_backward, nt,
                                      cell=cell)
    return (packed.layers[0], dims, dtype, isa, nt, _np(x), s0, _lengths(lengths, B, T),
            _mask_array(zo[0], dtype, dims))


def _layer_impl(cell, x, weights, states, lengths, cfg, training, zo):
    pl, dims, dtype, isa, nt, xn, s0, lens, keep = _prepare(cell, x, weights, states, lengths,
                                                            *cfg, False, zo)
    y, finals, ws = _run_forward(cell, pl, dims, dtype, isa, nt, xn, s0, lens, training, keep)
    return (y, *finals, ws)


def _backward_impl(cell, x, weights, c0, lengths, ws, dy, d_states, cfg, zo):
    pl, dims, dtype, isa, nt, xn, s0, lens, keep = _prepare(
        cell, x, weights, [None, c0][:n_states(cell)], lengths, *cfg, True, zo)
    return _run_backward(cell, pl, dims, dtype, isa, nt, cfg[3], xn, s0[1] if c0 is not None
                         else None, lens, ws, dy, d_states, keep)


def _layer_fake(cell, x, cfg, training):
    T, B, I = x.shape
    H, P, bidirectional, _, peephole = cfg
    D = 2 if bidirectional else 1
    one_row = _dims(cell, 1, 1, I, H, P, D, peephole)  # T, B may be symbolic: sizes per row
    if x.device.type == "cuda":  # the CUDA kernels' workspace: R = T*B rows of one layout
        per_row = _core.cuda_workspace_size(one_row)
    else:
        per_row = _workspace_per_row(cell, one_row, resolve_isa(), x.element_size())
    return (x.new_empty((T, B, D * (P or H))),
            *[x.new_empty(s) for s in _state_shapes(cell, D, B, H, P)],
            x.new_empty((T * B * per_row if training else 0,)))


def _backward_fake(cell, x, weights, cfg):
    T, B, I = x.shape
    H, P, bidirectional = cfg[:3]
    D = 2 if bidirectional else 1
    return ([x.new_empty((T, B, I))] + [x.new_empty(s) for s in _state_shapes(cell, D, B, H, P)]
            + [w.new_empty(w.shape) for w in weights])


@torch.library.custom_op("fastlstm::lstm_layer", mutates_args=(), device_types="cpu")
def lstm_layer(x: Tensor, weights: list[Tensor], h0: Tensor, c0: Tensor,
               lengths: Optional[Tensor], hidden_size: int, proj_size: int,
               bidirectional: bool, bias: bool, peephole: bool,
               training: bool, zoneout_mask: Optional[Tensor] = None, zoneout: float = 0.0,
               cell_clip: float = 0.0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """lstm_layer(x, weights, h0, c0, lengths, hidden_size, proj_size, bidirectional, bias, \
peephole, training, zoneout_mask=None, zoneout=0.0, cell_clip=0.0)

    One LSTM layer (one or two directions) on fastlstm's CPU or CUDA kernels.

    The custom operator ``torch.ops.fastlstm.lstm_layer``, with a fake
    kernel, an autograd rule (through ``lstm_layer_backward``) and a vmap
    rule: ``fastlstm.torch.LSTM`` calls it once per layer under
    ``torch.compile``, ``torch.export``, ``torch.jit.trace`` and
    ``torch.func.vmap``. Below, D = 2 if ``bidirectional`` else 1 and
    Ho = ``proj_size`` if it is > 0, else H = ``hidden_size``.

    Parameters
    ----------
    x : Tensor
        [T,B,I], time-major; float32 or float64, on the CPU or (with the CUDA
        backend, ``fastlstm.cuda``) a CUDA device, where every other tensor
        must be too.
    weights : list of Tensor
        Per direction (forward, then reverse), ``torch.nn.LSTM``'s
        parameters of the layer in the cell spec's order: ``weight_ih``
        [4H,I], ``weight_hh`` [4H,Ho], then ``bias_ih``, ``bias_hh`` [4H]
        (with ``bias``), ``weight_hr`` [Ho,H] (with ``proj_size > 0``) and
        ``weight_ph`` [3,H] (with ``peephole``, rows i, f, o). ``x``'s dtype.
    h0 : Tensor
        [D,B,Ho], the initial h.
    c0 : Tensor
        [D,B,H], the initial c.
    lengths : Tensor or None
        int64 [B], each row's valid steps, in [1, T]; None: all T.
    hidden_size : int
        H, the features of c (and of h without projection).
    proj_size : int
        Ho, the projection's size; 0, none.
    bidirectional : bool
        Two directions (D = 2), their outputs concatenated.
    bias : bool
        Whether ``weights`` holds the biases.
    peephole : bool
        Whether ``weights`` holds the peepholes.
    training : bool
        True returns the workspace that ``lstm_layer_backward`` (and so
        autograd) needs; False an empty one.
    zoneout_mask : Tensor or None, default None
        [T,B,D*Ho], ``x``'s dtype: the zoneout keep mask k (1 keeps
        h_{t-1}); not differentiated.
    zoneout : float, default 0.0
        In [0, 1]: without a mask, the constant k (``eval()``'s zoneout);
        0, none.
    cell_clip : float, default 0.0
        >= 0: clips the gate pre-activations to [-cell_clip, cell_clip]; 0,
        none.

    Returns
    -------
    y : Tensor
        [T,B,D*Ho], zeros past a row's length.
    h_n : Tensor
        [D,B,Ho], h after each row's last step.
    c_n : Tensor
        [D,B,H].
    workspace : Tensor
        1-D, ``x``'s dtype: what the backward reads; empty unless
        ``training``. Its size covers all T*B rows, whatever ``lengths``
        holds.

    Raises
    ------
    TypeError
        ``x`` is not a float32 or float64 tensor; ``lengths`` is not an
        integer tensor; ``zoneout_mask`` is neither None nor a CPU tensor;
        ``zoneout`` or ``cell_clip`` is not a real number.
    ValueError
        ``x`` is not 3-D; ``weights`` holds the wrong number of tensors; a
        ``lengths`` shape other than [B] or a value outside [1, T];
        ``zoneout`` outside [0, 1]; ``cell_clip`` < 0.
    fastlstm.ShapeError
        (a ValueError) a weight, state or ``zoneout_mask`` of the wrong shape.
    fastlstm.DTypeError
        (a TypeError) a weight, state or ``zoneout_mask`` whose dtype is not
        ``x``'s.
    RuntimeError
        Autograd's backward through a call with ``training=False`` (a
        ``create_graph`` backward excepted, which recomputes in torch ops).

    Notes
    -----
    Zoneout on h: h_t = k*h_{t-1} + (1-k)*h~_t, with k the mask or, without
    one, ``zoneout``. The op has a CPU kernel and a fake kernel only.

    Examples
    --------
    >>> import torch, fastlstm.torch
    >>> lstm = fastlstm.torch.LSTM(8, 16)
    >>> weights = [p.detach() for p in lstm.parameters()]
    >>> x, h0 = torch.randn(10, 4, 8), torch.zeros(1, 4, 16)
    >>> y, h_n, c_n, ws = torch.ops.fastlstm.lstm_layer(
    ...     x, weights, h0, h0, None, 16, 0, False, True, False, False)
    >>> y.shape, ws.numel()
    (torch.Size([10, 4, 16]), 0)
    """
    return _layer_impl("lstm", x, weights, [h0, c0], lengths,
                       (hidden_size, proj_size, bidirectional, bias, peephole), training,
                       (zoneout_mask, zoneout, cell_clip))


@lstm_layer.register_fake
def _lstm_layer_fake(x, weights, h0, c0, lengths, hidden_size, proj_size, bidirectional, bias,
                     peephole, training, zoneout_mask=None, zoneout=0.0, cell_clip=0.0):
    return _layer_fake("lstm", x, (hidden_size, proj_size, bidirectional, bias, peephole),
                       training)


@torch.library.custom_op("fastlstm::lstm_layer_backward", mutates_args=(), device_types="cpu")
def lstm_layer_backward(x: Tensor, weights: list[Tensor], c0: Tensor, lengths: Optional[Tensor],
                        workspace: Tensor, dy: Tensor, dh_n: Tensor, dc_n: Tensor,
                        hidden_size: int, proj_size: int, bidirectional: bool, bias: bool,
                        peephole: bool, zoneout_mask: Optional[Tensor] = None,
                        zoneout: float = 0.0, cell_clip: float = 0.0) -> list[Tensor]:
    """lstm_layer_backward(x, weights, c0, lengths, workspace, dy, dh_n, dc_n, hidden_size, \
proj_size, bidirectional, bias, peephole, zoneout_mask=None, zoneout=0.0, cell_clip=0.0)

    BPTT through one ``lstm_layer(..., training=True)`` call.

    The custom operator ``torch.ops.fastlstm.lstm_layer_backward``:
    ``lstm_layer``'s autograd rule calls it. Every argument that the forward
    also takes must be the forward call's (it reads ``c0``, never ``h0``);
    it checks them as ``lstm_layer`` does, with the same exceptions.

    Parameters
    ----------
    x, weights, c0, lengths
        As given to ``lstm_layer``.
    workspace : Tensor
        The workspace that call returned.
    dy : Tensor
        [T,B,D*Ho], the gradient of ``y``.
    dh_n : Tensor
        [D,B,Ho], the gradient of ``h_n``.
    dc_n : Tensor
        [D,B,H], the gradient of ``c_n``.
    hidden_size, proj_size, bidirectional, bias, peephole
        As given to ``lstm_layer``.
    zoneout_mask, zoneout, cell_clip : optional
        As given to ``lstm_layer``.

    Returns
    -------
    list of Tensor
        ``[dx, dh0, dc0]``, [T,B,I], [D,B,Ho] and [D,B,H], then one gradient
        per tensor of ``weights``, in its order and shapes.

    Raises
    ------
    ValueError
        ``workspace`` is not one of a ``training=True`` call: 1-D, of ``x``'s
        dtype and at least the size the kernels need.
    fastlstm.ShapeError
        (a ValueError) ``dy``, ``dh_n`` or ``dc_n`` of the wrong shape.
    fastlstm.DTypeError
        (a TypeError) ``dy``, ``dh_n`` or ``dc_n`` whose dtype is not ``x``'s.
    RuntimeError
        On an attempt to differentiate it: for second derivatives,
        differentiate ``lstm_layer`` with ``create_graph=True``.
    """
    return _backward_impl("lstm", x, weights, c0, lengths, workspace, dy, [dh_n, dc_n],
                          (hidden_size, proj_size, bidirectional, bias, peephole),
                          (zoneout_mask, zoneout, cell_clip))


@lstm_layer_backward.register_fake
def _lstm_layer_backward_fake(x, weights, c0, lengths, workspace, dy, dh_n, dc_n, hidden_size,
                              proj_size, bidirectional, bias, peephole, zoneout_mask=None,
                              zoneout=0.0, cell_clip=0.0):
    return _backward_fake("lstm", x, weights, (hidden_size, proj_size, bidirectional))


@torch.library.custom_op("fastlstm::gru_layer", mutates_args=(), device_types="cpu")
def gru_layer(x: Tensor, weights: list[Tensor], h0: Tensor, lengths: Optional[Tensor],
              hidden_size: int, bidirectional: bool, bias: bool,
              training: bool, zoneout_mask: Optional[Tensor] = None,
              zoneout: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """gru_layer(x, weights, h0, lengths, hidden_size, bidirectional, bias, training, \
zoneout_mask=None, zoneout=0.0)

    One GRU layer (one or two directions, ``torch.nn.GRU``'s maths) on fastlstm's CPU or
    CUDA kernels.

    The custom operator ``torch.ops.fastlstm.gru_layer``, with a fake
    kernel, an autograd rule (through ``gru_layer_backward``) and a vmap
    rule; ``fastlstm.torch.GRU`` calls it as ``LSTM`` calls ``lstm_layer``.
    Below, D = 2 if ``bidirectional`` else 1 and H = ``hidden_size``.

    Parameters
    ----------
    x : Tensor
        [T,B,I], time-major; CPU float32 or float64.
    weights : list of Tensor
        Per direction (forward, then reverse), ``torch.nn.GRU``'s parameters
        of the layer (gates r, z, n): ``weight_ih`` [3H,I], ``weight_hh``
        [3H,H], then ``bias_ih``, ``bias_hh`` [3H] (with ``bias``). ``x``'s
        dtype.
    h0 : Tensor
        [D,B,H], the initial h.
    lengths : Tensor or None
        int64 [B], each row's valid steps, in [1, T]; None: all T.
    hidden_size : int
        H, the features of h.
    bidirectional : bool
        Two directions (D = 2), their outputs concatenated.
    bias : bool
        Whether ``weights`` holds ``bias_ih`` and ``bias_hh``.
    training : bool
        True returns the workspace that ``gru_layer_backward`` needs; False
        an empty one.
    zoneout_mask : Tensor or None, default None
        [T,B,D*H], as in ``lstm_layer``.
    zoneout : float, default 0.0
        As in ``lstm_layer``.

    Returns
    -------
    y : Tensor
        [T,B,D*H], zeros past a row's length.
    h_n : Tensor
        [D,B,H], h after each row's last step.
    workspace : Tensor
        1-D, ``x``'s dtype; empty unless ``training``.

    Raises
    ------
    TypeError
        ``x`` is not a float32 or float64 tensor; ``lengths`` is not an
        integer tensor; ``zoneout_mask`` is neither None nor a CPU tensor;
        ``zoneout`` is not a real number.
    ValueError
        ``x`` is not 3-D; ``weights`` holds the wrong number of tensors; a
        ``lengths`` shape other than [B] or a value outside [1, T];
        ``zoneout`` outside [0, 1].
    fastlstm.ShapeError
        (a ValueError) a weight, state or ``zoneout_mask`` of the wrong shape.
    fastlstm.DTypeError
        (a TypeError) a weight, state or ``zoneout_mask`` whose dtype is not
        ``x``'s.
    RuntimeError
        Autograd's backward through a call with ``training=False`` (a
        ``create_graph`` backward excepted, which recomputes in torch ops).
    """
    return _layer_impl("gru", x, weights, [h0], lengths,
                       _common_cfg("gru", (hidden_size, bidirectional, bias)), training,
                       (zoneout_mask, zoneout, 0.0))


@gru_layer.register_fake
def _gru_layer_fake(x, weights, h0, lengths, hidden_size, bidirectional, bias, training,
                    zoneout_mask=None, zoneout=0.0):
    return _layer_fake("gru", x, _common_cfg("gru", (hidden_size, bidirectional, bias)),
                       training)


@torch.library.custom_op("fastlstm::gru_layer_backward", mutates_args=(), device_types="cpu")
def gru_layer_backward(x: Tensor, weights: list[Tensor], lengths: Optional[Tensor],
                       workspace: Tensor, dy: Tensor, dh_n: Tensor, hidden_size: int,
                       bidirectional: bool, bias: bool, zoneout_mask: Optional[Tensor] = None,
                       zoneout: float = 0.0) -> list[Tensor]:
    """gru_layer_backward(x, weights, lengths, workspace, dy, dh_n, hidden_size, bidirectional, \
bias, zoneout_mask=None, zoneout=0.0)

    BPTT through one ``gru_layer(..., training=True)`` call.

    The custom operator ``torch.ops.fastlstm.gru_layer_backward``:
    ``gru_layer``'s autograd rule calls it. Every argument that the forward
    also takes must be the forward call's; it checks them as ``gru_layer``
    does, with the same exceptions.

    Parameters
    ----------
    x, weights, lengths
        As given to ``gru_layer``.
    workspace : Tensor
        The workspace that call returned.
    dy : Tensor
        [T,B,D*H], the gradient of ``y``.
    dh_n : Tensor
        [D,B,H], the gradient of ``h_n``.
    hidden_size, bidirectional, bias
        As given to ``gru_layer``.
    zoneout_mask, zoneout : optional
        As given to ``gru_layer``.

    Returns
    -------
    list of Tensor
        ``[dx, dh0]``, [T,B,I] and [D,B,H], then one gradient per tensor of
        ``weights``, in its order and shapes.

    Raises
    ------
    ValueError
        ``workspace`` is not one of a ``training=True`` call: 1-D, of ``x``'s
        dtype and at least the size the kernels need.
    fastlstm.ShapeError
        (a ValueError) ``dy`` or ``dh_n`` of the wrong shape.
    fastlstm.DTypeError
        (a TypeError) ``dy`` or ``dh_n`` whose dtype is not ``x``'s.
    RuntimeError
        On an attempt to differentiate it: for second derivatives,
        differentiate ``gru_layer`` with ``create_graph=True``.
    """
    return _backward_impl("gru", x, weights, None, lengths, workspace, dy, [dh_n],
                          _common_cfg("gru", (hidden_size, bidirectional, bias)),
                          (zoneout_mask, zoneout, 0.0))


@gru_layer_backward.register_fake
def _gru_layer_backward_fake(x, weights, lengths, workspace, dy, dh_n, hidden_size,
                             bidirectional, bias, zoneout_mask=None, zoneout=0.0):
    return _backward_fake("gru", x, weights, (hidden_size, 0, bidirectional))


@torch.library.custom_op("fastlstm::lnlstm_layer", mutates_args=(), device_types="cpu")
def lnlstm_layer(x: Tensor, weights: list[Tensor], h0: Tensor, c0: Tensor,
                 lengths: Optional[Tensor], hidden_size: int, bidirectional: bool, bias: bool,
                 training: bool, zoneout_mask: Optional[Tensor] = None,
                 zoneout: float = 0.0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """lnlstm_layer(x, weights, h0, c0, lengths, hidden_size, bidirectional, bias, training, \
zoneout_mask=None, zoneout=0.0)

    One layer-norm LSTM layer (one or two directions) on fastlstm's CPU kernels.

    The custom operator ``torch.ops.fastlstm.lnlstm_layer``: the layer-norm
    LSTM of Ba et al. 2016, as haste's LayerNormLSTM and
    ``fastlstm.reference_lnlstm``, with a fake kernel, an autograd rule
    (through ``lnlstm_layer_backward``) and a vmap rule;
    ``fastlstm.torch.LayerNormLSTM`` calls it. Below, D = 2 if
    ``bidirectional`` else 1 and H = ``hidden_size``.

    Parameters
    ----------
    x : Tensor
        [T,B,I], time-major; CPU float32 or float64.
    weights : list of Tensor
        Per direction (forward, then reverse), in the cell spec's order:
        ``weight_ih`` [4H,I], ``weight_hh`` [4H,H], ``bias_ih``, ``bias_hh``
        [4H] (with ``bias``), then the gains and bias ``weight_ln_ih`` [4H],
        ``weight_ln_hh`` [4H], ``weight_ln_c`` [H] and ``bias_ln_c`` [H].
        ``x``'s dtype.
    h0, c0 : Tensor
        [D,B,H] each, the initial h and c.
    lengths : Tensor or None
        int64 [B], each row's valid steps, in [1, T]; None: all T.
    hidden_size : int
        H, the features of h and c.
    bidirectional : bool
        Two directions (D = 2), their outputs concatenated.
    bias : bool
        Whether ``weights`` holds ``bias_ih`` and ``bias_hh``.
    training : bool
        True returns the workspace that ``lnlstm_layer_backward`` needs;
        False an empty one.
    zoneout_mask : Tensor or None, default None
        [T,B,D*H], as in ``lstm_layer``.
    zoneout : float, default 0.0
        As in ``lstm_layer`` (the cell has no cell clip).

    Returns
    -------
    y : Tensor
        [T,B,D*H], zeros past a row's length.
    h_n : Tensor
        [D,B,H], h after each row's last step.
    c_n : Tensor
        [D,B,H], the un-normalised c.
    workspace : Tensor
        1-D, ``x``'s dtype; empty unless ``training``.

    Raises
    ------
    TypeError
        ``x`` is not a float32 or float64 tensor; ``lengths`` is not an
        integer tensor; ``zoneout_mask`` is neither None nor a CPU tensor;
        ``zoneout`` is not a real number.
    ValueError
        ``x`` is not 3-D; ``weights`` holds the wrong number of tensors; a
        ``lengths`` shape other than [B] or a value outside [1, T];
        ``zoneout`` outside [0, 1].
    fastlstm.ShapeError
        (a ValueError) a weight, state or ``zoneout_mask`` of the wrong shape.
    fastlstm.DTypeError
        (a TypeError) a weight, state or ``zoneout_mask`` whose dtype is not
        ``x``'s.
    RuntimeError
        Autograd's backward through a call with ``training=False`` (a
        ``create_graph`` backward excepted, which recomputes in torch ops).

    Notes
    -----
    Under an ONNX export its fake kernel raises RuntimeError: ONNX has no
    layer-norm LSTM op.
    """
    return _layer_impl("lnlstm", x, weights, [h0, c0], lengths,
                       _common_cfg("lnlstm", (hidden_size, bidirectional, bias)), training,
                       (zoneout_mask, zoneout, 0.0))


@lnlstm_layer.register_fake
def _lnlstm_layer_fake(x, weights, h0, c0, lengths, hidden_size, bidirectional, bias, training,
                       zoneout_mask=None, zoneout=0.0):
    _onnx.check_exportable("lnlstm")  # the dynamo ONNX exporter captures on fake tensors
    return _layer_fake("lnlstm", x, _common_cfg("lnlstm", (hidden_size, bidirectional, bias)),
                       training)


@torch.library.custom_op("fastlstm::lnlstm_layer_backward", mutates_args=(),
                         device_types="cpu")
def lnlstm_layer_backward(x: Tensor, weights: list[Tensor], c0: Tensor,
                          lengths: Optional[Tensor], workspace: Tensor, dy: Tensor,
                          dh_n: Tensor, dc_n: Tensor, hidden_size: int, bidirectional: bool,
                          bias: bool, zoneout_mask: Optional[Tensor] = None,
                          zoneout: float = 0.0) -> list[Tensor]:
    """lnlstm_layer_backward(x, weights, c0, lengths, workspace, dy, dh_n, dc_n, hidden_size, \
bidirectional, bias, zoneout_mask=None, zoneout=0.0)

    BPTT through one ``lnlstm_layer(..., training=True)`` call.

    The custom operator ``torch.ops.fastlstm.lnlstm_layer_backward``:
    ``lnlstm_layer``'s autograd rule calls it. Every argument that the
    forward also takes must be the forward call's (it reads ``c0``, never
    ``h0``); it checks them as ``lnlstm_layer`` does, with the same
    exceptions.

    Parameters
    ----------
    x, weights, c0, lengths
        As given to ``lnlstm_layer``.
    workspace : Tensor
        The workspace that call returned.
    dy : Tensor
        [T,B,D*H], the gradient of ``y``.
    dh_n, dc_n : Tensor
        [D,B,H] each, the gradients of ``h_n`` and ``c_n``.
    hidden_size, bidirectional, bias
        As given to ``lnlstm_layer``.
    zoneout_mask, zoneout : optional
        As given to ``lnlstm_layer``.

    Returns
    -------
    list of Tensor
        ``[dx, dh0, dc0]``, [T,B,I], [D,B,H] and [D,B,H], then one gradient
        per tensor of ``weights``, in its order and shapes.

    Raises
    ------
    ValueError
        ``workspace`` is not one of a ``training=True`` call: 1-D, of ``x``'s
        dtype and at least the size the kernels need.
    fastlstm.ShapeError
        (a ValueError) ``dy``, ``dh_n`` or ``dc_n`` of the wrong shape.
    fastlstm.DTypeError
        (a TypeError) ``dy``, ``dh_n`` or ``dc_n`` whose dtype is not ``x``'s.
    RuntimeError
        On an attempt to differentiate it: for second derivatives,
        differentiate ``lnlstm_layer`` with ``create_graph=True``.
    """
    return _backward_impl("lnlstm", x, weights, c0, lengths, workspace, dy, [dh_n, dc_n],
                          _common_cfg("lnlstm", (hidden_size, bidirectional, bias)),
                          (zoneout_mask, zoneout, 0.0))


@lnlstm_layer_backward.register_fake
def _lnlstm_layer_backward_fake(x, weights, c0, lengths, workspace, dy, dh_n, dc_n,
                                hidden_size, bidirectional, bias, zoneout_mask=None,
                                zoneout=0.0):
    return _backward_fake("lnlstm", x, weights, (hidden_size, 0, bidirectional))


# Sphinx documents each op through its CustomOpDef, whose own __doc__ is torch's
# class docstring: give it the function's (documentation only)
for _op in (lstm_layer, lstm_layer_backward, gru_layer, gru_layer_backward, lnlstm_layer,
            lnlstm_layer_backward):
    _op.__doc__ = getattr(_op, "_init_fn", _op).__doc__

# the op pair of each cell, and how its schema's trailing arguments map to cfg
_OPS = {"lstm": (lstm_layer, lstm_layer_backward), "gru": (gru_layer, gru_layer_backward),
        "lnlstm": (lnlstm_layer, lnlstm_layer_backward)}


def _cfg_flags(cell: str) -> tuple:
    """Which of cfg's items the cell's ops take, from the cell spec: hidden_size,
    proj_size (a projection), bidirectional, bias, peephole (peepholes)."""
    spec = _spec.SPECS[cell]
    return (True, spec["proj"], True, True, spec["peephole"])


# the op's configuration arguments (after lengths): 5 for the LSTM, 3 for the others
_N_CFG = {cell: sum(_cfg_flags(cell)) for cell in _OPS}


def _op_cfg(cell: str, cfg: tuple) -> tuple:
    """The op's configuration arguments from cfg."""
    return tuple(v for v, on in zip(cfg, _cfg_flags(cell)) if on)


def _common_cfg(cell: str, args: tuple) -> tuple:
    """cfg from the op's configuration arguments (0 / False where the cell has
    no such option)."""
    it = iter(args)
    return tuple(next(it) if on else default
                 for on, default in zip(_cfg_flags(cell), (None, 0, None, None, False)))


def _op_zo(cell: str, zo) -> tuple:
    """The op's trailing (zoneout_mask, zoneout[, cell_clip]) from zo."""
    mask, zoneout, clip = NO_ZONEOUT if zo is None else zo
    if has_clip(cell):
        return (mask, float(zoneout), float(clip or 0.0))
    if clip:
        raise ValueError(f"cell_clip: the {cell} cell has no cell clip")
    return (mask, float(zoneout))


def _common_zo(cell: str, args) -> tuple:
    """zo from the op's trailing (zoneout_mask, zoneout[, cell_clip])."""
    return (args[0], args[1], args[2] if has_clip(cell) else 0.0)


def call_layer(cell: str, x, weights, states: list, lengths, cfg: tuple, training: bool,
               zo=None):
    """The cell's layer op -> y, [h_n (, c_n)], workspace. zo: see NO_ZONEOUT."""
    out = _OPS[cell][0](x, weights, *states, lengths, *_op_cfg(cell, cfg), training,
                        *_op_zo(cell, zo))
    return out[0], list(out[1:-1]), out[-1]


def call_backward(cell: str, x, weights, states0: list, lengths, ws, d_out, cfg,
                  zo=None) -> list:
    """The cell's backward op -> [dx, dh0 (, dc0)] + weight gradients. It reads
    c0 (LSTM), never h0; d_out: (dy, dh_n (, dc_n))."""
    return _OPS[cell][1](x, weights, *states0[1:], lengths, ws, *d_out, *_op_cfg(cell, cfg),
                         *_op_zo(cell, zo))


def _autodiff_grads(cell: str, inputs: list, grads: tuple, lengths, cfg, zo=None) -> list:
    """The vector-Jacobian product of one layer at `inputs` (x, *states,
    *weights) for `grads` (dy, *d_states), through `_autodiff`'s torch ops
    (zo: the forward's zoneout mask, zoneout and cell clip).
    Under ``create_graph`` it is a graph that can be differentiated again; it
    also takes grads that the older vmap batched (gradgradcheck's batched
    checks), which have no NumPy view. None where an input needs no gradient."""
    need = [i for i, t in enumerate(inputs) if t.requires_grad]
    out = [None] * len(inputs)
    if not need:
        return out
    ns = n_states(cell)
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        # differentiate with respect to fresh aliases: only this call's own paths
        # count (a weight that also reaches h0 through an earlier call is
        # differentiated there, by the outer backward)
        local = [t.view_as(t) if t.requires_grad else t for t in inputs]
        x, states, weights = local[0], local[1:1 + ns], local[1 + ns:]
        y, finals = _autodiff.layer(cell, x, weights, states, lengths, *cfg,
                                    *(NO_ZONEOUT if zo is None else zo))
        outs = (y, *finals)
        g = torch.autograd.grad(outs, [local[i] for i in need],
                                [torch.zeros_like(o) if d is None else d
                                 for o, d in zip(outs, grads)],
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


def inference_tensors(weights) -> bool:
    """A weight is an inference tensor (made under torch.inference_mode).
    Never while torch.compile traces, which cannot ask (and rejects them)."""
    return not torch.compiler.is_compiling() and any(w.is_inference() for w in weights)


def cached_pack(owner, weights: list, dtype, build):
    """`owner`'s packed inference weights (`build(isa)` packs them), kept in
    ``owner._fl_cache`` until the ISA changes, a weight tensor is replaced or
    its data pointer or version moves. The cache holds the tensors themselves,
    so a freed weight's memory cannot come back under the same address.
    Inference tensors (no version counter) are packed afresh on every call."""
    if owner.weights_dtype == "bfloat16" and dtype != torch.float32:
        raise DTypeError(f"weights_dtype='bfloat16' needs float32 parameters, got {dtype}")
    isa = resolve_isa()
    if inference_tensors(weights):  # no version counter tells whether they changed
        owner._fl_cache = None
        return build(isa)
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
        op = f"torch.ops.fastlstm.{self._CELL}_layer"
        raise RuntimeError(f"fastlstm.torch.{type(self).__name__} cannot be compiled by "
                           f"torch.jit.script (its forward runs Python around custom ops). "
                           f"Use torch.jit.trace, torch.compile or torch.export, which "
                           f"record {op}")

    def params_changed(self) -> None:
        """Drop the cached packed weights, after writes that torch does not see.

        Eager inference keeps the weights packed for the kernels until a
        parameter is replaced or its version counter moves, which every
        in-place torch op does (optimizer steps, ``load_state_dict``,
        ``torch.nn.init``). Writes through ``param.data`` or a NumPy view of a
        parameter bypass the counter: call this after them, and the next
        call packs the weights again.

        Examples
        --------
        >>> import torch, fastlstm.torch
        >>> lstm = fastlstm.torch.LSTM(8, 16)
        >>> with torch.no_grad():
        ...     y, _ = lstm(torch.randn(5, 2, 8))
        >>> _ = lstm.weight_hh_l0.data.mul_(0.5)
        >>> lstm.params_changed()
        """
        self._fl_cache = None


def _needs_autodiff(grads) -> bool:
    """The backward must run `_autodiff_grads`: under create_graph, or on
    grads batched by the older vmap (its fallback cannot loop over an op
    that returns a tensor list)."""
    return torch.is_grad_enabled() or any(
        g is not None and torch._C._functorch.is_legacy_batchedtensor(g) for g in grads)


# Every layer op takes (x, weights, *states, lengths, *config, training,
# zoneout_mask, zoneout[, cell_clip]) and returns (y, *final states,
# workspace); the backward ops take (x, weights, [c0,] lengths, workspace,
# dy, *d_states, *config, zoneout_mask, zoneout[, cell_clip]). The autograd
# and vmap rules below read those positions off the cell's state count and
# configuration length.


def _register_autograd(cell: str) -> None:
    layer_op, backward_op = _OPS[cell]
    ns, nc = n_states(cell), _N_CFG[cell]

    def setup_context(ctx, inputs, output):
        x, weights, states = inputs[0], inputs[1], inputs[2:2 + ns]
        ctx.cfg = _common_cfg(cell, inputs[3 + ns:3 + ns + nc])
        ctx.training = inputs[3 + ns + nc]
        trailing = inputs[4 + ns + nc:]
        ctx.zo_floats = _common_zo(cell, trailing)[1:]
        ctx.mark_non_differentiable(output[-1])
        ctx.save_for_backward(x, output[-1], inputs[2 + ns], trailing[0], *states, *weights)

    def grad(ctx, dy, *rest):
        d_out = (dy, *rest[:ns])  # (the workspace's grad is never used)
        x, ws, lengths, mask, *saved = ctx.saved_tensors
        states, weights = saved[:ns], saved[ns:]
        zo = (mask, *ctx.zo_floats)
        if _needs_autodiff(d_out):
            g = _autodiff_grads(cell, [x, *states, *weights], d_out, lengths, ctx.cfg, zo)
        elif not ctx.training:
            raise RuntimeError(f"fastlstm::{cell}_layer: backward needs a call with "
                               f"training=True (it saves the workspace BPTT reads)")
        else:
            g = call_backward(cell, x, weights, states, lengths, ws, d_out, ctx.cfg, zo)
        # -> the op's inputs: x, weights, *states, then none for the rest
        # (as many as the call passed: its defaulted trailing arguments may be absent)
        n_inputs = len(ctx.needs_input_grad)
        return (g[0], list(g[1 + ns:]), *g[1:1 + ns]) + (None,) * (n_inputs - 2 - ns)

    layer_op.register_autograd(grad, setup_context=setup_context)

    def not_differentiable(ctx, *grads):
        raise RuntimeError(f"fastlstm::{cell}_layer_backward is not differentiable: for "
                           f"second derivatives differentiate fastlstm::{cell}_layer with "
                           f"create_graph=True, which runs a differentiable backward")

    backward_op.register_autograd(not_differentiable,
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


def _register_vmap(cell: str) -> None:
    layer_op, backward_op = _OPS[cell]
    ns, nc = n_states(cell), _N_CFG[cell]

    def layer_rule(info, in_dims, x, weights, *rest):
        # trailing arguments left at their defaults may be absent: fill them in
        full = ns + 2 + nc + len(_op_zo(cell, None))
        rest = rest + _op_zo(cell, None)[len(rest) - full:] if len(rest) < full else rest
        in_dims = tuple(in_dims) + (None,) * (2 + full - len(in_dims))
        training = rest[ns + 1 + nc]
        if training or _has_batch_dim(in_dims[1]):
            return _vmap_loop(layer_op, info, in_dims, (x, weights, *rest))
        # inference with shared weights: the samples are more rows of one batch
        N = info.batch_size

        def rows(t, dim, axis):  # [.., B, ..] per sample -> [.., N*B, ..], samples outer
            t = t.unsqueeze(0).expand(N, *t.shape) if dim is None else t.movedim(dim, 0)
            t = t.movedim(0, axis)
            return t.reshape(*t.shape[:axis], -1, *t.shape[axis + 2:])

        xs = rows(x, in_dims[0], 1)
        B = xs.shape[1] // N
        states = [rows(s, d, 1) for s, d in zip(rest[:ns], in_dims[2:2 + ns])]
        lengths = rest[ns]
        lens = None if lengths is None else rows(lengths, in_dims[2 + ns], 0)
        mask = rest[ns + 2 + nc]  # the zoneout mask [T,B,D*Ho]: rows like x
        if mask is not None:
            mask = rows(mask, in_dims[4 + ns + nc], 1)
        out = layer_op(xs, weights, *states, lens, *rest[ns + 1:ns + 2 + nc], mask,
                       *rest[ns + 3 + nc:])

        def split(t, axis):  # [.., N*B, ..] -> [N, .., B, ..]
            return t.reshape(*t.shape[:axis], N, B, *t.shape[axis + 1:]).movedim(axis, 0)

        return ((*[split(t, 1) for t in out[:-1]], out[-1].new_empty((N, 0))),
                (0,) * len(out))

    torch.library.register_vmap(f"fastlstm::{cell}_layer", layer_rule)
    torch.library.register_vmap(f"fastlstm::{cell}_layer_backward",
                                lambda info, in_dims, *args:
                                _vmap_loop(backward_op, info, in_dims, args))


# --------------------------------------------------------------------------- CUDA


def _register_cuda(cell: str) -> None:
    """The op pair's CUDA kernels (`_cuda`); a clear error for a cell without."""
    layer_op, backward_op = _OPS[cell]
    ns, nc, defaults = n_states(cell), _N_CFG[cell], _op_zo(cell, None)
    nb = ns - 1  # the backward op's states before lengths: c0 (LSTM)

    def full(rest, n):  # trailing arguments left at their defaults may be absent
        return tuple(rest) + defaults[len(rest) - n:] if len(rest) < n else tuple(rest)

    if cell not in _cuda.CELLS:
        def no_kernel(*args):
            raise NotImplementedError(
                f"fastlstm::{cell}_layer has no CUDA kernel (the CUDA backend has "
                f"{' and '.join(_cuda.CELLS)}); run it on CPU tensors")
        layer_op.register_kernel("cuda")(no_kernel)
        backward_op.register_kernel("cuda")(no_kernel)
        return

    def layer(x, weights, *rest):
        rest = full(rest, ns + 2 + nc + len(defaults))
        cfg = _common_cfg(cell, rest[ns + 1:ns + 1 + nc])
        zo = check_zo(cell, _common_zo(cell, rest[ns + 2 + nc:]), x.device)
        return _cuda.forward(cell, x, weights, list(rest[:ns]), rest[ns], cfg,
                             rest[ns + 1 + nc], zo)

    def backward(x, weights, *rest):
        rest = full(rest, nb + 3 + ns + nc + len(defaults))
        lengths, ws, dy = rest[nb:nb + 3]
        cfg = _common_cfg(cell, rest[nb + 3 + ns:nb + 3 + ns + nc])
        zo = check_zo(cell, _common_zo(cell, rest[nb + 3 + ns + nc:]), x.device)
        return _cuda.backward(cell, x, weights, rest[0] if nb else None, lengths, ws, dy,
                              list(rest[nb + 3:nb + 3 + ns]), cfg, zo)

    layer_op.register_kernel("cuda")(layer)
    backward_op.register_kernel("cuda")(backward)


for _cell in _OPS:
    _register_autograd(_cell)
    _register_vmap(_cell)
    _register_cuda(_cell)


# --------------------------------------------------------------------------- eager


class _EagerLayer(torch.autograd.Function):
    """A layer op + its backward op for eager autograd: the weights are packed
    once (with the backward panels) and kept for the backward, where the op
    pair packs in each (an op cannot pass packed weights on). key: (cell,
    *cfg) or (cell, *cfg, zoneout_mask, zoneout, cell_clip) (see NO_ZONEOUT;
    the mask is not differentiated); tensors: the states ([h0 (, c0)]) then
    the weights."""

    @staticmethod
    def forward(ctx, x, lengths, key, *tensors):
        cell, cfg, zo = key[0], key[1:6], check_zo(key[0], key[6:] or None)
        ns = n_states(cell)
        states, weights = list(tensors[:ns]), list(tensors[ns:])
        pl, dims, dtype, isa, nt, xn, s0, lens, keep = _prepare(cell, x, weights, states,
                                                                lengths, *cfg, True, zo)
        y, finals, ws = _run_forward(cell, pl, dims, dtype, isa, nt, xn, s0, lens, True, keep)
        ctx.save_for_backward(x, zo[0], *tensors)  # version-checked by autograd
        ctx.kernel = (pl, dims, dtype, isa, cell, cfg, zo[1:], lengths, lens, ws, keep)
        return (y, *finals)

    @staticmethod
    def backward(ctx, dy, *d_states):
        x, mask, *tensors = ctx.saved_tensors
        pl, dims, dtype, isa, cell, cfg, zo_floats, lengths, lens, ws, keep = ctx.kernel
        zo = (mask, *zo_floats)
        ns = n_states(cell)
        states, weights = tensors[:ns], tensors[ns:]
        d_out = (dy, *d_states)
        if _needs_autodiff(d_out):
            g = _autodiff_grads(cell, [x, *tensors], d_out, lengths, cfg, zo)
        elif _transforms_active():  # torch.func.vmap over the backward: the op has the rule
            g = call_backward(cell, x, list(weights), list(states), lengths, ws, d_out, cfg,
                              zo)
        else:
            c0 = _np(states[1]) if ns > 1 else None
            g = _run_backward(cell, pl, dims, dtype, isa, torch.get_num_threads(), cfg[3],
                              _np(x), c0, lens, ws, dy, list(d_states), keep)
        return (g[0], None, None) + tuple(g[1:])


def _infer_layer(packed, k: int, x: Tensor, states: list, lengths, zo=None):
    """Layer k of `packed` without autograd: y, [h_n (, c_n)]. zo: see
    NO_ZONEOUT."""
    _, H, _, P, bidirectional, _, peephole = packed.config
    T, B, In = x.shape
    mask, zoneout, clip = check_zo(packed.cell, zo)
    dims = _dims(packed.cell, T, B, In, H, P, 2 if bidirectional else 1, peephole, zoneout,
                 clip)
    y, finals, _ = _run_forward(packed.cell, packed.layers[k], dims, packed.dtype, packed.isa,
                                torch.get_num_threads(), _np(x), [_np(s) for s in states],
                                _lengths(lengths, B, T), False,
                                _mask_array(mask, packed.dtype, dims))
    return y, finals
