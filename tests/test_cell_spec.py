"""The C++ cell spec as Python reads it (fastlstm._spec) against the
frameworks' own layers and the float64 references: names, shapes, order."""
import pytest

from fastlstm import _spec, reference_gru, reference_lnlstm

CONFIGS = [dict(input_size=3, hidden_size=5, num_layers=n, bias=b, bidirectional=d)
           for n in (1, 2) for b in (True, False) for d in (False, True)]


def test_every_cell_is_stated():
    assert set(_spec.SPECS) == {"lstm", "gru", "lnlstm"}
    assert (_spec.SPECS["lstm"]["gates"], _spec.SPECS["lstm"]["gate_order"]) == (4, "ifgo")
    assert (_spec.SPECS["gru"]["gates"], _spec.SPECS["gru"]["gate_order"]) == (3, "rzn")
    assert [_spec.SPECS[c]["states"] for c in ("lstm", "gru", "lnlstm")] == [2, 1, 2]


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("proj", [0, 2])
def test_lstm_matches_torch(cfg, proj):
    torch = pytest.importorskip("torch")
    m = torch.nn.LSTM(**cfg, proj_size=proj)
    want = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    got = _spec.param_shapes("lstm", **cfg, proj_size=proj)
    assert list(got.items()) == list(want.items())


@pytest.mark.parametrize("cfg", CONFIGS)
def test_lstm_peepholes_trail_torch_order(cfg):
    got = list(_spec.param_shapes("lstm", **cfg, peephole=True).items())
    plain = list(_spec.param_shapes("lstm", **cfg).items())
    D = 2 if cfg["bidirectional"] else 1
    assert got[:len(plain)] == plain
    assert got[len(plain):] == [(f"weight_ph_l{k}{s}", (3, 5)) for k in range(cfg["num_layers"])
                                for s in ("", "_reverse")[:D]]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_gru_matches_torch_and_reference(cfg):
    torch = pytest.importorskip("torch")
    want = {k: tuple(v.shape) for k, v in torch.nn.GRU(**cfg).state_dict().items()}
    got = _spec.param_shapes("gru", **cfg)
    assert list(got.items()) == list(want.items())
    ref = reference_gru.gru_param_shapes(**cfg)
    assert list(got.items()) == [(k, tuple(v)) for k, v in ref.items()]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_lnlstm_matches_reference(cfg):
    ref = reference_lnlstm.lnlstm_param_shapes(**cfg)
    got = _spec.param_shapes("lnlstm", **cfg)
    assert list(got.items()) == [(k, tuple(v)) for k, v in ref.items()]
    inits = {p["name"]: p["init"] for p in _spec.SPECS["lnlstm"]["params"]}
    assert inits["weight_ln_ih"] == inits["weight_ln_c"] == "ones"
    assert inits["bias_ln_c"] == "zeros" and inits["weight_ih"] == "uniform"


def test_layer_weight_names_follow_the_spec_order():
    names = _spec.layer_weight_names("lstm", 1, True, True, True, True)
    assert names[:6] == ["weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1",
                         "weight_hr_l1", "weight_ph_l1"]
    assert names[6:] == [n + "_reverse" for n in names[:6]]
    assert _spec.direction_slots("lstm", 0, "", False, False, True) == (
        "weight_ih_l0", "weight_hh_l0", None, None, None, "weight_ph_l0")


def test_cell_options_and_norm_epsilon():
    """The clip is the LSTM's alone (ONNX's clip); the layer-norm LSTM's
    epsilon is the reference's and torch.nn.LayerNorm's default."""
    torch = pytest.importorskip("torch")
    assert {c: s["cell_clip"] for c, s in _spec.SPECS.items()} == {
        "lstm": True, "gru": False, "lnlstm": False}
    assert _spec.SPECS["lnlstm"]["norm_eps"] == reference_lnlstm.LN_EPS
    assert _spec.SPECS["lnlstm"]["norm_eps"] == torch.nn.LayerNorm(4).eps
    assert _spec.SPECS["lstm"]["norm_eps"] == _spec.SPECS["gru"]["norm_eps"] == 0.0
