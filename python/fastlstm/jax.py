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


def _fwd_call(static, x, h0, c0, lengths, keep, weights, training: bool):
    cell, H, P, bidirectional, _, peephole, zoneout, cell_clip, isa, _ = static
    T, B, I = x.shape
    D, Ho = (2 if bidirectional else 1), (P or H)
    per_row = _core.workspace_size(_core.LayerDims(T=1, B=1, I=I, H=H, P=P, D=D,
                                                   peephole=bool(peephole), cell=cell,
                                                   zoneout=zoneout, cell_clip=cell_clip),
                                   None, isa, np.dtype(x.dtype).itemsize)
    out = (jax.ShapeDtypeStruct((T, B, D * Ho), x.dtype),
           jax.ShapeDtypeStruct((D, B, Ho), x.dtype),
           jax.ShapeDtypeStruct(c0.shape, x.dtype),  # [D,B,H], or [0] without c
           jax.ShapeDtypeStruct((T * B * per_row if training else 0,), x.dtype))
    call = jax.ffi.ffi_call("fastlstm_rnn_layer_fwd", out, vmap_method="sequential")
    return call(x, h0, c0, lengths, keep, *weights, training=np.int64(training),
                **_attrs(static))


# keep: the layer's zoneout masks [T,B,D*Ho] (x's dtype) or [0] (none); an
# input of both custom calls that gets no gradient.
@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _layer(static, x, h0, c0, lengths, keep, weights):
    y, hn, cn, _ = _fwd_call(static, x, h0, c0, lengths, keep, weights, False)
    return y, hn, cn


def _layer_fwd(static, x, h0, c0, lengths, keep, weights):
    y, hn, cn, ws = _fwd_call(static, x, h0, c0, lengths, keep, weights, True)
    return (y, hn, cn), (x, c0, lengths, keep, ws, weights)


def _layer_bwd(static, res, cts):
    x, c0, lengths, keep, ws, weights = res
    dy, dhn, dcn = cts
    out = ([jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct(dhn.shape, x.dtype),
            jax.ShapeDtypeStruct(dcn.shape, x.dtype)]
           + [jax.ShapeDtypeStruct(w.shape, w.dtype) for w in weights])
    call = jax.ffi.ffi_call("fastlstm_rnn_layer_bwd", out, vmap_method="sequential")
    grads = call(x, c0, lengths, keep, ws, dy, dhn, dcn, *weights, **_attrs(static))
    dlengths = np.zeros(lengths.shape, dtype=jax.dtypes.float0)
    return grads[0], grads[1], grads[2], dlengths, jnp.zeros_like(keep), tuple(grads[3:])


_layer.defvjp(_layer_fwd, _layer_bwd)


def _layer_weights(params: dict, k: int, cfg: dict) -> tuple:
    names = _spec.layer_weight_names(cfg["cell"], k, cfg["bidirectional"], cfg["bias"],
                                     cfg["proj_size"] > 0, cfg["peephole"])
    return tuple(params[n] for n in names)


def zoneout_masks(key, zoneout: float, num_layers: int, steps: int, batch: int,
                  features: int, dtype=jnp.float32) -> list:
    """Training masks for zoneout: `num_layers` arrays [steps,batch,features]
    of `dtype`, each element 1 (keep h_{t-1}) with probability `zoneout`, else
    0. Layer k's mask is drawn from ``jax.random.split(key, num_layers)[k]``.
    ``lstm(..., key=key)`` and ``gru(..., key=key)`` draw theirs with this
    function (features = D*Ho), so their masks can be recreated from the key.
    """
    zoneout, _ = _checks.zoneout_config(zoneout)
    keys = jax.random.split(key, num_layers)
    return [jax.random.bernoulli(keys[k], zoneout, (steps, batch, features)).astype(dtype)
            for k in range(num_layers)]


def lstm(params: dict, x, h0=None, c0=None, lengths=None, *, batch_first: bool = False,
         zoneout: float = 0.0, cell_clip=None, key=None, zoneout_masks=None):
    """A multi-layer LSTM, as torch.nn.LSTM computes it (no dropout).

    params: torch.nn.LSTM's state_dict names and shapes (plus ``weight_ph_l{k}``
    [3,H] for peepholes) as JAX or NumPy arrays of one float dtype; the
    configuration (layers, directions, bias, projection, peepholes) is read off
    them. x [T,B,I] ([B,T,I] with batch_first); h0 [D*L,B,Ho] and c0
    [D*L,B,H] or None (zeros); lengths int [B] (each in [1,T]) or None.
    Returns y [T,B,D*Ho] ([B,T,D*Ho] with batch_first) and (h_n, c_n).
    Differentiable in x, h0, c0 and params; works under jax.jit and jax.vmap
    (sequentially).

    zoneout: p in [0, 1] (haste's zoneout on h, after the projection). With
    neither ``key`` nor ``zoneout_masks``, the deterministic (inference) mix
    h_t = p·h_{t-1} + (1−p)·h̃_t. ``key``: a PRNG key to draw training masks
    from (see `zoneout_masks`); ignored when zoneout is 0. ``zoneout_masks``:
    the training masks themselves, a sequence of L arrays [T,B,D*Ho]
    (time-major, also with batch_first, as ``fastlstm.LSTM.zoneout_masks``)
    of x's dtype or bool, 1 keeping h_{t-1}. cell_clip: None or a float > 0,
    the gate pre-activations clipped to [-cell_clip, cell_clip] (ONNX clip;
    zero gradient where clipped). zoneout and cell_clip are static Python
    floats.
    """
    zoneout, cell_clip = _checks.zoneout_config(zoneout, cell_clip)
    y, hn, cn = _run("lstm", params, x, h0, c0, lengths, batch_first, zoneout, cell_clip, key,
                     zoneout_masks)
    return y, (hn, cn)


def gru(params: dict, x, h0=None, lengths=None, *, batch_first: bool = False,
        zoneout: float = 0.0, key=None, zoneout_masks=None):
    """A multi-layer GRU, as torch.nn.GRU computes it (no dropout).

    params: torch.nn.GRU's state_dict names and shapes as JAX or NumPy arrays
    of one float dtype; the configuration is read off them. x [T,B,I] ([B,T,I]
    with batch_first); h0 [D*L,B,H] or None (zeros); lengths int [B] (each in
    [1,T]) or None. Returns y [T,B,D*H] ([B,T,D*H] with batch_first) and h_n.
    Differentiable in x, h0 and params; works under jax.jit and jax.vmap
    (sequentially). zoneout, key, zoneout_masks: as in `lstm` (masks
    [T,B,D*H]).
    """
    zoneout, _ = _checks.zoneout_config(zoneout)
    y, hn, _ = _run("gru", params, x, h0, None, lengths, batch_first, zoneout, None, key,
                    zoneout_masks)
    return y, hn


def layer_norm_lstm(params: dict, x, h0=None, c0=None, lengths=None, *,
                    batch_first: bool = False, zoneout: float = 0.0, key=None,
                    zoneout_masks=None):
    """A multi-layer layer-norm LSTM (Ba et al. 2016, as haste's
    LayerNormLSTM and `fastlstm.LayerNormLSTM`; no dropout).

    params: `fastlstm.LayerNormLSTM`'s state_dict names and shapes (torch's
    LSTM names plus the norms' ``weight_ln_ih_l{k}``, ``weight_ln_hh_l{k}``
    [4H], ``weight_ln_c_l{k}``, ``bias_ln_c_l{k}`` [H]) as JAX or NumPy
    arrays of one float dtype; the configuration is read off them. x, h0, c0,
    lengths and the result: as in `lstm` (no projection: Ho = H). zoneout,
    key, zoneout_masks: as in `lstm`. Differentiable in x, h0, c0 and params;
    works under jax.jit and jax.vmap (sequentially).
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
