"""Hostile files: nothing outside the model is read, and no file makes ``load`` run long or
allocate far more than the model's weights (API.md "Limits on untrusted files"). Every refusal is
a ``FormatError`` naming the limit or the problem."""

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
# ONNX: external data only from regular files inside the model's folder, links resolved;
# operators bounded at load (folding) and at run time


def _onnx_model_with_external(tmp_path, location: str):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "model" / "m.onnx"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def test_onnx_external_data_next_to_model_loads(tmp_path):
    path = _onnx_model_with_external(tmp_path, "w.bin")
    (path.parent / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    (y,) = pylstm.load(path).run(None, {"x": np.ones(4, np.float32)})
    np.testing.assert_array_equal(y, [1, 2, 3, 4])


@pytest.mark.parametrize("how", ["file_link", "folder_link", "link_chain", "absolute_link"])
def test_onnx_external_data_link_outside_refused(tmp_path, how):
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "passwd").write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 4)
    location = "w.bin" if how != "folder_link" else "sub/passwd"
    path = _onnx_model_with_external(tmp_path, location)
    folder = path.parent
    if how == "file_link":
        os.symlink("../secret/passwd", folder / "w.bin")
    elif how == "absolute_link":
        os.symlink(outside / "passwd", folder / "w.bin")
    elif how == "folder_link":
        os.symlink(outside, folder / "sub")
    else:
        os.symlink("hop", folder / "w.bin")
        os.symlink("../secret/passwd", folder / "hop")
    with pytest.raises(FormatError, match="outside the model's folder"):
        pylstm.load(path)


def test_onnx_external_data_link_inside_allowed(tmp_path):
    path = _onnx_model_with_external(tmp_path, "w.bin")
    (path.parent / "data").mkdir()
    (path.parent / "data" / "real.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    os.symlink("data/real.bin", path.parent / "w.bin")
    (y,) = pylstm.load(path).run(None, {"x": np.zeros(4, np.float32)})
    np.testing.assert_array_equal(y, [0, 1, 2, 3])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs mkfifo")
def test_onnx_external_data_not_regular_file(tmp_path):
    path = _onnx_model_with_external(tmp_path, "w.bin")
    os.mkfifo(path.parent / "w.bin")
    t0 = time.perf_counter()
    with pytest.raises(FormatError):
        pylstm.load(path)
    assert time.perf_counter() - t0 < 5


def test_onnx_external_data_reread_is_bounded(tmp_path):
    """Many tensors pointing at the same bytes of one external file count each time."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    n = 1 << 20  # 4 MiB of float32 in the data file
    (tmp_path / "w.bin").write_bytes(bytes(4 * n))
    inits, nodes, prev = [], [], "x"
    for k in range(8):
        t = TensorProto(name=f"w{k}", data_type=TensorProto.FLOAT, dims=[n])
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "w.bin"), ("offset", "0"), ("length", str(4 * n))):
            e = t.external_data.add()
            e.key, e.value = key, value
        inits.append(t)
        nodes.append(helper.make_node("Add", [prev, f"w{k}"], [f"y{k}"]))
        prev = f"y{k}"
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [n])],
        inits,
    )
    path = tmp_path / "m.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    pylstm.load(path)  # 32 MiB of tensors: within the default
    with pytest.raises(FormatError, match="max_bytes"):
        pylstm.load(path, max_bytes=16 << 20)


def _expand_model(tmp_path, target_shape, *, const_input: bool = False):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    shape = numpy_helper.from_array(np.asarray(target_shape, np.int64), "shape")
    if const_input:
        x = numpy_helper.from_array(np.ones(1, np.float32), "x")
        inputs, inits = [], [shape, x]
    else:
        inputs, inits = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [shape]
    graph = helper.make_graph(
        [helper.make_node("Expand", ["x", "shape"], ["y"], name="bomb")],
        "g",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    path = tmp_path / "expand.onnx"
    path.write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )
    return path


@pytest.mark.parametrize("shape", [[50_000_000], [1 << 24, 1 << 24]])
def test_onnx_expand_bomb_refused_at_run(tmp_path, shape):
    model = pylstm.load(_expand_model(tmp_path, shape))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"'bomb'.*limit") as info:
        model.run(None, {"x": np.ones(1, np.float32)})
    assert not isinstance(info.value, MemoryError)
    assert time.perf_counter() - t0 < 1


def test_onnx_expand_within_explicit_max_bytes(tmp_path):
    model = pylstm.load(_expand_model(tmp_path, [20_000_000]), max_bytes=100 << 20)
    (y,) = model.run(None, {"x": np.ones(1, np.float32)})
    assert y.shape == (20_000_000,)


def test_onnx_expand_bomb_refused_when_folded(tmp_path):
    with pytest.raises(FormatError, match=r"'bomb'.*max_bytes"):
        pylstm.load(_expand_model(tmp_path, [1 << 40], const_input=True))


@pytest.mark.parametrize(
    "op, inputs, attrs",
    [
        ("ConstantOfShape", [np.asarray([1 << 30], np.int64)], {}),
        ("Tile", [np.ones((2, 2), np.float32), np.asarray([1 << 15, 1 << 15], np.int64)], {}),
        (
            "Range",
            [
                np.asarray(0.0, np.float32),
                np.asarray(1e12, np.float32),
                np.asarray(1.0, np.float32),
            ],
            {},
        ),
        ("Add", [np.ones((1 << 15, 1), np.float32), np.ones((1, 1 << 15), np.float32)], {}),
        ("MatMul", [np.ones((1 << 15, 1), np.float32), np.ones((1, 1 << 15), np.float32)], {}),
        ("Einsum", [np.ones(1 << 12, np.float32)] * 3, {"equation": "a,b,c->"}),
        ("Pad", [np.ones(4, np.float32), np.asarray([0, 1 << 30], np.int64)], {}),
        ("Concat", [np.ones(1 << 20, np.float32)] * 80, {"axis": 0}),
    ],
)
def test_onnx_amplifying_ops_refused_at_run(tmp_path, op, inputs, attrs):
    """Each op is fed from graph inputs, so nothing is folded at load time."""
    onnx = pytest.importorskip("onnx")
    from onnx import helper
    from onnx.helper import np_dtype_to_tensor_dtype

    names = [f"i{k}" for k in range(len(inputs))]
    graph = helper.make_graph(
        [helper.make_node(op, names, ["y"], name="amp", **attrs)],
        "g",
        [
            helper.make_tensor_value_info(n, np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
            for n, a in zip(names, inputs)
        ],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
    )
    path = tmp_path / f"{op}.onnx"
    path.write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )
    model = pylstm.load(path)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"'amp'.*limit"):
        model.run(None, dict(zip(names, inputs)))
    assert time.perf_counter() - t0 < 1


# --------------------------------------------------------------------------------------------
# HDF5 (Keras .h5): no external storage, external or soft links, virtual datasets; corrupt
# files that hang, exhaust or crash the HDF5 library fail in a child process instead

HOSTILE = os.path.join(os.path.dirname(__file__), "fixtures", "hostile")
KERNEL = "model_weights/lstm/lstm/lstm_cell/kernel:0"


def _keras_h5(tmp_path):
    import gzip

    path = tmp_path / "model.h5"
    with gzip.open(os.path.join(HOSTILE, "..", "keras", "lstm_hard_sigmoid.h5.gz")) as fh:
        path.write_bytes(fh.read())
    return path


def _secret(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.full(60, 7.0, np.float32).tobytes())
    return secret


@pytest.mark.parametrize("how", ["external_storage", "external_link", "virtual", "soft_link"])
def test_h5_data_from_outside_refused(tmp_path, how):
    h5py = pytest.importorskip("h5py")
    path = _keras_h5(tmp_path)
    pylstm.load(path)
    secret = _secret(tmp_path)
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other["w"] = np.full((3, 20), 7.0, np.float32)
    with h5py.File(path, "r+") as f:
        shape, dtype = f[KERNEL].shape, f[KERNEL].dtype
        del f[KERNEL]
        if how == "external_storage":
            f.create_dataset(KERNEL, shape, dtype, external=[(str(secret), 0, 240)])
        elif how == "external_link":
            f[KERNEL] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/w")
        elif how == "virtual":
            layout = h5py.VirtualLayout(shape, dtype)
            layout[...] = h5py.VirtualSource(str(tmp_path / "other.h5"), "w", shape)
            f.create_virtual_dataset(KERNEL, layout)
        else:
            f["elsewhere"] = np.full(shape, 7.0, dtype)
            f[KERNEL] = h5py.SoftLink("/elsewhere")
    with pytest.raises(FormatError, match=r"outside|link"):
        pylstm.load(path)


@pytest.mark.parametrize("how", ["external_link", "soft_link"])
def test_h5_links_refused_in_process_too(tmp_path, how):
    """The loader's own lookups refuse links by name (defence behind the child's walk)."""
    h5py = pytest.importorskip("h5py")
    from pylstm.read.keras_h5 import member

    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["d"] = np.zeros(2)
        f["l"] = h5py.SoftLink("/d") if how == "soft_link" else h5py.ExternalLink("x.h5", "/d")
        assert member(f, "d", "f.h5") is not None
        with pytest.raises(FormatError, match="link"):
            member(f, "l", "f.h5")


def _mutation_names():
    import json

    with open(os.path.join(HOSTILE, "h5_mutations.json")) as fh:
        return sorted(json.load(fh))


@pytest.mark.parametrize("name", _mutation_names())
def test_h5_corrupt_files_found_by_fuzzing(tmp_path, name, monkeypatch):
    import importlib.util

    from pylstm.read import hdf5_probe

    spec = importlib.util.spec_from_file_location(
        "make_hostile", os.path.join(HOSTILE, "make_hostile.py")
    )
    make_hostile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_hostile)
    path = tmp_path / f"{name}.h5"
    path.write_bytes(make_hostile.patched(name))
    monkeypatch.setattr(hdf5_probe, "PROBE_TIMEOUT_S", 4.0)
    t0 = time.perf_counter()
    with pytest.raises(FormatError):
        pylstm.load(path)
    assert time.perf_counter() - t0 < 15


def test_keras_zip_bomb_refused(tmp_path):
    """A .keras whose config.json inflates past max_bytes."""
    import gzip

    with gzip.open(os.path.join(HOSTILE, "..", "keras", "hard_sigmoid_v3.keras.gz")) as fh:
        src = zipfile.ZipFile(io.BytesIO(fh.read()))
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as dst:
        for info in src.infolist():
            if info.filename == "config.json":
                with dst.open("config.json", "w", force_zip64=True) as out:
                    out.write(src.read(info))
                    for _ in range(32):
                        out.write(b" " * (1 << 20))
            else:
                dst.writestr(info.filename, src.read(info))
    with pytest.raises(FormatError, match="max_bytes"):
        pylstm.load(path, max_bytes=8 << 20)


# --------------------------------------------------------------------------------------------
# inputs the fuzzers (fuzz/) found, kept as regression tests

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
