"""pylstm.read.safetensors_file and pylstm.read.sniff.

Files are written by the real ``safetensors`` package (numpy and torch front ends) or, for malformed
ones, assembled byte by byte. Float32 round trips are bit-exact (tolerance 0); F64/F16/BF16 are
compared with the exact float32 conversion of the same values.
"""

from __future__ import annotations

import json
import random
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

safetensors_numpy = pytest.importorskip("safetensors.numpy")

from pylstm.errors import FormatError
from pylstm.read.safetensors_file import read_safetensors
from pylstm.read.sniff import FORMATS, detect_format


def assert_format_error(path, *fragments, reader=read_safetensors) -> str:
    """``reader(path)`` raises FormatError, a ValueError naming the file and ``fragments``."""
    with pytest.raises(FormatError) as info:
        reader(path)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert Path(path).name in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def write_raw(path, header: dict, data: bytes, header_len=None) -> Path:
    """A safetensors file from a header dict and a data buffer; ``header_len`` may lie."""
    text = json.dumps(header).encode()
    length = len(text) if header_len is None else header_len
    path.write_bytes(struct.pack("<Q", length) + text + data)
    return path


def one_tensor_file(path, **entry_overrides) -> Path:
    """A file with tensor "w" (F32, shape [2, 3]) whose header entry can be altered."""
    entry = {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    entry.update(entry_overrides)
    return write_raw(path, {"w": entry}, np.arange(6, dtype="<f4").tobytes())


# --------------------------------------------------------------------------------------------------
# round trips


def test_numpy_front_end_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "weight_ih_l0": rng.standard_normal((28, 5)).astype(np.float32),
        "weight_hh_l0": rng.standard_normal((28, 7)).astype(np.float32),
        "bias_ih_l0": rng.standard_normal(28).astype(np.float32),
        "f64": rng.standard_normal((3, 2)),
        "f16": rng.standard_normal(5).astype(np.float16),
        "scalar": np.array(1.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "i64": np.arange(-3, 3, dtype=np.int64),
        "i8": np.arange(-3, 3, dtype=np.int8),
        "u16": np.array([0, 65535], dtype=np.uint16),
        "flags": np.array([True, False, True]),
    }
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(tensors, str(path), metadata={"format": "np"})
    arrays = read_safetensors(path)
    assert sorted(arrays) == sorted(tensors)  # __metadata__ is not a tensor
    for name, want in tensors.items():
        got = arrays[name]
        if want.dtype.kind == "f":
            assert got.dtype == np.float32, name
            want = want.astype(np.float32)
        else:
            assert got.dtype == want.dtype, name
        assert got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)  # exact: tolerance 0
        assert got.flags.c_contiguous and got.flags.owndata, name


def test_torch_front_end_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = dict(torch.nn.LSTM(4, 6, num_layers=2, proj_size=3, bidirectional=True).state_dict())
    state["bf16"] = torch.randn(3, 5).bfloat16()
    state["f16"] = torch.randn(7).half()
    state["f64"] = torch.randn(2, 2, dtype=torch.float64)
    path = tmp_path / "lstm.safetensors"
    save_file(state, str(path))
    arrays = read_safetensors(path)
    assert sorted(arrays) == sorted(state)
    for name, tensor in state.items():
        assert arrays[name].dtype == np.float32, name
        # exact: bfloat16 -> float32 is a bit shift, as is torch's .float()
        np.testing.assert_array_equal(arrays[name], tensor.float().numpy(), err_msg=name)


def test_header_padding_and_key_order(tmp_path):
    header = {
        "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
        "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
    }
    text = json.dumps(header).encode() + b"        "  # the format allows trailing spaces
    path = tmp_path / "padded.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + np.array([1, 2], "<f4").tobytes())
    arrays = read_safetensors(path)
    assert list(arrays) == ["b", "a"]
    assert arrays["a"].tolist() == [1.0] and arrays["b"].tolist() == [2.0]  # exact


# --------------------------------------------------------------------------------------------------
# malformed files


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_safetensors(tmp_path / "nope.safetensors")


def test_empty_and_tiny_files(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    assert_format_error(path, "empty")
    path.write_bytes(b"\x02\x00\x00")
    assert_format_error(path, "too short")


@pytest.mark.parametrize("header_len", [0, 10**6, 2**63, 2**64 - 1])
def test_bad_header_length(tmp_path, header_len):
    path = write_raw(tmp_path / "bad_len.safetensors", {}, b"", header_len=header_len)
    assert_format_error(path)


@pytest.mark.parametrize(
    "text",
    [b"{not json", b"[1, 2, 3]", b'"a string"', b"\xff\xfe{}", b"[" * 100000, b'{"a": 1, "a": 2}'],
)
def test_bad_json_header(tmp_path, text):
    path = tmp_path / "bad_json.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text)
    assert_format_error(path, "header")


@pytest.mark.parametrize(
    "override, fragment",
    [
        ({"data_offsets": [0, 28]}, "outside"),  # past the end of the data
        ({"data_offsets": [8, 4]}, "outside"),  # end before begin
        ({"data_offsets": [-4, 20]}, "outside"),
        ({"data_offsets": [0, 20]}, "needs 24 bytes"),  # shape x itemsize disagree
        ({"shape": [3, 3]}, "needs 36 bytes"),
        ({"shape": [2, -3]}, "shape"),
        ({"shape": [2, 3.0]}, "shape"),
        ({"shape": "2x3"}, "shape"),
        ({"data_offsets": [0]}, "data_offsets"),
        ({"data_offsets": None}, "data_offsets"),
        ({"dtype": "F8_E4M3"}, "unsupported dtype"),
        ({"dtype": "C64"}, "unsupported dtype"),
        ({"dtype": None}, "unsupported dtype"),
    ],
)
def test_bad_entry_names_the_tensor(tmp_path, override, fragment):
    path = one_tensor_file(tmp_path / "bad_entry.safetensors", **override)
    assert_format_error(path, "'w'", fragment)


def test_entry_that_is_not_an_object(tmp_path):
    path = write_raw(tmp_path / "entry.safetensors", {"w": [1, 2]}, b"")
    assert_format_error(path, "'w'")


def test_absurd_shape_does_not_allocate(tmp_path):
    # 2**62 elements claimed for 24 bytes: refused by the size check, nothing allocated.
    path = one_tensor_file(tmp_path / "absurd.safetensors", shape=[2**31, 2**31])
    assert_format_error(path, "'w'")


def test_truncated_at_every_7th_byte(tmp_path):
    rng = np.random.default_rng(1)
    tensors = {f"t{i}": rng.standard_normal((3, 4)).astype(np.float32) for i in range(4)}
    full_path = tmp_path / "full.safetensors"
    safetensors_numpy.save_file(tensors, str(full_path))
    full = full_path.read_bytes()
    cuts = range(1, len(full), 7)
    assert len(cuts) >= 20
    path = tmp_path / "cut.safetensors"
    for cut in cuts:
        path.write_bytes(full[:cut])
        assert_format_error(path)
        if cut >= 9:  # still recognised, so that pylstm.load reports the truncation
            assert detect_format(path) == "safetensors"


def test_random_garbage(tmp_path):
    rng = random.Random(99)
    for i in range(30):
        path = tmp_path / f"garbage{i}.safetensors"
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000))))
        assert_format_error(path)


def test_fuzzed_header_never_escapes_format_error(tmp_path):
    source = tmp_path / "source.safetensors"
    safetensors_numpy.save_file({"a": np.ones((2, 3), np.float32)}, str(source))
    original = source.read_bytes()
    header_end = 8 + struct.unpack("<Q", original[:8])[0]
    rng = random.Random(5)
    path = tmp_path / "fuzzed.safetensors"
    errors = 0
    for _ in range(300):
        data = bytearray(original)
        data[rng.randrange(header_end)] = rng.randrange(256)
        path.write_bytes(bytes(data))
        try:
            arrays = read_safetensors(path)
        except FormatError as exc:
            assert path.name in str(exc)
            errors += 1
        else:
            assert all(isinstance(a, np.ndarray) for a in arrays.values())
    assert errors > 0


# --------------------------------------------------------------------------------------------------
# detect_format


def test_detect_safetensors(tmp_path):
    path = tmp_path / "weights.bin"  # the suffix does not matter
    safetensors_numpy.save_file({"a": np.ones(2, np.float32)}, str(path))
    assert detect_format(path) == "safetensors"


def test_detect_keras(tmp_path):
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", "{}")
        zf.writestr("config.json", "{}")
        zf.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")
    assert detect_format(path) == "keras"


def test_detect_hdf5(tmp_path):
    path = tmp_path / "weights.dat"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(600))
    assert detect_format(path) == "hdf5"
    user_block = tmp_path / "user_block.dat"  # HDF5 allows the signature after a 512-byte block
    user_block.write_bytes(bytes(512) + b"\x89HDF\r\n\x1a\n" + bytes(64))
    assert detect_format(user_block) == "hdf5"


def test_detect_onnx_by_content_and_by_suffix(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph)
    content = tmp_path / "model.bin"  # no .onnx suffix: recognised by its fields
    onnx.save(model, str(content))
    assert detect_format(content) == "onnx"
    suffixed = tmp_path / "odd.onnx"  # unrecognisable content, but the suffix says ONNX
    suffixed.write_bytes(b"\x00\x01\x02 not a protobuf we can walk")
    assert detect_format(suffixed) == "onnx"
    same_without_suffix = tmp_path / "odd.bin"
    same_without_suffix.write_bytes(suffixed.read_bytes())
    assert_format_error(same_without_suffix, reader=detect_format)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(content.read_bytes()[:-5])
    assert_format_error(truncated, reader=detect_format)


def test_detect_unknown_lists_the_formats(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, not weights")
    message = assert_format_error(path, reader=detect_format)
    assert all(kind in message for kind in FORMATS)
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("readme.txt", "hi")
    assert_format_error(other_zip, reader=detect_format)


def test_detect_missing_empty_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        detect_format(tmp_path / "nope.pt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert_format_error(empty, "empty", reader=detect_format)
    folder = tmp_path / "saved_model"
    folder.mkdir()
    assert_format_error(folder, "directory", reader=detect_format)
    assert_format_error(folder, "directory", reader=read_safetensors)
