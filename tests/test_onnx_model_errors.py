"""Every way loading or running a whole ONNX model can fail, and the errors it gives: weights
computed at run time, unsupported operators, external data (and its folder), corrupt and
truncated files, inconsistent weights, bad feeds, no onnx package; and tensor decoding against
the onnx package's own."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from child_process import child_env
from onnx import TensorProto, helper, numpy_helper
from onnx_model_helpers import (
    ATOL,
    ort_session,
)
from onnx_oracle import assert_close, make_model, random_case

import pylstm
from pylstm.assemble import from_onnx_model


def test_weights_computed_at_run_time_are_refused():
    rng = np.random.default_rng(4)
    arrays = random_case("LSTM", rng)
    model = make_model("LSTM", arrays, {}, runtime=("X", "W"))
    with pytest.raises(NotImplementedError, match=r"lstm0.*W.*load time"):
        from_onnx_model(model)


def test_unsupported_operator_is_named(tmp_path):
    rng = np.random.default_rng(5)
    model = make_model("RNN", random_case("RNN", rng), {})
    model.graph.node.append(helper.make_node("TopK", ["Y", "k"], ["v", "i"], name="my_topk"))
    path = str(tmp_path / "topk.onnx")
    onnx.save(model, path)
    with pytest.raises(pylstm.UnsupportedError, match=r"TopK.*my_topk"):
        pylstm.load(path)
    model = make_model("RNN", random_case("RNN", rng), {})
    model.graph.node.append(
        helper.make_node("FusedGemm", ["Y"], ["z"], name="ms", domain="com.microsoft")
    )
    with pytest.raises(NotImplementedError, match=r"FusedGemm.*com.microsoft"):
        from_onnx_model(model)
    model = make_model(
        "LSTM", random_case("LSTM", rng), {"activations": ["Sigmoid", "Gelu", "Tanh"]}
    )
    with pytest.raises(NotImplementedError, match="Gelu"):
        from_onnx_model(model)


def test_external_data(tmp_path):
    """A model saved with its tensors in one external file (all of them, threshold 0) loads;
    moving the data file away gives a FormatError naming it."""
    rng = np.random.default_rng(6)
    arrays = random_case("LSTM", rng, H=64, I=32, direction="bidirectional", peephole=True)
    model = make_model("LSTM", arrays, {"direction": "bidirectional"})
    path = tmp_path / "big.onnx"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="big.weights",
        size_threshold=0,
    )
    assert (tmp_path / "big.weights").stat().st_size > 4 * 2 * 4 * 64 * 96
    ours = pylstm.load(path)
    got = ours.run(None, {"X": arrays["X"]})
    want = ort_session(str(path)).run(None, {"X": arrays["X"]})
    for g, w in zip(got, want):
        assert_close(g, w, atol=ATOL, what="external data")
    os.rename(tmp_path / "big.weights", tmp_path / "elsewhere.weights")
    with pytest.raises(pylstm.FormatError, match=r"big\.weights"):
        pylstm.load(path)
    # truncated data file
    data = (tmp_path / "elsewhere.weights").read_bytes()
    (tmp_path / "big.weights").write_bytes(data[: len(data) // 2])
    with pytest.raises(pylstm.FormatError, match="truncated"):
        pylstm.load(path)


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    rng = np.random.default_rng(7)
    model = make_model("RNN", random_case("RNN", rng), {})
    w = model.graph.initializer[0]
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("raw_data")
    entry = w.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    path = tmp_path / "escape.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(pylstm.FormatError, match="outside the model's folder"):
        pylstm.load(path)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty_graph"])
def test_corrupt_files_raise_format_error(tmp_path, damage):
    rng = np.random.default_rng(8)
    data = make_model("GRU", random_case("GRU", rng), {}).SerializeToString()
    path = tmp_path / "bad.onnx"
    if damage == "truncated":
        path.write_bytes(data[: len(data) * 2 // 3])
    elif damage == "garbage":
        path.write_bytes(b"\x08\x07" + bytes(rng.integers(0, 256, 300, dtype=np.uint8)))
    else:
        path.write_bytes(helper.make_model(helper.make_graph([], "g", [], [])).SerializeToString())
        model = pylstm.load(path)  # an empty graph is valid: nothing to run
        assert model.run(None, {}) == []
        return
    with pytest.raises(pylstm.FormatError, match=r"bad\.onnx"):
        pylstm.load(path)


def test_inconsistent_weights_raise_format_error():
    rng = np.random.default_rng(9)
    arrays = random_case("LSTM", rng, H=5)
    arrays["B"] = arrays["B"][:, :-1]
    with pytest.raises(pylstm.FormatError, match=r"lstm0.*B must have shape"):
        from_onnx_model(make_model("LSTM", arrays, {}))
    arrays = random_case("LSTM", rng, H=5)
    with pytest.raises(pylstm.FormatError, match="hidden_size"):
        from_onnx_model(make_model("LSTM", arrays, {"hidden_size": 4}))
    with pytest.raises(pylstm.FormatError, match="direction"):
        from_onnx_model(make_model("LSTM", arrays, {"direction": "sideways"}))
    with pytest.raises(pylstm.FormatError, match="3 function"):
        from_onnx_model(make_model("LSTM", arrays, {"activations": ["Sigmoid", "Tanh"]}))
    with pytest.raises(pylstm.FormatError, match="clip"):
        from_onnx_model(make_model("LSTM", arrays, {"clip": -1.0}))


def test_feeds_are_checked_like_onnxruntime():
    rng = np.random.default_rng(10)
    arrays = random_case("LSTM", rng, T=4, B=2, lengths=[4, 2])
    model = from_onnx_model(
        make_model("LSTM", arrays, {}, runtime=("X", "sequence_lens"), dynamic=True)
    )
    feeds = {"X": arrays["X"], "sequence_lens": np.array([4, 2], np.int32)}
    model.run(None, feeds)
    with pytest.raises(ValueError, match="'x'"):
        model.run(None, {**feeds, "x": arrays["X"]})
    with pytest.raises(ValueError, match="sequence_lens"):
        model.run(None, {"X": arrays["X"]})
    with pytest.raises(TypeError, match=r"'X'.*int"):
        model.run(None, {**feeds, "X": arrays["X"].astype(np.int32)})
    with pytest.raises(TypeError, match="sequence_lens"):
        model.run(None, {**feeds, "sequence_lens": np.array([4.0, 2.0])})
    with pytest.raises(ValueError, match="rank"):
        model.run(None, {**feeds, "X": arrays["X"][0]})
    with pytest.raises(ValueError, match="between 0 and the sequence length 4"):
        model.run(None, {**feeds, "sequence_lens": np.array([5, 2], np.int32)})
    with pytest.raises(ValueError, match="between 0"):
        model.run(None, {**feeds, "sequence_lens": np.array([-1, 2], np.int32)})
    with pytest.raises(ValueError, match="'nope'"):
        model.run(["Y", "nope"], feeds)
    with pytest.raises(TypeError, match="dict"):
        model.run(None, [arrays["X"]])
    # float64 and int64 feeds are cast within their kind; torch tensors are accepted
    y64 = model.run(
        ["Y"],
        {
            "X": torch.from_numpy(arrays["X"].astype(np.float64)),
            "sequence_lens": np.array([4, 2], np.int64),
        },
    )[0]
    np.testing.assert_array_equal(y64, model.run(["Y"], feeds)[0])
    fixed = from_onnx_model(make_model("LSTM", arrays, {}, dynamic=False))
    with pytest.raises(ValueError, match="axis 1 must be 2"):
        fixed.run(None, {"X": np.zeros((4, 3, arrays["X"].shape[2]), np.float32)})


def test_import_pylstm_without_onnx_and_loading_says_what_to_install(tmp_path):
    rng = np.random.default_rng(14)
    path = tmp_path / "m.onnx"
    onnx.save(make_model("RNN", random_case("RNN", rng), {}), str(path))
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'onnx' or name.startswith('onnx.'):\n"
        "            raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import pylstm\n"
        "try:\n"
        f"    pylstm.load({str(path)!r})\n"
        "except ImportError as e:\n"
        "    print('IMPORT-ERROR', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(),
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "IMPORT-ERROR" in out.stdout and "pip install onnx" in out.stdout


@pytest.mark.parametrize(
    "dtype",
    [
        "float32",
        "float64",
        "float16",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "int64",
        "uint32",
        "uint64",
        "bool",
        "complex64",
    ],
)
def test_tensor_decoding_matches_onnx(dtype):
    """Initializers and Constant values in raw bytes and in the typed fields decode as
    onnx.numpy_helper does (pylstm has its own decoder, with bounds checks)."""
    from pylstm.read.onnx_tensors import tensor_to_array

    rng = np.random.default_rng(15)
    values = (rng.normal(size=(3, 4)) * 50).astype(dtype)
    raw = numpy_helper.from_array(values, "t")
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    typed = helper.make_tensor("t", elem, values.shape, values.reshape(-1).tolist())
    for tensor in (raw, typed):
        got = tensor_to_array(tensor, source="test")
        want = numpy_helper.to_array(tensor)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    broken = numpy_helper.from_array(values, "t")
    broken.raw_data = broken.raw_data[:-1]
    with pytest.raises(pylstm.FormatError, match="'t'"):
        tensor_to_array(broken, source="test")
