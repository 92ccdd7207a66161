"""Writers of torch.save's file layout with chosen contents, and the checks the torch-file tests
share (tests/test_torch_files.py, tests/test_torch_files_hostile.py)."""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pylstm.errors import FormatError
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
