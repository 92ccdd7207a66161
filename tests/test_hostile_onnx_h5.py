"""Hostile ONNX and HDF5 (Keras .h5) files: nothing outside the model is read, and no file makes
``load`` run long, allocate far more than the model's weights or crash the process (API.md
"Limits on untrusted files"); every refusal is a ``FormatError``."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile

import numpy as np
import pytest

import pylstm
from pylstm.errors import FormatError

torch = pytest.importorskip("torch")
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
