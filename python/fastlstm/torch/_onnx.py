"""ONNX export of whole models that hold `fastlstm.torch.LSTM`.

Traced and exported graphs run each layer as ``torch.ops.fastlstm.lstm_layer``;
both of torch's ONNX exporters turn that op into one standard ONNX ``LSTM``
node, so the exported model runs in any ONNX runtime without fastlstm:

- ``torch.onnx.export(..., dynamo=False)`` (TorchScript): a symbolic function,
  registered when `fastlstm.torch` is imported, for every opset;
- ``torch.onnx.export(..., dynamo=True)``: pass
  ``custom_translation_table=fastlstm.torch.onnx_translation_table()``
  (needs ``onnxscript``); without it the export fails on the op.

The weights are graph values (initializers or inputs), so the gate reorder
(torch i,f,g,o -> ONNX i,o,f,c; peepholes i,f,o -> i,o,f) is done by Gather
nodes in the graph, which constant folding removes when they are constants.
Lengths become ``sequence_lens`` (int32). The layer's fourth output (the
training workspace, only read by the backward op) is exported empty. ONNX's
LSTM has no projection: a layer with ``proj_size > 0`` is refused.
"""
from typing import Optional, Sequence, TypeVar

import numpy as np
import torch

from ..convert import ONNX_PEEPHOLE_ROWS, onnx_gate_rows

_INT32 = 6  # onnx.TensorProto.INT32


def _build(e, x, weights, h0, c0, lengths, H: int, P: int, bidirectional: bool, bias: bool,
           peephole: bool):
    """One ONNX LSTM node (and its weight reorder) for one lstm_layer call
    through the emitter `e` -> y [T,B,D*H], h_n [D,B,H], c_n [D,B,H]."""
    if P:
        raise ValueError("fastlstm::lstm_layer with proj_size > 0 cannot be exported to "
                         "ONNX: ONNX's LSTM op has no projection (weight_hr)")
    D = 2 if bidirectional else 1
    n = 2 + 2 * bool(bias) + bool(peephole)
    if len(weights) != D * n:
        raise ValueError(f"fastlstm::lstm_layer: expected {D * n} weight tensors for "
                         f"bidirectional={bidirectional}, bias={bias}, peephole={peephole}, "
                         f"got {len(weights)}")
    rows = e.const(onnx_gate_rows(H))
    prows = e.const(np.array(ONNX_PEEPHOLE_ROWS, np.int64))
    flat = e.const(np.array([1, -1], np.int64))

    def gates(w):  # torch gate rows -> ONNX gate rows
        return e.op("Gather", w, rows, axis=0)

    W, R, B, Ph = [], [], [], []
    for d in range(D):
        w = weights[d * n:(d + 1) * n]
        W.append(e.op("Reshape", gates(w[0]), e.const(np.array([1, 4 * H, -1], np.int64))))
        R.append(e.op("Reshape", gates(w[1]), e.const(np.array([1, 4 * H, H], np.int64))))
        if bias:  # ONNX B = [Wb, Rb]
            B.append(e.op("Reshape", e.op("Concat", gates(w[2]), gates(w[3]), axis=0), flat))
        if peephole:  # rows i, f, o -> i, o, f
            Ph.append(e.op("Reshape", e.op("Gather", w[-1], prows, axis=0), flat))

    def stack(vs):
        return vs[0] if len(vs) == 1 else e.op("Concat", *vs, axis=0)

    seq = e.none() if lengths is None else e.op("Cast", lengths, to=_INT32)
    inputs = [x, stack(W), stack(R), stack(B) if bias else e.none(), seq, h0, c0]
    if peephole:
        inputs.append(stack(Ph))
    y, hn, cn = e.op("LSTM", *inputs, outputs=3, hidden_size=H,
                     direction="bidirectional" if D == 2 else "forward")
    # Y [T,D,B,H] -> [T,B,D*H], torch's layout
    y = e.op("Transpose", y, perm=[0, 2, 1, 3])
    y = e.op("Reshape", y, e.const(np.array([0, 0, -1], np.int64)))
    return y, hn, cn


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


def _torchscript_symbolic(g, x, weights, h0, c0, lengths, hidden_size, proj_size,
                          bidirectional, bias, peephole, training):
    from torch.onnx import JitScalarType, symbolic_helper as sh

    cfg = [sh._maybe_get_const(v, k) for v, k in ((hidden_size, "i"), (proj_size, "i"),
                                                  (bidirectional, "b"), (bias, "b"),
                                                  (peephole, "b"))]
    if not all(isinstance(v, (int, bool)) for v in cfg):
        raise torch.onnx.errors.SymbolicValueError(
            "fastlstm::lstm_layer: hidden_size, proj_size, bidirectional, bias and peephole "
            "must be constants of the traced graph", x)
    lens = None if sh._is_none(lengths) else lengths
    try:
        y, hn, cn = _build(_TorchScriptEmitter(g), x, sh._unpack_list(weights), h0, c0, lens,
                           *cfg)
    except ValueError as err:
        raise torch.onnx.errors.SymbolicValueError(str(err), x) from None
    dtype = JitScalarType.from_value(x, JitScalarType.FLOAT).dtype()
    return y, hn, cn, g.op("Constant", value_t=torch.empty(0, dtype=dtype))


def _register_torchscript() -> None:
    """The symbolic for every opset the TorchScript exporter targets (one
    registered at opset 7 serves 7 and above); skipped where torch no longer
    has that exporter."""
    try:
        from torch.onnx import register_custom_op_symbolic
    except ImportError:  # pragma: no cover - a torch without the TorchScript exporter
        return
    register_custom_op_symbolic("fastlstm::lstm_layer", _torchscript_symbolic, 7)


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
                           bidirectional: bool, bias: bool, peephole: bool, training: bool):
    """The dynamo exporter's translation of ``fastlstm::lstm_layer``."""
    e = _OnnxscriptEmitter()
    y, hn, cn = _build(e, x, list(weights), h0, c0, lengths, hidden_size, proj_size,
                       bidirectional, bias, peephole)
    return y, hn, cn, e.const(np.empty(0, x.dtype.numpy()))


def onnx_translation_table() -> dict:
    """``{torch.ops.fastlstm.lstm_layer.default: translation}`` for
    ``torch.onnx.export(..., dynamo=True, custom_translation_table=...)``:
    each layer becomes one standard ONNX ``LSTM`` node. Merge it with your own
    entries if you have some. Needs the ``onnxscript`` package."""
    try:
        import onnxscript  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("fastlstm.torch.onnx_translation_table needs the 'onnxscript' "
                          "package (pip install onnxscript), as torch's dynamo ONNX "
                          "exporter does") from err
    return {torch.ops.fastlstm.lstm_layer.default: _lstm_layer_onnxscript}


_register_torchscript()
