"""Stateless LSTM, GRU and layer-norm LSTM forward and backward on explicit weights.

`params` is a dict with torch.nn.LSTM's / torch.nn.GRU's state_dict keys
(``weight_ih_l0``, ``weight_hh_l0_reverse``, ...), plus, for the LSTM,
``weight_ph_l{k}`` [3,H] (rows i, f, o) for peepholes, and for the layer-norm
LSTM its gains and cell-norm bias (``weight_ln_ih_l{k}`` ..., see
`param_shapes(..., cell="lnlstm")`). Arrays are
time-major: x [T,B,I], h0 [D*L,B,Ho], c0 [D*L,B,H] (LSTM). The layer classes
in `fastlstm.layers` are thin wrappers over these calls.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from . import _checks, _core, _spec
from ._runtime import get_num_threads, resolve_isa

__all__ = ["param_shapes", "init_params", "pack", "Packed", "lstm_forward", "lstm_backward",
           "gru_forward", "gru_backward", "layer_norm_lstm_forward",
           "layer_norm_lstm_backward", "Context"]


def layer_weight_names(k: int, bidirectional: bool, bias: bool, proj: bool,
                       peephole: bool) -> list:
    """Layer k's parameter names in the order the framework ops take them: per
    direction the LSTM cell spec's order, w_ih, w_hh, then b_ih, b_hh, w_hr,
    w_ph where present (fastlstm.torch's op and fastlstm.jax's FFI handlers)."""
    return _spec.layer_weight_names("lstm", k, bidirectional, bias, proj, peephole)


def param_shapes(input_size, hidden_size, num_layers=1, bias=True, bidirectional=False,
                 proj_size=0, peephole=False, cell="lstm") -> dict:
    """Parameter names and shapes, in torch.nn.LSTM's / GRU's order (peepholes last)."""
    return _spec.param_shapes(_cell_name(cell), input_size, hidden_size, num_layers, bias,
                              bidirectional, proj_size, peephole)


_CELLS = ("lstm", "gru", "lnlstm")  # the cells with CPU kernels


def _cell_name(cell) -> str:
    if cell not in _CELLS:
        raise ValueError(f"cell: expected one of {_CELLS}, got {cell!r}")
    return cell


def init_params(shapes: dict, hidden_size: int, dtype, rng: np.random.Generator,
                cell: str = "lstm") -> dict:
    """torch's default init, as the cell spec states it: U(-1/sqrt(H), 1/sqrt(H))
    (drawn in the order of `shapes`), or ones / zeros (the layer-norm gains and
    bias, as torch.nn.LayerNorm)."""
    bound = 1.0 / np.sqrt(hidden_size)
    init = {p["name"]: p["init"] for p in _spec.SPECS[_cell_name(cell)]["params"]}
    out = {}
    for name, shape in shapes.items():
        how = init[_spec.stem(name)]
        v = rng.uniform(-bound, bound, shape) if how == "uniform" else \
            np.full(shape, 1.0 if how == "ones" else 0.0)
        out[name] = np.ascontiguousarray(v.astype(dtype))
    return out


class Packed:
    """The weights of a multi-layer LSTM packed once for the kernels.

    Built by `pack` (the layers keep one and rebuild it when their weights
    change). It holds copies: later edits of the source arrays are not seen.
    """
    __slots__ = ("layers", "names", "shapes", "isa", "dtype", "with_backward", "config",
                 "weights_dtype", "cell")

    def __init__(self, layers, names, shapes, isa, dtype, with_backward, config,
                 weights_dtype, cell="lstm"):
        self.layers = layers              # per layer: a _core.PackedLayerF32/F64
        self.names = names                # per layer, per direction: the spec's names or None
        self.shapes = shapes              # name -> shape
        self.isa, self.dtype = isa, dtype
        self.with_backward = with_backward
        self.config = config              # (input_size, H, L, P, bidirectional, bias, peephole)
        self.weights_dtype = weights_dtype  # dtype of W_ih, W_hh in the kernels
        self.cell = cell                  # "lstm" or "gru"

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.layers)

    def __repr__(self):
        return (f"Packed({self.cell}, {len(self.layers)} layers, isa={self.isa!r}, "
                f"dtype={self.dtype}, "
                f"weights_dtype={self.weights_dtype!r}, with_backward={self.with_backward}, "
                f"nbytes={self.nbytes})")


def weights_dtype_of(weights_dtype, dtype) -> str:
    """'bfloat16', or the layer's own dtype name for None / that dtype."""
    if weights_dtype is None or (weights_dtype != "bfloat16"
                                 and _is_dtype(weights_dtype, dtype)):
        return dtype.name
    if weights_dtype != "bfloat16":
        raise ValueError(f"weights_dtype: expected None, {dtype.name!r} or 'bfloat16', got "
                         f"{weights_dtype!r}")
    if dtype != np.float32:
        raise ValueError(f"weights_dtype: 'bfloat16' needs dtype float32, got {dtype}")
    return "bfloat16"


def _is_dtype(value, dtype) -> bool:
    try:
        return np.dtype(value) == dtype
    except TypeError:
        return False


def _pack_checked(params, config, dtype, isa, with_backward, nt, bf16=False,
                  cell="lstm") -> Packed:
    """`pack` on arguments already checked: params hold every key, right shape and dtype.
    bf16: W_ih and W_hh as bfloat16 (float32, inference only)."""
    I, H, L, P, bidirectional, bias, peephole = config
    D, Ho = (2 if bidirectional else 1), (P or H)
    cls = _core.PackedLayerF32 if dtype == np.float32 else _core.PackedLayerF64
    layers, names = [], []
    for k in range(L):
        per_dir = [_direction_weights(params, k, sfx, bias, peephole, P, cell)
                   for sfx in _spec.suffixes(bidirectional)]
        shape = _core.LayerDims(T=1, B=1, I=I if k == 0 else D * Ho, H=H, P=P, D=D,
                                peephole=bool(peephole), cell=cell)
        layers.append(cls(shape, [w for _, w in per_dir], isa, with_backward, nt, bf16))
        names.append([n for n, _ in per_dir])
    shapes = {k: tuple(v.shape) for k, v in params.items()}
    return Packed(layers, names, shapes, isa, dtype, with_backward, config,
                  "bfloat16" if bf16 else dtype.name, cell)


def pack(params, *, input_size, hidden_size, num_layers=1, proj_size=0, bidirectional=False,
         bias=True, peephole=False, training=False, isa=None, weights_dtype=None,
         cell="lstm") -> Packed:
    """Pack `params` for `lstm_forward` / `gru_forward` (``packed=``);
    training=True also packs what the backward needs. The result holds copies
    of the weights. weights_dtype='bfloat16' (float32 params, inference only)
    rounds W_ih and W_hh to bfloat16 for the kernels; products, biases and
    state stay float32."""
    cell = _cell_name(cell)
    I, H, L, _, P = _checks.layer_config(input_size, hidden_size, num_layers, 0.0, proj_size)
    _check_options(cell, P, peephole)
    params, dtype = _checked_params(params, I, H, L, bias, bidirectional, P, peephole,
                                    cell=cell)
    config = (I, H, L, P, bool(bidirectional), bool(bias), bool(peephole))
    wdt = weights_dtype_of(weights_dtype, dtype)
    if wdt == "bfloat16" and training:
        raise ValueError("weights_dtype: 'bfloat16' weights are for inference only "
                         "(training=False)")
    return _pack_checked(params, config, dtype, resolve_isa(isa), bool(training),
                         get_num_threads(), wdt == "bfloat16", cell)


def _check_options(cell, P, peephole) -> None:
    if cell != "lstm" and P:
        raise ValueError(f"proj_size: the {cell} cell has no projection, got {P}")
    if cell != "lstm" and peephole:
        raise ValueError(f"peephole: the {cell} cell has no peepholes")


def _checked_params(params, I, H, L, bias, bidirectional, P, peephole, dtype=None,
                    cell="lstm"):
    shapes = param_shapes(I, H, L, bias, bidirectional, P, peephole, cell)
    if not isinstance(params, dict) or set(params) != set(shapes):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"params: expected a dict with the keys {sorted(shapes)}, got {got}")
    if dtype is None:  # pack(): the dtype of the first parameter
        name = next(iter(shapes))
        if not isinstance(params[name], np.ndarray):
            raise TypeError(f"{name}: expected a numpy.ndarray, got "
                            f"{type(params[name]).__name__}")
        dtype = _checks.dtype_of(params[name].dtype)
    return {k: _checks.shaped(params[k], k, dtype, shapes[k]) for k in shapes}, dtype


@dataclass
class _Layer:
    dims: object         # the _core.LayerDims of the call
    packed: object       # the layer's _core.PackedLayer (with backward panels)
    names: list          # per direction, the parameter names in the cell spec's order
    x: np.ndarray        # [T,B,I] the layer's input (after dropout)
    c0: np.ndarray       # [D,B,H] (LSTM), None (GRU)
    ws: np.ndarray       # saved by the training forward


@dataclass
class Context:
    """What a training-mode forward saves for `lstm_backward` / `gru_backward`."""
    layers: list
    lengths: np.ndarray | None
    shapes: dict = field(default_factory=dict)          # parameter name -> shape
    dropout_masks: list = field(default_factory=list)   # [T,B,D*Ho] per gap between layers
    isa: str = "scalar"
    dtype: np.dtype = np.dtype(np.float32)
    consumed: bool = False
    cell: str = "lstm"
    zoneout_masks: list = field(default_factory=list)   # [T,B,D*Ho] per layer, or empty


def _direction_weights(params, k, sfx, bias, peephole, proj, cell="lstm"):
    """(names, arrays) of one direction in the kernels' order: the cell
    spec's, None where absent."""
    names = _spec.direction_slots(cell, k, sfx, bias, bool(proj), peephole)
    return names, tuple(None if n is None else params[n] for n in names)


def _kernel(kind: str, dtype: np.dtype):
    return getattr(_core, f"layer_{kind}_{'f32' if dtype == np.float32 else 'f64'}")


def lstm_forward(x, params, *, num_layers, hidden_size, proj_size=0, bidirectional=False,
                 bias=True, peephole=False, h0=None, c0=None, lengths=None, dropout=0.0,
                 training=False, rng=None, isa=None, packed=None, zoneout=0.0,
                 zoneout_masks=None, cell_clip=None):
    """Multi-layer LSTM forward.

    x [T,B,I]; h0 [D*L,B,Ho] and c0 [D*L,B,H] or None (zeros); lengths int [B] or
    None. Returns y [T,B,D*Ho], h_n, c_n and a Context (None unless training).
    Arrays must already have one float dtype; params must hold every key of
    `param_shapes` with that dtype, C-contiguous. `packed` (from `pack`, with
    the same configuration) skips packing the weights: then params may be None
    and the packed weights are used.
    zoneout (haste's, on h): in training, h_t = m⊙h_{t-1} + (1−m)⊙h̃_t with
    `zoneout_masks` (one [T,B,D*Ho] array per layer, 1 keeps h_{t-1}), or masks
    drawn as Bernoulli(zoneout) from `rng` when None; in inference, m = zoneout.
    cell_clip (ONNX's clip): gate pre-activations clipped to [-cell_clip, cell_clip].
    """
    return _checked_forward("lstm", x, params, num_layers, hidden_size, proj_size,
                            bidirectional, bias, peephole, h0, c0, lengths, dropout, training,
                            rng, isa, packed, zoneout, zoneout_masks, cell_clip)


def gru_forward(x, params, *, num_layers, hidden_size, bidirectional=False, bias=True,
                h0=None, lengths=None, dropout=0.0, training=False, rng=None, isa=None,
                packed=None, zoneout=0.0, zoneout_masks=None):
    """Multi-layer GRU forward (torch.nn.GRU's maths, gates r, z, n).

    x [T,B,I]; h0 [D*L,B,H] or None (zeros); lengths int [B] or None. Returns
    y [T,B,D*H], h_n and a Context (None unless training). params as
    `param_shapes(..., cell="gru")`; `packed` from `pack(..., cell="gru")`;
    zoneout as in `lstm_forward`.
    """
    y, hn, _, ctx = _checked_forward("gru", x, params, num_layers, hidden_size, 0,
                                     bidirectional, bias, False, h0, None, lengths, dropout,
                                     training, rng, isa, packed, zoneout, zoneout_masks, None)
    return y, hn, ctx


def layer_norm_lstm_forward(x, params, *, num_layers, hidden_size, bidirectional=False,
                            bias=True, h0=None, c0=None, lengths=None, dropout=0.0,
                            training=False, rng=None, isa=None, packed=None, zoneout=0.0,
                            zoneout_masks=None):
    """Multi-layer layer-norm LSTM forward (Ba et al. 2016, as haste's LayerNormLSTM):
    a = LN(x W_ih^T)⊙γ_ih + LN(h W_hh^T)⊙γ_hh + b_ih + b_hh, the LSTM's gates,
    h = o⊙tanh(LN(c_t)⊙γ_c + β_c); LN over the whole row, eps 1e-5, biased
    variance. Arguments and returns as `lstm_forward` (no projection,
    peepholes or cell clip); params as `param_shapes(..., cell="lnlstm")`;
    `packed` from `pack(..., cell="lnlstm")`. c_n is the un-normalised c.
    """
    return _checked_forward("lnlstm", x, params, num_layers, hidden_size, 0, bidirectional,
                            bias, False, h0, c0, lengths, dropout, training, rng, isa, packed,
                            zoneout, zoneout_masks, None)


def _checked_forward(cell, x, params, num_layers, hidden_size, proj_size, bidirectional, bias,
                     peephole, h0, c0, lengths, dropout, training, rng, isa, packed,
                     zoneout, zoneout_masks, cell_clip):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x: expected a numpy.ndarray, got {type(x).__name__}")
    dtype = _checks.dtype_of(x.dtype)
    if x.ndim != 3:
        raise ValueError(f"x: expected a 3-D [T,B,I] array, got shape {x.shape}")
    x = np.ascontiguousarray(x)
    T, B, I = x.shape
    I, H, num_layers, dropout, P = _checks.layer_config(I, hidden_size, num_layers, dropout,
                                                        proj_size)
    Ho, D = (P or H), (2 if bidirectional else 1)
    if T < 1 or B < 1:
        raise ValueError(f"x: T and B must be >= 1, got shape {x.shape}")
    config = (I, H, num_layers, P, bool(bidirectional), bool(bias), bool(peephole))
    isa = resolve_isa(isa)
    nt = get_num_threads()
    if packed is None:
        params, _ = _checked_params(params, I, H, num_layers, bias, bidirectional, P, peephole,
                                    dtype, cell)
        packed = _pack_checked(params, config, dtype, isa, bool(training), nt, cell=cell)
    elif not isinstance(packed, Packed):
        raise TypeError(f"packed: expected a fastlstm.functional.Packed, got "
                        f"{type(packed).__name__}")
    elif (packed.cell != cell or packed.config != config or packed.dtype != dtype
          or packed.isa != isa or (training and not packed.with_backward)):
        raise ValueError(f"packed: built for the {packed.cell} cell, {packed.config}, "
                         f"{packed.dtype}, isa {packed.isa!r}, with_backward="
                         f"{packed.with_backward}; this call needs the {cell} cell, {config}, "
                         f"{dtype}, isa {isa!r}, training={bool(training)}")
    if h0 is not None:
        h0 = _checks.shaped(h0, "h0", dtype, (D * num_layers, B, Ho))
    if c0 is not None:
        c0 = _checks.shaped(c0, "c0", dtype, (D * num_layers, B, H))
    if lengths is not None:
        lengths = _checks.lengths_array(lengths, B, T)
    if training and dropout > 0.0 and num_layers > 1 and rng is None:
        raise ValueError("rng: a numpy.random.Generator is needed for dropout in training")
    zoneout, cell_clip = _checks.zoneout_config(zoneout, cell_clip)
    if cell_clip is not None and cell != "lstm":
        raise ValueError(f"cell_clip: the {cell} cell has no cell clip")
    if zoneout_masks is not None:
        if not training:
            raise ValueError("zoneout_masks: for training=True; inference uses zoneout as p")
        if not isinstance(zoneout_masks, (list, tuple)) or len(zoneout_masks) != num_layers:
            raise ValueError(f"zoneout_masks: expected a list of {num_layers} arrays")
        zoneout_masks = [_checks.shaped(m, f"zoneout_masks[{k}]", dtype, (T, B, D * Ho))
                         for k, m in enumerate(zoneout_masks)]
    elif training and zoneout > 0.0 and rng is None:
        raise ValueError("rng: a numpy.random.Generator is needed for zoneout in training "
                         "(or pass zoneout_masks)")
    return _forward(x, packed, h0, c0, lengths, dropout, bool(training), rng, nt, zoneout,
                    zoneout_masks, cell_clip)


def _forward(x, packed: Packed, h0, c0, lengths, dropout, training, rng, nt, zoneout=0.0,
             zoneout_masks=None, cell_clip=None, pool=None):
    """The forward on checked arguments: x [T,B,I] C-contiguous of packed.dtype.
    Returns y, h_n, c_n (None for the GRU), ctx. Training with zoneout uses
    zoneout_masks, or draws them from rng. pool: the module's BufferPool, which
    the workspaces come from (and `_backward` returns them to), or None."""
    dtype, isa, cell = packed.dtype, packed.isa, packed.cell
    _, H, num_layers, P, bidirectional, _, peephole = packed.config
    Ho, D = (P or H), (2 if bidirectional else 1)
    has_c = _spec.SPECS[cell]["states"] == 2
    T, B, _ = x.shape
    fwd = _kernel("forward", dtype)
    if h0 is None:
        h0 = np.zeros((D * num_layers, B, Ho), dtype)
    if c0 is None and has_c:
        c0 = np.zeros((D * num_layers, B, H), dtype)
    ctx = Context([], lengths, packed.shapes, [], isa, dtype, cell=cell) if training else None
    inp = x
    hn = np.empty((D * num_layers, B, Ho), dtype)
    cn = np.empty((D * num_layers, B, H), dtype) if has_c else None
    for k in range(num_layers):
        sl = slice(k * D, (k + 1) * D)
        dims = _core.LayerDims(T=T, B=B, I=inp.shape[2], H=H, P=P, D=D, peephole=bool(peephole),
                               cell=cell, zoneout=zoneout, cell_clip=cell_clip or 0.0)
        c0k, cnk = (c0[sl], cn[sl]) if has_c else (None, None)
        y = np.empty((T, B, D * Ho), dtype)
        ws = keep = None
        if training:
            ws = _workspace(pool, _core.workspace_size(dims, lengths, isa, dtype.itemsize),
                            dtype)
            if zoneout_masks is not None:
                keep = np.ascontiguousarray(zoneout_masks[k])
            elif zoneout > 0.0:
                keep = (rng.random((T, B, D * Ho)) < zoneout).astype(dtype)
            if keep is not None:
                ctx.zoneout_masks.append(keep)
        fwd(dims, packed.layers[k], inp, lengths, h0[sl], c0k, y, hn[sl], cnk, ws, nt, isa,
            keep)
        if training:
            ctx.layers.append(_Layer(dims, packed.layers[k], packed.names[k], inp, c0k, ws))
        if k < num_layers - 1 and training and dropout > 0.0:
            keep = rng.random(y.shape) >= dropout
            mask = (keep / (1.0 - dropout)).astype(dtype) if dropout < 1.0 else \
                np.zeros(y.shape, dtype)
            ctx.dropout_masks.append(mask)
            y = y * mask
        inp = y
    return inp, hn, cn, ctx


def lstm_backward(ctx: Context, dy, dh_n=None, dc_n=None, grads=None):
    """BPTT through a training-mode `lstm_forward`. Consumes ctx.

    dy [T,B,D*Ho]; dh_n, dc_n like h_n, c_n or None (zeros). Parameter
    gradients are accumulated into `grads` (a dict of arrays keyed like params;
    missing entries are created as zeros). It differentiates the weights the
    forward used. Returns dx, dh0, dc0, grads.
    """
    return _backward(ctx, "lstm", dy, dh_n, dc_n, grads)


def gru_backward(ctx: Context, dy, dh_n=None, grads=None):
    """BPTT through a training-mode `gru_forward`. Consumes ctx.

    dy [T,B,D*H]; dh_n like h_n or None (zeros). Parameter gradients are
    accumulated into `grads` as in `lstm_backward`. Returns dx, dh0, grads.
    """
    dx, dh0, _, grads = _backward(ctx, "gru", dy, dh_n, None, grads)
    return dx, dh0, grads


def layer_norm_lstm_backward(ctx: Context, dy, dh_n=None, dc_n=None, grads=None):
    """BPTT through a training-mode `layer_norm_lstm_forward`, as `lstm_backward`
    (the gains and the cell-norm bias get their gradients too). Returns dx,
    dh0, dc0, grads."""
    return _backward(ctx, "lnlstm", dy, dh_n, dc_n, grads)


class BufferPool:
    """The forward workspaces and backward scratch of a module's consumed
    training steps, kept for its next step. They are the largest buffers of
    a step (deepbench: 79 and 65 MB a layer); new ones each step touch fresh
    pages (measured: 23,000 page faults and about 10% of a 2-thread deepbench
    training step). A buffer is in the pool only while no context holds it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._free = []

    def take(self, n: int, dtype) -> np.ndarray:
        """A buffer of n elements of dtype: a kept one if one fits, else a new one."""
        with self._lock:
            for i, b in enumerate(self._free):
                if b.size == n and b.dtype == dtype:
                    return self._free.pop(i)
        return np.empty(n, dtype)

    def give(self, buffers: list, most: int) -> None:
        """Keep buffers (no longer used by anyone), and at most `most` in all."""
        with self._lock:
            self._free.extend(buffers)
            del self._free[:-most]

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


def _workspace(pool: BufferPool | None, n: int, dtype) -> np.ndarray:
    return np.empty(n, dtype) if pool is None else pool.take(n, dtype)


def _backward(ctx: Context, cell, dy, dh_n, dc_n, grads, pool=None):
    if ctx is None or ctx.consumed:
        raise RuntimeError("backward: no saved training-mode forward to differentiate "
                           "(each forward in train() mode can be back-propagated once)")
    if ctx.cell != cell:
        raise ValueError(f"ctx: saved by a {ctx.cell} forward, not a {cell} one")
    dtype, isa, nt = ctx.dtype, ctx.isa, get_num_threads()
    has_c = _spec.SPECS[cell]["states"] == 2
    bwd = _kernel("backward", dtype)
    grads = {} if grads is None else grads
    d = ctx.layers[0].dims
    T, B, H, P, D = d.T, d.B, d.H, d.P, d.D
    L, Ho = len(ctx.layers), (P or H)
    dy = _checks.shaped(dy, "dy", dtype, (T, B, D * Ho))
    dh_n = np.zeros((D * L, B, Ho), dtype) if dh_n is None else \
        _checks.shaped(dh_n, "dh_n", dtype, (D * L, B, Ho))
    if has_c:
        dc_n = np.zeros((D * L, B, H), dtype) if dc_n is None else \
            _checks.shaped(dc_n, "dc_n", dtype, (D * L, B, H))
    ctx.consumed = True
    dh0 = np.empty((D * L, B, Ho), dtype)
    dc0 = np.empty((D * L, B, H), dtype) if has_c else None
    for k in reversed(range(L)):
        lay = ctx.layers[k]
        g = [tuple(None if n is None else _grad_buffer(grads, n, ctx.shapes[n], dtype)
                   for n in names)
             for names in lay.names]
        dx = np.empty_like(lay.x)
        sl = slice(k * D, (k + 1) * D)
        scratch = _workspace(pool, _core.backward_scratch_size(lay.dims, ctx.lengths, isa,
                                                               dtype.itemsize), dtype)
        bwd(lay.dims, lay.packed, g, lay.x, ctx.lengths, lay.c0, lay.ws, dy,
            dh_n[sl], dc_n[sl] if has_c else None, dx, dh0[sl], dc0[sl] if has_c else None,
            nt, isa, ctx.zoneout_masks[k] if ctx.zoneout_masks else None, scratch)
        if pool is not None:  # no one else holds them: ctx is consumed
            pool.give([lay.ws, scratch], 2 * L)
        lay.ws = None
        dy = dx * ctx.dropout_masks[k - 1] if (k > 0 and ctx.dropout_masks) else dx
    return dy, dh0, dc0, grads


def _grad_buffer(grads: dict, name: str, shape: tuple, dtype) -> np.ndarray:
    g = grads.get(name)
    if g is None:
        g = grads[name] = np.zeros(shape, dtype)
    return g
