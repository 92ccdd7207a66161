"""pylstm.read.torch_pickle on hostile and malformed torch.save files: nothing pickled is ever
executed, and every damaged file is a FormatError naming what failed (writers in
tests/torch_file_writers.py)."""

from __future__ import annotations

import collections
import io
import os
import pickle
import random
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch_file_writers import (
    FORMATS,
    FakeStorage,
    FakeTensor,
    assert_format_error,
    float_storage,
    save,
    torch_like_pickle,
    torch_zip_file,
    write_legacy,
    write_zip,
)

from pylstm.errors import FormatError
from pylstm.read import torch_objects
from pylstm.read.sniff import detect_format
from pylstm.read.torch_pickle import read_torch_file

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
