"""Weights between fastlstm/torch.nn.LSTM and Keras, the ONNX LSTM op and haste.

fastlstm's parameters are torch.nn.LSTM's state_dict (``weight_ih_l0`` [4H,I],
``weight_hh_l0`` [4H,H], ``bias_ih_l0``/``bias_hh_l0`` [4H], ``_reverse`` for
the second direction, gates i, f, g, o) plus ``weight_ph_l{k}`` [3,H] (rows
i, f, o) for peepholes. Every function takes such a dict (NumPy arrays or
torch tensors) or returns one (NumPy arrays, the input's float dtype).

- Keras ``LSTM`` (``get_weights``/``set_weights``): ``kernel`` [I,4H],
  ``recurrent_kernel`` [H,4H], ``bias`` [4H], gates i, f, c, o. A
  ``Bidirectional(LSTM)`` holds the forward layer's three arrays, then the
  backward layer's. Keras has one bias: going to Keras adds ``b_ih + b_hh``;
  coming back puts it in ``b_ih`` and zeros ``b_hh`` (the same function).
  Keras's LSTM must use its defaults, ``activation="tanh"`` and
  ``recurrent_activation="sigmoid"``.
- ONNX ``LSTM`` (inputs W [D,4H,I], R [D,4H,H], B [D,8H] = Wb then Rb,
  P [D,3H]): gates i, o, f, c, peepholes i, o, f. Exact both ways.
- haste ``LSTM`` (``kernel`` [I,4H], ``recurrent_kernel`` [H,4H], ``bias``
  [4H]): gates i, g, f, o, one layer, one direction, one bias (as Keras).

Projections (``proj_size``) have no counterpart in these formats and are
refused, as are peepholes where the format has none.
"""
from __future__ import annotations

import re

import numpy as np

from . import _spec
from .functional import param_shapes

__all__ = ["to_keras", "from_keras", "to_onnx", "from_onnx", "to_haste", "from_haste",
           "describe"]

_KEY = re.compile(rf"^({'|'.join(p['name'] for p in _spec.SPECS['lstm']['params'])})"
                  r"_l(\d+)(_reverse)?$")

_ORDERS = {  # the order of the four gate blocks in each format
    "torch": tuple(_spec.SPECS["lstm"]["gate_order"]),  # fastlstm's, as torch's
    "keras": ("i", "f", "g", "o"),   # Keras calls g "c"
    "onnx": ("i", "o", "f", "g"),
    "haste": ("i", "g", "f", "o"),
}


# ONNX's peephole rows (i, o, f) from fastlstm's (i, f, o), and back: the
# same swap of the last two rows both ways
ONNX_PEEPHOLE_ROWS = (0, 2, 1)


def onnx_gate_rows(H: int) -> np.ndarray:
    """Row indices that take a [4H, ...] gate stack in fastlstm's (torch's) gate
    order to ONNX's."""
    src = _ORDERS["torch"]
    return np.concatenate([np.arange(src.index(g) * H, (src.index(g) + 1) * H)
                           for g in _ORDERS["onnx"]])


def _array(a, name: str) -> np.ndarray:
    """A NumPy array of a parameter (a torch tensor is detached and moved to the CPU)."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype.kind != "f":
        raise TypeError(f"{name}: expected a float array, got dtype {a.dtype}")
    return a


def _reorder(a: np.ndarray, src: str, dst: str, axis: int = 0) -> np.ndarray:
    """Permute the 4 gate blocks of `a` along `axis` from `src`'s order to `dst`'s."""
    blocks = np.split(a, 4, axis=axis)
    by_gate = dict(zip(_ORDERS[src], blocks))
    return np.concatenate([by_gate[g] for g in _ORDERS[dst]], axis=axis)


def describe(state_dict: dict) -> dict:
    """num_layers, bidirectional, bias, proj_size, peephole, input_size and
    hidden_size of a torch-style LSTM state dict (checked for consistency).
    Only shapes are read, so traced arrays (jax.jit) work too."""
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValueError("state_dict: expected a non-empty dict of LSTM parameters")
    found = {}
    for key in state_dict:
        m = _KEY.match(key)
        if m is None:
            raise ValueError(f"state_dict: unexpected key {key!r} (expected torch.nn.LSTM "
                             f"names such as 'weight_ih_l0', 'bias_hh_l1_reverse')")
        found[key] = (m.group(1), int(m.group(2)), bool(m.group(3)))
    layers = 1 + max(k for _, k, _ in found.values())
    bidirectional = any(r for _, _, r in found.values())
    kinds = {kind for kind, _, _ in found.values()}
    if "weight_ih" not in kinds or "weight_hh" not in kinds:
        raise ValueError("state_dict: weight_ih_l* and weight_hh_l* are required")
    hh = np.shape(state_dict["weight_hh_l0"])
    if len(hh) != 2 or hh[0] % 4 or hh[0] == 0:
        raise ValueError(f"weight_hh_l0: expected shape [4H, H_out], got {hh}")
    H = hh[0] // 4
    P = hh[1] if "weight_hr" in kinds else 0
    cfg = dict(num_layers=layers, bidirectional=bidirectional, bias="bias_ih" in kinds,
               proj_size=P, peephole="weight_ph" in kinds, hidden_size=H,
               input_size=(np.shape(state_dict["weight_ih_l0"]) or (0,))[-1])
    want = param_shapes(cfg["input_size"], H, layers, cfg["bias"], bidirectional, P,
                        cfg["peephole"])
    if set(want) != set(state_dict):
        raise ValueError(f"state_dict: keys do not form one LSTM; missing "
                         f"{sorted(set(want) - set(state_dict))}, unexpected "
                         f"{sorted(set(state_dict) - set(want))}")
    for k, shape in want.items():
        got = tuple(np.shape(state_dict[k]))
        if got != shape:
            raise ValueError(f"{k}: expected shape {shape}, got {got}")
    return cfg


def _no_proj(cfg: dict, fmt: str, peephole_ok: bool) -> None:
    if cfg["proj_size"]:
        raise ValueError(f"proj_size: {fmt} has no projection (weight_hr_l*); it cannot be "
                         f"converted")
    if cfg["peephole"] and not peephole_ok:
        raise ValueError(f"peephole: {fmt}'s LSTM has no peepholes (weight_ph_l*); it cannot "
                         f"be converted")


def _biases(sd: dict, cfg: dict, name: str, dtype) -> tuple:
    if cfg["bias"]:
        return _array(sd["bias_ih" + name], "bias_ih" + name), \
            _array(sd["bias_hh" + name], "bias_hh" + name)
    zero = np.zeros(4 * cfg["hidden_size"], dtype)
    return zero, zero


# --------------------------------------------------------------------------- Keras


def to_keras(state_dict: dict) -> list:
    """Per layer, the arrays for Keras ``set_weights``: [kernel, recurrent_kernel,
    bias], or six (forward, then backward) for a ``Bidirectional`` layer."""
    cfg = describe(state_dict)
    _no_proj(cfg, "Keras", False)
    out = []
    for k in range(cfg["num_layers"]):
        arrays = []
        for sfx in _spec.suffixes(cfg["bidirectional"]):
            name = f"_l{k}{sfx}"
            w_ih = _array(state_dict["weight_ih" + name], "weight_ih" + name)
            w_hh = _array(state_dict["weight_hh" + name], "weight_hh" + name)
            b_ih, b_hh = _biases(state_dict, cfg, name, w_ih.dtype)
            arrays += [np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T),
                       (b_ih + b_hh).astype(w_ih.dtype)]
        out.append(arrays)
    return out


def from_keras(layers: list, *, bidirectional: bool = False) -> dict:
    """A torch-style state dict from Keras ``get_weights()`` results, one per
    stacked layer (three arrays each, or six for ``Bidirectional``)."""
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError("layers: expected a non-empty list with one get_weights() list per "
                         "layer")
    per = 6 if bidirectional else 3
    sd = {}
    for k, arrays in enumerate(layers):
        if not isinstance(arrays, (list, tuple)) or len(arrays) != per:
            raise ValueError(f"layers[{k}]: expected {per} arrays (kernel, recurrent_kernel, "
                             f"bias{' per direction' if bidirectional else ''}), got "
                             f"{len(arrays) if isinstance(arrays, (list, tuple)) else arrays!r}")
        for d, sfx in enumerate(_spec.suffixes(bidirectional)):
            kernel, rec, bias = (_array(a, f"layers[{k}][{3 * d + j}]")
                                 for j, a in enumerate(arrays[3 * d:3 * d + 3]))
            if rec.ndim != 2 or rec.shape[1] != 4 * rec.shape[0] or kernel.ndim != 2 \
                    or kernel.shape[1] != rec.shape[1] or bias.shape != (rec.shape[1],):
                raise ValueError(f"layers[{k}]: expected kernel [I,4H], recurrent_kernel "
                                 f"[H,4H] and bias [4H], got {kernel.shape}, {rec.shape}, "
                                 f"{bias.shape}")
            name = f"_l{k}{sfx}"
            sd["weight_ih" + name] = np.ascontiguousarray(kernel.T)
            sd["weight_hh" + name] = np.ascontiguousarray(rec.T)
            sd["bias_ih" + name] = bias.copy()
            sd["bias_hh" + name] = np.zeros_like(bias)
    describe(sd)  # consistent sizes across layers
    return sd


# --------------------------------------------------------------------------- ONNX


def to_onnx(state_dict: dict) -> list:
    """Per layer, the ONNX LSTM inputs {"W", "R", "B"} (and "P" with
    peepholes), each with a leading num_directions axis."""
    cfg = describe(state_dict)
    _no_proj(cfg, "ONNX", True)
    H = cfg["hidden_size"]
    out = []
    for k in range(cfg["num_layers"]):
        W, R, B, P = [], [], [], []
        for sfx in _spec.suffixes(cfg["bidirectional"]):
            name = f"_l{k}{sfx}"
            w_ih = _array(state_dict["weight_ih" + name], "weight_ih" + name)
            W.append(_reorder(w_ih, "torch", "onnx"))
            R.append(_reorder(_array(state_dict["weight_hh" + name], "weight_hh" + name),
                              "torch", "onnx"))
            b_ih, b_hh = _biases(state_dict, cfg, name, w_ih.dtype)
            B.append(np.concatenate([_reorder(b_ih, "torch", "onnx"),
                                     _reorder(b_hh, "torch", "onnx")]))
            if cfg["peephole"]:
                ph = _array(state_dict["weight_ph" + name], "weight_ph" + name)  # rows i, f, o
                P.append(ph[list(ONNX_PEEPHOLE_ROWS)].reshape(3 * H))
        layer = {"W": np.stack(W), "R": np.stack(R), "B": np.stack(B)}
        if P:
            layer["P"] = np.stack(P)
        out.append(layer)
    return out


def from_onnx(layers: list) -> dict:
    """A torch-style state dict from ONNX LSTM inputs, one dict {"W", "R"[, "B",
    "P"]} per stacked layer (missing B: zero biases, as ONNX)."""
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError("layers: expected a non-empty list of {'W','R','B','P'} dicts")
    sd = {}
    for k, layer in enumerate(layers):
        if not isinstance(layer, dict) or not {"W", "R"} <= set(layer) \
                or not set(layer) <= {"W", "R", "B", "P"}:
            raise ValueError(f"layers[{k}]: expected a dict with W, R and optionally B, P")
        W = _array(layer["W"], f"layers[{k}]['W']")
        R = _array(layer["R"], f"layers[{k}]['R']")
        if R.ndim != 3 or R.shape[1] != 4 * R.shape[2] or W.ndim != 3 \
                or W.shape[:2] != R.shape[:2] or R.shape[0] not in (1, 2):
            raise ValueError(f"layers[{k}]: expected W [D,4H,I] and R [D,4H,H] with D in "
                             f"(1, 2), got {W.shape} and {R.shape}")
        D, H = R.shape[0], R.shape[2]
        B = _array(layer["B"], f"layers[{k}]['B']") if "B" in layer else \
            np.zeros((D, 8 * H), W.dtype)
        if B.shape != (D, 8 * H):
            raise ValueError(f"layers[{k}]['B']: expected shape {(D, 8 * H)}, got {B.shape}")
        P = _array(layer["P"], f"layers[{k}]['P']") if "P" in layer else None
        if P is not None and P.shape != (D, 3 * H):
            raise ValueError(f"layers[{k}]['P']: expected shape {(D, 3 * H)}, got {P.shape}")
        for d, sfx in enumerate(_spec.suffixes(D == 2)):
            name = f"_l{k}{sfx}"
            sd["weight_ih" + name] = _reorder(W[d], "onnx", "torch")
            sd["weight_hh" + name] = _reorder(R[d], "onnx", "torch")
            sd["bias_ih" + name] = _reorder(B[d, :4 * H], "onnx", "torch")
            sd["bias_hh" + name] = _reorder(B[d, 4 * H:], "onnx", "torch")
            if P is not None:  # ONNX i, o, f -> rows i, f, o
                p = P[d].reshape(3, H)
                sd["weight_ph" + name] = p[list(ONNX_PEEPHOLE_ROWS)]
    describe(sd)  # one configuration across layers (P on all or none)
    return sd


# --------------------------------------------------------------------------- haste


def to_haste(state_dict: dict) -> dict:
    """haste.LSTM's {"kernel", "recurrent_kernel", "bias"} from a one-layer,
    one-direction state dict."""
    cfg = describe(state_dict)
    _no_proj(cfg, "haste", False)
    if cfg["num_layers"] != 1 or cfg["bidirectional"]:
        raise ValueError("state_dict: haste's LSTM is one layer, one direction; got "
                         f"num_layers={cfg['num_layers']}, bidirectional={cfg['bidirectional']}")
    w_ih = _array(state_dict["weight_ih_l0"], "weight_ih_l0")
    b_ih, b_hh = _biases(state_dict, cfg, "_l0", w_ih.dtype)
    return {"kernel": np.ascontiguousarray(_reorder(w_ih, "torch", "haste").T),
            "recurrent_kernel": np.ascontiguousarray(
                _reorder(_array(state_dict["weight_hh_l0"], "weight_hh_l0"), "torch",
                         "haste").T),
            "bias": _reorder((b_ih + b_hh).astype(w_ih.dtype), "torch", "haste")}


def from_haste(weights: dict) -> dict:
    """A one-layer torch-style state dict from haste.LSTM's {"kernel",
    "recurrent_kernel", "bias"} (its state_dict, tensors or arrays)."""
    if not isinstance(weights, dict) or set(weights) != {"kernel", "recurrent_kernel", "bias"}:
        raise ValueError("weights: expected a dict with exactly kernel, recurrent_kernel, bias")
    kernel = _array(weights["kernel"], "kernel")
    rec = _array(weights["recurrent_kernel"], "recurrent_kernel")
    bias = _array(weights["bias"], "bias")
    if rec.ndim != 2 or rec.shape[1] != 4 * rec.shape[0] or kernel.ndim != 2 \
            or kernel.shape[1] != rec.shape[1] or bias.shape != (rec.shape[1],):
        raise ValueError(f"weights: expected kernel [I,4H], recurrent_kernel [H,4H] and bias "
                         f"[4H], got {kernel.shape}, {rec.shape}, {bias.shape}")
    return {"weight_ih_l0": np.ascontiguousarray(_reorder(kernel, "haste", "torch", 1).T),
            "weight_hh_l0": np.ascontiguousarray(_reorder(rec, "haste", "torch", 1).T),
            "bias_ih_l0": _reorder(bias, "haste", "torch"),
            "bias_hh_l0": np.zeros_like(bias)}
