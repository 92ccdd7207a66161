"""Write the seed corpus of every harness to ``fuzz/corpus/<harness>/`` (``python -m fuzz seeds``).

Seeds are small valid files of each format covering what the readers branch on: every cell kind
and option, nested checkpoints, bfloat16/float16, big-endian legacy files, the tf.keras 2 fixtures
of tests/fixtures/keras, and ONNX graphs with recurrent nodes and the operators around them.
Needs torch, safetensors and onnx (the test extra).
"""

from __future__ import annotations

import gzip
import io
import os

import numpy as np

from fuzz.common import CORPUS, HERE

FIXTURES = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "keras")


def _write(harness: str, name: str, data: bytes) -> None:
    folder = os.path.join(CORPUS, harness)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as fh:
        fh.write(data)


def _torch_states():
    import torch

    torch.manual_seed(0)
    mods = {
        "lstm": torch.nn.LSTM(3, 4),
        "lstm2bi": torch.nn.LSTM(2, 3, num_layers=2, bidirectional=True),
        "gru": torch.nn.GRU(3, 4, bias=False),
        "rnn": torch.nn.RNN(2, 3, nonlinearity="relu"),
        "proj": torch.nn.LSTM(3, 5, proj_size=2),
        "cell": torch.nn.LSTMCell(3, 4),
    }
    states = {k: m.state_dict() for k, m in mods.items()}
    states["nested"] = {"model": {"encoder." + k: v for k, v in states["lstm"].items()}, "epoch": 3}
    states["bf16"] = {k: v.to(torch.bfloat16) for k, v in states["gru"].items()}
    states["f16"] = {k: v.half() for k, v in states["rnn"].items()}
    states["strided"] = {k: (v.t() if v.dim() == 2 else v) for k, v in states["lstm"].items()}
    return states


def torch_seeds() -> None:
    import torch

    for name, state in _torch_states().items():
        buf = io.BytesIO()
        torch.save(state, buf)
        _write("torch_zip", name + ".pt", buf.getvalue())
        buf = io.BytesIO()
        torch.save(state, buf, _use_new_zipfile_serialization=False)
        _write("torch_legacy", name + ".pt", buf.getvalue())


def safetensors_seeds() -> None:
    from safetensors.torch import save

    for name, state in _torch_states().items():
        if name in ("nested", "strided"):
            continue
        flat = {k: v.contiguous() for k, v in state.items()}
        _write("safetensors", name + ".safetensors", save(flat, metadata={"format": "pt"}))


def keras_seeds() -> None:
    for name in sorted(os.listdir(FIXTURES)):
        if not name.endswith(".gz"):
            continue
        with gzip.open(os.path.join(FIXTURES, name)) as fh:
            data = fh.read()
        _write("keras" if name.endswith(".keras.gz") else "h5", name[:-3], data)


def onnx_seeds() -> None:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def init(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    def save(name, nodes, inits, inputs, outputs, opset=17):
        graph = helper.make_graph(nodes, name, inputs, outputs, inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        _write("onnx", name + ".onnx", model.SerializeToString())

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    for cell, gates in (("LSTM", 4), ("GRU", 3), ("RNN", 1)):
        for direction, nd in (("forward", 1), ("bidirectional", 2)):
            node = helper.make_node(
                cell, ["x", "W", "R", "B"], ["Y", "Y_h"], hidden_size=4, direction=direction
            )
            head = [
                helper.make_node("Squeeze", ["Y_h", "axes"], ["h"]),
                helper.make_node("MatMul", ["h", "Wd"], ["z"]),
                helper.make_node("Tanh", ["z"], ["y"]),
            ]
            inits = [
                init("W", nd, gates * 4, 3),
                init("R", nd, gates * 4, 4),
                init("B", nd, 2 * gates * 4),
                numpy_helper.from_array(np.asarray([0], np.int64), "axes"),
                init("Wd", 4, 2),
            ]
            if nd == 2:
                head = [
                    helper.make_node("Transpose", ["Y_h"], ["t"], perm=[1, 0, 2]),
                    helper.make_node("Reshape", ["t", "shape"], ["h"]),
                    helper.make_node("MatMul", ["h", "Wd"], ["z"]),
                    helper.make_node("Tanh", ["z"], ["y"]),
                ]
                inits[3] = numpy_helper.from_array(np.asarray([0, -1], np.int64), "shape")
                inits[4] = init("Wd", 8, 2)
            save(f"{cell.lower()}_{direction}", [node, *head], inits, [x], [y])
    # shape arithmetic around an LSTM, as exporters write it: initial state from the input's shape
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "one"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "zero"], ["b1"]),
        helper.make_node("Concat", ["one", "b1", "four"], ["hs"], axis=0),
        helper.make_node("ConstantOfShape", ["hs"], ["h0"]),
        helper.make_node("Expand", ["h0", "hs"], ["h0e"]),
        helper.make_node("LSTM", ["x", "W", "R", "B", "", "h0e", "h0e"], ["y"], hidden_size=4),
    ]
    inits = [
        init("W", 1, 16, 3),
        init("R", 1, 16, 4),
        init("B", 1, 32),
        numpy_helper.from_array(np.asarray([1], np.int64), "one"),
        numpy_helper.from_array(np.asarray([0], np.int64), "zero"),
        numpy_helper.from_array(np.asarray([4], np.int64), "four"),
    ]
    save("lstm_shape_ops", nodes, inits, [x], [y])


def call_seeds() -> None:
    rng = np.random.default_rng(0)
    for k in range(16):
        _write("call", f"seed{k}", rng.integers(0, 256, size=64, dtype=np.uint8).tobytes())


def main() -> None:
    torch_seeds()
    safetensors_seeds()
    keras_seeds()
    onnx_seeds()
    call_seeds()
    for harness in sorted(os.listdir(CORPUS)):
        print(f"{harness}: {len(os.listdir(os.path.join(CORPUS, harness)))} seeds")
