"""Stateless LSTM, GRU and layer-norm LSTM forward and backward on explicit weights.

``params`` is a dict with torch.nn.LSTM's / torch.nn.GRU's state_dict keys
(``weight_ih_l0``, ``weight_hh_l0_reverse``, ...), plus, for the LSTM,
``weight_ph_l{k}`` [3,H] (rows i, f, o) for peepholes, and for the layer-norm
LSTM its gains and cell-norm bias (``weight_ln_ih_l{k}`` ..., see
``param_shapes(..., cell="lnlstm")``). Arrays are time-major: ``x`` [T,B,I],
``h0`` [D*L,B,Ho], ``c0`` [D*L,B,H] (LSTM). The layer classes in
``fastlstm.layers`` are thin wrappers over these calls.

Sizes throughout: T steps, B batch rows, I input features, H the hidden size,
L layers, D = 2 if bidirectional else 1, and Ho = proj_size or H, the width
of h.
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
    """Layer ``k``'s LSTM parameter names, in the order the framework ops take them.

    Per direction (forward, then ``_reverse``), the LSTM cell spec's order:
    ``weight_ih``, ``weight_hh``, then ``bias_ih``, ``bias_hh``, ``weight_hr``,
    ``weight_ph`` where present. fastlstm.torch's op and fastlstm.jax's FFI
    handlers take the weights in this order.

    Parameters
    ----------
    k : int
        The layer, 0 for the first.
    bidirectional : bool
        Add the reverse direction's names (suffix ``_reverse``).
    bias : bool
        Include ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
    proj : bool
        Include the projection ``weight_hr_l{k}`` (``proj_size > 0``).
    peephole : bool
        Include the peepholes ``weight_ph_l{k}``.

    Returns
    -------
    list of str
        The names, e.g. ``['weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0',
        'bias_hh_l0']`` for ``k=0``, one direction, bias only.

    Notes
    -----
    The peepholes come with their direction here; :func:`param_shapes` lists
    them after every layer.
    """
    return _spec.layer_weight_names("lstm", k, bidirectional, bias, proj, peephole)


def param_shapes(input_size, hidden_size, num_layers=1, bias=True, bidirectional=False,
                 proj_size=0, peephole=False, cell="lstm") -> dict:
    """Parameter names and shapes, in torch.nn.LSTM's / GRU's order (peepholes last).

    Layer by layer, direction by direction (``_reverse`` second), each direction
    in the cell's order: ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
    ``bias_hh_l{k}``, then the LSTM's ``weight_hr_l{k}`` or the layer-norm LSTM's
    ``weight_ln_ih_l{k}``, ``weight_ln_hh_l{k}``, ``weight_ln_c_l{k}``,
    ``bias_ln_c_l{k}``. The LSTM's peepholes ``weight_ph_l{k}``, which torch has
    not, come last, after every layer.

    Parameters
    ----------
    input_size : int
        I, the input width of layer 0.
    hidden_size : int
        The hidden size H.
    num_layers : int, default 1
        The number of layers L.
    bias : bool, default True
        Include ``bias_ih_l{k}`` and ``bias_hh_l{k}``. The layer-norm LSTM's
        gains and ``bias_ln_c_l{k}`` are there whatever ``bias`` says.
    bidirectional : bool, default False
        Add the reverse direction of every layer.
    proj_size : int, default 0
        LSTM only (the other cells ignore it): > 0 adds ``weight_hr_l{k}`` and
        makes h proj_size wide.
    peephole : bool, default False
        LSTM only (the other cells ignore it): add ``weight_ph_l{k}``.
    cell : {"lstm", "gru", "lnlstm"}, default "lstm"
        The cell.

    Returns
    -------
    dict of str to tuple of int
        ``{name: shape}``. With G = 4 (LSTMs) or 3 (GRU) gates:
        ``weight_ih_l{k}`` [G*H, I_k] (I_0 = I, I_k = D*Ho for k > 0),
        ``weight_hh_l{k}`` [G*H, Ho], ``bias_ih_l{k}`` and ``bias_hh_l{k}``
        [G*H], ``weight_hr_l{k}`` [Ho, H], ``weight_ph_l{k}`` [3, H] (rows i, f,
        o), ``weight_ln_ih_l{k}`` and ``weight_ln_hh_l{k}`` [4H],
        ``weight_ln_c_l{k}`` and ``bias_ln_c_l{k}`` [H].

    Raises
    ------
    ValueError
        If ``cell`` is not ``"lstm"``, ``"gru"`` or ``"lnlstm"``. The sizes are
        not checked here (:func:`pack` and the forwards check them).

    Examples
    --------
    >>> shapes = param_shapes(3, 4, proj_size=2)
    >>> list(shapes)
    ['weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0', 'bias_hh_l0', 'weight_hr_l0']
    >>> shapes["weight_hh_l0"], shapes["weight_hr_l0"]
    ((16, 2), (2, 4))
    """
    return _spec.param_shapes(_cell_name(cell), input_size, hidden_size, num_layers, bias,
                              bidirectional, proj_size, peephole)


_CELLS = ("lstm", "gru", "lnlstm")  # the cells with CPU kernels


def _cell_name(cell) -> str:
    if cell not in _CELLS:
        raise ValueError(f"cell: expected one of {_CELLS}, got {cell!r}")
    return cell


def init_params(shapes: dict, hidden_size: int, dtype, rng: np.random.Generator,
                cell: str = "lstm") -> dict:
    """Initial parameters: torch's default init, as the cell spec states it.

    Every weight and bias is drawn from U(-1/sqrt(H), 1/sqrt(H)) (as
    torch.nn.LSTM / GRU), in the order of ``shapes``; the layer-norm gains are
    ones and its bias zeros (as torch.nn.LayerNorm). The draws are float64,
    then cast to ``dtype``.

    Parameters
    ----------
    shapes : dict of str to tuple of int
        Names and shapes, as :func:`param_shapes` returns them for ``cell``.
    hidden_size : int
        H, which sets the bound 1/sqrt(H).
    dtype : numpy dtype
        The arrays' dtype (the kernels take float32 or float64).
    rng : numpy.random.Generator
        The source of the uniform draws.
    cell : {"lstm", "gru", "lnlstm"}, default "lstm"
        The cell whose spec gives each parameter's init.

    Returns
    -------
    dict of str to numpy.ndarray
        ``{name: array}`` in the order of ``shapes``, each C-contiguous, of
        ``dtype``.

    Raises
    ------
    ValueError
        If ``cell`` is not ``"lstm"``, ``"gru"`` or ``"lnlstm"``.
    KeyError
        If a name in ``shapes`` is not a parameter of ``cell``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> params = init_params(param_shapes(3, 4), 4, np.float32, rng)
    >>> params["weight_ih_l0"].shape, params["weight_ih_l0"].dtype
    ((16, 3), dtype('float32'))
    """
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
    """The weights of a layer stack, packed once for the kernels.

    Built by :func:`pack` and passed to the forwards as ``packed=`` (the layers
    keep one and rebuild it when their weights change). It holds copies: later
    edits of the source arrays are not seen.

    Attributes
    ----------
    cell : str
        ``"lstm"``, ``"gru"`` or ``"lnlstm"``.
    config : tuple
        ``(input_size, hidden_size, num_layers, proj_size, bidirectional, bias,
        peephole)``, which a forward given ``packed=`` must match.
    dtype : numpy.dtype
        float32 or float64: the parameters' dtype, which ``x`` must have.
    weights_dtype : str
        The dtype of W_ih and W_hh in the kernels: ``dtype``'s name, or
        ``"bfloat16"``.
    isa : str
        The kernel path it was packed for: ``"scalar"``, ``"avx2"`` or
        ``"avx512"``.
    with_backward : bool
        Whether it also holds what the backward needs (``training=True``).
    shapes : dict of str to tuple of int
        The parameters' shapes.
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
        self.cell = cell                  # "lstm", "gru" or "lnlstm"

    @property
    def nbytes(self) -> int:
        """The memory the packed layers hold, in bytes (an int)."""
        return sum(p.nbytes for p in self.layers)

    def __repr__(self):
        return (f"Packed({self.cell}, {len(self.layers)} layers, isa={self.isa!r}, "
                f"dtype={self.dtype}, "
                f"weights_dtype={self.weights_dtype!r}, with_backward={self.with_backward}, "
                f"nbytes={self.nbytes})")


def weights_dtype_of(weights_dtype, dtype) -> str:
    """The name of the dtype the kernels keep W_ih and W_hh in.

    Parameters
    ----------
    weights_dtype : None, dtype-like or "bfloat16"
        None or the layer's own dtype (anything :func:`numpy.dtype` reads as it,
        e.g. ``np.float32`` or ``"float32"``): the weights stay in ``dtype``.
        ``"bfloat16"``: W_ih and W_hh rounded to bfloat16 (float32 only).
    dtype : numpy.dtype
        The layer's dtype.

    Returns
    -------
    str
        ``"bfloat16"``, or ``dtype.name`` for None / that dtype.

    Raises
    ------
    ValueError
        If ``weights_dtype`` is anything else, or ``"bfloat16"`` while ``dtype``
        is not float32.
    """
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
    """Pack ``params`` once, for the forwards' ``packed=``.

    A forward given the result skips packing the weights, which it otherwise
    does on every call. The result holds copies of the weights: later edits of
    ``params`` are not seen. ``training=True`` also packs what the backward
    needs.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        Exactly the keys of ``param_shapes(input_size, hidden_size, num_layers,
        bias, bidirectional, proj_size, peephole, cell)``, each of its shape.
        The dtype of ``weight_ih_l0``, float32 or float64, is the pack's dtype:
        every array must have it. Arrays that are not C-contiguous are copied.
    input_size : int
        I >= 1.
    hidden_size : int
        H >= 1.
    num_layers : int, default 1
        L >= 1.
    proj_size : int, default 0
        LSTM only: 0 <= proj_size < hidden_size.
    bidirectional : bool, default False
        Both directions in every layer.
    bias : bool, default True
        Whether ``params`` holds ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
    peephole : bool, default False
        LSTM only: whether ``params`` holds ``weight_ph_l{k}``.
    training : bool, default False
        Also pack what the backward needs; a forward with ``training=True``
        needs it.
    isa : {"scalar", "avx2", "avx512"} or None, default None
        The kernel path; None: ``$FASTLSTM_ISA``, else the best one this CPU and
        build run. A forward given the result must resolve to the same path.
    weights_dtype : None, dtype-like or "bfloat16", default None
        None or the params' dtype: the weights as they are. ``"bfloat16"``
        (float32 params, inference only) rounds W_ih and W_hh to bfloat16 for
        the kernels; products, biases and state stay float32.
    cell : {"lstm", "gru", "lnlstm"}, default "lstm"
        For :func:`lstm_forward`, :func:`gru_forward` or
        :func:`layer_norm_lstm_forward`.

    Returns
    -------
    Packed
        The packed weights, for ``packed=``.

    Raises
    ------
    TypeError
        If a size is not an int; ``weight_ih_l0`` is not a float32 or float64
        ``numpy.ndarray``; another array is not a ``numpy.ndarray`` or has
        another dtype (:class:`fastlstm.DTypeError`).
    ValueError
        If ``cell`` is unknown; a size is < 1 or ``proj_size`` is outside
        [0, hidden_size); ``proj_size`` or ``peephole`` is set for the GRU or
        the layer-norm LSTM; ``params`` is not a dict with exactly the expected
        keys; an array has the wrong shape (:class:`fastlstm.ShapeError`);
        ``weights_dtype`` is not allowed (see :func:`weights_dtype_of`) or is
        ``"bfloat16"`` with ``training=True``; ``isa`` is unknown or not
        supported by this CPU or build.

    Examples
    --------
    >>> shapes = param_shapes(8, 16, num_layers=2)
    >>> params = init_params(shapes, 16, np.float32, np.random.default_rng(0))
    >>> p = pack(params, input_size=8, hidden_size=16, num_layers=2)
    >>> x = np.zeros((10, 4, 8), np.float32)
    >>> y, h_n, c_n, _ = lstm_forward(x, None, num_layers=2, hidden_size=16, packed=p)
    >>> y.shape, h_n.shape
    ((10, 4, 16), (2, 4, 16))
    """
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
    """What a training-mode forward saves for its backward.

    The forwards return one with ``training=True`` (None otherwise); the
    matching backward (:func:`lstm_backward`, :func:`gru_backward`,
    :func:`layer_norm_lstm_backward`) consumes it: a forward can be
    back-propagated once. It keeps the packed weights the forward used, each
    layer's input and workspace, and the masks it applied. Not meant to be
    built or changed by hand.

    Attributes
    ----------
    cell : str
        The cell of the forward that saved it.
    consumed : bool
        True once a backward has used it.
    lengths : numpy.ndarray or None
        The forward's ``lengths``, int64 [B].
    dropout_masks : list of numpy.ndarray
        The dropout masks applied between layers, [T,B,D*Ho] each, holding the
        1/(1-dropout) scale; empty without dropout.
    zoneout_masks : list of numpy.ndarray
        One [T,B,D*Ho] zoneout mask per layer (1 keeps h_{t-1}); empty without
        zoneout.
    """
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
    """Multi-layer LSTM forward (torch.nn.LSTM's maths, gates i, f, g, o).

    With optional projection, peepholes, variable lengths, dropout between
    layers, zoneout on h and cell clipping. The weights are packed on every
    call unless ``packed`` is given.

    Parameters
    ----------
    x : numpy.ndarray, [T,B,I], float32 or float64
        The input, time-major, T, B and I >= 1. Its dtype is the call's: every
        other array must already have it.
    params : dict of str to numpy.ndarray, or None
        Exactly the keys of ``param_shapes(I, hidden_size, num_layers, bias,
        bidirectional, proj_size, peephole)``, each of its shape. Arrays that
        are not C-contiguous are copied. Not read when ``packed`` is given
        (then it may be None).
    num_layers : int
        L >= 1.
    hidden_size : int
        H >= 1.
    proj_size : int, default 0
        0 <= proj_size < H; > 0 projects h to proj_size features with
        ``weight_hr_l{k}`` (Ho = proj_size).
    bidirectional : bool, default False
        Each layer also runs a reverse pass; its output is [forward, reverse]
        on the feature axis (D = 2).
    bias : bool, default True
        Whether ``params`` holds ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
    peephole : bool, default False
        Peepholes ``weight_ph_l{k}`` [3,H] (rows i, f, o):
        i = σ(... + p_i⊙c_{t-1}), f = σ(... + p_f⊙c_{t-1}), o = σ(... + p_o⊙c_t).
    h0 : numpy.ndarray, [D*L,B,Ho], optional
        The initial h; None: zeros.
    c0 : numpy.ndarray, [D*L,B,H], optional
        The initial c; None: zeros.
    lengths : array_like of int, [B], optional
        Each row's length, each in [1, T]: row b only has steps t < lengths[b],
        the reverse direction starting at lengths[b]-1. Outputs past a row's
        length are zero and h_n, c_n hold its last valid state. None: every row
        has T steps.
    dropout : float, default 0.0
        In [0, 1]. In training with L > 1: inverted dropout on the output of
        every layer but the last, masks drawn from ``rng`` and saved in the
        context. Not applied otherwise.
    training : bool, default False
        Return a :class:`Context` for :func:`lstm_backward`, apply dropout and
        zoneout with masks.
    rng : numpy.random.Generator, optional
        Draws the training masks: needed for dropout (L > 1) and for zoneout
        without ``zoneout_masks``.
    isa : {"scalar", "avx2", "avx512"} or None, default None
        The kernel path; None: ``$FASTLSTM_ISA``, else the best one this CPU and
        build run.
    packed : Packed, optional
        From :func:`pack` with this call's configuration, dtype and isa (and
        ``training=True`` for a training call): its weights are used.
    zoneout : float, default 0.0
        p in [0, 1], haste's zoneout on h. In training,
        h_t = m⊙h_{t-1} + (1−m)⊙h̃_t with the masks m of ``zoneout_masks``, or
        masks drawn as Bernoulli(p) from ``rng`` when it is None; in inference,
        m = p. c is not zoned out; with a projection, the projected h is.
    zoneout_masks : list of numpy.ndarray, optional
        Training only: one [T,B,D*Ho] array per layer, 1 keeps h_{t-1}.
    cell_clip : float, optional
        > 0: ONNX LSTM's ``clip``, every gate pre-activation (peephole terms
        included) clipped to [-cell_clip, cell_clip]. None: no clip.

    Returns
    -------
    y : numpy.ndarray, [T,B,D*Ho]
        The last layer's output.
    h_n : numpy.ndarray, [D*L,B,Ho]
        The final h of each layer and direction (index l*D + d).
    c_n : numpy.ndarray, [D*L,B,H]
        The final c.
    ctx : Context or None
        What :func:`lstm_backward` needs; None unless ``training``.

    Raises
    ------
    TypeError
        If ``x`` is not a float32 or float64 ``numpy.ndarray``; a size is not an
        int, or ``dropout``, ``zoneout`` or ``cell_clip`` not a real number;
        ``packed`` is not a :class:`Packed`; ``lengths`` is not integer; an
        array of ``params``, ``h0``, ``c0`` or ``zoneout_masks`` is not a
        ``numpy.ndarray`` of ``x``'s dtype (:class:`fastlstm.DTypeError`).
    ValueError
        If ``x`` is not 3-D or T, B or I is < 1; a size, ``dropout``,
        ``zoneout`` or ``cell_clip`` is out of range; ``params`` is not a dict
        with exactly the expected keys; an array has the wrong shape
        (:class:`fastlstm.ShapeError`); ``lengths`` is not [B] or a length is
        outside [1, T]; ``packed`` was built for another configuration, dtype
        or isa, or without the backward for a training call; ``rng`` is None
        where training draws masks; ``zoneout_masks`` is given without
        ``training`` or is not a list of L arrays; ``isa`` is unknown or not
        supported.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> params = init_params(param_shapes(3, 4), 4, np.float64, rng)
    >>> x = rng.standard_normal((5, 2, 3))
    >>> y, h_n, c_n, ctx = lstm_forward(x, params, num_layers=1, hidden_size=4,
    ...                                 lengths=[5, 2], training=True)
    >>> y.shape, h_n.shape, bool((y[2:, 1] == 0).all())
    ((5, 2, 4), (1, 2, 4), True)
    >>> dx, dh0, dc0, grads = lstm_backward(ctx, np.ones_like(y))
    """
    return _checked_forward("lstm", x, params, num_layers, hidden_size, proj_size,
                            bidirectional, bias, peephole, h0, c0, lengths, dropout, training,
                            rng, isa, packed, zoneout, zoneout_masks, cell_clip)


def gru_forward(x, params, *, num_layers, hidden_size, bidirectional=False, bias=True,
                h0=None, lengths=None, dropout=0.0, training=False, rng=None, isa=None,
                packed=None, zoneout=0.0, zoneout_masks=None):
    """Multi-layer GRU forward (torch.nn.GRU's maths, gates r, z, n).

    The arguments work as in :func:`lstm_forward`, without projection,
    peepholes or cell clip: here Ho = H.

    Parameters
    ----------
    x : numpy.ndarray, [T,B,I], float32 or float64
        The input, time-major; its dtype is the call's.
    params : dict of str to numpy.ndarray, or None
        Exactly the keys of ``param_shapes(I, hidden_size, num_layers, bias,
        bidirectional, cell="gru")``, each of its shape and of ``x``'s dtype.
        Not read when ``packed`` is given.
    num_layers : int
        L >= 1.
    hidden_size : int
        H >= 1.
    bidirectional : bool, default False
        Each layer also runs a reverse pass (D = 2).
    bias : bool, default True
        Whether ``params`` holds ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
    h0 : numpy.ndarray, [D*L,B,H], optional
        The initial h; None: zeros.
    lengths : array_like of int, [B], optional
        Each in [1, T]; outputs past a row's length are zero (as in
        :func:`lstm_forward`). None: every row has T steps.
    dropout : float, default 0.0
        In [0, 1]: inverted dropout between layers, in training.
    training : bool, default False
        Return a :class:`Context` for :func:`gru_backward`.
    rng : numpy.random.Generator, optional
        Draws the training masks (dropout, zoneout without masks).
    isa : {"scalar", "avx2", "avx512"} or None, default None
        The kernel path; None: ``$FASTLSTM_ISA``, else the best one.
    packed : Packed, optional
        From ``pack(..., cell="gru")`` with this call's configuration.
    zoneout : float, default 0.0
        p in [0, 1], zoneout on h as in :func:`lstm_forward`.
    zoneout_masks : list of numpy.ndarray, optional
        Training only: one [T,B,D*H] array per layer, 1 keeps h_{t-1}.

    Returns
    -------
    y : numpy.ndarray, [T,B,D*H]
        The last layer's output.
    h_n : numpy.ndarray, [D*L,B,H]
        The final h of each layer and direction.
    ctx : Context or None
        What :func:`gru_backward` needs; None unless ``training``.

    Raises
    ------
    TypeError
        As :func:`lstm_forward`: an argument of the wrong type, or an array not
        of ``x``'s dtype (:class:`fastlstm.DTypeError`).
    ValueError
        As :func:`lstm_forward`: a size or probability out of range, wrong
        ``params`` keys or array shapes (:class:`fastlstm.ShapeError`), bad
        ``lengths``, a ``packed`` built for another call, a missing ``rng``,
        misused ``zoneout_masks``, an unknown or unsupported ``isa``.
    """
    y, hn, _, ctx = _checked_forward("gru", x, params, num_layers, hidden_size, 0,
                                     bidirectional, bias, False, h0, None, lengths, dropout,
                                     training, rng, isa, packed, zoneout, zoneout_masks, None)
    return y, hn, ctx


def layer_norm_lstm_forward(x, params, *, num_layers, hidden_size, bidirectional=False,
                            bias=True, h0=None, c0=None, lengths=None, dropout=0.0,
                            training=False, rng=None, isa=None, packed=None, zoneout=0.0,
                            zoneout_masks=None):
    """Multi-layer layer-norm LSTM forward (Ba et al. 2016, as haste's LayerNormLSTM).

    For each step, with LN over the whole row (eps 1e-5, biased variance)::

        a   = LN(x W_ih^T)⊙γ_ih + LN(h W_hh^T)⊙γ_hh + b_ih + b_hh
        i, f, g, o = σ(a_i), σ(a_f), tanh(a_g), σ(a_o)     (the LSTM's gates)
        c_t = f⊙c_{t-1} + i⊙g
        h_t = o⊙tanh(LN(c_t)⊙γ_c + β_c)

    The arguments and returns work as in :func:`lstm_forward`, without
    projection, peepholes or cell clip: here Ho = H.

    Parameters
    ----------
    x : numpy.ndarray, [T,B,I], float32 or float64
        The input, time-major; its dtype is the call's.
    params : dict of str to numpy.ndarray, or None
        Exactly the keys of ``param_shapes(I, hidden_size, num_layers, bias,
        bidirectional, cell="lnlstm")``, each of its shape and of ``x``'s
        dtype: the LSTM's weights and the gains γ_ih, γ_hh, γ_c and bias β_c
        (``weight_ln_ih_l{k}``, ``weight_ln_hh_l{k}``, ``weight_ln_c_l{k}``,
        ``bias_ln_c_l{k}``). Not read when ``packed`` is given.
    num_layers : int
        L >= 1.
    hidden_size : int
        H >= 1.
    bidirectional : bool, default False
        Each layer also runs a reverse pass (D = 2).
    bias : bool, default True
        Whether ``params`` holds ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
    h0 : numpy.ndarray, [D*L,B,H], optional
        The initial h; None: zeros.
    c0 : numpy.ndarray, [D*L,B,H], optional
        The initial c; None: zeros.
    lengths : array_like of int, [B], optional
        Each in [1, T]; outputs past a row's length are zero (as in
        :func:`lstm_forward`). None: every row has T steps.
    dropout : float, default 0.0
        In [0, 1]: inverted dropout between layers, in training.
    training : bool, default False
        Return a :class:`Context` for :func:`layer_norm_lstm_backward`.
    rng : numpy.random.Generator, optional
        Draws the training masks (dropout, zoneout without masks).
    isa : {"scalar", "avx2", "avx512"} or None, default None
        The kernel path; None: ``$FASTLSTM_ISA``, else the best one.
    packed : Packed, optional
        From ``pack(..., cell="lnlstm")`` with this call's configuration.
    zoneout : float, default 0.0
        p in [0, 1], zoneout on h as in :func:`lstm_forward` (c is not zoned
        out).
    zoneout_masks : list of numpy.ndarray, optional
        Training only: one [T,B,D*H] array per layer, 1 keeps h_{t-1}.

    Returns
    -------
    y : numpy.ndarray, [T,B,D*H]
        The last layer's output.
    h_n : numpy.ndarray, [D*L,B,H]
        The final h of each layer and direction.
    c_n : numpy.ndarray, [D*L,B,H]
        The final c, un-normalised.
    ctx : Context or None
        What :func:`layer_norm_lstm_backward` needs; None unless ``training``.

    Raises
    ------
    TypeError
        As :func:`lstm_forward`: an argument of the wrong type, or an array not
        of ``x``'s dtype (:class:`fastlstm.DTypeError`).
    ValueError
        As :func:`lstm_forward`: a size or probability out of range, wrong
        ``params`` keys or array shapes (:class:`fastlstm.ShapeError`), bad
        ``lengths``, a ``packed`` built for another call, a missing ``rng``,
        misused ``zoneout_masks``, an unknown or unsupported ``isa``.
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
    x = _checks.c_array(x)
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
                keep = _checks.c_array(zoneout_masks[k])
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
    """Back-propagation through time through a training-mode :func:`lstm_forward`.

    Consumes ``ctx``: a forward can be back-propagated once. It differentiates
    the weights the forward used. The parameter gradients are added into
    ``grads``, so gradients can be summed over calls (truncated BPTT over
    chunks, for instance).

    Parameters
    ----------
    ctx : Context
        What the forward returned with ``training=True``.
    dy : numpy.ndarray, [T,B,D*Ho]
        The gradient of the loss with respect to ``y``, of the forward's dtype.
        With ``lengths``, its values past a row's length do not matter.
    dh_n : numpy.ndarray, [D*L,B,Ho], optional
        The gradient with respect to ``h_n``; None: zeros.
    dc_n : numpy.ndarray, [D*L,B,H], optional
        The gradient with respect to ``c_n``; None: zeros.
    grads : dict of str to numpy.ndarray, optional
        Accumulators keyed like ``params``: each parameter's gradient is added
        to its entry, and missing entries are created as zeros. An entry must
        be a writable, C-contiguous array of the forward's dtype and the
        parameter's size. None: a new dict.

    Returns
    -------
    dx : numpy.ndarray, [T,B,I]
        The gradient with respect to ``x`` (zero past each row's length).
    dh0 : numpy.ndarray, [D*L,B,Ho]
        The gradient with respect to ``h0``.
    dc0 : numpy.ndarray, [D*L,B,H]
        The gradient with respect to ``c0``.
    grads : dict of str to numpy.ndarray
        ``grads`` (or the new dict), holding every parameter's gradient.

    Raises
    ------
    RuntimeError
        If ``ctx`` is None (a forward without ``training``) or was consumed.
    ValueError
        If ``ctx`` was saved by another cell's forward; ``dy``, ``dh_n`` or
        ``dc_n`` has the wrong shape (:class:`fastlstm.ShapeError`); an entry of
        ``grads`` has the wrong size, is not C-contiguous or is read-only (then
        ``ctx`` is consumed all the same).
    TypeError
        If ``dy``, ``dh_n`` or ``dc_n`` is not a ``numpy.ndarray`` of the
        forward's dtype (:class:`fastlstm.DTypeError`), or an entry of
        ``grads`` is not one (``ctx`` is consumed then).
    """
    return _backward(ctx, "lstm", dy, dh_n, dc_n, grads)


def gru_backward(ctx: Context, dy, dh_n=None, grads=None):
    """Back-propagation through time through a training-mode :func:`gru_forward`.

    Consumes ``ctx``, and adds the parameter gradients into ``grads``, as
    :func:`lstm_backward` does.

    Parameters
    ----------
    ctx : Context
        What the forward returned with ``training=True``.
    dy : numpy.ndarray, [T,B,D*H]
        The gradient with respect to ``y``, of the forward's dtype.
    dh_n : numpy.ndarray, [D*L,B,H], optional
        The gradient with respect to ``h_n``; None: zeros.
    grads : dict of str to numpy.ndarray, optional
        Accumulators keyed like ``params``, as in :func:`lstm_backward`.

    Returns
    -------
    dx : numpy.ndarray, [T,B,I]
        The gradient with respect to ``x``.
    dh0 : numpy.ndarray, [D*L,B,H]
        The gradient with respect to ``h0``.
    grads : dict of str to numpy.ndarray
        ``grads`` (or a new dict), holding every parameter's gradient.

    Raises
    ------
    RuntimeError
        If ``ctx`` is None (a forward without ``training``) or was consumed.
    ValueError
        If ``ctx`` was saved by another cell's forward, or as in
        :func:`lstm_backward` (shapes, ``grads`` entries).
    TypeError
        As in :func:`lstm_backward` (an array not of the forward's dtype).
    """
    dx, dh0, _, grads = _backward(ctx, "gru", dy, dh_n, None, grads)
    return dx, dh0, grads


def layer_norm_lstm_backward(ctx: Context, dy, dh_n=None, dc_n=None, grads=None):
    """Back-propagation through time through a training-mode :func:`layer_norm_lstm_forward`.

    As :func:`lstm_backward`; the gains and the cell-norm bias get their
    gradients too.

    Parameters
    ----------
    ctx : Context
        What the forward returned with ``training=True``.
    dy : numpy.ndarray, [T,B,D*H]
        The gradient with respect to ``y``, of the forward's dtype.
    dh_n : numpy.ndarray, [D*L,B,H], optional
        The gradient with respect to ``h_n``; None: zeros.
    dc_n : numpy.ndarray, [D*L,B,H], optional
        The gradient with respect to ``c_n``; None: zeros.
    grads : dict of str to numpy.ndarray, optional
        Accumulators keyed like ``params``, as in :func:`lstm_backward`.

    Returns
    -------
    dx : numpy.ndarray, [T,B,I]
        The gradient with respect to ``x``.
    dh0 : numpy.ndarray, [D*L,B,H]
        The gradient with respect to ``h0``.
    dc0 : numpy.ndarray, [D*L,B,H]
        The gradient with respect to ``c0``.
    grads : dict of str to numpy.ndarray
        ``grads`` (or a new dict), holding every parameter's gradient.

    Raises
    ------
    RuntimeError
        If ``ctx`` is None (a forward without ``training``) or was consumed.
    ValueError
        If ``ctx`` was saved by another cell's forward, or as in
        :func:`lstm_backward` (shapes, ``grads`` entries).
    TypeError
        As in :func:`lstm_backward` (an array not of the forward's dtype).
    """
    return _backward(ctx, "lnlstm", dy, dh_n, dc_n, grads)


class BufferPool:
    """Training buffers kept from one step of a module to the next.

    The forward workspaces and backward scratch of a module's consumed training
    steps, kept for its next step. They are the largest buffers of a step
    (deepbench: 79 and 65 MB a layer); new ones each step touch fresh pages
    (measured: 23,000 page faults and about 10% of a 2-thread deepbench
    training step). A buffer is in the pool only while no context holds it.
    The layers keep one each and clear it in ``eval()``. The methods are
    thread-safe (they hold a lock).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._free = []

    def take(self, n: int, dtype) -> np.ndarray:
        """A buffer of ``n`` elements of ``dtype``: a kept one if one fits, else a new one.

        Parameters
        ----------
        n : int
            The number of elements.
        dtype : numpy dtype
            The elements' dtype.

        Returns
        -------
        numpy.ndarray, [n]
            A kept buffer of exactly ``n`` elements of ``dtype``, which leaves
            the pool, else ``np.empty(n, dtype)``. Its contents are undefined.
        """
        with self._lock:
            for i, b in enumerate(self._free):
                if b.size == n and b.dtype == dtype:
                    return self._free.pop(i)
        return np.empty(n, dtype)

    def give(self, buffers: list, most: int) -> None:
        """Keep ``buffers`` (no longer used by anyone), and at most ``most`` in all.

        Parameters
        ----------
        buffers : list of numpy.ndarray
            Buffers that nothing uses any more.
        most : int
            The most buffers the pool keeps, >= 0: beyond it, the oldest ones
            are dropped (0 keeps none).
        """
        if isinstance(most, bool) or not isinstance(most, (int, np.integer)) or most < 0:
            raise ValueError(f"most: expected an int >= 0, got {most!r}")
        with self._lock:
            self._free.extend(buffers)
            del self._free[:max(len(self._free) - int(most), 0)]

    def clear(self) -> None:
        """Drop every kept buffer."""
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
