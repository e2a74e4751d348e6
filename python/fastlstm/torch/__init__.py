"""fastlstm inside PyTorch: `fastlstm.torch.LSTM`, a drop-in torch.nn.LSTM.

`LSTM` mirrors `torch.nn.LSTM` (torch.compile graph breaks on instances of
that class, so it is not a subclass): same constructor, parameters,
state_dict, `.to()`/`.double()`, `flatten_parameters()`, PackedSequence,
unbatched and batch_first input, `hx`, and torch's exceptions for bad input;
`peephole=True` and `weights_dtype="bfloat16"` are the extra keywords. On
the CPU in float32/float64 every layer runs fastlstm's kernels:
- under torch.compile/export, torch.jit.trace and torch.func transforms
  (vmap, grad), through two custom operators, ``torch.ops.fastlstm.lstm_layer``
  and ``lstm_layer_backward``, with fake kernels, autograd and vmap rules;
- in eager training, through an autograd Function over the same kernels that
  packs the weights once per step and keeps them for backward;
- in eager inference, on packed weights kept until a parameter's version
  counter moves, which every in-place torch op does (optimizer steps,
  `load_state_dict`, `nn.init`). Writes through `param.data` bypass the
  counter: call `lstm.params_changed()` after them.
A backward with ``create_graph=True`` (double backward), forward-mode AD
(jvp, jacfwd) and an empty batch run the same maths in torch ops
(`_autodiff`), so every derivative is torch's. Elsewhere (CUDA tensors,
bfloat16, float16 tensors) the layer runs torch's own LSTM op.

Tensors reach the kernels as NumPy views, without copies when they are
contiguous. Kernels use `torch.get_num_threads()` threads. Importing this
module imports torch; `import fastlstm` does not.
"""
from ._cell import GRUCell, LSTMCell
from ._module import GRU, LSTM
from ._onnx import onnx_translation_table
from ._ops import (_EagerLayer, gru_layer, gru_layer_backward, lstm_layer,  # noqa: F401
                   lstm_layer_backward)

__all__ = ["LSTM", "LSTMCell", "GRU", "GRUCell", "lstm_layer", "lstm_layer_backward",
           "gru_layer", "gru_layer_backward", "onnx_translation_table"]
