"""torch.onnx.export of whole models holding fastlstm.torch.LSTM, with both of
torch's exporters: each layer must become a standard ONNX LSTM node that
onnxruntime runs to float32 rounding of torch.nn.LSTM (or of fastlstm's own
eager output where torch has no counterpart: peepholes)."""
import io
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import fastlstm.torch as ft  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

EXPORTERS = ("torchscript", "dynamo")
RTOL = 1e-5  # of max|ref|: float32 rounding


def _export(model, args, exporter, names, dynamic=None):
    """ONNX bytes of `model` at `args`; graph inputs are named `names`;
    `dynamic` maps an input name to {axis: dim name}."""
    model.eval()
    if exporter == "torchscript":
        f = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, f, dynamo=False, input_names=list(names),
                              dynamic_axes=dynamic)
        return f.getvalue()
    shapes = None
    if dynamic:
        shapes = tuple({ax: torch.export.Dim(n) for ax, n in dynamic.get(k, {}).items()} or None
                       for k in names)
    prog = torch.onnx.export(model, args, dynamo=True, dynamic_shapes=shapes,
                             custom_translation_table=ft.onnx_translation_table(),
                             verbose=False)
    return prog.model_proto.SerializeToString()


def _run(blob, inputs):
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    assert len(names) == len(inputs), names
    return sess.run(None, {n: t.numpy() for n, t in zip(names, inputs)})


def _assert_close(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = w.detach().numpy()
        assert g.shape == w.shape
        err = np.abs(g - w).max() / max(np.abs(w).max(), 1e-30)
        assert err <= RTOL, err


def _op_types(blob):
    return [n.op_type for n in onnx.load_from_string(blob).graph.node]


class Tagger(torch.nn.Module):
    """Embedding + 2-layer bidirectional batch_first LSTM + linear."""

    def __init__(self, lstm_cls, **kw):
        super().__init__()
        self.emb = torch.nn.Embedding(40, 8)
        self.lstm = lstm_cls(8, 12, num_layers=2, bidirectional=True, batch_first=True, **kw)
        self.out = torch.nn.Linear(24, 5)

    def forward(self, tokens):
        y, (h, c) = self.lstm(self.emb(tokens))
        return self.out(y), h, c


def _pair(cls=Tagger, *args, **kw):
    """A fastlstm model and the torch.nn.LSTM model with the same state_dict."""
    torch.manual_seed(0)
    fast = cls(ft.LSTM, *args, **kw).eval()
    ref = cls(torch.nn.LSTM, *args, **kw).eval()
    ref.load_state_dict(fast.state_dict())
    return fast, ref


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_whole_model_matches_torch_on_new_shapes(exporter):
    fast, ref = _pair()
    tok = torch.randint(0, 40, (3, 7))
    blob = _export(fast, (tok,), exporter, ["tokens"], {"tokens": {0: "batch", 1: "time"}})
    types = _op_types(blob)
    assert types.count("LSTM") == 2, types
    # dynamic batch and time: a graph of traced constants would fail here
    for shape in [(3, 7), (5, 11), (2, 3)]:
        t = torch.randint(0, 40, shape)
        with torch.no_grad():
            _assert_close(_run(blob, [t]), ref(t))


class WithState(torch.nn.Module):
    """Time-major, one direction, no bias; the initial state is a graph input."""

    def __init__(self, lstm_cls):
        super().__init__()
        self.lstm = lstm_cls(5, 7, num_layers=2, bias=False)

    def forward(self, x, h0, c0):
        y, (h, c) = self.lstm(x, (h0, c0))
        return y, h, c


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_initial_state_as_input(exporter):
    fast, ref = _pair(WithState)
    g = torch.Generator().manual_seed(1)
    args = (torch.randn(6, 3, 5, generator=g), torch.randn(2, 3, 7, generator=g),
            torch.randn(2, 3, 7, generator=g))
    blob = _export(fast, args, exporter, ["x", "h0", "c0"],
                   {"x": {0: "time", 1: "batch"}, "h0": {1: "batch"}, "c0": {1: "batch"}})
    new = (torch.randn(4, 2, 5, generator=g), torch.randn(2, 2, 7, generator=g),
           torch.randn(2, 2, 7, generator=g))
    for a in (args, new):
        with torch.no_grad():
            _assert_close(_run(blob, a), ref(*a))


class Peep(torch.nn.Module):
    def __init__(self, bidirectional):
        super().__init__()
        self.lstm = ft.LSTM(4, 6, num_layers=2, peephole=True, bidirectional=bidirectional)

    def forward(self, x):
        y, (h, c) = self.lstm(x)
        return y, h, c


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_peepholes_match_fastlstm_eager(exporter, bidirectional):
    torch.manual_seed(0)
    model = Peep(bidirectional).eval()
    x = torch.randn(5, 3, 4)
    blob = _export(model, (x,), exporter, ["x"], {"x": {0: "time", 1: "batch"}})
    lstm_nodes = [n for n in onnx.load_from_string(blob).graph.node if n.op_type == "LSTM"]
    assert [len(n.input) for n in lstm_nodes] == [8, 8]  # ..., initial_c, P
    for a in (x, torch.randn(8, 2, 4)):
        with torch.no_grad():
            _assert_close(_run(blob, [a]), model(a))


class OpWithLengths(torch.nn.Module):
    """The layer op called with lengths as a graph input (fastlstm.torch.LSTM
    itself takes lengths only through a PackedSequence)."""

    def __init__(self):
        super().__init__()
        self.lstm = ft.LSTM(4, 6, bidirectional=True)

    def forward(self, x, lengths):
        ws = [getattr(self.lstm, n) for n in self.lstm._layer_names(0)]
        zeros = x.new_zeros((2, x.shape[1], 6))
        y, h, c, _ = ft.lstm_layer(x, ws, zeros, zeros, lengths, 6, 0, True, True, False, False)
        return y, h, c


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_lengths_become_sequence_lens(exporter):
    torch.manual_seed(0)
    model = OpWithLengths().eval()
    ref = torch.nn.LSTM(4, 6, bidirectional=True).eval()
    ref.load_state_dict(model.lstm.state_dict())
    x, lens = torch.randn(6, 4, 4), torch.tensor([6, 3, 5, 1])
    blob = _export(model, (x, lens), exporter, ["x", "lengths"],
                   {"x": {0: "time", 1: "batch"}, "lengths": {0: "batch"}})
    for xs, ls in ((x, lens), (torch.randn(5, 3, 4), torch.tensor([2, 5, 4]))):
        with torch.no_grad():
            y, (h, c) = ref(pack_padded_sequence(xs, ls, enforce_sorted=False))
            y, _ = pad_packed_sequence(y, total_length=xs.shape[0])
        _assert_close(_run(blob, [xs, ls]), (y, h, c))


class Packed(torch.nn.Module):
    def __init__(self, lstm_cls):
        super().__init__()
        self.lstm = lstm_cls(4, 6, num_layers=2, bidirectional=True, batch_first=True)

    def forward(self, x, lengths):
        p = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        y, (h, c) = self.lstm(p)
        y, _ = pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        return y, h, c


def test_packed_sequence_model_torchscript_exporter():
    """pack_padded_sequence around the layer: the TorchScript exporter cancels
    the pack/pad pairs, so lengths reach the LSTM node as sequence_lens; the
    model it writes is right for other lengths."""
    fast, ref = _pair(Packed)
    x, lens = torch.randn(3, 5, 4), torch.tensor([5, 2, 4])
    blob = _export(fast, (x, lens), "torchscript", ["x", "lengths"])
    new = torch.tensor([3, 5, 1])
    with torch.no_grad():
        _assert_close(_run(blob, [x, new]), ref(x, new))


def test_packed_sequence_model_dynamo_exporter_refuses():
    """torch.export cannot trace pack_padded_sequence (data-dependent
    batch_sizes), as with torch.nn.LSTM: the export raises."""
    fast, _ = _pair(Packed)
    x, lens = torch.randn(3, 5, 4), torch.tensor([5, 2, 4])
    with pytest.raises(Exception) as info:
        _export(fast, (x, lens), "dynamo", ["x", "lengths"])
    text = repr(info.value) + repr(info.value.__cause__)
    assert "pack" in text.lower() or "data-dependent" in text.lower(), text


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_proj_size_is_refused(exporter):
    model = Tagger(ft.LSTM, proj_size=3)
    model.out = torch.nn.Linear(6, 5)
    with pytest.raises(Exception) as info:
        _export(model, (torch.randint(0, 40, (2, 4)),), exporter, ["tokens"])
    chain, err = [], info.value
    while err is not None:
        chain.append(str(err))
        err = err.__cause__ or err.__context__
    assert any("proj_size" in s and "no projection" in s for s in chain), chain


def test_dynamo_without_the_table_fails():
    model = Tagger(ft.LSTM).eval()
    with pytest.raises(Exception) as info:
        torch.onnx.export(model, (torch.randint(0, 40, (2, 4)),), dynamo=True, verbose=False)
    assert "fastlstm" in str(info.value) and "lstm_layer" in str(info.value)


def test_torchscript_export_of_a_traced_module():
    fast, ref = _pair()
    tok = torch.randint(0, 40, (2, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(fast, (tok,), check_trace=False)
    blob = _export(traced, (tok,), "torchscript", ["tokens"])
    assert "LSTM" in _op_types(blob)
    with torch.no_grad():
        _assert_close(_run(blob, [tok]), ref(tok))


def test_translation_table_names_the_op():
    table = ft.onnx_translation_table()
    assert list(table) == [torch.ops.fastlstm.lstm_layer.default,
                           torch.ops.fastlstm.gru_layer.default,
                           torch.ops.fastlstm.lnlstm_layer.default]  # a refusal
    assert all(callable(f) for f in table.values())


def test_import_does_not_load_onnxscript():
    code = ("import sys, fastlstm.torch; "
            "assert 'onnxscript' not in sys.modules and 'onnx' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- GRU


class GRUTagger(torch.nn.Module):
    """Embedding + 2-layer bidirectional batch_first GRU + linear."""

    def __init__(self, gru_cls, **kw):
        super().__init__()
        self.emb = torch.nn.Embedding(40, 8)
        self.gru = gru_cls(8, 12, num_layers=2, bidirectional=True, batch_first=True, **kw)
        self.out = torch.nn.Linear(24, 5)

    def forward(self, tokens):
        y, h = self.gru(self.emb(tokens))
        return self.out(y), h


def _gru_pair(cls=GRUTagger, *args, **kw):
    """A fastlstm model and the torch.nn.GRU model with the same state_dict."""
    torch.manual_seed(0)
    fast = cls(ft.GRU, *args, **kw).eval()
    ref = cls(torch.nn.GRU, *args, **kw).eval()
    ref.load_state_dict(fast.state_dict())
    return fast, ref


def _gru_nodes(blob):
    nodes = [n for n in onnx.load_from_string(blob).graph.node if n.op_type == "GRU"]
    for n in nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        assert attrs["linear_before_reset"] == 1, attrs
    return nodes


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_gru_whole_model_matches_torch_on_new_shapes(exporter):
    fast, ref = _gru_pair()
    tok = torch.randint(0, 40, (3, 7))
    blob = _export(fast, (tok,), exporter, ["tokens"], {"tokens": {0: "batch", 1: "time"}})
    assert len(_gru_nodes(blob)) == 2, _op_types(blob)
    assert "LSTM" not in _op_types(blob)
    for shape in [(3, 7), (5, 11), (2, 3)]:
        t = torch.randint(0, 40, shape)
        with torch.no_grad():
            _assert_close(_run(blob, [t]), ref(t))


class GRUWithState(torch.nn.Module):
    """Time-major, no bias or with, one or two directions; h0 is a graph input."""

    def __init__(self, gru_cls, bias=False, bidirectional=False):
        super().__init__()
        self.gru = gru_cls(5, 7, num_layers=2, bias=bias, bidirectional=bidirectional)

    def forward(self, x, h0):
        return self.gru(x, h0)


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("bias, bidirectional", [(False, False), (True, True)])
def test_gru_initial_state_as_input(exporter, bias, bidirectional):
    fast, ref = _gru_pair(GRUWithState, bias=bias, bidirectional=bidirectional)
    D = 2 if bidirectional else 1
    g = torch.Generator().manual_seed(1)
    args = (torch.randn(6, 3, 5, generator=g), torch.randn(2 * D, 3, 7, generator=g))
    blob = _export(fast, args, exporter, ["x", "h0"],
                   {"x": {0: "time", 1: "batch"}, "h0": {1: "batch"}})
    assert len(_gru_nodes(blob)) == 2
    new = (torch.randn(4, 2, 5, generator=g), torch.randn(2 * D, 2, 7, generator=g))
    for a in (args, new):
        with torch.no_grad():
            _assert_close(_run(blob, a), ref(*a))


class GRUOpWithLengths(torch.nn.Module):
    """The GRU layer op called with lengths as a graph input."""

    def __init__(self):
        super().__init__()
        self.gru = ft.GRU(4, 6, bidirectional=True)

    def forward(self, x, lengths):
        ws = [getattr(self.gru, n) for n in self.gru._layer_names(0)]
        y, h, _ = ft.gru_layer(x, ws, x.new_zeros((2, x.shape[1], 6)), lengths, 6, True, True,
                               False)
        return y, h


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_gru_lengths_become_sequence_lens(exporter):
    torch.manual_seed(0)
    model = GRUOpWithLengths().eval()
    ref = torch.nn.GRU(4, 6, bidirectional=True).eval()
    ref.load_state_dict(model.gru.state_dict())
    x, lens = torch.randn(6, 4, 4), torch.tensor([6, 3, 5, 1])
    blob = _export(model, (x, lens), exporter, ["x", "lengths"],
                   {"x": {0: "time", 1: "batch"}, "lengths": {0: "batch"}})
    for xs, ls in ((x, lens), (torch.randn(5, 3, 4), torch.tensor([2, 5, 4]))):
        with torch.no_grad():
            y, h = ref(pack_padded_sequence(xs, ls, enforce_sorted=False))
            y, _ = pad_packed_sequence(y, total_length=xs.shape[0])
        _assert_close(_run(blob, [xs, ls]), (y, h))


class GRUPacked(torch.nn.Module):
    def __init__(self, gru_cls):
        super().__init__()
        self.gru = gru_cls(4, 6, num_layers=2, bidirectional=True, batch_first=True)

    def forward(self, x, lengths):
        p = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        y, h = self.gru(p)
        y, _ = pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        return y, h


def test_gru_packed_sequence_model_torchscript_exporter():
    fast, ref = _gru_pair(GRUPacked)
    x, lens = torch.randn(3, 5, 4), torch.tensor([5, 2, 4])
    blob = _export(fast, (x, lens), "torchscript", ["x", "lengths"])
    assert len(_gru_nodes(blob)) == 2
    with torch.no_grad():
        _assert_close(_run(blob, [x, torch.tensor([3, 5, 1])]), ref(x, torch.tensor([3, 5, 1])))


def test_gru_torchscript_export_of_a_traced_module():
    fast, ref = _gru_pair()
    tok = torch.randint(0, 40, (2, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(fast, (tok,), check_trace=False)
    blob = _export(traced, (tok,), "torchscript", ["tokens"])
    assert "GRU" in _op_types(blob)
    with torch.no_grad():
        _assert_close(_run(blob, [tok]), ref(tok))
