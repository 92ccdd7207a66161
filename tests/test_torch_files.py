"""pylstm.read.torch_pickle: reading torch.save files without torch and without running code.

Files are written by the real torch (zip and legacy formats) or, for malformed and hostile files, by
small writers below that produce exactly torch's layout with chosen contents. Float32 round trips are
expected to be bit-exact (tolerance 0); float64/float16/bfloat16 are compared with torch's own
conversion to float32, also exactly.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import random
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from child_process import child_env

torch = pytest.importorskip("torch")

from pylstm.errors import FormatError
from pylstm.read import torch_objects
from pylstm.read.sniff import detect_format
from pylstm.read.torch_pickle import read_torch_file

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

FORMATS = ["zip", "legacy"]


def save(obj, path, fmt, **kwargs):
    """torch.save in the zip (default) or legacy format."""
    torch.save(obj, path, _use_new_zipfile_serialization=(fmt == "zip"), **kwargs)
    return path


def reference(tensor) -> np.ndarray:
    """What read_torch_file must return for a tensor: float32 for floats, the same ints otherwise."""
    tensor = tensor.detach()
    if tensor.is_floating_point():
        tensor = tensor.float()
    return tensor.contiguous().numpy()


def assert_same(arrays: dict, tensors: dict):
    """Same names in the same order, same dtypes and shapes, bit-exact values (tolerance 0)."""
    assert list(arrays) == list(tensors)
    for name, tensor in tensors.items():
        got, want = arrays[name], reference(tensor)
        assert got.dtype == want.dtype, name
        assert got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)  # exact: tolerance 0
        assert got.flags.c_contiguous and got.flags.owndata, name


def assert_format_error(path, *fragments) -> str:
    """read_torch_file(path) raises FormatError, a ValueError naming the file and ``fragments``."""
    with pytest.raises(FormatError) as info:
        read_torch_file(path)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert Path(path).name in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --------------------------------------------------------------------------------------------------
# writers of torch's layout with chosen contents


class FakeStorage:
    """Pickled by TorchLikePickler as torch's storage persistent id."""

    def __init__(self, key, storage_type, numel, view=None):
        self.key, self.storage_type, self.numel, self.view = key, storage_type, numel, view


class FakeTensor:
    """Pickles exactly as torch pickles a tensor: _rebuild_tensor_v2 of a storage id."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride))

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, (*self.args, False, collections.OrderedDict()))


class TorchLikePickler(pickle.Pickler):
    def __init__(self, file, legacy, protocol=2):
        super().__init__(file, protocol=protocol)
        self.legacy = legacy

    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            pid = ("storage", obj.storage_type, obj.key, "cpu", obj.numel)
            return (*pid, obj.view) if self.legacy else pid
        return None


def torch_like_pickle(obj, legacy=False, protocol=2) -> bytes:
    buf = io.BytesIO()
    TorchLikePickler(buf, legacy, protocol).dump(obj)
    return buf.getvalue()


def write_zip(path, data_pkl: bytes, storages: dict, byteorder=b"little", folder="archive"):
    """A zip archive laid out as torch writes it."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{folder}/data.pkl", data_pkl)
        zf.writestr(f"{folder}/byteorder", byteorder)
        for key, raw in storages.items():
            zf.writestr(f"{folder}/data/{key}", raw)
        zf.writestr(f"{folder}/version", b"3\n")
    return path


def write_legacy(path, obj, storages: dict, little_endian=True, counts=None):
    """A legacy torch.save stream; ``counts`` overrides the element counts written."""
    order = "little" if little_endian else "big"
    with open(path, "wb") as f:
        pickle.dump(LEGACY_MAGIC, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        sys_info = {"protocol_version": 1001, "little_endian": little_endian, "type_sizes": {}}
        pickle.dump(sys_info, f, protocol=2)
        TorchLikePickler(f, legacy=True).dump(obj)
        pickle.dump(list(storages), f, protocol=2)
        for key, (raw, itemsize) in storages.items():
            count = (counts or {}).get(key, len(raw) // itemsize)
            f.write(count.to_bytes(8, order))
            f.write(raw)
    return path


def float_storage(key, values):
    """A FloatStorage holding ``values``: (FakeStorage, raw bytes)."""
    values = np.asarray(values, dtype="<f4")
    return FakeStorage(key, torch.FloatStorage, values.size), values.tobytes()


def torch_zip_file(path, fmt="zip"):
    """A small real state dict (LSTM 2->3) saved by torch."""
    torch.manual_seed(0)
    return save(torch.nn.LSTM(2, 3).state_dict(), path, fmt)


# --------------------------------------------------------------------------------------------------
# round trips against torch


RNN_MODULES = {
    "lstm": lambda: torch.nn.LSTM(5, 7),
    "lstm_2layer_bidir": lambda: torch.nn.LSTM(5, 7, num_layers=2, bidirectional=True),
    "lstm_proj": lambda: torch.nn.LSTM(5, 7, proj_size=3),
    "lstm_proj_bidir_2layer": lambda: torch.nn.LSTM(
        5, 7, num_layers=2, proj_size=3, bidirectional=True
    ),
    "lstm_nobias": lambda: torch.nn.LSTM(5, 7, bias=False),
    "gru": lambda: torch.nn.GRU(5, 7),
    "gru_bidir_2layer": lambda: torch.nn.GRU(5, 7, num_layers=2, bidirectional=True),
    "rnn_tanh": lambda: torch.nn.RNN(5, 7),
    "rnn_relu_bidir_nobias": lambda: torch.nn.RNN(
        5, 7, nonlinearity="relu", bidirectional=True, bias=False
    ),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", sorted(RNN_MODULES))
def test_rnn_state_dict_round_trip(tmp_path, kind, fmt):
    torch.manual_seed(1)
    state = RNN_MODULES[kind]().state_dict()
    arrays = read_torch_file(save(state, tmp_path / f"{kind}.pt", fmt))
    assert_same(arrays, state)  # bit-exact float32


@pytest.mark.parametrize("fmt", FORMATS)
def test_float_dtypes_become_float32(tmp_path, fmt):
    torch.manual_seed(2)
    tensors = {
        "f64": torch.randn(4, 3, dtype=torch.float64),
        "f16": torch.randn(4, 3).half(),
        "bf16": torch.randn(4, 3).bfloat16(),
        "f32": torch.randn(4, 3),
    }
    arrays = read_torch_file(save(tensors, tmp_path / "dtypes.pt", fmt))
    assert all(a.dtype == np.float32 for a in arrays.values())
    assert_same(arrays, tensors)  # exact: same rounding as torch's .float()


@pytest.mark.parametrize("fmt", FORMATS)
def test_integer_and_bool_dtypes_are_kept(tmp_path, fmt):
    tensors = {
        "i64": torch.arange(-3, 3),
        "i32": torch.arange(-3, 3, dtype=torch.int32),
        "i16": torch.arange(-3, 3, dtype=torch.int16),
        "i8": torch.arange(-3, 3, dtype=torch.int8),
        "u8": torch.arange(0, 6, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "u16": torch.tensor([1, 2, 65535], dtype=torch.int32).to(
            torch.uint16
        ),  # _rebuild_tensor_v3
    }
    arrays = read_torch_file(save(tensors, tmp_path / "ints.pt", fmt))
    assert arrays["u16"].dtype == np.uint16
    assert_same(arrays, tensors)


@pytest.mark.parametrize("fmt", FORMATS)
def test_views_non_contiguous_and_scalars(tmp_path, fmt):
    torch.manual_seed(3)
    base = torch.randn(6, 8)
    flat = torch.randn(40)
    tensors = {
        "transposed": torch.randn(3, 4).t(),
        "column_slice": base[:, 2:5],
        "row_view_at_offset": base[3],
        "stepped": flat[3:30:4],
        "reshaped_view": flat[4:28].view(4, 6),
        "expanded": torch.randn(1, 3).expand(5, 3),
        "permuted_3d": torch.randn(2, 3, 4).permute(2, 0, 1),
        "scalar": torch.tensor(2.5),
        "scalar_f64": torch.tensor(-1.25, dtype=torch.float64),
        "empty": torch.zeros(0, 3),
        "param_transposed": torch.nn.Parameter(torch.randn(3, 2)).t(),
    }
    assert not tensors["column_slice"].is_contiguous()
    arrays = read_torch_file(save(tensors, tmp_path / "views.pt", fmt))
    assert_same(arrays, tensors)  # bit-exact, C-contiguous copies
    assert arrays["scalar"].shape == ()


@pytest.mark.parametrize("fmt", FORMATS)
def test_tensors_sharing_one_storage(tmp_path, fmt):
    torch.manual_seed(4)
    flat = torch.randn(30)
    tensors = {"a": flat[:12].view(3, 4), "b": flat[12:], "all": flat}
    arrays = read_torch_file(save(tensors, tmp_path / "shared.pt", fmt))
    assert_same(arrays, tensors)
    arrays["a"][0, 0] = 1e9  # copies: writing one does not touch another
    assert arrays["all"][0] == flat[0].item()


@pytest.mark.parametrize("fmt", FORMATS)
def test_nested_checkpoint_is_flattened_with_dotted_names(tmp_path, fmt):
    torch.manual_seed(5)
    model = torch.nn.GRU(3, 4)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 1, 3))[0].sum().backward()
    optimizer.step()
    checkpoint = {
        "model": model.state_dict(),
        "epoch": 3,
        "loss": 0.25,
        "name": "run-1",
        "notes": None,
        "history": [1.0, 2.0, (3, "x")],
        "optimizer": optimizer.state_dict(),
        "extra": [torch.ones(2), {"deep": torch.zeros(1)}],
    }
    arrays = read_torch_file(save(checkpoint, tmp_path / "ckpt.pt", fmt))
    expected = {f"model.{k}": v for k, v in model.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            expected[f"optimizer.state.{index}.{key}"] = value
    expected["extra.0"] = torch.ones(2)
    expected["extra.1.deep"] = torch.zeros(1)
    assert set(arrays) == set(expected)  # ints, floats, strings, None and lists of them dropped
    assert_same({k: arrays[k] for k in expected}, expected)


@pytest.mark.parametrize("fmt", FORMATS)
def test_parameters_with_and_without_state(tmp_path, fmt):
    torch.manual_seed(6)
    plain = torch.nn.Parameter(torch.randn(2, 3))
    with_state = torch.nn.Parameter(torch.randn(4))
    with_state.note = "extra python attribute"  # pickled via _rebuild_parameter_with_state
    path = save({"plain": plain, "with_state": with_state}, tmp_path / "params.pt", fmt)
    assert b"_rebuild_parameter_with_state" in _pickled_bytes(path, fmt)
    assert_same(read_torch_file(path), {"plain": plain, "with_state": with_state})


def _pickled_bytes(path, fmt) -> bytes:
    raw = Path(path).read_bytes()
    if fmt == "legacy":
        return raw
    with zipfile.ZipFile(path) as zf:
        return zf.read(next(n for n in zf.namelist() if n.endswith("/data.pkl")))


def test_archive_folder_name_varies(tmp_path):
    state = {"w": torch.arange(6.0).view(2, 3)}
    buffer = io.BytesIO()
    torch.save(state, buffer)  # folder "archive"
    (tmp_path / "from_buffer.pt").write_bytes(buffer.getvalue())
    odd = save(state, tmp_path / "odd name.v2.pth", "zip")  # folder "odd name.v2"
    for path, folder in ((tmp_path / "from_buffer.pt", "archive"), (odd, "odd name.v2")):
        with zipfile.ZipFile(path) as zf:
            assert f"{folder}/data.pkl" in zf.namelist()
        assert_same(read_torch_file(path), state)


@pytest.mark.parametrize("fmt", FORMATS)
def test_pickle_protocol_4(tmp_path, fmt):
    # Protocol 4 brings FRAME, MEMOIZE and STACK_GLOBAL (names resolved off the stack).
    torch.manual_seed(7)
    state = torch.nn.LSTM(3, 4, bidirectional=True).state_dict()
    path = save(state, tmp_path / "p4.pt", fmt, pickle_protocol=4)
    assert_same(read_torch_file(path), state)


def test_path_like_and_str_accepted(tmp_path):
    path = torch_zip_file(tmp_path / "small.pt")
    assert list(read_torch_file(str(path))) == list(read_torch_file(path))


@pytest.mark.parametrize("fmt", FORMATS)
def test_negative_view_bit_is_applied(tmp_path, fmt):
    # torch._neg_view shares the data and records {'neg': True} in the tensor metadata.
    torch.manual_seed(9)
    plain = torch.randn(5)
    negated = torch._neg_view(plain)
    assert negated.is_neg()
    path = save({"negated": negated}, tmp_path / "neg.pt", fmt)
    np.testing.assert_array_equal(read_torch_file(path)["negated"], -plain.numpy())  # exact


def test_deflated_archive_is_read(tmp_path):
    # torch stores members uncompressed; an archive re-zipped with deflate must read the same.
    state = torch.nn.GRU(3, 5).state_dict()
    stored = save(state, tmp_path / "stored.pt", "zip")
    deflated = tmp_path / "deflated.pt"
    with (
        zipfile.ZipFile(stored) as src,
        zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    assert_same(read_torch_file(deflated), state)  # exact


def test_legacy_storage_views(tmp_path):
    # Old torch wrote views of a storage as ('storage', type, root, loc, numel, (view, offset, size)).
    values = np.arange(10, dtype=np.float32)
    view = FakeStorage("root", torch.FloatStorage, 10, view=("view", 4, 3))
    whole = FakeStorage("root", torch.FloatStorage, 10)
    obj = {"v": FakeTensor(view, 1, (2,), (1,)), "all": FakeTensor(whole, 0, (10,), (1,))}
    path = write_legacy(tmp_path / "views.pt", obj, {"root": (values.tobytes(), 4)})
    arrays = read_torch_file(path)
    np.testing.assert_array_equal(arrays["v"], values[5:7])  # exact
    np.testing.assert_array_equal(arrays["all"], values)
    past_view = {"v": FakeTensor(view, 2, (2,), (1,))}  # inside the root, outside the view
    path = write_legacy(tmp_path / "past_view.pt", past_view, {"root": (values.tobytes(), 4)})
    assert_format_error(path, "'v'", "holds 3")
    outside = FakeStorage("root", torch.FloatStorage, 10, view=("view", 8, 3))
    obj = {"v": FakeTensor(outside, 0, (1,), (1,))}
    path = write_legacy(tmp_path / "bad_view.pt", obj, {"root": (values.tobytes(), 4)})
    assert_format_error(path, "outside")


def test_odd_keys_and_large_non_tensor_values(tmp_path):
    weights = torch.randn(3)
    checkpoint = {
        "w": weights,
        (1, 2): 0.5,  # a non-string key with a non-tensor value is dropped like the value
        "losses": [0.1] * 200_000,  # big lists of numbers are cheap to skip
    }
    path = save(checkpoint, tmp_path / "odd_keys.pt", "zip")
    assert_same(read_torch_file(path), {"w": weights})
    path = save({(1, 2): weights}, tmp_path / "tuple_key.pt", "zip")
    assert_format_error(path, "tuple")


def test_shared_containers_cannot_blow_up_the_walk(tmp_path):
    # 40 levels of [a, a] over one list: 2**40 paths through a few hundred pickle bytes.
    shared = [1.0] * 1000
    for _ in range(40):
        shared = [shared, shared]
    data = pickle.dumps({"x": shared}, protocol=2)
    assert len(data) < 10_000
    path = write_zip(tmp_path / "dag.pt", data, {})
    assert_format_error(path, "too large")


# --------------------------------------------------------------------------------------------------
# byte order


def test_big_endian_zip_is_byteswapped(tmp_path):
    values = np.linspace(-2, 2, 6, dtype=np.float32)
    halves = np.array([0.5, -1.5, 3.0], dtype=np.float16)
    bf16_bits = (values.view(np.uint32) >> 16).astype(np.uint16)  # exact bfloat16 values
    longs = np.array([1, -2, 1 << 40], dtype=np.int64)
    s_f = FakeStorage("0", torch.FloatStorage, 6)
    s_h = FakeStorage("1", torch.HalfStorage, 3)
    s_b = FakeStorage("2", torch.BFloat16Storage, 6)
    s_l = FakeStorage("3", torch.LongStorage, 3)
    obj = {
        "f": FakeTensor(s_f, 0, (2, 3), (3, 1)),
        "h": FakeTensor(s_h, 0, (3,), (1,)),
        "b": FakeTensor(s_b, 0, (6,), (1,)),
        "l": FakeTensor(s_l, 0, (3,), (1,)),
    }
    storages = {
        "0": values.astype(">f4").tobytes(),
        "1": halves.astype(">f2").tobytes(),
        "2": bf16_bits.astype(">u2").tobytes(),
        "3": longs.astype(">i8").tobytes(),
    }
    path = write_zip(tmp_path / "big.pt", torch_like_pickle(obj), storages, byteorder=b"big")
    arrays = read_torch_file(path)
    np.testing.assert_array_equal(arrays["f"], values.reshape(2, 3))  # exact
    np.testing.assert_array_equal(arrays["h"], halves.astype(np.float32))  # exact
    np.testing.assert_array_equal(
        arrays["b"], (bf16_bits.astype(np.uint32) << 16).view(np.float32)
    )  # exact
    np.testing.assert_array_equal(arrays["l"], longs)
    assert arrays["l"].dtype == np.int64 and arrays["l"].dtype.isnative


def test_big_endian_legacy_is_byteswapped(tmp_path):
    values = np.arange(5, dtype=np.float32) / 3
    storage = FakeStorage("k", torch.FloatStorage, 5)
    path = write_legacy(
        tmp_path / "big_legacy.pt",
        {"w": FakeTensor(storage, 1, (3,), (1,))},
        {"k": (values.astype(">f4").tobytes(), 4)},
        little_endian=False,
    )
    np.testing.assert_array_equal(read_torch_file(path)["w"], values[1:4])  # exact


def test_unknown_byteorder_record_is_refused(tmp_path):
    storage, raw = float_storage("0", [1, 2])
    data = torch_like_pickle({"w": FakeTensor(storage, 0, (2,), (1,))})
    path = write_zip(tmp_path / "middle.pt", data, {"0": raw}, byteorder=b"middle")
    assert_format_error(path, "byteorder")


def test_torch_like_writers_match_torch(tmp_path):
    # The writers used for the malformed files below produce files the reader reads correctly.
    storage, raw = float_storage("0", [1, 2, 3, 4, 5, 6])
    obj = {"w": FakeTensor(storage, 1, (2, 2), (1, 2))}
    zip_path = write_zip(tmp_path / "ok.pt", torch_like_pickle(obj), {"0": raw})
    legacy_path = write_legacy(tmp_path / "ok_legacy.pt", obj, {"0": (raw, 4)})
    expected = np.array([[2, 4], [3, 5]], dtype=np.float32)
    for path in (zip_path, legacy_path):
        np.testing.assert_array_equal(read_torch_file(path)["w"], expected)  # exact


# --------------------------------------------------------------------------------------------------
# without torch installed


def test_reads_without_torch_or_safetensors_importable(tmp_path):
    torch.manual_seed(8)
    state = torch.nn.LSTM(3, 4, proj_size=2).state_dict()
    save(state, tmp_path / "model_zip.pt", "zip")
    save(state, tmp_path / "model_legacy.pt", "legacy")
    from safetensors.torch import save_file

    save_file(dict(state), str(tmp_path / "model.safetensors"))
    script = textwrap.dedent(
        """
        import sys

        class BlockFrameworks:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "safetensors"):
                    raise ImportError(f"{name} is blocked in this test")
                return None

        sys.meta_path.insert(0, BlockFrameworks())
        for name in list(sys.modules):
            if name.split(".")[0] in ("torch", "safetensors"):
                del sys.modules[name]
        try:
            import torch  # noqa: F401
        except ImportError:
            pass
        else:
            raise SystemExit("torch was importable")

        import numpy as np
        from pylstm.read.safetensors_file import read_safetensors
        from pylstm.read.torch_pickle import read_torch_file

        folder = sys.argv[1]
        out = {}
        for name in ("model_zip.pt", "model_legacy.pt"):
            for key, value in read_torch_file(f"{folder}/{name}").items():
                out[f"{name}/{key}"] = value
        for key, value in read_safetensors(f"{folder}/model.safetensors").items():
            out[f"model.safetensors/{key}"] = value
        assert not any(m.split(".")[0] in ("torch", "safetensors") for m in sys.modules)
        np.savez(f"{folder}/out.npz", **out)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env=child_env(),
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "out.npz") as out:
        for prefix in ("model_zip.pt", "model_legacy.pt", "model.safetensors"):
            got = {k: out[f"{prefix}/{k}"] for k in state}
            for key, tensor in state.items():
                np.testing.assert_array_equal(got[key], reference(tensor))  # exact


# --------------------------------------------------------------------------------------------------
# hostile files: nothing is executed


class Evil:
    """Pickles as a call of os.system: a standard unpickler would run the command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


REFUSED_SYSTEM = f"{os.system.__module__}.system"  # posix.system on Linux


def test_hostile_payload_is_live_with_a_standard_unpickler(tmp_path):
    # Control: the payload used below really does run under pickle.load.
    marker = tmp_path / "control_marker"
    pickle.loads(pickle.dumps(Evil(marker), protocol=2))
    assert marker.exists()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("where", ["top_level", "nested_in_state_dict", "deep_in_checkpoint"])
def test_hostile_reduce_is_refused(tmp_path, fmt, where):
    marker = tmp_path / "marker"
    evil = Evil(marker)
    state = torch.nn.LSTM(2, 3).state_dict()
    obj = {
        "top_level": evil,
        "nested_in_state_dict": {**state, "evil": evil},
        "deep_in_checkpoint": {"model": state, "meta": {"x": [1, evil]}},
    }[where]
    path = save(obj, tmp_path / "hostile.pt", fmt)
    assert_format_error(path, REFUSED_SYSTEM, "refusing to unpickle global")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])  # GLOBAL (seen by the pre-scan) and STACK_GLOBAL
def test_hostile_zip_that_looks_like_torch(tmp_path, protocol):
    marker = tmp_path / "marker"
    storage, raw = float_storage("0", [1, 2, 3])
    obj = collections.OrderedDict(w=FakeTensor(storage, 0, (3,), (1,)), evil=Evil(marker))
    data = torch_like_pickle(obj, protocol=protocol)
    path = write_zip(tmp_path / "looks_fine.pt", data, {"0": raw})
    assert_format_error(path, REFUSED_SYSTEM)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_whole_pickled_module_is_refused_with_advice(tmp_path, fmt):
    path = save(torch.nn.LSTM(2, 3), tmp_path / "whole_module.pt", fmt)
    message = assert_format_error(path, "torch.nn.modules.rnn.LSTM", "state_dict()")
    assert "whole pickled module" in message


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated
def test_torchscript_archive_is_refused_with_advice(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.LSTM(2, 3)), str(path))
    assert_format_error(path, "__torch__", "TorchScript", "state_dict()")


def _raw_pickle_zip(tmp_path, name, body: bytes):
    """A torch-like zip whose data.pkl is protocol 2 followed by hand-written opcodes."""
    return write_zip(tmp_path / name, b"\x80\x02" + body, {})


def test_build_cannot_set_attributes_of_allowed_globals(tmp_path):
    # GLOBAL torch._utils._rebuild_tensor_v2; state (None, {'__defaults__': (1,)}); BUILD.
    before = torch_objects._rebuild_tensor_v2.__defaults__
    body = b"ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__K\x01\x85s\x86b."
    path = _raw_pickle_zip(tmp_path, "build_attack.pt", body)
    assert_format_error(path, "refused")
    assert torch_objects._rebuild_tensor_v2.__defaults__ == before
    # And BUILD with a plain dict state on the OrderedDict stand-in's class is refused too.
    body = b"ccollections\nOrderedDict\n}X\x03\x00\x00\x00abcK\x01sb."
    assert_format_error(_raw_pickle_zip(tmp_path, "build_class.pt", body))


def test_calling_a_storage_class_is_refused(tmp_path):
    # GLOBAL torch.FloatStorage; () ; REDUCE -- a storage class is a marker, never callable.
    path = _raw_pickle_zip(tmp_path, "call_storage.pt", b"ctorch\nFloatStorage\n)R.")
    assert_format_error(path, "not callable")


@pytest.mark.parametrize(
    "module_name",
    ["builtins getattr", "torch load", "numpy.core.multiarray _reconstruct", "collections deque"],
)
def test_other_globals_are_refused_by_name(tmp_path, module_name):
    module, name = module_name.split()
    body = f"c{module}\n{name}\n.".encode()
    path = _raw_pickle_zip(tmp_path, "other_global.pt", body)
    assert_format_error(path, f"'{module}.{name}'")


def test_extension_registry_opcodes_are_refused(tmp_path):
    path = _raw_pickle_zip(tmp_path, "ext.pt", b"\x82\x01.")  # EXT1 1
    assert_format_error(path, "EXT1")


def test_huge_memo_index_is_refused_quickly(tmp_path):
    # LONG_BINPUT 0xffffffff would make the C unpickler allocate a 32 GiB memo.
    path = _raw_pickle_zip(tmp_path, "memo.pt", b"}r\xff\xff\xff\xff.")
    assert_format_error(path, "memo index")


def test_module_persistent_id_is_refused(tmp_path):
    class ModulePid(pickle.Pickler):
        def persistent_id(self, obj):
            return ("module", "LSTM", "rnn.py", "source") if obj == "module-here" else None

    buffer = io.BytesIO()
    ModulePid(buffer, protocol=2).dump({"m": "module-here"})
    path = write_zip(tmp_path / "module_pid.pt", buffer.getvalue(), {})
    assert_format_error(path, "state_dict()")


def test_deep_nesting_and_cycles_are_refused(tmp_path):
    depth = 5000
    deep = b"}X\x01\x00\x00\x00k" + b"]" * depth + b"a" * (depth - 1) + b"s."
    assert_format_error(_raw_pickle_zip(tmp_path, "deep.pt", deep), "nested deeper")
    # A list that contains itself: ] BINPUT 0, BINGET 0, APPEND.
    cycle = b"}X\x01\x00\x00\x00k]q\x00h\x00as."
    assert_format_error(_raw_pickle_zip(tmp_path, "cycle.pt", cycle), "cycle")


# --------------------------------------------------------------------------------------------------
# malformed files


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_torch_file(tmp_path / "nope.pt")


def test_directory_is_a_format_error(tmp_path):
    assert_format_error(tmp_path, "directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    assert_format_error(path, "empty")


@pytest.mark.parametrize("prefix", [b"", b"PK\x03\x04", b"\x80\x02\x8a\x0a"])
def test_random_garbage(tmp_path, prefix):
    rng = random.Random(1234)
    for i in range(20):
        path = tmp_path / f"garbage{i}.pt"
        path.write_bytes(prefix + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))))
        assert_format_error(path)


@pytest.mark.parametrize("fmt, kind", [("zip", "torch-zip"), ("legacy", "torch-legacy")])
def test_truncated_at_every_7th_byte(tmp_path, fmt, kind):
    full = torch_zip_file(tmp_path / "full.pt", fmt).read_bytes()
    cuts = range(1, len(full), 7)
    assert len(cuts) >= 20
    path = tmp_path / "cut.pt"
    for cut in cuts:
        path.write_bytes(full[:cut])
        assert_format_error(path)
        if cut >= 64:  # still recognised, so that pylstm.load reports the truncation
            assert detect_format(path) == kind


def test_zip_storage_record_missing(tmp_path):
    storage, raw = float_storage("0", [1, 2, 3])
    other, _ = float_storage("1", [4.0])
    obj = {
        "present": FakeTensor(storage, 0, (3,), (1,)),
        "absent": FakeTensor(other, 0, (1,), (1,)),
    }
    path = write_zip(tmp_path / "missing_storage.pt", torch_like_pickle(obj), {"0": raw})
    assert_format_error(path, "'absent'", "archive/data/1", "missing")


def test_zip_storage_shorter_than_its_record(tmp_path):
    storage = FakeStorage("0", torch.FloatStorage, 8)
    obj = {"w": FakeTensor(storage, 0, (8,), (1,))}
    raw = np.ones(5, np.float32).tobytes()
    path = write_zip(tmp_path / "short_storage.pt", torch_like_pickle(obj), {"0": raw})
    assert_format_error(path, "'w'", "20 bytes")


@pytest.mark.parametrize(
    "offset, size, stride",
    [
        (2, (3,), (1,)),  # runs one element past the end
        (0, (2, 3), (3, 2)),  # the strides reach past the end
        (10**18, (1,), (1,)),  # absurd offset
        (0, (2**40, 2**40), (0, 0)),  # stride-0 broadcast of absurd size: over the memory budget
    ],
)
def test_tensor_outside_its_storage(tmp_path, offset, size, stride):
    storage, raw = float_storage("0", [1, 2, 3, 4])
    obj = {"w": FakeTensor(storage, offset, size, stride)}
    for path in (
        write_zip(tmp_path / "oob.pt", torch_like_pickle(obj), {"0": raw}),
        write_legacy(tmp_path / "oob_legacy.pt", obj, {"0": (raw, 4)}),
    ):
        assert_format_error(path)


@pytest.mark.parametrize(
    "offset, size, stride", [(-1, (2,), (1,)), (0, (-2,), (1,)), (3, (2,), (-1,))]
)
def test_negative_offset_size_or_stride(tmp_path, offset, size, stride):
    storage, raw = float_storage("0", [1, 2, 3, 4])
    obj = {"w": FakeTensor(storage, offset, size, stride)}
    path = write_zip(tmp_path / "negative.pt", torch_like_pickle(obj), {"0": raw})
    assert_format_error(path, ">= 0")


def test_legacy_lying_element_count(tmp_path):
    storage, raw = float_storage("0", [1, 2, 3])
    obj = {"w": FakeTensor(storage, 0, (3,), (1,))}
    path = write_legacy(tmp_path / "liar.pt", obj, {"0": (raw, 4)}, counts={"0": 2**60})
    assert_format_error(path, str(2**60))


def test_legacy_missing_storage_data(tmp_path):
    storage, _ = float_storage("0", [1, 2, 3])
    obj = {"w": FakeTensor(storage, 0, (3,), (1,))}
    path = write_legacy(tmp_path / "no_data.pt", obj, {})
    assert_format_error(path, "'w'", "missing")


def test_unsupported_dtype_is_refused(tmp_path):
    storage = FakeStorage("0", torch.ComplexFloatStorage, 2)
    obj = {"c": FakeTensor(storage, 0, (2,), (1,))}
    path = write_zip(tmp_path / "complex.pt", torch_like_pickle(obj), {"0": bytes(16)})
    assert_format_error(path, "ComplexFloatStorage", "not supported")


@pytest.mark.parametrize("fmt", FORMATS)
def test_top_level_must_be_a_dict(tmp_path, fmt):
    assert_format_error(save(torch.ones(3), tmp_path / "tensor.pt", fmt), "single tensor")
    assert_format_error(save([torch.ones(3)], tmp_path / "list.pt", fmt), "found list")


def test_zip_without_data_pkl(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    assert_format_error(path, "data.pkl")


def _fuzz(path, original: bytes, region: range, seed: int, rounds: int, rewrite):
    """Overwrite random bytes in ``region``; the reader returns arrays or raises FormatError."""
    rng = random.Random(seed)
    outcomes = collections.Counter()
    for _ in range(rounds):
        data = bytearray(original)
        for _ in range(rng.randrange(1, 4)):
            data[rng.choice(region)] = rng.randrange(256)
        rewrite(path, bytes(data))
        try:
            arrays = read_torch_file(path)
        except FormatError as exc:
            assert path.name in str(exc)
            outcomes["error"] += 1
        else:
            assert all(isinstance(a, np.ndarray) for a in arrays.values())
            outcomes["read"] += 1
    return outcomes


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # escapes in STRING opcodes
def test_fuzzed_legacy_pickles_never_escape_format_error(tmp_path):
    original = torch_zip_file(tmp_path / "legacy.pt", "legacy").read_bytes()
    pickles_end = original.rindex(b".") + 1  # the storage data follows the last pickle's STOP
    outcomes = _fuzz(
        tmp_path / "fuzzed.pt",
        original,
        range(pickles_end),
        seed=7,
        rounds=400,
        rewrite=lambda p, data: p.write_bytes(data),
    )
    assert outcomes["error"] > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # escapes in STRING opcodes
def test_fuzzed_zip_data_pkl_never_escapes_format_error(tmp_path):
    path = torch_zip_file(tmp_path / "good.pt")
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    pkl_name = next(n for n in members if n.endswith("/data.pkl"))

    def rewrite(target, data):
        with zipfile.ZipFile(target, "w") as zf:
            for name, raw in members.items():
                zf.writestr(name, data if name == pkl_name else raw)

    outcomes = _fuzz(
        tmp_path / "fuzzed_zip.pt",
        members[pkl_name],
        range(len(members[pkl_name])),
        seed=11,
        rounds=300,
        rewrite=rewrite,
    )
    assert outcomes["error"] > 0


# --------------------------------------------------------------------------------------------------
# detect_format on torch files


@pytest.mark.parametrize("fmt, kind", [("zip", "torch-zip"), ("legacy", "torch-legacy")])
def test_detect_format_torch(tmp_path, fmt, kind):
    assert detect_format(torch_zip_file(tmp_path / "model.bin", fmt)) == kind
    path = save({"w": torch.ones(2)}, tmp_path / "p4.pt", fmt, pickle_protocol=4)
    assert detect_format(path) == kind
