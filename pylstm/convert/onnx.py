"""ONNX models -> plain data the runtime builds its graph from: the graph decoded
(:mod:`pylstm.read.onnx_proto`) and each LSTM/GRU/RNN node's canonical layer
(:mod:`.onnx_rnn`). Recurrent nodes are converted while the graph is built
(:func:`pylstm.assemble.onnx_model`), after constant folding, because their weights may be
computed by constant subgraphs. ``com.microsoft`` ``DynamicQuantizeLSTM`` nodes are lowered here
to LSTM nodes whose weights :func:`.onnx_rnn.build_layer` dequantizes.
"""

from __future__ import annotations

from ..read.nodes import Subgraph
from ..read.onnx_proto import OnnxGraphData, decode_model
from .onnx_rnn import build_layer, lower_quantized_lstm

__all__ = ["OnnxGraphData", "convert_model", "recurrent_layer"]


def convert_model(model, *, base_dir: str, source: str) -> OnnxGraphData:
    """The graph of a parsed ``ModelProto`` as plain nodes, constants and input and output
    descriptions (tensors within the current :class:`~pylstm.read.onnx_tensors.TensorBudget`).

    Raises
    ------
    pylstm.FormatError
        Corrupt names, missing opsets, unreadable tensors.
    pylstm.UnsupportedError
        Attributes or tensors pylstm does not read.
    """
    data = decode_model(model, base_dir=base_dir, source=source)
    data.nodes = _lowered(data.nodes)
    return data


def _lowered(nodes: list) -> list:
    """``nodes`` with ``DynamicQuantizeLSTM`` lowered to LSTM, in subgraphs too."""
    out = []
    for node in nodes:
        for value in node.attrs.values():
            if isinstance(value, Subgraph):
                value.nodes = _lowered(value.nodes)
        out.append(lower_quantized_lstm(node))
    return out


def recurrent_layer(node, constants: dict, source: str) -> tuple:
    """``(canonical Layer, layout)`` of an ONNX LSTM/GRU/RNN node whose W, R, B (and P) are
    in ``constants`` (see :func:`.onnx_rnn.build_layer`)."""
    return build_layer(node, constants, source)
