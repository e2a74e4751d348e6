"""fastlstm inside PyTorch: ``fastlstm.torch.LSTM`` and ``GRU``, drop-ins for
``torch.nn.LSTM`` and ``torch.nn.GRU``; ``LSTMCell`` and ``GRUCell`` for the
cells; and ``LayerNormLSTM``, the layer-norm LSTM (Ba et al. 2016, as haste's
LayerNormLSTM and ``fastlstm.LayerNormLSTM``) with ``torch.nn.LSTM``'s
interface.

``LSTM`` and ``GRU`` mirror ``torch.nn.LSTM`` and ``torch.nn.GRU``
(torch.compile graph breaks on instances of those classes, so they are not
subclasses): same constructor, parameters, ``state_dict``,
``.to()``/``.double()``, ``flatten_parameters()``, ``PackedSequence``,
unbatched and ``batch_first`` input, ``hx``, and torch's exceptions for bad
input. The extra keywords are ``weights_dtype="bfloat16"`` and ``zoneout=p``
(haste's zoneout on h: Bernoulli keep masks from torch's default generator in
training, the mix ``p*h_{t-1} + (1-p)*h_t`` in ``eval()``), and for the LSTM
``peephole=True`` and ``cell_clip=c`` (ONNX's clip of the gate
pre-activations). ``LayerNormLSTM`` takes the LSTM's constructor less
``proj_size``, ``peephole``, ``cell_clip`` and ``weights_dtype``; its
parameters are the LSTM's plus the layer-norm gains and bias
(``weight_ln_ih_l{k}``, ``weight_ln_hh_l{k}``, ``weight_ln_c_l{k}``,
``bias_ln_c_l{k}``, from the cell spec), and its ``state_dict`` loads into
``fastlstm.LayerNormLSTM`` and back.

On the CPU in float32/float64 every layer runs fastlstm's kernels:

- under ``torch.compile``/``torch.export``, ``torch.jit.trace`` and
  ``torch.func.vmap`` without autograd, through custom operators,
  ``torch.ops.fastlstm.lstm_layer`` / ``lstm_layer_backward``,
  ``gru_layer`` / ``gru_layer_backward`` and ``lnlstm_layer`` /
  ``lnlstm_layer_backward``, with fake kernels, autograd and vmap rules;
- in eager training, through an autograd Function over the same kernels that
  packs the weights once per step and keeps them for backward;
- in eager inference, on packed weights kept until a parameter's version
  counter moves, which every in-place torch op does (optimizer steps,
  ``load_state_dict``, ``nn.init``). Writes through ``param.data`` bypass the
  counter: call ``params_changed()`` after them.

A backward with ``create_graph=True`` (double backward) runs the same maths
in torch ops (``_autodiff``), and so do forward-mode AD (``jvp``,
``jacfwd``), autograd under torch.func transforms (``grad``, ``vjp``,
``jacrev``) and an empty batch, so every such derivative is torch's.
Elsewhere (CUDA tensors, bfloat16, float16 tensors) the layer runs torch's
own op (``torch.lstm`` / ``torch.gru``) or, for the layer-norm LSTM, which
torch has no op of, ``_autodiff``'s torch ops. Every cell shares one code
path (``_ops``, ``_module._Recurrent``, ``_cell._StepCell``); only the op
schemas and the state forms differ. ONNX export (``onnx_translation_table``,
the TorchScript exporter's symbolics) turns LSTM and GRU layers into ONNX
LSTM / GRU nodes and refuses the layer-norm LSTM, which ONNX has no op for.

Tensors reach the kernels as NumPy views, without copies when they are
contiguous. Kernels use ``torch.get_num_threads()`` threads. Importing this
module imports torch; ``import fastlstm`` does not.
"""
from ._cell import GRUCell, LSTMCell
from ._module import GRU, LSTM, LayerNormLSTM
from ._onnx import onnx_translation_table
from ._ops import (_EagerLayer, gru_layer, gru_layer_backward, lnlstm_layer,  # noqa: F401
                   lnlstm_layer_backward, lstm_layer, lstm_layer_backward)

__all__ = ["LSTM", "LSTMCell", "GRU", "GRUCell", "LayerNormLSTM", "lstm_layer",
           "lstm_layer_backward", "gru_layer", "gru_layer_backward", "lnlstm_layer",
           "lnlstm_layer_backward", "onnx_translation_table"]
