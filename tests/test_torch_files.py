"""pylstm.read.torch_pickle: reading torch.save files without torch and without running code.

Files are written by the real torch (zip and legacy formats) or by the writers of
tests/torch_file_writers.py, which produce exactly torch's layout with chosen contents. Float32
round trips are expected to be bit-exact (tolerance 0); float64/float16/bfloat16 are compared
with torch's own conversion to float32, also exactly. Hostile and malformed files:
tests/test_torch_files_hostile.py.
"""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from child_process import child_env

torch = pytest.importorskip("torch")

from torch_file_writers import (
    FORMATS,
    FakeStorage,
    FakeTensor,
    assert_format_error,
    assert_same,
    float_storage,
    reference,
    save,
    torch_like_pickle,
    torch_zip_file,
    write_legacy,
    write_zip,
)

from pylstm.read.torch_pickle import read_torch_file

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
