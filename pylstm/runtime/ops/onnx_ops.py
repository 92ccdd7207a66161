"""numpy implementations of the ONNX operators found around recurrent layers.

What ``torch.onnx.export`` and tf2onnx put around an LSTM/GRU/RNN: shape arithmetic (Shape,
Gather, Concat, Slice, Unsqueeze, ConstantOfShape, Reshape, ...), layout changes (Transpose,
Squeeze), the heads (MatMul, Gemm, activations, Softmax) and elementwise glue. Each function
takes the node and its input arrays (``None`` for an omitted optional input) and returns the
output arrays; attribute and input forms that changed between opsets are both handled (the
node carries the opset version of its domain). Recurrent operators are not here: they run on
the engine (``runtime/graph_recurrent.py``, converted by ``convert/onnx_rnn.py``).
"""

from . import conv, math, quantized, tensor  # noqa: F401  (they register their operators)
from .common import OPS

__all__ = ["OPS"]
