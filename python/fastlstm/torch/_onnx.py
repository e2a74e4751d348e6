"""ONNX export of whole models that hold `fastlstm.torch.LSTM` or `GRU`
(`LayerNormLSTM` is refused: ONNX has no layer-norm LSTM op).

Traced and exported graphs run each layer as ``torch.ops.fastlstm.lstm_layer``
or ``gru_layer``; both of torch's ONNX exporters turn that op into one
standard ONNX ``LSTM`` or ``GRU`` node (``linear_before_reset=1``: torch's
GRU maths, the reset gate applied to ``W_hn h + b_hn``), so the exported model
runs in any ONNX runtime without fastlstm:

- ``torch.onnx.export(..., dynamo=False)`` (TorchScript): symbolic functions,
  registered when `fastlstm.torch` is imported, for every opset;
- ``torch.onnx.export(..., dynamo=True)``: pass
  ``custom_translation_table=fastlstm.torch.onnx_translation_table()``
  (needs ``onnxscript``); without it the export fails on the op.

The weights are graph values (initializers or inputs), so the gate reorder
(LSTM: torch i,f,g,o -> ONNX i,o,f,c, peepholes i,f,o -> i,o,f; GRU: torch
r,z,n -> ONNX z,r,h, from `fastlstm.convert.onnx_gate_rows`) is done by
Gather nodes in the graph, which constant folding removes when they are
constants. Lengths become ``sequence_lens`` (int32). The layer's last output
(the training workspace, only read by the backward op) is exported empty.
An LSTM's ``cell_clip`` becomes the node's ``clip`` attribute (the same
clip of the gate pre-activations). ONNX's LSTM has no projection and neither
op has zoneout: a layer with ``proj_size > 0``, and a layer with zoneout
(``zoneout > 0``, in eval() a deterministic mix of h_{t-1} into h_t that the
ops cannot express, or a zoneout mask in training), are refused with an
error rather than exported as a different model. So is the layer-norm LSTM
(`fastlstm.torch.LayerNormLSTM`, ``fastlstm::lnlstm_layer``): ONNX has no
such op, and an LSTM node would compute a different model. Its module raises
when the TorchScript exporter runs it (`check_exportable`), that exporter's
symbolic of ``fastlstm::lnlstm_layer`` raises (a graph traced before the
export); under the dynamo exporter its op's fake kernel, which runs while
the exporter captures the model, raises, and so does its entry in
`onnx_translation_table` (an ExportedProgram captured before the export).
"""
from typing import Optional, Sequence, TypeVar

import numpy as np
import torch

from .. import _spec
from ..convert import ONNX_PEEPHOLE_ROWS, onnx_gate_rows

_INT32 = 6  # onnx.TensorProto.INT32

# the cells that have an ONNX op (LSTM, GRU); the rest are refused
ONNX_CELLS = ("lstm", "gru")


def refusal(cell: str) -> str:
    """Why a layer of `cell` (one without an ONNX op: the layer-norm LSTM)
    cannot be exported."""
    return (f"fastlstm.torch.LayerNormLSTM (op fastlstm::{cell}_layer) cannot be exported to "
            f"ONNX: ONNX has no layer-norm LSTM op, and its LSTM op has no layer "
            f"normalisation, so exporting the layer as one would compute a different model. "
            f"fastlstm.torch exports LSTM and GRU layers only")


def check_exportable(cell: str) -> None:
    """Raise (RuntimeError) during an ONNX export (either exporter) of a layer
    whose cell has no ONNX op. Called by the modules' forward and by the
    layer op's fake kernel (the dynamo exporter captures the model on fake
    tensors, and its strict capture folds is_in_onnx_export to False in the
    traced code, not in the fake kernel)."""
    if cell not in ONNX_CELLS and torch.onnx.is_in_onnx_export():
        raise RuntimeError(refusal(cell))


def _build(e, cell, x, weights, states, lengths, H: int, P: int, bidirectional: bool,
           bias: bool, peephole: bool, zoned: bool = False, cell_clip: float = 0.0):
    """One ONNX LSTM or GRU node (and its weight reorder) for one layer op
    call through the emitter `e` -> y [T,B,D*H], [h_n (, c_n)] [D,B,H].
    zoned: the call has a zoneout mask or zoneout > 0 (refused); cell_clip > 0:
    the LSTM node's clip."""
    if zoned:
        raise ValueError(f"fastlstm::{cell}_layer with zoneout cannot be exported to ONNX: "
                         f"ONNX's {cell.upper()} op has no zoneout (in eval() zoneout=p mixes "
                         f"p*h_(t-1) into every h_t, which the op cannot express); export a "
                         f"model without zoneout (zoneout=0.0)")
    if P:
        raise ValueError("fastlstm::lstm_layer with proj_size > 0 cannot be exported to "
                         "ONNX: ONNX's LSTM op has no projection (weight_hr)")
    D = 2 if bidirectional else 1
    G = _spec.SPECS[cell]["gates"]
    n = len(_spec.direction_params(cell, bias, False, peephole))
    if len(weights) != D * n:
        raise ValueError(f"fastlstm::{cell}_layer: expected {D * n} weight tensors for "
                         f"bidirectional={bidirectional}, bias={bias}, peephole={peephole}, "
                         f"got {len(weights)}")
    rows = e.const(onnx_gate_rows(H, cell))
    flat = e.const(np.array([1, -1], np.int64))

    def gates(w):  # torch gate rows -> ONNX gate rows
        return e.op("Gather", w, rows, axis=0)

    W, R, B, Ph = [], [], [], []
    for d in range(D):
        w = weights[d * n:(d + 1) * n]
        W.append(e.op("Reshape", gates(w[0]), e.const(np.array([1, G * H, -1], np.int64))))
        R.append(e.op("Reshape", gates(w[1]), e.const(np.array([1, G * H, H], np.int64))))
        if bias:  # ONNX B = [Wb, Rb]
            B.append(e.op("Reshape", e.op("Concat", gates(w[2]), gates(w[3]), axis=0), flat))
        if peephole:  # rows i, f, o -> i, o, f
            prows = e.const(np.array(ONNX_PEEPHOLE_ROWS, np.int64))
            Ph.append(e.op("Reshape", e.op("Gather", w[-1], prows, axis=0), flat))

    def stack(vs):
        return vs[0] if len(vs) == 1 else e.op("Concat", *vs, axis=0)

    seq = e.none() if lengths is None else e.op("Cast", lengths, to=_INT32)
    inputs = [x, stack(W), stack(R), stack(B) if bias else e.none(), seq, *states]
    if peephole:
        inputs.append(stack(Ph))
    direction = "bidirectional" if D == 2 else "forward"
    if cell == "lstm":
        clip = {"clip": float(cell_clip)} if cell_clip else {}
        y, *finals = e.op("LSTM", *inputs, outputs=3, hidden_size=H, direction=direction,
                          **clip)
    else:  # torch's GRU: r applied after the recurrent product (linear_before_reset=1)
        y, *finals = e.op("GRU", *inputs, outputs=2, hidden_size=H, direction=direction,
                          linear_before_reset=1)
    # Y [T,D,B,H] -> [T,B,D*H], torch's layout
    y = e.op("Transpose", y, perm=[0, 2, 1, 3])
    y = e.op("Reshape", y, e.const(np.array([0, 0, -1], np.int64)))
    return y, finals


# --------------------------------------------------------------------------- TorchScript


class _TorchScriptEmitter:
    """Nodes through the TorchScript exporter's graph context."""

    _SUFFIX = {int: "_i", bool: "_i", float: "_f", str: "_s"}

    def __init__(self, g):
        self.g = g

    def op(self, name, *inputs, outputs=1, **attrs):
        named = {}
        for k, v in attrs.items():
            kind = type(v[0] if isinstance(v, (list, tuple)) else v)
            named[k + self._SUFFIX[kind]] = v
        return self.g.op(name, *inputs, outputs=outputs, **named)

    def const(self, a: np.ndarray):
        return self.g.op("Constant", value_t=torch.from_numpy(a))

    def none(self):
        n = self.g.op("prim::Constant")
        n.setType(torch._C.OptionalType.ofTensor())
        return n


def _symbolic(cell: str, g, x, weights, states, lengths, cfg_values, training,
              zoneout_mask=None, zoneout=None, cell_clip=None):
    """The TorchScript exporter's translation of one layer op; cfg_values: the
    op's configuration arguments, zoneout and cell_clip: graph constants."""
    from torch.onnx import JitScalarType, symbolic_helper as sh

    def is_none(v):
        return v is None or sh._is_none(v)

    kinds = "iibbb" if cell == "lstm" else "ibb"  # (H, P,) bidirectional, bias(, peephole)
    cfg = [sh._maybe_get_const(v, k) for v, k in zip(cfg_values, kinds)]
    floats = [0.0 if is_none(v) else sh._maybe_get_const(v, "f") for v in (zoneout, cell_clip)]
    if not all(isinstance(v, (int, bool)) for v in cfg) or not all(
            isinstance(v, (int, float)) for v in floats):
        raise torch.onnx.errors.SymbolicValueError(
            f"fastlstm::{cell}_layer: its size, flag, zoneout and cell_clip arguments must be "
            f"constants of the traced graph", x)
    full = cfg if cell == "lstm" else [cfg[0], 0, cfg[1], cfg[2], False]
    lens = None if sh._is_none(lengths) else lengths
    zoned = not is_none(zoneout_mask) or floats[0] != 0.0
    try:
        y, finals = _build(_TorchScriptEmitter(g), cell, x, sh._unpack_list(weights), states,
                           lens, *full, zoned, floats[1])
    except ValueError as err:
        raise torch.onnx.errors.SymbolicValueError(str(err), x) from None
    dtype = JitScalarType.from_value(x, JitScalarType.FLOAT).dtype()
    return (y, *finals, g.op("Constant", value_t=torch.empty(0, dtype=dtype)))


def _torchscript_lstm(g, x, weights, h0, c0, lengths, hidden_size, proj_size, bidirectional,
                      bias, peephole, training, zoneout_mask=None, zoneout=None,
                      cell_clip=None):
    return _symbolic("lstm", g, x, weights, [h0, c0], lengths,
                     (hidden_size, proj_size, bidirectional, bias, peephole), training,
                     zoneout_mask, zoneout, cell_clip)


def _torchscript_gru(g, x, weights, h0, lengths, hidden_size, bidirectional, bias, training,
                     zoneout_mask=None, zoneout=None):
    return _symbolic("gru", g, x, weights, [h0], lengths, (hidden_size, bidirectional, bias),
                     training, zoneout_mask, zoneout)


def _torchscript_lnlstm(g, x, *args):
    """The layer-norm LSTM has no ONNX op: refused, never exported as another model."""
    raise torch.onnx.errors.SymbolicValueError(refusal("lnlstm"), x)


def _register_torchscript() -> None:
    """The symbolics for every opset the TorchScript exporter targets (one
    registered at opset 7 serves 7 and above); skipped where torch no longer
    has that exporter."""
    try:
        from torch.onnx import register_custom_op_symbolic
    except ImportError:  # pragma: no cover - a torch without the TorchScript exporter
        return
    register_custom_op_symbolic("fastlstm::lstm_layer", _torchscript_lstm, 7)
    register_custom_op_symbolic("fastlstm::gru_layer", _torchscript_gru, 7)
    register_custom_op_symbolic("fastlstm::lnlstm_layer", _torchscript_lnlstm, 7)


# --------------------------------------------------------------------------- dynamo

_T = TypeVar("_T")
_TInt = TypeVar("_TInt")


class _OnnxscriptEmitter:
    """Nodes through onnxscript's opset 18, traced by the dynamo exporter."""

    def __init__(self):
        from onnxscript import ir, opset18

        self.ops, self.ir = opset18, ir

    def op(self, name, *inputs, outputs=1, **attrs):
        return getattr(self.ops, name)(*inputs, **attrs)

    def const(self, a: np.ndarray):
        return self.ops.Constant(value=self.ir.tensor(a))

    def none(self):
        return None


def _lstm_layer_onnxscript(x: _T, weights: Sequence[_T], h0: _T, c0: _T,
                           lengths: Optional[_TInt], hidden_size: int, proj_size: int,
                           bidirectional: bool, bias: bool, peephole: bool, training: bool,
                           zoneout_mask: Optional[_T] = None, zoneout: float = 0.0,
                           cell_clip: float = 0.0):
    """The dynamo exporter's translation of ``fastlstm::lstm_layer``."""
    e = _OnnxscriptEmitter()
    y, (hn, cn) = _build(e, "lstm", x, list(weights), [h0, c0], lengths, hidden_size,
                         proj_size, bidirectional, bias, peephole,
                         zoneout_mask is not None or zoneout != 0.0, cell_clip)
    return y, hn, cn, e.const(np.empty(0, x.dtype.numpy()))


def _gru_layer_onnxscript(x: _T, weights: Sequence[_T], h0: _T, lengths: Optional[_TInt],
                          hidden_size: int, bidirectional: bool, bias: bool, training: bool,
                          zoneout_mask: Optional[_T] = None, zoneout: float = 0.0):
    """The dynamo exporter's translation of ``fastlstm::gru_layer``."""
    e = _OnnxscriptEmitter()
    y, (hn,) = _build(e, "gru", x, list(weights), [h0], lengths, hidden_size, 0,
                      bidirectional, bias, False, zoneout_mask is not None or zoneout != 0.0)
    return y, hn, e.const(np.empty(0, x.dtype.numpy()))


def _lnlstm_layer_refused(x, *args, **kwargs):
    """The layer-norm LSTM's entry: a refusal, never a node."""
    raise NotImplementedError(refusal("lnlstm"))


def onnx_translation_table() -> dict:
    """The dynamo ONNX exporter's translations of fastlstm's layer ops.

    Pass it as ``torch.onnx.export(..., dynamo=True,
    custom_translation_table=fastlstm.torch.onnx_translation_table())``:
    each layer of ``fastlstm.torch.LSTM`` or ``GRU`` becomes one standard
    ONNX ``LSTM`` or ``GRU`` node (the GRU's with ``linear_before_reset=1``,
    torch's maths), which any ONNX runtime runs without fastlstm. Merge the
    table with your own entries if you have some.

    Returns
    -------
    dict
        ``{torch.ops.fastlstm.lstm_layer.default: translation,
        torch.ops.fastlstm.gru_layer.default: translation,
        torch.ops.fastlstm.lnlstm_layer.default: refusal}``, onnxscript
        functions.

    Raises
    ------
    ImportError
        The ``onnxscript`` package is not installed.

    Notes
    -----
    Gate rows are reordered by Gather nodes in the graph, lengths become
    ``sequence_lens`` and an LSTM's ``cell_clip`` the node's ``clip``. A
    layer that ONNX's ops cannot express is refused with an error while it
    is translated: ``proj_size > 0`` and zoneout (a mask, or ``zoneout > 0``).
    The layer-norm LSTM's entry raises NotImplementedError (ONNX has no such
    op), also for an ExportedProgram captured before the export; the
    exporter refuses that layer while it captures the model too.

    Examples
    --------
    >>> import torch, fastlstm.torch
    >>> model = fastlstm.torch.LSTM(8, 16)
    >>> program = torch.onnx.export(
    ...     model, (torch.randn(10, 2, 8),), "lstm.onnx", dynamo=True,
    ...     custom_translation_table=fastlstm.torch.onnx_translation_table())
    """
    try:
        import onnxscript  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("fastlstm.torch.onnx_translation_table needs the 'onnxscript' "
                          "package (pip install onnxscript), as torch's dynamo ONNX "
                          "exporter does") from err
    return {torch.ops.fastlstm.lstm_layer.default: _lstm_layer_onnxscript,
            torch.ops.fastlstm.gru_layer.default: _gru_layer_onnxscript,
            torch.ops.fastlstm.lnlstm_layer.default: _lnlstm_layer_refused}


_register_torchscript()
