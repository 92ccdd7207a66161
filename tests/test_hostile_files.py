"""Hostile files: nothing outside the model is read, and no file makes ``load`` run long or
allocate far more than the model's weights (API.md "Limits on untrusted files"). Every refusal is
a ``FormatError`` naming the limit or the problem. ONNX and HDF5 files: test_hostile_onnx_h5.py."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import time
import zipfile

import numpy as np
import pytest

import pylstm
from pylstm.errors import FormatError
from pylstm.read import limits

torch = pytest.importorskip("torch")


def _torch_file(tmp_path, state, name="m.pt"):
    path = tmp_path / name
    torch.save(state, path)
    return path


def _lstm_state():
    torch.manual_seed(0)
    return torch.nn.LSTM(3, 4).state_dict()


# --------------------------------------------------------------------------------------------
# limits


def test_default_limit_formula():
    MiB, GiB = 1 << 20, 1 << 30
    assert limits.default_max_bytes(0) == 256 * MiB
    assert limits.default_max_bytes(1 * MiB) == 256 * MiB
    assert limits.default_max_bytes(16 * MiB) == 1 * GiB
    assert limits.default_max_bytes(512 * MiB) == 4 * GiB
    assert limits.default_max_bytes(2 * GiB) == 8 * GiB


@pytest.mark.parametrize("bad", [0, -1])
def test_max_bytes_must_be_positive(tmp_path, bad):
    path = _torch_file(tmp_path, _lstm_state())
    with pytest.raises(ValueError, match="max_bytes"):
        pylstm.load(path, max_bytes=bad)
    with pytest.raises(TypeError, match="max_bytes"):
        pylstm.load(path, max_bytes="1000")


def test_max_bytes_applies_to_tensors(tmp_path):
    path = _torch_file(tmp_path, _lstm_state())
    pylstm.load(path, max_bytes=1 << 20)
    with pytest.raises(FormatError, match=r"max_bytes"):
        pylstm.load(path, max_bytes=200)


# --------------------------------------------------------------------------------------------
# torch zip and pickles


def _zip_bomb(tmp_path, inflated: int):
    """A torch zip whose one storage member inflates to ``inflated`` bytes of zeros."""
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buf)
    a = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as dst:
        for info in a.infolist():
            if info.filename.endswith("/data/0"):
                chunk = bytes(1 << 20)
                with dst.open(info.filename, "w", force_zip64=True) as out:
                    for _ in range(inflated // len(chunk)):
                        out.write(chunk)
            else:
                dst.writestr(info.filename, a.read(info))
    return path


def test_zip_bomb_refused_before_inflating(tmp_path):
    path = _zip_bomb(tmp_path, 64 << 20)
    assert os.path.getsize(path) < 1 << 20
    t0 = time.perf_counter()
    with pytest.raises(FormatError, match=r"inflated.*max_bytes"):
        pylstm.load(path, max_bytes=8 << 20)
    assert time.perf_counter() - t0 < 2


def test_zip_negative_member_offsets(tmp_path):
    path = _torch_file(tmp_path, _lstm_state())
    data = bytearray(path.read_bytes())
    eocd = data.rindex(b"PK\x05\x06")
    # The directory is said to start 100 kB later than it does: zipfile then places every
    # member 100 kB before where it is, before the start of the file.
    (cd_offset,) = struct.unpack_from("<I", data, eocd + 16)
    struct.pack_into("<I", data, eocd + 16, cd_offset + 100_000)
    if b"PK\x06\x06" in data:  # the zip64 end record, which torch also writes
        z64 = data.rindex(b"PK\x06\x06")
        (cd64,) = struct.unpack_from("<Q", data, z64 + 48)
        struct.pack_into("<Q", data, z64 + 48, cd64 + 100_000)
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError):
        pylstm.load(path)


def _shared_lists_pickle(levels: int, width: int):
    """A small pickle whose object graph is ``width ** levels`` items when walked."""
    node = [1]
    for _ in range(levels):
        node = [node] * width
    return {"a": node}


def test_pickle_walk_is_cheap(tmp_path):
    buf = io.BytesIO()
    torch.save(_lstm_state(), buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    payload = pickle.dumps(_shared_lists_pickle(5, 60), protocol=2)
    assert len(payload) < 2000
    path = tmp_path / "walk.pt"
    with zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(
                info.filename, payload if info.filename.endswith("data.pkl") else src.read(info)
            )
    t0 = time.perf_counter()
    with pytest.raises(FormatError, match="too large to walk"):
        pylstm.load(path)
    assert time.perf_counter() - t0 < 0.5


def test_legacy_pickle_walk_is_cheap(tmp_path):
    path = tmp_path / "legacy.pt"
    with open(path, "wb") as fh:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(obj, fh, protocol=2)
        pickle.dump(_shared_lists_pickle(5, 60), fh, protocol=2)
        pickle.dump([], fh, protocol=2)
    t0 = time.perf_counter()
    with pytest.raises(FormatError, match="too large to walk"):
        pylstm.load(path)
    assert time.perf_counter() - t0 < 0.5


# --------------------------------------------------------------------------------------------
# safetensors: the refusals of the safetensors library itself


def _st_file(tmp_path, header: dict, data: bytes, name="x.safetensors", pad=b""):
    text = json.dumps(header).encode() + pad
    path = tmp_path / name
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def _official_refuses(path) -> bool:
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    try:
        safetensors_numpy.load_file(str(path))
    except Exception:
        return True
    return False


def _ours_refuses(path) -> bool:
    from pylstm.read.safetensors_file import read_safetensors

    try:
        read_safetensors(path)
    except FormatError:
        return True
    return False


def _f32(begin, end, shape):
    return {"dtype": "F32", "shape": shape, "data_offsets": [begin, end]}


SAFETENSORS_CASES = {
    "valid": ({"a": _f32(0, 8, [2]), "b": _f32(8, 16, [2])}, 16),
    "valid_header_order_reversed": ({"b": _f32(8, 16, [2]), "a": _f32(0, 8, [2])}, 16),
    "overlap": ({"a": _f32(0, 8, [2]), "b": _f32(4, 12, [2])}, 16),
    "same_bytes_twice": ({"a": _f32(0, 8, [2]), "b": _f32(0, 8, [2])}, 8),
    "gap": ({"a": _f32(0, 8, [2]), "b": _f32(12, 20, [2])}, 20),
    "not_from_zero": ({"a": _f32(4, 12, [2])}, 12),
    "trailing_bytes": ({"a": _f32(0, 8, [2])}, 12),
    "past_end": ({"a": _f32(0, 16, [4])}, 8),
    "shape_mismatch": ({"a": _f32(0, 8, [3])}, 8),
    "end_before_begin": ({"a": _f32(8, 0, [0])}, 8),
    "negative_dim": ({"a": _f32(0, 8, [-2])}, 8),
    "metadata_not_strings": ({"__metadata__": {"k": 1}, "a": _f32(0, 8, [2])}, 8),
    "metadata_ok": ({"__metadata__": {"k": "v"}, "a": _f32(0, 8, [2])}, 8),
    "empty_tensor": ({"a": _f32(0, 0, [0, 3]), "b": _f32(0, 8, [2])}, 8),
}


@pytest.mark.parametrize("case", sorted(SAFETENSORS_CASES))
def test_safetensors_refusals_match_the_library(tmp_path, case):
    header, nbytes = SAFETENSORS_CASES[case]
    path = _st_file(tmp_path, header, np.arange(nbytes, dtype=np.uint8).tobytes())
    assert _ours_refuses(path) == _official_refuses(path), case


def test_safetensors_header_size_limit(tmp_path):
    path = tmp_path / "big.safetensors"
    path.write_bytes(struct.pack("<Q", 100_000_001) + b"{" + b" " * 64)
    assert _official_refuses(path)
    with pytest.raises(FormatError):
        pylstm.load(path)


# --------------------------------------------------------------------------------------------
# inputs the fuzzers (fuzz/) found, kept as regression tests

HOSTILE = os.path.join(os.path.dirname(__file__), "fixtures", "hostile")
FUZZ_FINDINGS = {
    # an LSTM node whose attribute name is not valid UTF-8: protobuf returned bytes and the
    # error message raised TypeError (python -m fuzz run --harness onnx, 2026-11-30)
    "onnx_non_utf8_attribute_name.onnx": FormatError,
    # a zip whose zip64 end locator claims several disks: zipfile.is_zipfile raised BadZipFile
    # in the Keras reader (python -m fuzz run --harness torch_zip, 2026-11-30)
    "zip_multidisk_end_record.pt": FormatError,
    # an LSTM whose hidden_size attribute is a list of ints: TypeError from int(list)
    # (python -m fuzz run --harness onnx, 2026-11-30)
    "onnx_ints_hidden_size.onnx": FormatError,
}


@pytest.mark.parametrize("name", sorted(FUZZ_FINDINGS))
def test_fuzz_findings(tmp_path, name):
    if name.endswith(".onnx"):
        pytest.importorskip("onnx")
    with pytest.raises(FUZZ_FINDINGS[name]):
        pylstm.load(os.path.join(HOSTILE, name))


def test_pickle_opcode_bomb_refused_quickly(tmp_path):
    """A data.pkl that inflates to millions of opcodes (EMPTY_LIST, POP) is refused by count."""
    buf = io.BytesIO()
    torch.save(_lstm_state(), buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    original = src.read(next(n for n in src.namelist() if n.endswith("data.pkl")))
    payload = original[:2] + b"]0" * 4_000_000 + original[2:]  # after PROTO 2
    path = tmp_path / "ops.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = payload if info.filename.endswith("data.pkl") else src.read(info)
            dst.writestr(info.filename, data)
    assert os.path.getsize(path) < 100_000
    t0 = time.perf_counter()
    with pytest.raises(FormatError, match="opcodes"):
        pylstm.load(path)
    assert time.perf_counter() - t0 < 5
    pylstm.load(path, max_bytes=4 << 30)  # the limit follows max_bytes


@pytest.mark.parametrize(
    "name, edit",
    [
        ("leading_space", lambda h: b" " + h),
        ("trailing_spaces", lambda h: h + b"   "),
        ("trailing_nul", lambda h: h + b"\0"),
        ("dtype_lowercase", lambda h: h.replace(b"F32", b"f32")),
        ("shape_float", lambda h: h.replace(b"[2]", b"[2.0]")),
        ("three_offsets", lambda h: h.replace(b"[0, 8]", b"[0, 8, 9]")),
        ("extra_field", lambda h: h.replace(b'"dtype"', b'"x": 1, "dtype"')),
    ],
)
def test_safetensors_header_text_matches_the_library(tmp_path, name, edit):
    header = json.dumps({"a": _f32(0, 8, [2])}).encode()
    text = edit(header)
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(8))
    assert _ours_refuses(path) == _official_refuses(path), name
