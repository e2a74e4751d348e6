"""What a newcomer meets when a call is wrong: every message names the
argument and says how to fix it (a dtype, a framework's tensor, another cell's
state_dict), and a fastlstm state_dict loads into torch as written in the README."""
import numpy as np
import pytest

import fastlstm


def test_float64_input_says_how_to_fix():
    lstm = fastlstm.LSTM(4, 8)
    with pytest.raises(TypeError, match=r"^x: expected dtype float32, got float64: convert it "
                                        r"with \.astype\(np\.float32\), or compute in float64 "
                                        r"throughout \(a layer's dtype=np\.float64\)$"):
        lstm(np.zeros((3, 2, 4)))
    with pytest.raises(TypeError, match=r"^x: expected dtype float32, got int32: convert it "
                                        r"with \.astype\(np\.float32\)$"):
        lstm(np.zeros((3, 2, 4), np.int32))


def test_float64_dy_names_the_readout():
    lstm = fastlstm.LSTM(4, 8, seed=0)
    y, _ = lstm(np.zeros((3, 2, 4), np.float32))
    readout = np.ones((8, 1))  # float64, as np.ones makes it
    with pytest.raises(TypeError, match=r"^dy: expected dtype float32, got float64: .*; a "
                                        r"readout or loss in another dtype"):
        lstm.backward(np.broadcast_to(readout.T, y.shape) * 1.0)


def test_a_torch_tensor_points_to_fastlstm_torch():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"x: expected a numpy.ndarray of dtype float32, got "
                                        r"Tensor \(a torch.Tensor: pass .numpy\(\), or use "
                                        r"fastlstm.torch's layers"):
        fastlstm.GRU(4, 8)(torch.zeros(3, 2, 4))


def test_a_jax_array_points_to_fastlstm_jax():
    jnp = pytest.importorskip("jax.numpy")
    with pytest.raises(TypeError, match=r"\(a JAX array: pass np.asarray\(...\), or use "
                                        r"fastlstm.jax"):
        fastlstm.LSTM(4, 8)(jnp.zeros((3, 2, 4), jnp.float32))


@pytest.mark.parametrize("name", ["LSTM", "GRU", "LayerNormLSTM", "LSTMCell", "GRUCell"])
def test_numpy_into_fastlstm_torch_is_a_clear_type_error(name):
    torch = pytest.importorskip("torch")
    import fastlstm.torch as ft
    m = getattr(ft, name)(4, 8)
    cell = name.endswith("Cell")
    x = np.zeros((2, 4) if cell else (3, 2, 4), np.float32)
    hx = None
    if name == "LSTMCell":
        hx = (torch.zeros(2, 8), torch.zeros(2, 8))  # the streaming path's entry
    with torch.no_grad(), pytest.raises(
            TypeError, match=rf"^input: expected a Tensor.*, got ndarray \(a numpy.ndarray: "
                             rf"convert it with torch.from_numpy\(...\), or use "
                             rf"fastlstm.{name}, which takes NumPy arrays\)$"):
        m(x, hx)


@pytest.mark.parametrize("src, dst, hint", [
    ("GRU", "LSTM", r"3\*hidden_size rows, as a GRU has, where LSTM has 4\*hidden_size.*"
                    r"load it into fastlstm.GRU$"),
    ("LSTM", "GRU", r"4\*hidden_size rows, as a LSTM or LayerNormLSTM has, where GRU has "
                    r"3\*hidden_size.*load it into fastlstm.LSTM$"),
    ("LSTMCell", "GRUCell", r"load it into fastlstm.LSTMCell$"),
])
def test_another_cells_state_dict_is_named(src, dst, hint):
    sd = getattr(fastlstm, src)(4, 8).state_dict()
    with pytest.raises(ValueError, match=r"^state_dict: weight_ih\S* has shape .*" + hint):
        getattr(fastlstm, dst)(4, 8).load_state_dict(sd)


def test_a_wrong_shape_of_the_same_cell_has_no_cell_hint():
    sd = fastlstm.LSTM(4, 16).state_dict()
    with pytest.raises(ValueError) as e:
        fastlstm.LSTM(4, 8).load_state_dict(sd)
    assert "another cell" not in str(e.value)


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_state_dict_format_torch_loads_into_torch(name):
    torch = pytest.importorskip("torch")
    ours = getattr(fastlstm, name)(5, 7, num_layers=2, bidirectional=True, seed=1)
    sd = ours.state_dict(format="torch")
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    theirs = getattr(torch.nn, name)(5, 7, num_layers=2, bidirectional=True)
    theirs.load_state_dict(sd)  # the README's claim, as written
    x = np.random.default_rng(0).standard_normal((6, 3, 5)).astype(np.float32)
    ours.eval()
    with torch.no_grad():
        ref = theirs(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(ours(x)[0], ref, rtol=1e-5, atol=1e-6)
    sd["weight_ih_l0"].zero_()  # a copy: the layer is untouched
    assert np.abs(ours.state_dict()["weight_ih_l0"]).max() > 0


def test_state_dict_format_is_checked():
    with pytest.raises(ValueError, match=r"^format: expected 'numpy' or 'torch', got 'tf'$"):
        fastlstm.LSTM(4, 8).state_dict(format="tf")


def test_call_has_a_docstring():
    for cls in (fastlstm.LSTM, fastlstm.GRU, fastlstm.LSTMCell, fastlstm.GRUCell):
        assert "forward" in cls.__call__.__doc__


def test_set_num_threads_takes_numpy_integers(restore_threads):
    fastlstm.set_num_threads(np.int64(1))
    assert fastlstm.get_num_threads() == 1 and type(fastlstm.get_num_threads()) is int
    with pytest.raises(TypeError, match="n: expected an int"):
        fastlstm.set_num_threads(np.True_)


def test_a_bfloat16_torch_state_dict_loads():
    torch = pytest.importorskip("torch")
    ref = torch.nn.GRU(4, 8).to(torch.bfloat16)
    ours = fastlstm.GRU(4, 8)
    ours.load_state_dict(ref.state_dict())
    np.testing.assert_array_equal(ours.state_dict()["weight_ih_l0"],
                                  ref.weight_ih_l0.detach().float().numpy())


def test_onnx_gate_rows_names_a_bad_cell():
    from fastlstm import convert
    with pytest.raises(ValueError, match=r"^cell: expected 'lstm' or 'gru'"):
        convert.onnx_gate_rows(4, cell="lnlstm")
    assert list(convert.onnx_gate_rows(1)) == [0, 3, 1, 2]  # i,f,g,o -> i,o,f,c
