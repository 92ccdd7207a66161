"""Keras files read with h5py and the standard library only (no Keras, TensorFlow or torch).

Layouts:

* ``.keras`` (Keras 3, also tf.keras >= 2.13): a zip with ``config.json``, ``metadata.json``
  (``keras_version``) and ``model.weights.h5``, whose groups follow the layers' positions:
  ``layers/<snake_case class>[_n]/vars/0..``, with sub-layers below (``cell/vars``,
  ``forward_layer/cell/vars``, ``layer/vars``).
* ``.weights.h5`` of ``save_weights`` (Keras 3): the same groups at the root of an HDF5 file.
* legacy ``.h5`` (``model.save("m.h5")`` by Keras 3 or tf.keras 2, ``save_weights("w.h5")`` by
  tf.keras 2): attributes ``keras_version``, ``backend``, ``model_config`` (JSON) at the root, and
  weights in ``model_weights/<layer name>`` (or at the root for weights-only files), listed in
  order by the attribute ``weight_names``. Attributes above 64 KB are split by the writer into
  ``weight_names0``, ``weight_names1``, ... (also ``layer_names``); tf.keras 2 names end in ``:0``.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile

import numpy as np

from ..errors import FormatError


def import_h5py():
    """h5py, imported on first use (``import pylstm`` does not need it)."""
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading Keras files needs h5py: pip install h5py (or pip install 'pylstm[keras]')"
        ) from exc
    return h5py


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# Sanity bounds against corrupt headers: a damaged dataspace can claim billions of elements,
# which HDF5 would then try to read (or convert one by one) for minutes.
_MAX_ATTRIBUTE_ELEMENTS = 1 << 20
_MAX_ATTRIBUTE_BYTES = 1 << 28


def read_attribute(obj, name: str, where: str = "file"):
    """``obj.attrs[name]``, refusing sizes a Keras file never has (FormatError)."""
    attr = obj.attrs.get_id(name)
    shape = attr.shape or ()
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    itemsize = attr.dtype.itemsize
    if count > _MAX_ATTRIBUTE_ELEMENTS or count * itemsize > _MAX_ATTRIBUTE_BYTES:
        raise FormatError(f"{where}: attribute {name!r} claims {count} elements: corrupt header")
    return obj.attrs[name]


def read_dataset(ds, where: str) -> np.ndarray:
    """A dataset as an array, refusing one that claims more bytes than the file stores, and one
    whose data would come from outside the file (external storage, a virtual dataset)."""
    h5py = import_h5py()
    if not isinstance(ds, h5py.Dataset):
        raise FormatError(f"{where}: is a {type(ds).__name__}, not a dataset")
    if ds.is_virtual or ds.external:
        raise FormatError(
            f"{where}: its data is stored outside the file (external storage or a virtual "
            "dataset); pylstm reads nothing outside the model's file"
        )
    stored = ds.id.get_storage_size()
    if ds.dtype.kind not in "fiub" or ds.nbytes > max(stored, 64) * 8:
        raise FormatError(
            f"{where}: claims {ds.shape} {ds.dtype} ({ds.nbytes} bytes) but the file stores "
            f"{stored} bytes: corrupt or not a weight"
        )
    return np.asarray(ds)


def read_attribute_list(group, name: str) -> list:
    """A list-valued attribute, joined from its chunks ``name0``, ``name1``... when split.

    Returns
    -------
    list of str
        Empty when the attribute is absent.
    """
    attrs = group.attrs
    where = getattr(group, "name", "group")
    if name in attrs:
        values = [read_attribute(group, name, where)]
    else:
        values = []
        while f"{name}{len(values)}" in attrs:
            values.append(read_attribute(group, f"{name}{len(values)}", where))
    out = []
    for value in values:
        arr = np.asarray(value)
        out.extend(_text(v) for v in arr.reshape(-1) if arr.dtype.kind in "SUO")
    return out


def keras_major_of(version) -> int | None:
    """2 or 3 from a version string such as ``"2.21.0"`` / ``"3.4.1"``; None when unknown."""
    if version is None:
        return None
    text = _text(version).strip()
    head = text.split(".")[0]
    return int(head) if head.isdigit() else None


class LegacyWeights:
    """Weights of a legacy ``.h5``: ``group[layer]`` lists its arrays in ``weight_names``.

    Parameters
    ----------
    group : h5py.Group
        ``model_weights`` of a whole-model file, or the root of a weights-only file.
    source : str
        Named in error messages.
    """

    def __init__(self, group, source: str):
        self.group = group
        self.source = source
        self.layer_names = read_attribute_list(group, "layer_names")
        self._stored_as: dict = {}  # config layer name -> the file's, when paired by order

    def pair_by_order(self, names) -> None:
        """Pair the config's layers that hold weights (``names``, in model order) with the
        file's, as tf.keras 2's ``load_weights`` does for an ``.h5``: by name when the file has
        every name, else in order (the file's layers with weights, in ``layer_names`` order), as
        when a model is rebuilt with other layer names.

        Raises
        ------
        FormatError
            Names differ and so does the number of layers with weights.
        """
        names = list(names)
        if not self.layer_names or all(n in self.group for n in names):
            return
        stored = [
            n
            for n in self.layer_names
            if n in self.group
            and read_attribute_list(member(self.group, n, self.source), "weight_names")
        ]
        if len(stored) != len(names):
            raise FormatError(
                f"{self.source}: the config's layers with weights ({', '.join(names)}) are not "
                f"the file's ({', '.join(stored)}) by name, and cannot be paired in order: "
                f"{len(names)} layers against {len(stored)}"
            )
        self._stored_as = dict(zip(names, stored))

    def __call__(self, spec) -> list:
        """Arrays of layer ``spec.name``, in the order ``layer.get_weights()`` gives them."""
        name = self._stored_as.get(spec.name, spec.name)
        g = member(self.group, name, self.source) if name in self.group else None
        if g is None:
            if name in self.layer_names or not self.layer_names:
                raise FormatError(f"{self.source}: layer {name!r}: its weights are missing")
            return []
        out = []
        for wname in read_attribute_list(g, "weight_names"):
            try:
                where = f"{self.source}: weight {wname!r}"
                ds = member(g, wname, where) if "/" not in wname.strip("/") else g[wname]
                out.append(read_dataset(ds, where))
            except FormatError:
                raise
            except (KeyError, OSError, ValueError, RuntimeError) as exc:
                raise FormatError(
                    f"{self.source}: layer {spec.name!r}: cannot read weight {wname!r}: {exc}"
                ) from None
        return out


# Sub-groups holding a layer's variables, in get_weights() order, per layer class.
_V3_PARTS = {
    "LSTM": ("vars", "cell/vars"),
    "GRU": ("vars", "cell/vars"),
    "SimpleRNN": ("vars", "cell/vars"),
    "RNN": ("vars", "cell/vars"),
    "Bidirectional": (
        "vars",
        "forward_layer/vars",
        "forward_layer/cell/vars",
        "backward_layer/vars",
        "backward_layer/cell/vars",
    ),
    "TimeDistributed": ("vars", "layer/vars"),
}


def _snake_case(name: str) -> str:
    """Keras' ``naming.to_snake_case`` (the group names of a saved list's items)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _v3_parts(spec) -> tuple:
    """The sub-groups of ``spec``'s variables, in ``get_weights()`` order. ``RNN`` over
    ``StackedRNNCells`` keeps each cell under ``cell/cells/<class in snake case>[_n]``, numbered
    per class in list order as Keras' saver names a list's items."""
    parts = _V3_PARTS.get(spec.class_name, ("vars",))
    cell = (spec.config or {}).get("cell") if spec.class_name == "RNN" else None
    if not (isinstance(cell, dict) and cell.get("class_name") == "StackedRNNCells"):
        return parts
    used, names = {}, []
    for item in (cell.get("config") or {}).get("cells") or []:
        name = _snake_case(str(item.get("class_name", "")) if isinstance(item, dict) else "")
        used[name] = used.get(name, -1) + 1
        names.append(f"{name}_{used[name]}" if used[name] else name)
    return (*parts, *(f"cell/cells/{n}/vars" for n in names))


class V3Weights:
    """Weights of a Keras 3 weights file (inside a ``.keras`` or a ``.weights.h5``).

    Parameters
    ----------
    root : h5py.Group
    source : str
        Named in error messages.
    """

    def __init__(self, root, source: str):
        self.root = root
        self.source = source

    def __call__(self, spec) -> list:
        """Arrays of the layer at ``spec.weights_key``, in ``layer.get_weights()`` order."""
        key = spec.weights_key
        if key is None or key not in self.root:
            if key is not None and "layers" in self.root:
                raise FormatError(
                    f"{self.source}: layer {spec.name!r} ({spec.class_name}): no weights at "
                    f"{key!r}; groups present: {', '.join(sorted(self.root['layers']))}"
                )
            raise FormatError(f"{self.source}: layer {spec.name!r}: its weights are missing")
        out = []
        for part in _v3_parts(spec):
            path = f"{key}/{part}"
            if path not in self.root:
                continue
            group = self.root[path]
            try:
                names = sorted(group, key=lambda n: int(n) if n.isdigit() else -1)
                out.extend(read_dataset(group[n], f"{self.source}: {path}/{n}") for n in names)
            except FormatError:
                raise
            except (KeyError, OSError, ValueError, RuntimeError) as exc:
                raise FormatError(
                    f"{self.source}: layer {spec.name!r}: cannot read {path}: {exc}"
                ) from None
        return out


def member(group, key: str, where: str):
    """``group[key]`` through a hard link only: soft and external links are refused by name
    (an external link would open another file); None when there is no such member."""
    h5py = import_h5py()
    link = group.get(key, getlink=True)
    if link is None:
        return None
    if isinstance(link, (h5py.ExternalLink, h5py.SoftLink)):
        raise FormatError(
            f"{where}: {key!r} is a {type(link).__name__}; pylstm follows no links and reads "
            "nothing outside the model's file"
        )
    return group[key]


def open_h5(source, name: str):
    """``h5py.File`` opened read-only, errors as FormatError naming ``name``.

    The file is first read by a child process (:mod:`pylstm.read.hdf5_probe`), so that a
    file that would crash, hang or exhaust the HDF5 library does so there, and links, external
    storage and virtual datasets are refused before this process reads anything.
    """
    from . import hdf5_probe, limits

    h5py = import_h5py()
    if isinstance(source, io.BytesIO):
        data = source.getvalue()
        hdf5_probe.probe(data, name, limits.max_bytes_for(len(data)))
    else:
        hdf5_probe.probe(source, name, limits.max_bytes_for(os.path.getsize(source)))
    try:
        return h5py.File(source, "r")
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise FormatError(f"{name}: not a readable HDF5 file ({exc})") from None


def read_json(text, name: str, what: str) -> dict:
    try:
        value = json.loads(_text(text))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FormatError(f"{name}: {what} is not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(value, dict):
        raise FormatError(f"{name}: {what} is not a JSON object")
    return value


def is_zip_archive(path: str) -> bool:
    """``zipfile.is_zipfile``, but False instead of the ``BadZipFile`` it raises for some damaged
    end records (a "multi-disk" zip64 locator, found by fuzzing)."""
    try:
        return zipfile.is_zipfile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


class KerasZip:
    """The parts of a ``.keras`` archive: ``config``, ``keras_version`` and ``weights``.

    Use as a context manager (closes the HDF5 file).
    """

    def __init__(self, path: str):
        name = os.path.basename(path)
        try:
            from .limits import Budget, max_bytes_for, read_zip_member

            inflated = Budget(name, max_bytes_for(os.path.getsize(path)))
            with zipfile.ZipFile(path) as zf:
                members = set(zf.namelist())
                config = read_zip_member(zf, "config.json", inflated)
                meta = (
                    read_zip_member(zf, "metadata.json", inflated)
                    if "metadata.json" in members
                    else b"{}"
                )
                if "model.weights.h5" not in members:
                    raise FormatError(
                        f"{name}: the archive has no model.weights.h5"
                        + (
                            " (sharded weights are not supported)"
                            if any(m.endswith(".weights.json") for m in members)
                            else ""
                        )
                    )
                weights = read_zip_member(zf, "model.weights.h5", inflated)
        except (zipfile.BadZipFile, KeyError, OSError, EOFError, zipfile.LargeZipFile) as exc:
            raise FormatError(f"{name}: unreadable .keras archive ({exc})") from None
        except Exception as exc:  # zlib.error and CRC failures of truncated members
            if isinstance(exc, FormatError):
                raise
            raise FormatError(f"{name}: unreadable .keras archive ({exc})") from None
        self.config = read_json(config, name, "config.json")
        self.keras_version = read_json(meta, name, "metadata.json").get("keras_version")
        self._file = open_h5(io.BytesIO(weights), f"{name} (model.weights.h5)")
        self.weights = V3Weights(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()
