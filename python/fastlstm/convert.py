"""Weights between fastlstm/torch and Keras, ONNX and haste, for the LSTM, the
GRU and the layer-norm LSTM.

fastlstm's parameters are torch's state_dict: torch.nn.LSTM's (``weight_ih_l0``
[4H,I], ``weight_hh_l0`` [4H,H], ``bias_ih_l0``/``bias_hh_l0`` [4H], ``_reverse``
for the second direction, gates i, f, g, o, plus ``weight_ph_l{k}`` [3,H], rows
i, f, o, for peepholes), torch.nn.GRU's (the same names, 3H rows, gates r, z,
n) or the layer-norm LSTM's (the LSTM's plus ``weight_ln_*``); the cell spec
(`fastlstm._spec`) states them. The converters read the cell ('lstm', 'gru',
'lnlstm') off the keys and shapes unless ``cell=`` names it; `describe` expects
an LSTM unless told another cell, or ``cell=None`` to read it. Every function
takes such a dict (NumPy arrays or torch tensors) or returns one (NumPy arrays,
the input's float dtype).

- Keras ``LSTM`` and ``GRU`` (``get_weights``/``set_weights``): ``kernel``
  [I,GH], ``recurrent_kernel`` [H,GH], ``bias``; a ``Bidirectional`` layer holds
  the forward layer's three arrays, then the backward layer's. Defaults needed:
  ``activation="tanh"``, ``recurrent_activation="sigmoid"``.
  LSTM: gates i, f, c, o; one bias [4H]: going to Keras adds ``b_ih + b_hh``,
  coming back puts it in ``b_ih`` and zeros ``b_hh`` (the same function).
  GRU: ``reset_after=True`` (Keras's default, torch's maths), gates z, r, h,
  bias [2,3H] = input bias, recurrent bias; exact both ways. A GRU with
  ``reset_after=False`` (bias [3H]) computes another function and is refused.
- ONNX ``LSTM`` (W [D,4H,I], R [D,4H,H], B [D,8H] = Wb then Rb, P [D,3H]):
  gates i, o, f, c, peepholes i, o, f. ONNX ``GRU`` with ``linear_before_reset=1``
  (torch's maths; W [D,3H,I], R [D,3H,H], B [D,6H]): gates z, r, h. Exact.
- haste (its PyTorch state_dict; one layer, one direction): ``LSTM`` (kernel
  [I,4H], recurrent_kernel [H,4H], bias [4H]; gates i, g, f, o; one bias, as
  Keras); ``GRU`` (kernel [I,3H], recurrent_kernel [H,3H], bias and
  recurrent_bias [3H]; gates z, r, h; the reset gate after the product, as
  torch; exact); ``LayerNormLSTM`` (the LSTM's three plus gamma [2,4H], the
  gains of LN(W x) and LN(R h), and gamma_h, beta_h [H] of LN(c); one bias;
  haste's LayerNorm is fastlstm's: epsilon 1e-5 inside the root, biased
  variance, so the two compute the same function).

Projections have no counterpart in these formats and are refused, as are
peepholes where the format has none and cells a format lacks (Keras and ONNX
have no layer-norm LSTM).
"""
from __future__ import annotations

import re

import numpy as np

from . import _spec

__all__ = ["to_keras", "from_keras", "to_onnx", "from_onnx", "to_haste", "from_haste",
           "describe", "onnx_gate_rows"]

_SPECS = _spec.SPECS
_NAMES = {c: {p["name"] for p in s["params"]} for c, s in _SPECS.items()}
_ALWAYS = {c: {p["name"] for p in s["params"] if p["when"] == "always"}
           for c, s in _SPECS.items()}
_KEY = re.compile(rf"^({'|'.join(sorted(set().union(*_NAMES.values())))})_l(\d+)(_reverse)?$")

# Each cell's gate blocks in each format that has it, in torch's letters (Keras
# calls the LSTM's g "c"; Keras, ONNX and haste call the GRU's n "h").
_ORDERS = {cell: {"torch": _SPECS[cell]["gate_order"], **formats} for cell, formats in {
    "lstm": {"keras": "ifgo", "onnx": "iofg", "haste": "igfo"},
    "gru": {"keras": "zrn", "onnx": "zrn", "haste": "zrn"},
    "lnlstm": {"haste": "igfo"},
}.items()}
_FORMATS = {"keras": "Keras", "onnx": "ONNX", "haste": "haste"}
# Keras and ONNX name no cell: their weights' gate count does
_BY_GATES = {_SPECS[c]["gates"]: c for c in ("lstm", "gru")}
# the cells whose b_hh cannot join b_ih (the GRU's b_hn sits inside r ⊙ (.)):
# formats keep both biases, where for the others one bias b_ih + b_hh suffices
_SPLIT_BIAS = ("gru",)
# haste's PyTorch parameter names of each cell's layer
_HASTE = {"lstm": ("kernel", "recurrent_kernel", "bias"),
          "gru": ("kernel", "recurrent_kernel", "bias", "recurrent_bias"),
          "lnlstm": ("kernel", "recurrent_kernel", "bias", "gamma", "gamma_h", "beta_h")}

# ONNX's peephole rows (i, o, f) from fastlstm's (i, f, o), and back: the
# same swap of the last two rows both ways
ONNX_PEEPHOLE_ROWS = (0, 2, 1)


def _reorder(a: np.ndarray, cell: str, src: str, dst: str, axis: int = 0) -> np.ndarray:
    """Permute the gate blocks of `a` along `axis` from format src's order to dst's."""
    orders = _ORDERS[cell]
    by_gate = dict(zip(orders[src], np.split(a, len(orders[src]), axis=axis)))
    return np.concatenate([by_gate[g] for g in orders[dst]], axis=axis)


def onnx_gate_rows(H: int, cell: str = "lstm") -> np.ndarray:
    """Row indices that take a gate stack from torch's gate order to ONNX's.

    Parameters
    ----------
    H : int
        The hidden size.
    cell : {'lstm', 'gru'}, default 'lstm'
        The cell: LSTM gates i, f, g, o to ONNX's i, o, f, c; GRU gates r, z,
        n to ONNX's z, r, h.

    Returns
    -------
    numpy.ndarray of int, [G*H]
        ``rows`` such that ``w[rows]`` is a [G*H, ...] array ``w`` in
        fastlstm's (torch's) gate order put in ONNX's (G = 4 for the LSTM, 3
        for the GRU).

    Raises
    ------
    ValueError
        If ``cell`` is not ``'lstm'`` or ``'gru'`` (ONNX has no layer-norm
        LSTM).

    Examples
    --------
    >>> from fastlstm import convert
    >>> convert.onnx_gate_rows(1)
    array([0, 3, 1, 2])
    >>> convert.onnx_gate_rows(1, cell="gru")
    array([1, 0, 2])
    """
    if cell not in ("lstm", "gru"):
        raise ValueError(f"cell: expected 'lstm' or 'gru' (ONNX's LSTM and GRU ops), got {cell!r}")
    return _reorder(np.arange(_SPECS[cell]["gates"] * H), cell, "torch", "onnx")


def _array(a, name: str) -> np.ndarray:
    """A NumPy array of a parameter (a torch tensor is detached and moved to the CPU)."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype.kind != "f":
        raise TypeError(f"{name}: expected a float array, got dtype {a.dtype}")
    return a


def _cell_arg(cell, fmt: str | None = None):
    """`cell` (None or a cell of the spec), checked to exist in format `fmt`."""
    if cell is not None and cell not in _SPECS:
        raise ValueError(f"cell: expected None or one of {tuple(_SPECS)}, got {cell!r}")
    if cell is not None and fmt is not None and fmt not in _ORDERS[cell]:
        has = [c for c in _ORDERS if fmt in _ORDERS[c]]
        raise ValueError(f"cell: {_FORMATS[fmt]} has no {cell!r} layer (only {has}); "
                         f"a {cell} cannot be converted to or from it")
    return cell


def _cell_of(kinds: set, hh: tuple) -> str:
    """The one cell whose parameter names hold `kinds` (preferring one whose
    required names are all there) and, where that leaves several,
    whose G gates make weight_hh_l0 [G*H, H]."""
    fits = [c for c in _SPECS if kinds <= _NAMES[c]]
    if not fits:
        raise ValueError(f"state_dict: no cell has all of the parameters {sorted(kinds)}")
    for keep in (lambda c: _ALWAYS[c] <= kinds,
                 lambda c: len(hh) == 2 and hh[0] == _SPECS[c]["gates"] * hh[1]):
        if len(fits) > 1:
            fits = [c for c in fits if keep(c)] or fits
    if len(fits) != 1:
        raise ValueError(f"state_dict: cannot tell the cell from its keys and weight_hh_l0's "
                         f"shape {hh} (any of {fits}); pass cell=")
    return fits[0]


def _looks_like(cell: str, kinds: set, hh: tuple) -> str:
    """A hint for a dict that does not fit `cell` but fits another one."""
    try:
        other = _cell_of(kinds, hh)
    except ValueError:
        return ""
    return "" if other == cell else f" (it looks like a {other}: pass cell={other!r})"


def describe(state_dict: dict, cell: str | None = "lstm") -> dict:
    """Read a torch-style state dict's configuration, and check it.

    The keys must be exactly the parameters of one ``cell`` layer, each of
    its shape. Only shapes are read, so traced arrays (``jax.jit``) work
    too.

    Parameters
    ----------
    state_dict : dict
        Parameter name to array (NumPy, torch or JAX): torch.nn.LSTM's or
        torch.nn.GRU's names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...),
        plus ``weight_ph_l{k}`` for peepholes and ``weight_ln_*`` for the
        layer-norm LSTM.
    cell : {'lstm', 'gru', 'lnlstm'} or None, default 'lstm'
        The cell the dict must hold; None: the cell its keys and shapes name.

    Returns
    -------
    dict
        ``cell`` (str), ``num_layers`` (int), ``bidirectional`` (bool),
        ``bias`` (bool), ``proj_size`` (int, 0 without projection),
        ``peephole`` (bool), ``hidden_size`` (int) and ``input_size`` (int).

    Raises
    ------
    ValueError
        If ``cell`` is not one of these, ``state_dict`` is not a non-empty
        dict, a key is not a parameter name, ``weight_ih_l0`` or
        ``weight_hh_l0`` is missing, the cell cannot be told (``cell=None``:
        pass ``cell=``), ``weight_hh_l0``'s shape does not fit the cell, keys
        are missing or unexpected, or a parameter has another shape. The
        message names the cell a dict of another cell looks like.

    Examples
    --------
    >>> import fastlstm
    >>> from fastlstm import convert
    >>> cfg = convert.describe(fastlstm.LSTM(3, 4, num_layers=2).state_dict())
    >>> cfg["num_layers"], cfg["input_size"], cfg["hidden_size"]
    (2, 3, 4)
    >>> convert.describe(fastlstm.GRU(3, 4).state_dict(), cell=None)["cell"]
    'gru'
    """
    _cell_arg(cell)
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValueError("state_dict: expected a non-empty dict of parameters")
    found = {}
    for key in state_dict:
        m = _KEY.match(key) if isinstance(key, str) else None
        if m is None:
            raise ValueError(f"state_dict: unexpected key {key!r} (expected torch.nn.LSTM / "
                             f"GRU names such as 'weight_ih_l0', 'bias_hh_l1_reverse')")
        found[key] = (m.group(1), int(m.group(2)), bool(m.group(3)))
    if "weight_ih_l0" not in state_dict or "weight_hh_l0" not in state_dict:
        raise ValueError("state_dict: weight_ih_l0 and weight_hh_l0 are required")
    kinds = {kind for kind, _, _ in found.values()}
    hh = tuple(np.shape(state_dict["weight_hh_l0"]))
    cell = cell or _cell_of(kinds, hh)
    G, proj = _SPECS[cell]["gates"], "weight_hr" in kinds
    if len(hh) != 2 or hh[0] % G or hh[0] == 0 or (not proj and hh[0] != G * hh[1]):
        raise ValueError(f"weight_hh_l0: expected shape [{G}H, {'P' if proj else 'H'}] "
                         f"({cell}), got {hh}{_looks_like(cell, kinds, hh)}")
    layers = 1 + max(k for _, k, _ in found.values())
    cfg = dict(cell=cell, num_layers=layers, bidirectional=any(r for _, _, r in found.values()),
               bias="bias_ih" in kinds, proj_size=hh[1] if proj else 0,
               peephole="weight_ph" in kinds, hidden_size=hh[0] // G,
               input_size=(np.shape(state_dict["weight_ih_l0"]) or (0,))[-1])
    want = _spec.param_shapes(cell, cfg["input_size"], cfg["hidden_size"], layers, cfg["bias"],
                              cfg["bidirectional"], cfg["proj_size"], cfg["peephole"])
    if set(want) != set(state_dict):
        raise ValueError(f"state_dict: keys do not form one {cell}; missing "
                         f"{sorted(set(want) - set(state_dict))}, unexpected "
                         f"{sorted(set(state_dict) - set(want))}"
                         f"{_looks_like(cell, kinds, hh)}")
    for k, shape in want.items():
        got = tuple(np.shape(state_dict[k]))
        if got != shape:
            raise ValueError(f"{k}: expected shape {shape}, got {got}")
    return cfg


def _described(state_dict: dict, cell, fmt: str, peephole_ok: bool = False) -> dict:
    """describe(), then refuse what format `fmt` has not: the cell, projections,
    peepholes (unless peephole_ok)."""
    cfg = describe(state_dict, _cell_arg(cell, fmt))
    _cell_arg(cfg["cell"], fmt)
    if cfg["proj_size"]:
        raise ValueError(f"proj_size: {_FORMATS[fmt]} has no projection (weight_hr_l*); it "
                         f"cannot be converted")
    if cfg["peephole"] and not peephole_ok:
        raise ValueError(f"peephole: {_FORMATS[fmt]}'s LSTM has no peepholes (weight_ph_l*); "
                         f"it cannot be converted")
    return cfg


def _gates_cell(ok: bool, GH: int, H: int, cell, where: str, want: str, got) -> str:
    """The cell of a format's weights whose gate axis is GH = G*H long: the
    given `cell`, or the one with G gates; a ValueError saying `want` (shapes
    with {G} for the gate count) unless `ok` and G fits."""
    G = GH // H if H and GH % H == 0 else 0
    found = cell or _BY_GATES.get(G)
    if not ok or found is None or G != _SPECS[found]["gates"]:
        if cell:
            want = want.format(G=_SPECS[cell]["gates"])
        else:
            want = want.format(G="G") + " with G = " + " or ".join(
                f"{g} ({c})" for g, c in _BY_GATES.items())
        raise ValueError(f"{where}: expected {want}, got {got}")
    return found


def _direction(sd: dict, cfg: dict, name: str) -> tuple:
    """w_ih, w_hh, b_ih, b_hh of one direction (zero biases without bias)."""
    w_ih, w_hh = (_array(sd[p + name], p + name) for p in ("weight_ih", "weight_hh"))
    if not cfg["bias"]:
        zero = np.zeros(w_hh.shape[0], w_ih.dtype)
        return w_ih, w_hh, zero, zero
    return (w_ih, w_hh) + tuple(_array(sd[p + name], p + name) for p in ("bias_ih", "bias_hh"))


def _to_columns(cell: str, fmt: str, w_ih, w_hh, b_ih, b_hh) -> list:
    """A format's kernel [I,GH], recurrent_kernel [H,GH] and bias (in its gate
    order): [2,GH] (b_ih, b_hh) for a cell that keeps them apart, else [GH] =
    b_ih + b_hh."""
    bias = np.stack([b_ih, b_hh]) if cell in _SPLIT_BIAS else b_ih + b_hh
    return [np.ascontiguousarray(_reorder(w, cell, "torch", fmt).T) for w in (w_ih, w_hh)] + \
        [_reorder(bias.astype(w_ih.dtype), cell, "torch", fmt, axis=-1)]


def _from_columns(cell: str, fmt: str, name: str, kernel, rec, bias) -> dict:
    """One direction's torch entries from a format's kernel [I,GH],
    recurrent_kernel [H,GH] and bias (shapes checked; as _to_columns makes
    them): b_hh is zero where the format has one bias."""
    b_ih, b_hh = bias if cell in _SPLIT_BIAS else (bias, np.zeros_like(bias))
    back = [_reorder(a, cell, fmt, "torch", axis=-1) for a in (kernel, rec, b_ih, b_hh)]
    return {"weight_ih" + name: np.ascontiguousarray(back[0].T),
            "weight_hh" + name: np.ascontiguousarray(back[1].T),
            "bias_ih" + name: back[2], "bias_hh" + name: back[3]}


def _column_cell(kernel, rec, cell, where: str) -> str:
    """The cell of a kernel [I,GH] / recurrent_kernel [H,GH] pair (or `cell`, checked)."""
    ok = kernel.ndim == 2 and rec.ndim == 2 and kernel.shape[1] == rec.shape[1]
    H, GH = rec.shape if rec.ndim == 2 else (0, 0)
    return _gates_cell(ok, GH, H, cell, where, "kernel [I,{G}H] and recurrent_kernel [H,{G}H]",
                       f"{kernel.shape} and {rec.shape}")


# --------------------------------------------------------------------------- Keras


def to_keras(state_dict: dict, *, cell: str | None = None) -> list:
    """Convert a torch-style state dict to the weights of Keras layers.

    Per layer, the arrays for ``set_weights`` of a Keras ``LSTM`` or ``GRU``
    (``reset_after=True``), or of a ``Bidirectional`` one. The LSTM's two
    biases are added (Keras has one); a dict without biases gives zero
    biases. The Keras layers need ``activation="tanh"`` and
    ``recurrent_activation="sigmoid"`` (the defaults).

    Parameters
    ----------
    state_dict : dict
        A torch-style LSTM or GRU state dict (NumPy arrays or torch tensors),
        see :func:`describe`; no projection, no peepholes.
    cell : {'lstm', 'gru'} or None, default None
        The cell; None: read off the keys and shapes.

    Returns
    -------
    list of list of numpy.ndarray
        One list per stacked layer: ``[kernel, recurrent_kernel, bias]``,
        kernel [I,GH], recurrent_kernel [H,GH], bias [4H] (LSTM, gates i, f,
        c, o; b_ih + b_hh) or [2,3H] (GRU, gates z, r, h; input bias, then
        recurrent bias); six arrays, forward then backward, when
        bidirectional. The input's float dtype.

    Raises
    ------
    TypeError
        If a parameter is not a float array.
    ValueError
        If the dict is not one layer's (see :func:`describe`), the cell is
        not an LSTM or GRU (Keras has no layer-norm LSTM), or the layer has a
        projection or peepholes.

    Examples
    --------
    >>> import keras, fastlstm
    >>> from fastlstm import convert
    >>> sd = fastlstm.LSTM(16, 32, num_layers=2, bidirectional=True, seed=0).state_dict()
    >>> model = keras.Sequential([keras.Input((None, 16))] + [
    ...     keras.layers.Bidirectional(keras.layers.LSTM(32, return_sequences=True))
    ...     for _ in range(2)])
    >>> for layer, w in zip(model.layers, convert.to_keras(sd)):
    ...     layer.set_weights(w)
    """
    cfg = _described(state_dict, cell, "keras")
    return [sum((_to_columns(cfg["cell"], "keras", *_direction(state_dict, cfg, f"_l{k}{sfx}"))
                 for sfx in _spec.suffixes(cfg["bidirectional"])), [])
            for k in range(cfg["num_layers"])]


def from_keras(layers: list, *, bidirectional: bool = False, cell: str | None = None) -> dict:
    """Convert the weights of Keras layers to a torch-style state dict.

    The inverse of :func:`to_keras`: the LSTM's one bias goes into ``b_ih``
    and ``b_hh`` is zero (the same function), so Keras → fastlstm → Keras is
    exact; the GRU's two biases are kept apart.

    Parameters
    ----------
    layers : list of lists of arrays
        ``get_weights()`` of each stacked Keras ``LSTM`` or ``GRU`` layer
        (``reset_after=True``, ``use_bias=True``): three arrays
        (kernel, recurrent_kernel, bias), or six (forward, then backward) for
        ``Bidirectional``.
    bidirectional : bool, default False
        Whether the layers are ``Bidirectional``.
    cell : {'lstm', 'gru'} or None, default None
        The cell; None: read off the shapes (the gate count of the kernels).

    Returns
    -------
    dict of str to numpy.ndarray
        ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}`` and
        ``bias_hh_l{k}`` (and ``_reverse``), in the arrays' float dtype.

    Raises
    ------
    TypeError
        If an array is not a float array.
    ValueError
        If ``cell`` is not ``'lstm'``, ``'gru'`` or None, ``layers`` is not a
        non-empty list or tuple, a layer has not 3 (or 6) arrays, the kernels'
        shapes fit no cell (or not ``cell``), a bias has another shape (a GRU
        with ``reset_after=False``, bias [3H], is refused), or the layers'
        sizes do not chain.

    Examples
    --------
    >>> import keras
    >>> from fastlstm import convert
    >>> layer = keras.layers.GRU(8)
    >>> layer.build((None, None, 4))
    >>> sd = convert.from_keras([layer.get_weights()])
    >>> convert.describe(sd, cell=None)["cell"], sd["weight_ih_l0"].shape
    ('gru', (24, 4))
    """
    _cell_arg(cell, "keras")
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
            cell = _column_cell(kernel, rec, cell, f"layers[{k}]")
            GH = rec.shape[1]
            want = (2, GH) if cell in _SPLIT_BIAS else (GH,)
            if bias.shape != want:
                raise ValueError(
                    f"layers[{k}]: expected a {cell} bias of shape {want}, got {bias.shape}"
                    + (" (a GRU with reset_after=False, which applies the reset gate before "
                       "the product: torch's and fastlstm's GRU apply it after)"
                       if cell == "gru" and bias.shape == (GH,) else ""))
            sd.update(_from_columns(cell, "keras", f"_l{k}{sfx}", kernel, rec, bias))
    describe(sd, cell)  # consistent sizes across layers
    return sd


# --------------------------------------------------------------------------- ONNX


def to_onnx(state_dict: dict, *, cell: str | None = None) -> list:
    """Convert a torch-style state dict to the inputs of ONNX ops.

    Per layer, the weight inputs of the ONNX ``LSTM`` op, or of the ``GRU`` op
    with ``linear_before_reset=1`` (torch's GRU maths); exact, peepholes
    included. :func:`fastlstm.onnx.export` writes whole models.

    Parameters
    ----------
    state_dict : dict
        A torch-style LSTM or GRU state dict (NumPy arrays or torch tensors),
        see :func:`describe`; no projection.
    cell : {'lstm', 'gru'} or None, default None
        The cell; None: read off the keys and shapes.

    Returns
    -------
    list of dict of str to numpy.ndarray
        One dict per stacked layer, each array with a leading num_directions
        axis D: ``"W"`` [D,GH,I], ``"R"`` [D,GH,H], ``"B"`` [D,2GH] (input
        biases, then recurrent biases; zero without bias), and with peepholes
        ``"P"`` [D,3H] (rows i, o, f). Gates in ONNX's order: i, o, f, c for
        the LSTM, z, r, h for the GRU. The input's float dtype.

    Raises
    ------
    TypeError
        If a parameter is not a float array.
    ValueError
        If the dict is not one layer's (see :func:`describe`), the cell is
        not an LSTM or GRU (ONNX has no layer-norm LSTM), or the layer has a
        projection.
    """
    cfg = _described(state_dict, cell, "onnx", peephole_ok=True)
    c, H = cfg["cell"], cfg["hidden_size"]
    out = []
    for k in range(cfg["num_layers"]):
        W, R, B, P = [], [], [], []
        for sfx in _spec.suffixes(cfg["bidirectional"]):
            name = f"_l{k}{sfx}"
            w_ih, w_hh, b_ih, b_hh = (_reorder(a, c, "torch", "onnx")
                                      for a in _direction(state_dict, cfg, name))
            W.append(w_ih)
            R.append(w_hh)
            B.append(np.concatenate([b_ih, b_hh]))
            if cfg["peephole"]:
                ph = _array(state_dict["weight_ph" + name], "weight_ph" + name)  # rows i, f, o
                P.append(ph[list(ONNX_PEEPHOLE_ROWS)].reshape(3 * H))
        layer = {"W": np.stack(W), "R": np.stack(R), "B": np.stack(B)}
        if P:
            layer["P"] = np.stack(P)
        out.append(layer)
    return out


def from_onnx(layers: list, *, cell: str | None = None) -> dict:
    """Convert the inputs of ONNX ops to a torch-style state dict.

    The inverse of :func:`to_onnx`, for ONNX ``LSTM`` ops or ``GRU`` ops with
    ``linear_before_reset=1``; exact.

    Parameters
    ----------
    layers : list of dicts
        One dict per stacked layer with ``"W"`` [D,GH,I] and ``"R"``
        [D,GH,H], optionally ``"B"`` [D,2GH] (missing: zero biases, as in
        ONNX) and, for an LSTM, ``"P"`` [D,3H] (on every layer or none), D
        in (1, 2). NumPy arrays or torch tensors.
    cell : {'lstm', 'gru'} or None, default None
        The cell; None: read off the shapes (the gate count of W and R).

    Returns
    -------
    dict of str to numpy.ndarray
        ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
        ``bias_hh_l{k}`` (and ``_reverse``), plus ``weight_ph_l{k}`` [3,H]
        (rows i, f, o) with peepholes; the arrays' float dtype.

    Raises
    ------
    TypeError
        If an array is not a float array.
    ValueError
        If ``cell`` is not ``'lstm'``, ``'gru'`` or None, ``layers`` is not a
        non-empty list or tuple, a layer is not a dict with W, R and
        optionally B, P, the shapes of W and R fit no cell (or not ``cell``),
        B or P has another shape, a GRU has P, or the layers do not form one
        configuration.
    """
    _cell_arg(cell, "onnx")
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError("layers: expected a non-empty list of {'W','R','B','P'} dicts")
    sd = {}
    for k, layer in enumerate(layers):
        if not isinstance(layer, dict) or not {"W", "R"} <= set(layer) \
                or not set(layer) <= {"W", "R", "B", "P"}:
            raise ValueError(f"layers[{k}]: expected a dict with W, R and optionally B, P")
        W = _array(layer["W"], f"layers[{k}]['W']")
        R = _array(layer["R"], f"layers[{k}]['R']")
        ok = R.ndim == 3 and W.ndim == 3 and W.shape[:2] == R.shape[:2] and R.shape[0] in (1, 2)
        cell = _gates_cell(ok, *(R.shape[1:] if R.ndim == 3 else (0, 0)), cell, f"layers[{k}]",
                           "W [D,{G}H,I] and R [D,{G}H,H] with D in (1, 2)",
                           f"{W.shape} and {R.shape}")
        D, H = R.shape[0], R.shape[2]
        GH = R.shape[1]
        B = _array(layer["B"], f"layers[{k}]['B']") if "B" in layer else \
            np.zeros((D, 2 * GH), W.dtype)
        if B.shape != (D, 2 * GH):
            raise ValueError(f"layers[{k}]['B']: expected shape {(D, 2 * GH)}, got {B.shape}")
        P = _array(layer["P"], f"layers[{k}]['P']") if "P" in layer else None
        if P is not None and (not _SPECS[cell]["peephole"] or P.shape != (D, 3 * H)):
            raise ValueError(f"layers[{k}]['P']: expected shape {(D, 3 * H)} (an LSTM's "
                             f"peepholes), got {P.shape} with a {cell}")
        for d, sfx in enumerate(_spec.suffixes(D == 2)):
            name = f"_l{k}{sfx}"
            for key, a in (("weight_ih", W[d]), ("weight_hh", R[d]), ("bias_ih", B[d, :GH]),
                           ("bias_hh", B[d, GH:])):
                sd[key + name] = _reorder(a, cell, "onnx", "torch")
            if P is not None:  # ONNX i, o, f -> rows i, f, o
                sd["weight_ph" + name] = P[d].reshape(3, H)[list(ONNX_PEEPHOLE_ROWS)]
    describe(sd, cell)  # one configuration across layers (P on all or none)
    return sd


# --------------------------------------------------------------------------- haste


def to_haste(state_dict: dict, *, cell: str | None = None) -> dict:
    """Convert a one-layer torch-style state dict to haste's weights.

    The state_dict of haste's PyTorch ``LSTM``, ``GRU`` or ``LayerNormLSTM``
    (see the module docstring). The LSTM's and the layer-norm LSTM's two
    biases are added (haste has one); a dict without biases gives zero
    biases.

    Parameters
    ----------
    state_dict : dict
        A torch-style state dict of one layer and one direction (NumPy arrays
        or torch tensors), see :func:`describe`; no projection, no peepholes.
    cell : {'lstm', 'gru', 'lnlstm'} or None, default None
        The cell; None: read off the keys and shapes.

    Returns
    -------
    dict of str to numpy.ndarray
        LSTM: ``kernel`` [I,4H], ``recurrent_kernel`` [H,4H], ``bias`` [4H]
        (gates i, g, f, o). GRU: ``kernel`` [I,3H], ``recurrent_kernel``
        [H,3H], ``bias`` and ``recurrent_bias`` [3H] (gates z, r, h).
        Layer-norm LSTM: the LSTM's three, ``gamma`` [2,4H] (the gains of
        LN(W x) and LN(R h)), ``gamma_h`` and ``beta_h`` [H] (of LN(c)). The
        input's float dtype.

    Raises
    ------
    TypeError
        If a parameter is not a float array.
    ValueError
        If the dict is not one layer's (see :func:`describe`), has more than
        one layer or two directions, or has a projection or peepholes.
    """
    cfg = _described(state_dict, cell, "haste")
    if cfg["num_layers"] != 1 or cfg["bidirectional"]:
        raise ValueError("state_dict: haste's layers are one layer, one direction; got "
                         f"num_layers={cfg['num_layers']}, bidirectional={cfg['bidirectional']}")
    c = cfg["cell"]
    kernel, rec, bias = _to_columns(c, "haste", *_direction(state_dict, cfg, "_l0"))
    out = {"kernel": kernel, "recurrent_kernel": rec}
    out.update(zip(("bias", "recurrent_bias"), bias) if c in _SPLIT_BIAS else [("bias", bias)])
    if c == "lnlstm":  # gamma: the gains of LN(W x), LN(R h); gamma_h, beta_h: of LN(c)
        ln = {p: _array(state_dict[p + "_l0"], p + "_l0")
              for p in ("weight_ln_ih", "weight_ln_hh", "weight_ln_c", "bias_ln_c")}
        out.update(gamma=_reorder(np.stack([ln["weight_ln_ih"], ln["weight_ln_hh"]]), c,
                                  "torch", "haste", axis=1),
                   gamma_h=ln["weight_ln_c"].copy(), beta_h=ln["bias_ln_c"].copy())
    return out


def from_haste(weights: dict, *, cell: str | None = None) -> dict:
    """Convert haste's weights to a one-layer torch-style state dict.

    The inverse of :func:`to_haste`: the one bias of the LSTM and the
    layer-norm LSTM goes into ``b_ih`` and ``b_hh`` is zero.

    Parameters
    ----------
    weights : dict
        The state_dict (tensors or arrays) of haste's ``LSTM``, ``GRU`` or
        ``LayerNormLSTM``, with exactly that cell's keys (see
        :func:`to_haste`).
    cell : {'lstm', 'gru', 'lnlstm'} or None, default None
        The cell; None: read off the keys.

    Returns
    -------
    dict of str to numpy.ndarray
        The layer's ``_l0`` parameters (``weight_ih_l0``, ``weight_hh_l0``,
        ``bias_ih_l0``, ``bias_hh_l0``, and the layer-norm LSTM's
        ``weight_ln_*_l0`` and ``bias_ln_c_l0``); the arrays' float dtype.

    Raises
    ------
    TypeError
        If an array is not a float array.
    ValueError
        If ``cell`` is not one of these or None, ``weights`` is not a dict
        with exactly one cell's keys (``cell``'s when given), or an array has
        another shape.
    """
    _cell_arg(cell, "haste")
    keys = set(weights) if isinstance(weights, dict) else None
    found = next((c for c, names in _HASTE.items() if keys == set(names)), None)
    if found is None or found != (cell or found):
        want = " or ".join(", ".join(_HASTE[c]) for c in ([cell] if cell else _HASTE))
        raise ValueError(f"weights: expected a dict with exactly {want}; got "
                         f"{sorted(keys) if keys is not None else type(weights).__name__}")
    w = {n: _array(weights[n], n) for n in _HASTE[found]}
    kernel, rec = w["kernel"], w["recurrent_kernel"]
    cell = _column_cell(kernel, rec, found, "weights")
    H, GH = rec.shape
    for n, shape in {"bias": (GH,), "recurrent_bias": (GH,), "gamma": (2, GH), "gamma_h": (H,),
                     "beta_h": (H,)}.items():
        if n in w and w[n].shape != shape:
            raise ValueError(f"{n}: expected shape {shape} ({cell}), got {w[n].shape}")
    bias = np.stack([w["bias"], w["recurrent_bias"]]) if cell in _SPLIT_BIAS else w["bias"]
    sd = _from_columns(cell, "haste", "_l0", kernel, rec, bias)
    if cell == "lnlstm":
        gamma = _reorder(w["gamma"], cell, "haste", "torch", axis=1)
        sd.update(weight_ln_ih_l0=gamma[0], weight_ln_hh_l0=gamma[1],
                  weight_ln_c_l0=w["gamma_h"].copy(), bias_ln_c_l0=w["beta_h"].copy())
    describe(sd, cell)
    return sd
