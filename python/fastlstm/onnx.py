"""Export an LSTM or a GRU as standard ONNX ``LSTM`` / ``GRU`` nodes (needs the
``onnx`` package).

``export(layer, path)`` writes a model that any ONNX runtime runs without
fastlstm: one node per layer (``direction="bidirectional"`` for two
directions, the LSTM's ``P`` input for peepholes, ``sequence_lens`` for
lengths; the GRU's with ``linear_before_reset=1``, torch's GRU maths), with
Transpose/Reshape between layers to torch's [T,B,D*H] layout.

Graph inputs: ``X`` [T,B,I] ([B,T,I] with batch_first); with ``lengths=True``
``sequence_lens`` int32 [B]; with ``initial_state=True`` ``initial_h``
[D*L,B,H] (and the LSTM's ``initial_c`` [D*L,B,H]). Outputs: ``Y`` (as the
layer's ``y``), ``Y_h`` [D*L,B,H] (as ``h_n``) and the LSTM's ``Y_c`` (as
``c_n``). T and B are symbolic. The model computes inference: dropout is not
applied. An LSTM's ``cell_clip`` becomes the nodes' ``clip``. ONNX's LSTM has
no projection and neither op has zoneout, so layers with ``proj_size > 0`` or
``zoneout > 0`` are refused.
"""
from __future__ import annotations

import numpy as np

from . import convert

__all__ = ["export", "model_from_state_dict", "OPSET"]

OPSET = 17  # the IR version written is the lowest that supports it


def _onnx():
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("fastlstm.onnx needs the 'onnx' package: pip install onnx") from e
    return onnx


def model_from_state_dict(state_dict: dict, *, batch_first: bool = False,
                          lengths: bool = False, initial_state: bool = False,
                          opset: int = OPSET, cell: str = "lstm", cell_clip=None):
    """Build the ONNX model of a layer from its torch-style parameters.

    One standard ``LSTM`` or ``GRU`` node (``linear_before_reset=1``) per
    layer, as :func:`export` writes; the model is checked with
    ``onnx.checker``. Graph inputs and outputs: see :func:`export`.

    Parameters
    ----------
    state_dict : dict
        The layer's torch-style parameters (NumPy arrays or torch tensors,
        float32 or float64), see :func:`fastlstm.convert.describe`; no
        projection.
    batch_first : bool, default False
        ``X`` and ``Y`` are [B,T,...] instead of [T,B,...].
    lengths : bool, default False
        Add the graph input ``sequence_lens``, int32 [B].
    initial_state : bool, default False
        Add the graph inputs ``initial_h`` (and the LSTM's ``initial_c``),
        [D*L,B,H].
    opset : int, default OPSET (17)
        The ONNX opset to import; the IR version written is the lowest that
        supports it.
    cell : {'lstm', 'gru'}, default 'lstm'
        The cell of ``state_dict``.
    cell_clip : float or None, default None
        LSTM only: the nodes' ``clip`` attribute.

    Returns
    -------
    onnx.ModelProto
        The model.

    Raises
    ------
    ImportError
        If the ``onnx`` package is not installed.
    TypeError
        If a parameter is not float32 or float64.
    ValueError
        If ``cell`` is not ``'lstm'`` or ``'gru'``, ``state_dict`` is not one
        such layer's (see :func:`fastlstm.convert.describe`), the layer has a
        projection, ``cell_clip`` is given for a GRU, or the installed onnx
        does not support ``opset``.
    onnx.checker.ValidationError
        If the model fails ``onnx.checker``, as with too old an ``opset``.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    if cell not in ("lstm", "gru"):
        raise ValueError(f"cell: expected 'lstm' or 'gru' (the ONNX ops), got {cell!r}")
    cfg = convert.describe(state_dict, cell=cell)
    if cfg["proj_size"]:
        raise ValueError("proj_size: ONNX's LSTM op has no projection; a layer with "
                         "proj_size > 0 cannot be exported")
    layers = convert.to_onnx(state_dict, cell=cell)
    states = ("h", "c") if cell == "lstm" else ("h",)
    dtype = layers[0]["W"].dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"state_dict: expected float32 or float64 parameters, got {dtype}")
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    L, D, H, I = cfg["num_layers"], 2 if cfg["bidirectional"] else 1, cfg["hidden_size"], \
        cfg["input_size"]
    x_shape = ["B", "T", I] if batch_first else ["T", "B", I]
    inputs = [helper.make_tensor_value_info("X", elem, x_shape)]
    inits = [numpy_helper.from_array(np.array([0, 0, -1], np.int64), "tb_flat")]
    nodes = []
    x = "X"
    if batch_first:
        nodes.append(helper.make_node("Transpose", ["X"], ["X_tb"], perm=[1, 0, 2]))
        x = "X_tb"
    seq = ""
    if lengths:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["B"]))
        seq = "sequence_lens"
    s0 = {s: [""] * L for s in states}  # per state, its initial value's name per layer
    if initial_state:
        for s in states:
            inputs.append(helper.make_tensor_value_info(f"initial_{s}", elem, [D * L, "B", H]))
            s0[s] = [f"initial_{s}"]
        if L > 1:
            inits.append(numpy_helper.from_array(np.array([D] * L, np.int64), "per_layer"))
            for s in states:
                s0[s] = [f"initial_{s}_l{k}" for k in range(L)]
                nodes.append(helper.make_node("Split", [f"initial_{s}", "per_layer"], s0[s],
                                              axis=0))
    op, extra = ("LSTM", {}) if cell == "lstm" else ("GRU", {"linear_before_reset": 1})
    if cell_clip is not None:
        if cell != "lstm":
            raise ValueError(f"cell_clip: the {cell} cell has no cell clip")
        extra["clip"] = float(cell_clip)
    for k, lw in enumerate(layers):
        names = []
        for key in ("W", "R", "B", "P"):
            if key in lw:
                inits.append(numpy_helper.from_array(np.ascontiguousarray(lw[key]), f"{key}_l{k}"))
                names.append(f"{key}_l{k}")
        ins = [x] + names[:3] + [seq] + [s0[s][k] for s in states] + names[3:]
        nodes.append(helper.make_node(
            op, ins, [f"Y_l{k}"] + [f"Y_{s}_l{k}" for s in states], name=f"{cell}_l{k}",
            hidden_size=H, direction="bidirectional" if D == 2 else "forward", **extra))
        # Y [T,D,B,H] -> [T,B,D*H], torch's layout
        nodes.append(helper.make_node("Transpose", [f"Y_l{k}"], [f"Y_l{k}_t"], perm=[0, 2, 1, 3]))
        x = f"Y_l{k}_tbh"
        nodes.append(helper.make_node("Reshape", [f"Y_l{k}_t", "tb_flat"], [x]))
    if batch_first:
        nodes.append(helper.make_node("Transpose", [x], ["Y"], perm=[1, 0, 2]))
    else:
        nodes.append(helper.make_node("Identity", [x], ["Y"]))
    for s in states:
        nodes.append(helper.make_node("Concat", [f"Y_{s}_l{k}" for k in range(L)], [f"Y_{s}"],
                                      axis=0))
    y_shape = ["B", "T", D * H] if batch_first else ["T", "B", D * H]
    outputs = [helper.make_tensor_value_info("Y", elem, y_shape)] + \
        [helper.make_tensor_value_info(f"Y_{s}", elem, [D * L, "B", H]) for s in states]
    graph = helper.make_graph(nodes, f"fastlstm_{cell}", inputs, outputs, inits)
    ops = helper.make_opsetid("", opset)
    model = helper.make_model(graph, opset_imports=[ops], producer_name="fastlstm",
                              ir_version=helper.find_min_ir_version_for([ops]))
    onnx.checker.check_model(model)
    return model


def export(layer, path, *, lengths: bool = False, initial_state: bool = False,
           opset: int = OPSET):
    """Write a layer to a file as a standard ONNX model.

    Any ONNX runtime runs the model without fastlstm: one ``LSTM`` node per
    layer, or one ``GRU`` node with ``linear_before_reset=1`` (torch's GRU
    maths); see the module docstring. The model computes inference: dropout
    is not applied.

    Parameters
    ----------
    layer : fastlstm.LSTM or fastlstm.GRU
        The layer, or ``fastlstm.torch``'s LSTM or GRU; its ``state_dict()``,
        ``batch_first``, ``zoneout`` and ``cell_clip`` are read. Not a
        layer-norm LSTM (ONNX has no such op), nor a layer with
        ``proj_size > 0`` or ``zoneout > 0``.
    path : str or os.PathLike
        The file to write (``onnx.save``).
    lengths : bool, default False
        Add the graph input ``sequence_lens``, int32 [B].
    initial_state : bool, default False
        Add the graph inputs ``initial_h`` (and the LSTM's ``initial_c``),
        [D*L,B,H].
    opset : int, default OPSET (17)
        The ONNX opset to import.

    Returns
    -------
    onnx.ModelProto
        The model written.

    Raises
    ------
    ImportError
        If the ``onnx`` package is not installed.
    TypeError
        If ``layer`` has no ``state_dict`` or ``batch_first``, or its
        parameters are not float32 or float64.
    ValueError
        If the layer has ``zoneout > 0`` or a projection, is a layer-norm
        LSTM, or its state_dict is not one layer's; and as in
        :func:`model_from_state_dict` for ``opset``.
    onnx.checker.ValidationError
        As in :func:`model_from_state_dict`.

    Notes
    -----
    Graph inputs: ``X`` [T,B,I] ([B,T,I] with ``batch_first``), then
    ``sequence_lens`` and ``initial_h`` / ``initial_c`` if asked for.
    Outputs: ``Y`` [T,B,D*H] ([B,T,D*H] with ``batch_first``), as the
    layer's y; ``Y_h`` [D*L,B,H], as h_n; and the LSTM's ``Y_c``
    [D*L,B,H], as c_n. T and B are symbolic. Peepholes become the LSTM's
    ``P`` input and ``cell_clip`` its ``clip``.

    Examples
    --------
    >>> import numpy as np, onnxruntime, fastlstm, fastlstm.onnx
    >>> lstm = fastlstm.LSTM(16, 32, num_layers=2, bidirectional=True, seed=0)
    >>> model = fastlstm.onnx.export(lstm, "lstm.onnx")
    >>> session = onnxruntime.InferenceSession("lstm.onnx")
    >>> y, h_n, c_n = session.run(None, {"X": np.zeros((5, 2, 16), np.float32)})
    >>> y.shape, h_n.shape
    ((5, 2, 64), (4, 2, 32))
    """
    for attr in ("state_dict", "batch_first"):
        if not hasattr(layer, attr):
            raise TypeError(f"layer: expected a fastlstm LSTM or GRU layer, got "
                            f"{type(layer).__name__}")
    if getattr(layer, "zoneout", 0.0):
        raise ValueError("zoneout: ONNX's LSTM and GRU ops have no zoneout; a layer with "
                         "zoneout > 0 cannot be exported")
    sd = dict(layer.state_dict())
    cell = convert.describe(sd, cell=None)["cell"]  # read off the keys and shapes
    if cell == "lnlstm":
        raise ValueError("layer: ONNX has no layer-norm LSTM op; a LayerNormLSTM cannot be "
                         "exported as standard nodes")
    model = model_from_state_dict(sd, batch_first=bool(layer.batch_first), lengths=lengths,
                                  initial_state=initial_state, opset=opset, cell=cell,
                                  cell_clip=getattr(layer, "cell_clip", None))
    _onnx().save(model, path)
    return model
