"""fastlstm in JAX: `lstm(params, x, ...)`, `gru(params, x, ...)` and
`layer_norm_lstm(params, x, ...)`, differentiable and jit-able.

Each layer is two XLA FFI custom calls into fastlstm's C++ kernels on the CPU
(``fastlstm_rnn_layer_fwd`` and ``fastlstm_rnn_layer_bwd``, compiled into
the extension and registered with `jax.ffi` on import), joined by
`jax.custom_vjp`: `jax.grad` runs fastlstm's BPTT. Importing this module
imports jax; `import fastlstm` does not.

Zoneout (``zoneout=p``, haste's, on h) follows the JAX convention for
randomness: it is deterministic unless the call gets randomness. Without a
``key`` or ``zoneout_masks`` every step mixes h_t = p·h_{t-1} + (1−p)·h̃_t
(inference); with ``key`` (a PRNG key) the training masks are drawn as
`zoneout_masks` draws them, one Bernoulli(p) array [T,B,D*Ho] per layer
(1 keeps h_{t-1}); or pass those arrays yourself as ``zoneout_masks``. The
masks are inputs of the forward and the backward custom calls, not
differentiated. ``cell_clip`` (LSTM) clips the gate pre-activations to
[-cell_clip, cell_clip] (ONNX's clip).

The handlers are compiled into the extension by every build that finds the
XLA FFI headers: pip's isolated build installs the oldest jaxlib the ``jax``
extra admits and compiles against its headers (XLA runs handlers built
against an older FFI version), so jax can be installed before or after
fastlstm, with no rebuild. ``python -m fastlstm info`` reports them.
"""
from __future__ import annotations

import functools

import numpy as np

from . import _checks, _core, _spec, convert
from ._runtime import get_num_threads, resolve_isa

try:
    import jax
    import jax.ffi  # jax >= 0.5.0
    import jax.numpy as jnp
except ImportError as e:
    raise ImportError(
        f"fastlstm.jax needs jax >= 0.5.0 ({e}): pip install jax (fastlstm's `jax` extra "
        "has it); fastlstm itself needs no rebuild") from e

__all__ = ["lstm", "gru", "layer_norm_lstm", "zoneout_masks"]

_TARGETS = _core.jax_ffi_targets()
if not _TARGETS:
    raise ImportError(
        "fastlstm.jax: this build of fastlstm has no XLA FFI handlers: it was built without "
        "jaxlib's headers (FASTLSTM_NO_JAX set, no jaxlib wheel for this platform or Python, "
        "or --no-build-isolation without jaxlib installed). Reinstall with `pip install .` "
        "on Linux x86_64/aarch64 and Python >= 3.10")
for _name, _capsule in _TARGETS.items():
    jax.ffi.register_ffi_target(_name, _capsule, platform="cpu")

_ISA_CODE = {"scalar": 0, "avx2": 1, "avx512": 2}
_CELL_CODE = {"lstm": 0, "gru": 1, "lnlstm": 2}  # Cell in cell_spec.h


def _attrs(static) -> dict:
    cell, H, P, bidirectional, bias, peephole, zoneout, cell_clip, isa, nt = static
    return dict(cell=np.int64(_CELL_CODE[cell]), hidden_size=np.int64(H), proj_size=np.int64(P),
                bidirectional=np.int64(bidirectional), bias=np.int64(bias),
                peephole=np.int64(peephole), zoneout=np.float64(zoneout),
                cell_clip=np.float64(cell_clip), isa=np.int64(_ISA_CODE[isa]),
                num_threads=np.int64(nt))


# Under jax.shard_map (check_vma), the operands of a custom call must vary
# over the same manual mesh axes, and its results are typed only by the
# ShapeDtypeStructs given: the operands are made varying over the union of
# their axes, and the results declared so. The backward sums a cotangent over
# the axes its primal did not vary over (the transpose of that broadcast).

def _varying(a) -> frozenset:
    """The manual mesh axes a varies over inside shard_map (none outside)."""
    typeof = getattr(jax, "typeof", None)  # jax >= 0.6
    if typeof is None:
        return frozenset()
    t = typeof(a)
    mat = getattr(t, "manual_axis_type", None)  # jax >= 0.10; before, t.vma
    return frozenset(mat.varying if mat is not None else getattr(t, "vma", None) or ())


def _operands(arrays):
    axes = frozenset().union(*(_varying(a) for a in arrays))
    out = []
    for a in arrays:
        missing = tuple(sorted(axes - _varying(a)))
        if missing:
            pcast = getattr(jax.lax, "pcast", None)
            a = (pcast(a, missing, to="varying") if pcast is not None
                 else jax.lax.pvary(a, missing))
        out.append(a)
    return out


def _result(shape, dtype, like):
    """A result type varying over the manual axes of the operand `like`."""
    if not _varying(like):
        return jax.ShapeDtypeStruct(shape, dtype)
    if hasattr(jax.ShapeDtypeStruct, "like"):  # jax >= 0.10: like's mesh and axis types
        ref = jax.ShapeDtypeStruct.like(like)
        sharding = jax.sharding.NamedSharding(ref.sharding.mesh, jax.sharding.PartitionSpec())
        return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding,
                                    manual_axis_type=ref.manual_axis_type)
    return jax.ShapeDtypeStruct(shape, dtype, vma=jax.typeof(like).vma)


def _like_primal(g, primal):
    """The cotangent g summed over the manual axes its primal does not vary over."""
    extra = tuple(sorted(_varying(g) - _varying(primal)))
    return jax.lax.psum(g, extra) if extra else g


def _fwd_call(static, x, h0, c0, lengths, keep, weights, training: bool):
    cell, H, P, bidirectional, _, peephole, zoneout, cell_clip, isa, _ = static
    T, B, I = x.shape
    D, Ho = (2 if bidirectional else 1), (P or H)
    per_row = _core.workspace_size(_core.LayerDims(T=1, B=1, I=I, H=H, P=P, D=D,
                                                   peephole=bool(peephole), cell=cell,
                                                   zoneout=zoneout, cell_clip=cell_clip),
                                   None, isa, np.dtype(x.dtype).itemsize)
    ops = _operands([x, h0, c0, lengths, keep, *weights])
    out = (_result((T, B, D * Ho), x.dtype, ops[0]),
           _result((D, B, Ho), x.dtype, ops[0]),
           _result(c0.shape, x.dtype, ops[0]),  # [D,B,H], or [0] without c
           _result((T * B * per_row if training else 0,), x.dtype, ops[0]))
    call = jax.ffi.ffi_call("fastlstm_rnn_layer_fwd", out, vmap_method="sequential")
    return call(*ops, training=np.int64(training), **_attrs(static))


# keep: the layer's zoneout masks [T,B,D*Ho] (x's dtype) or [0] (none); an
# input of both custom calls that gets no gradient.
@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _layer(static, x, h0, c0, lengths, keep, weights):
    y, hn, cn, _ = _fwd_call(static, x, h0, c0, lengths, keep, weights, False)
    return y, hn, cn


def _layer_fwd(static, x, h0, c0, lengths, keep, weights):
    y, hn, cn, ws = _fwd_call(static, x, h0, c0, lengths, keep, weights, True)
    return (y, hn, cn), (x, h0, c0, lengths, keep, ws, weights)


def _layer_bwd(static, res, cts):
    x, h0, c0, lengths, keep, ws, weights = res
    dy, dhn, dcn = cts
    ops = _operands([x, c0, lengths, keep, ws, dy, dhn, dcn, *weights])
    out = ([_result(x.shape, x.dtype, ops[0]), _result(dhn.shape, x.dtype, ops[0]),
            _result(dcn.shape, x.dtype, ops[0])]
           + [_result(w.shape, w.dtype, ops[0]) for w in weights])
    call = jax.ffi.ffi_call("fastlstm_rnn_layer_bwd", out, vmap_method="sequential")
    grads = call(*ops, **_attrs(static))
    dlengths = np.zeros(lengths.shape, dtype=jax.dtypes.float0)
    return (_like_primal(grads[0], x), _like_primal(grads[1], h0), _like_primal(grads[2], c0),
            dlengths, jnp.zeros_like(keep),
            tuple(_like_primal(g, w) for g, w in zip(grads[3:], weights)))


_layer.defvjp(_layer_fwd, _layer_bwd)


def _layer_weights(params: dict, k: int, cfg: dict) -> tuple:
    names = _spec.layer_weight_names(cfg["cell"], k, cfg["bidirectional"], cfg["bias"],
                                     cfg["proj_size"] > 0, cfg["peephole"])
    return tuple(params[n] for n in names)


def zoneout_masks(key, zoneout: float, num_layers: int, steps: int, batch: int,
                  features: int, dtype=jnp.float32) -> list:
    """Draw the zoneout training masks that ``lstm(..., key=key)`` draws.

    One Bernoulli(``zoneout``) array per layer: an element is 1 (keep
    h_{t-1}) with probability ``zoneout``, else 0. Layer k's mask is drawn
    from ``jax.random.split(key, num_layers)[k]``. :func:`lstm`, :func:`gru`
    and :func:`layer_norm_lstm` draw their masks with this function (with
    ``features`` = D*Ho), so the masks of a call with ``key`` can be
    recreated, or drawn here and passed as ``zoneout_masks``.

    Parameters
    ----------
    key : PRNG key
        A ``jax.random.key`` or ``jax.random.PRNGKey``.
    zoneout : float
        The probability p in [0, 1] of keeping h_{t-1}.
    num_layers : int
        L, the number of masks.
    steps, batch, features : int
        The masks' shape: T, B and D*Ho for a layer's.
    dtype : dtype, default jnp.float32
        The masks' dtype: x's dtype, or bool.

    Returns
    -------
    list of jax.Array
        ``num_layers`` arrays [steps,batch,features] of ``dtype``.

    Raises
    ------
    TypeError
        If ``zoneout`` is not a real number.
    ValueError
        If ``zoneout`` is not in [0, 1].

    Examples
    --------
    >>> import jax, fastlstm.jax
    >>> masks = fastlstm.jax.zoneout_masks(jax.random.key(0), 0.1, 2, 50, 8, 128)
    >>> len(masks), masks[0].shape
    (2, (50, 8, 128))
    """
    zoneout, _ = _checks.zoneout_config(zoneout)
    keys = jax.random.split(key, num_layers)
    return [jax.random.bernoulli(keys[k], zoneout, (steps, batch, features)).astype(dtype)
            for k in range(num_layers)]


def lstm(params: dict, x, h0=None, c0=None, lengths=None, *, batch_first: bool = False,
         zoneout: float = 0.0, cell_clip=None, key=None, zoneout_masks=None):
    """Run a multi-layer LSTM as torch.nn.LSTM computes it (no dropout).

    The configuration (layers, directions, bias, projection, peepholes) is
    read off the names and shapes of ``params``. Differentiable in ``x``,
    ``h0``, ``c0`` and every parameter (``jax.grad`` runs fastlstm's BPTT);
    works under ``jax.jit`` and ``jax.vmap`` (one call per element).

    Below, L is the number of layers, D = 2 if bidirectional else 1, H the
    hidden size and Ho = proj_size or H.

    Parameters
    ----------
    params : dict of arrays
        torch.nn.LSTM's state_dict names and shapes (``weight_ih_l0``
        [4H,I], ...), plus ``weight_ph_l{k}`` [3,H] (rows i, f, o) for
        peepholes, as JAX or NumPy arrays of x's dtype, e.g. a
        ``fastlstm.LSTM``'s ``state_dict()``.
    x : array [T,B,I], float32 or float64
        The input; [B,T,I] with ``batch_first``.
    h0 : array [D*L,B,Ho] or None, optional
        The initial h, x's dtype; None: zeros.
    c0 : array [D*L,B,H] or None, optional
        The initial c, x's dtype; None: zeros.
    lengths : int array [B] or None, optional
        Each row's length, each in [1, T]; None: every row is T steps. Replaces
        ``pack_padded_sequence``.
    batch_first : bool, default False
        ``x`` and ``y`` are [B,T,...] (``h0``, ``c0`` and ``zoneout_masks``
        keep their layouts).
    zoneout : float, default 0.0
        p in [0, 1], haste's zoneout on h (after the projection). With
        neither ``key`` nor ``zoneout_masks``, every step mixes
        h_t = p·h_{t-1} + (1−p)·h̃_t (inference).
    cell_clip : float or None, default None
        If given (> 0), the gate pre-activations are clipped to
        [-cell_clip, cell_clip], as ONNX's ``clip``, with zero gradient where
        clipped.
    key : PRNG key or None, optional
        A ``jax.random.key`` or ``PRNGKey`` to draw the training masks from,
        as :func:`zoneout_masks` draws them. Ignored when ``zoneout`` is 0.
    zoneout_masks : sequence of L arrays [T,B,D*Ho] or None, optional
        The training masks themselves, one per layer, time-major even with
        ``batch_first`` (as ``fastlstm.LSTM.zoneout_masks``), x's dtype or
        bool; 1 keeps h_{t-1}. They get no gradient. Needs ``zoneout`` > 0.

    Returns
    -------
    y : jax.Array [T,B,D*Ho]
        The last layer's output at every step, x's dtype ([B,T,D*Ho] with
        ``batch_first``); zero past a row's length.
    (h_n, c_n) : tuple of jax.Array
        The final h [D*L,B,Ho] and c [D*L,B,H] of every layer and direction
        (with ``lengths``, at each row's last valid step).

    Raises
    ------
    TypeError
        If ``params`` is not a dict, ``x`` is not float32 or float64, a
        parameter's dtype is not x's, ``zoneout`` or ``cell_clip`` is not a
        real number (a traced value included), ``key`` is not a PRNG key, or
        a mask's dtype is neither x's nor bool.
    ValueError
        If ``params`` do not form one LSTM (see
        :func:`fastlstm.convert.describe`), ``x`` is not 3-D or its feature
        size is not the input size, ``h0`` / ``c0`` has another shape or
        dtype, ``lengths`` is not an integer array [B] or (when not traced) a
        value is outside [1, T], ``zoneout`` is outside [0, 1],
        ``cell_clip`` is not > 0, both ``key`` and ``zoneout_masks`` are
        given, ``zoneout_masks`` is given with ``zoneout`` = 0, or it does not
        hold L arrays [T,B,D*Ho].
    jax.errors.JaxRuntimeError
        When the call runs, if traced ``lengths`` (under ``jax.jit``) hold a
        value outside [1, T]: the kernels check them.

    Notes
    -----
    ``zoneout`` and ``cell_clip`` are static Python floats (attributes of the
    custom calls), not traced values. float64 needs ``jax_enable_x64``. With
    ``lengths``, the reverse direction starts at each row's own last step.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, fastlstm, fastlstm.jax
    >>> m = fastlstm.LSTM(4, 8, num_layers=2, seed=0)
    >>> params = {k: jnp.asarray(v) for k, v in m.state_dict().items()}
    >>> x = jnp.ones((10, 3, 4), jnp.float32)
    >>> y, (h_n, c_n) = fastlstm.jax.lstm(params, x, lengths=jnp.array([10, 7, 1]))
    >>> y.shape, h_n.shape, c_n.shape
    ((10, 3, 8), (2, 3, 8), (2, 3, 8))
    >>> grads = jax.jit(jax.grad(lambda p: fastlstm.jax.lstm(p, x)[0].sum()))(params)

    Zoneout in training (masks drawn from a key) and in inference (the
    deterministic mix):

    >>> loss = lambda p, k: fastlstm.jax.lstm(p, x, zoneout=0.1, key=k)[0].sum()
    >>> grads = jax.grad(loss)(params, jax.random.key(0))
    >>> y_eval, _ = fastlstm.jax.lstm(params, x, zoneout=0.1)
    """
    zoneout, cell_clip = _checks.zoneout_config(zoneout, cell_clip)
    y, hn, cn = _run("lstm", params, x, h0, c0, lengths, batch_first, zoneout, cell_clip, key,
                     zoneout_masks)
    return y, (hn, cn)


def gru(params: dict, x, h0=None, lengths=None, *, batch_first: bool = False,
        zoneout: float = 0.0, key=None, zoneout_masks=None):
    """Run a multi-layer GRU as torch.nn.GRU computes it (no dropout).

    The configuration (layers, directions, bias) is read off the names and
    shapes of ``params``. Differentiable in ``x``, ``h0`` and every
    parameter; works under ``jax.jit`` and ``jax.vmap`` (one call per
    element). L, D and H as in :func:`lstm`.

    Parameters
    ----------
    params : dict of arrays
        torch.nn.GRU's state_dict names and shapes (``weight_ih_l0`` [3H,I],
        gates r, z, n, ...) as JAX or NumPy arrays of x's dtype, e.g. a
        ``fastlstm.GRU``'s ``state_dict()``.
    x : array [T,B,I], float32 or float64
        The input; [B,T,I] with ``batch_first``.
    h0 : array [D*L,B,H] or None, optional
        The initial h, x's dtype; None: zeros.
    lengths : int array [B] or None, optional
        Each row's length, each in [1, T]; None: every row is T steps.
    batch_first : bool, default False
        ``x`` and ``y`` are [B,T,...].
    zoneout : float, default 0.0
        p in [0, 1], as in :func:`lstm`.
    key : PRNG key or None, optional
        As in :func:`lstm`.
    zoneout_masks : sequence of L arrays [T,B,D*H] or None, optional
        As in :func:`lstm`.

    Returns
    -------
    y : jax.Array [T,B,D*H]
        The last layer's output at every step, x's dtype ([B,T,D*H] with
        ``batch_first``); zero past a row's length.
    h_n : jax.Array [D*L,B,H]
        The final h of every layer and direction.

    Raises
    ------
    TypeError
        As in :func:`lstm` (there is no ``cell_clip``).
    ValueError
        As in :func:`lstm`, for a GRU's ``params`` and ``h0``.
    jax.errors.JaxRuntimeError
        As in :func:`lstm`, for traced ``lengths``.

    Examples
    --------
    >>> import jax.numpy as jnp, fastlstm, fastlstm.jax
    >>> m = fastlstm.GRU(4, 8, bidirectional=True, seed=0)
    >>> params = {k: jnp.asarray(v) for k, v in m.state_dict().items()}
    >>> y, h_n = fastlstm.jax.gru(params, jnp.ones((10, 3, 4), jnp.float32))
    >>> y.shape, h_n.shape
    ((10, 3, 16), (2, 3, 8))
    """
    zoneout, _ = _checks.zoneout_config(zoneout)
    y, hn, _ = _run("gru", params, x, h0, None, lengths, batch_first, zoneout, None, key,
                    zoneout_masks)
    return y, hn


def layer_norm_lstm(params: dict, x, h0=None, c0=None, lengths=None, *,
                    batch_first: bool = False, zoneout: float = 0.0, key=None,
                    zoneout_masks=None):
    """Run a multi-layer layer-norm LSTM (no dropout).

    Ba et al. 2016's cell, as haste's LayerNormLSTM and
    ``fastlstm.LayerNormLSTM`` compute it. The configuration (layers,
    directions, bias) is read off the names and shapes of ``params``.
    Differentiable in ``x``, ``h0``, ``c0`` and every parameter; works under
    ``jax.jit`` and ``jax.vmap`` (one call per element).

    Parameters
    ----------
    params : dict of arrays
        ``fastlstm.LayerNormLSTM``'s state_dict names and shapes: torch's
        LSTM names plus the norms' ``weight_ln_ih_l{k}``,
        ``weight_ln_hh_l{k}`` [4H], ``weight_ln_c_l{k}`` and
        ``bias_ln_c_l{k}`` [H], as JAX or NumPy arrays of x's dtype.
    x : array [T,B,I], float32 or float64
        The input; [B,T,I] with ``batch_first``.
    h0, c0 : array [D*L,B,H] or None, optional
        The initial h and c, x's dtype; None: zeros.
    lengths, batch_first, zoneout, key
        As in :func:`lstm`.
    zoneout_masks : sequence of L arrays [T,B,D*H] or None, optional
        As in :func:`lstm`.

    Returns
    -------
    y : jax.Array [T,B,D*H]
        As in :func:`lstm`.
    (h_n, c_n) : tuple of jax.Array
        The final h and c, each [D*L,B,H]; c_n is the un-normalised c.

    Raises
    ------
    TypeError
        As in :func:`lstm` (there is no ``cell_clip``).
    ValueError
        As in :func:`lstm`, for a layer-norm LSTM's ``params``.
    jax.errors.JaxRuntimeError
        As in :func:`lstm`, for traced ``lengths``.
    """
    zoneout, _ = _checks.zoneout_config(zoneout)
    y, hn, cn = _run("lnlstm", params, x, h0, c0, lengths, batch_first, zoneout, None, key,
                     zoneout_masks)
    return y, (hn, cn)


def _masks(zoneout, key, masks, L, T, B, F, dtype) -> list:
    """Per layer, the zoneout mask [T,B,F] of dtype or an empty [0] array."""
    none = [jnp.zeros((0,), dtype)] * L
    if masks is not None:
        if key is not None:
            raise ValueError("key: pass either key or zoneout_masks, not both")
        if zoneout == 0.0:
            raise ValueError("zoneout_masks: given, but zoneout is 0 (set zoneout=p)")
        if isinstance(masks, (str, bytes)) or not hasattr(masks, "__len__") or \
                len(masks) != L:
            raise ValueError(f"zoneout_masks: expected a sequence of {L} arrays [T,B,D*Ho] "
                             f"(one per layer)")
        out = []
        for k, m in enumerate(masks):
            m = jnp.asarray(m)
            if m.shape != (T, B, F):
                raise ValueError(f"zoneout_masks[{k}]: expected shape {(T, B, F)}, got "
                                 f"{m.shape}")
            if m.dtype == jnp.bool_:
                m = m.astype(dtype)
            elif m.dtype != dtype:
                raise TypeError(f"zoneout_masks[{k}]: expected {dtype} like x (or bool), got "
                                f"{m.dtype}")
            out.append(m)
        return out
    if key is None or zoneout == 0.0:
        return none
    if not isinstance(key, jax.Array) or not (
            jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
            or (key.dtype == jnp.uint32 and key.ndim == 1)):
        raise TypeError(f"key: expected a PRNG key (jax.random.key or PRNGKey), got "
                        f"{getattr(key, 'dtype', type(key).__name__)}"
                        f"{getattr(key, 'shape', '')}")
    return zoneout_masks(key, zoneout, L, T, B, F, dtype)


def _run(cell, params, x, h0, c0, lengths, batch_first, zoneout, cell_clip, key, masks):
    if not isinstance(params, dict):
        raise TypeError(f"params: expected a dict of arrays, got {type(params).__name__}")
    cfg = convert.describe(params, cell=cell)
    x = jnp.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x: expected a 3-D array, got shape {x.shape}")
    if x.dtype not in (jnp.float32, jnp.float64):
        raise TypeError(f"x: expected float32 or float64, got {x.dtype}")
    for k, v in params.items():
        if jnp.asarray(v).dtype != x.dtype:
            raise TypeError(f"{k}: expected {x.dtype} like x, got {jnp.asarray(v).dtype}")
    if batch_first:
        x = jnp.swapaxes(x, 0, 1)
    T, B, I = x.shape
    if I != cfg["input_size"]:
        raise ValueError(f"x: expected input_size {cfg['input_size']}, got shape {x.shape}")
    L, H, P = cfg["num_layers"], cfg["hidden_size"], cfg["proj_size"]
    D, Ho = (2 if cfg["bidirectional"] else 1), (P or H)
    has_c = _spec.SPECS[cell]["states"] == 2
    h0 = jnp.zeros((D * L, B, Ho), x.dtype) if h0 is None else jnp.asarray(h0)
    states = [("h0", h0, (D * L, B, Ho))]
    if has_c:
        c0 = jnp.zeros((D * L, B, H), x.dtype) if c0 is None else jnp.asarray(c0)
        states.append(("c0", c0, (D * L, B, H)))
    for name, a, shape in states:
        if a.shape != shape or a.dtype != x.dtype:
            raise ValueError(f"{name}: expected shape {shape} of {x.dtype}, got {a.shape} of "
                             f"{a.dtype}")
    if lengths is None:
        lens = jnp.zeros((0,), jnp.int32)
    else:
        lens = jnp.asarray(lengths)
        if lens.shape != (B,) or not jnp.issubdtype(lens.dtype, jnp.integer):
            raise ValueError(f"lengths: expected an integer array of shape ({B},), got "
                             f"{lens.shape} of {lens.dtype}")
        if not isinstance(lens, jax.core.Tracer):  # traced values: the kernels check them
            v = np.asarray(lens)
            if v.size and (v.min() < 1 or v.max() > T):
                raise ValueError(f"lengths: every value must be in [1, {T}], got {v.tolist()}")
        lens = lens.astype(jnp.int32)
    keeps = _masks(zoneout, key, masks, L, T, B, D * Ho, x.dtype)
    static = (cell, H, P, cfg["bidirectional"], cfg["bias"], cfg["peephole"], zoneout,
              cell_clip or 0.0, resolve_isa(), get_num_threads())
    no_c = jnp.zeros((0,), x.dtype)
    hns, cns, inp = [], [], x
    for k in range(L):
        sl = slice(k * D, (k + 1) * D)
        inp, hn, cn = _layer(static, inp, h0[sl], c0[sl] if has_c else no_c, lens, keeps[k],
                             _layer_weights(params, k, cfg))
        hns.append(hn)
        cns.append(cn)
    y = jnp.swapaxes(inp, 0, 1) if batch_first else inp
    return y, jnp.concatenate(hns), (jnp.concatenate(cns) if has_c else None)
