"""fastlstm.functional.pack + lstm_forward(packed=...): the same bits as the unpacked
call (forward and backward), copies of the weights, and clear errors on a Packed
built for another configuration, dtype, kernel path or mode."""
import numpy as np
import pytest

fastlstm = pytest.importorskip("fastlstm")
from fastlstm import functional as F  # noqa: E402

ISAS = fastlstm.available_isas()

CONFIGS = {
    "plain": dict(input_size=4, hidden_size=6, num_layers=1),
    "bidir_2layers_proj_peep": dict(input_size=3, hidden_size=7, num_layers=2, proj_size=4,
                                    bidirectional=True, peephole=True),
    "nobias": dict(input_size=5, hidden_size=3, num_layers=2, bias=False),
}


def setup(name, dtype, seed=0):
    cfg = CONFIGS[name]
    I, H, L = cfg["input_size"], cfg["hidden_size"], cfg["num_layers"]
    P, bi = cfg.get("proj_size", 0), cfg.get("bidirectional", False)
    D, Ho = (2 if bi else 1), (P or H)
    rng = np.random.default_rng(seed)
    shapes = F.param_shapes(I, H, L, cfg.get("bias", True), bi, P, cfg.get("peephole", False))
    params = {k: rng.uniform(-0.5, 0.5, s).astype(dtype) for k, s in shapes.items()}
    T, B = 5, 3
    data = dict(x=rng.standard_normal((T, B, I)).astype(dtype),
                h0=rng.standard_normal((D * L, B, Ho)).astype(dtype),
                c0=rng.standard_normal((D * L, B, H)).astype(dtype),
                lengths=np.array([5, 2, 4]),
                dy=rng.standard_normal((T, B, D * Ho)).astype(dtype),
                dhn=rng.standard_normal((D * L, B, Ho)).astype(dtype),
                dcn=rng.standard_normal((D * L, B, H)).astype(dtype))
    return cfg, params, data


def fwd_kw(cfg):
    """lstm_forward's config keywords (it has no input_size: x carries it)."""
    return {k: v for k, v in cfg.items() if k != "input_size"}


def forward_backward(cfg, params, data, training, isa, packed=None):
    y, hn, cn, ctx = F.lstm_forward(data["x"], params, h0=data["h0"], c0=data["c0"],
                                    lengths=data["lengths"], training=training, isa=isa,
                                    packed=packed, **fwd_kw(cfg))
    out = {"y": y, "h_n": hn, "c_n": cn}
    if training:
        dx, dh0, dc0, grads = F.lstm_backward(ctx, data["dy"], data["dhn"], data["dcn"])
        out.update(dx=dx, dh0=dh0, dc0=dc0)
        out.update({"grad " + k: v for k, v in grads.items()})
    else:
        assert ctx is None
    return out


def assert_bitwise(got, want, what):
    assert got.keys() == want.keys(), what
    for k in want:
        same = bool(np.array_equal(got[k], want[k]))
        assert same, f"{what}: {k} differs from the unpacked call"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_packed_call_equals_unpacked_call(name, dtype, training, isa):
    cfg, params, data = setup(name, dtype)
    want = forward_backward(cfg, params, data, training, isa)
    packed = F.pack(params, training=training, isa=isa, **cfg)
    assert isinstance(packed, F.Packed)
    assert packed.isa == isa and packed.dtype == np.dtype(dtype)
    assert packed.with_backward is training
    assert_bitwise(forward_backward(cfg, params, data, training, isa, packed), want,
                   f"{name} packed")
    # params may be None when packed is given; a Packed is reusable
    assert_bitwise(forward_backward(cfg, None, data, training, isa, packed), want,
                   f"{name} packed, params=None")
    if training:    # a training Packed serves inference too
        inf = forward_backward(cfg, None, data, False, isa, packed)
        assert_bitwise(inf, forward_backward(cfg, params, data, False, isa), f"{name} eval")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_packed_holds_copies(name):
    cfg, params, data = setup(name, np.float64)
    packed = F.pack(params, training=True, **cfg)
    want = forward_backward(cfg, params, data, True, None)
    for v in params.values():
        v *= -3.0
    assert_bitwise(forward_backward(cfg, None, data, True, None, packed), want,
                   f"{name} after editing the source arrays")
    edited = forward_backward(cfg, params, data, True, None)
    assert not np.array_equal(edited["y"], want["y"])


def test_default_isa_follows_the_environment(monkeypatch):
    cfg, params, data = setup("plain", np.float32)
    for isa in ISAS:
        monkeypatch.setenv("FASTLSTM_ISA", isa)
        packed = F.pack(params, **cfg)
        assert packed.isa == isa
        assert_bitwise(forward_backward(cfg, None, data, False, None, packed),
                       forward_backward(cfg, params, data, False, isa), f"env {isa}")


# ----------------------------------------------------------------------------
# mismatches
# ----------------------------------------------------------------------------

def _raises_naming_packed(exc, call):
    with pytest.raises(exc) as e:
        call()
    assert "packed" in str(e.value), str(e.value)
    return e


@pytest.mark.parametrize("change", ["hidden_size", "num_layers", "proj_size", "bidirectional",
                                    "peephole", "bias", "input_size"])
def test_packed_for_another_configuration_raises(change):
    cfg, params, data = setup("bidir_2layers_proj_peep", np.float32)
    packed = F.pack(params, **cfg)
    kw = fwd_kw(cfg)
    x = data["x"]
    if change == "hidden_size":
        kw["hidden_size"] = 8
    elif change == "num_layers":
        kw["num_layers"] = 1
    elif change == "proj_size":
        kw["proj_size"] = 3
    elif change == "bidirectional":
        kw["bidirectional"] = False
    elif change == "peephole":
        kw["peephole"] = False
    elif change == "bias":
        kw["bias"] = False
    else:
        x = np.zeros(x.shape[:2] + (x.shape[2] + 1,), x.dtype)
    _raises_naming_packed(ValueError, lambda: F.lstm_forward(x, None, packed=packed, **kw))
    _raises_naming_packed(ValueError, lambda: F.lstm_forward(x, params, packed=packed, **kw))


def test_packed_for_another_dtype_raises():
    cfg, params, data = setup("plain", np.float32)
    packed = F.pack(params, **cfg)
    x64 = data["x"].astype(np.float64)
    _raises_naming_packed(ValueError, lambda: F.lstm_forward(x64, None, packed=packed,
                                                             **fwd_kw(cfg)))
    packed64 = F.pack({k: v.astype(np.float64) for k, v in params.items()}, **cfg)
    assert packed64.dtype == np.float64
    _raises_naming_packed(ValueError, lambda: F.lstm_forward(data["x"], None, packed=packed64,
                                                             **fwd_kw(cfg)))


@pytest.mark.skipif(len(ISAS) < 2, reason="needs two kernel paths on this CPU")
def test_packed_for_another_isa_raises(monkeypatch):
    cfg, params, data = setup("plain", np.float32)
    packed = F.pack(params, isa=ISAS[0], **cfg)
    _raises_naming_packed(ValueError, lambda: F.lstm_forward(data["x"], None, packed=packed,
                                                             isa=ISAS[-1], **fwd_kw(cfg)))
    monkeypatch.setenv("FASTLSTM_ISA", ISAS[-1])      # the default path, from the environment
    _raises_naming_packed(ValueError, lambda: F.lstm_forward(data["x"], None, packed=packed,
                                                             **fwd_kw(cfg)))


@pytest.mark.parametrize("isa", ISAS)
def test_inference_packed_with_training_raises(isa):
    cfg, params, data = setup("bidir_2layers_proj_peep", np.float64)
    packed = F.pack(params, training=False, isa=isa, **cfg)
    assert packed.with_backward is False
    _raises_naming_packed(ValueError, lambda: F.lstm_forward(
        data["x"], None, packed=packed, training=True, isa=isa, **fwd_kw(cfg)))


@pytest.mark.parametrize("bad", ["dict", "tuple_from_layer", "core_layer", "string"])
def test_non_packed_object_raises_type_error(bad):
    cfg, params, data = setup("plain", np.float32)
    layer = fastlstm.LSTM(4, 6, seed=0)
    layer(data["x"])
    obj = {"dict": dict(params), "tuple_from_layer": layer._packed,
           "core_layer": layer._packed[1].layers[0], "string": "packed"}[bad]
    _raises_naming_packed(TypeError, lambda: F.lstm_forward(data["x"], params, packed=obj,
                                                            **fwd_kw(cfg)))


# ----------------------------------------------------------------------------
# nbytes and repr
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CONFIGS))
def test_nbytes_and_repr(name):
    for dtype in (np.float32, np.float64):
        cfg, params, _ = setup(name, dtype)
        inf = F.pack(params, training=False, **cfg)
        tr = F.pack(params, training=True, **cfg)
        weights = sum(v.nbytes for v in params.values())
        assert isinstance(inf.nbytes, int) and inf.nbytes >= weights > 0
        assert tr.nbytes > inf.nbytes          # plus the backward panels
        for p in (inf, tr):
            r = repr(p)
            assert r.startswith("Packed(") and p.isa in r and str(p.nbytes) in r
        assert "with_backward=True" in repr(tr) and "with_backward=False" in repr(inf)
