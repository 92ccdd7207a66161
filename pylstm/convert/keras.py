"""Keras: live Keras 3 models and layers (:func:`convert_live`) and saved files
(:func:`convert_file`: ``.keras``, whole-model ``.h5`` by Keras 3 or tf.keras 2, ``.weights.h5``
with ``config=``) converted into a :class:`KerasConverted`: plain data (the graph lowered to
nodes, canonical layers for the recurrent ones) that :mod:`pylstm.assemble` builds a
:class:`~pylstm.faces.keras_face.KerasModel` from.

Files are read with h5py and the standard library only. The architecture always comes from the
saved config (never from defaults: ``recurrent_activation`` and ``reset_after`` defaults changed
across versions), and the Keras version that wrote the file (``metadata.json`` of a ``.keras``,
the ``keras_version`` attribute of an ``.h5``, ``keras_version`` in a ``to_json()`` file) decides
what ``hard_sigmoid`` means: ``clip(0.2x + 0.5)`` up to Keras 2, ``clip(x/6 + 0.5)`` from Keras 3.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

from ..errors import FormatError, UnsupportedError
from ..read.keras_config import MODEL_CLASSES, model_spec
from ..read.keras_h5 import (
    KerasZip,
    LegacyWeights,
    V3Weights,
    is_zip_archive,
    keras_major_of,
    open_h5,
    read_attribute,
    read_attribute_list,
    read_json,
)
from ..read.sniff import check_regular_file
from .keras_around import WEIGHTED, canonical_class
from .keras_graph import KerasGraph, lower
from .keras_layers import build_op
from .keras_recurrent import RECURRENT, SUPPORTED, Context

_OPTIONS = {"config", "keras_version"}


@dataclass(frozen=True)
class KerasConverted:
    """A converted Keras model: its graph lowered to nodes (:class:`KerasGraph`), the model's
    graph as read from its config (:class:`~pylstm.read.keras_config.ModelSpec`) and its name."""

    graph: KerasGraph
    spec: object
    name: str


def guess_keras_major(config: dict) -> int:
    """2 or 3 for a config without version information, from what only one of them writes
    (Keras 3: ``batch_shape``, ``DTypePolicy``, ``__keras_tensor__``; Keras 2: ``batch_input_shape``,
    ``time_major``). Keras 3 when nothing tells."""
    major = keras_major_of(config.get("keras_version"))
    if major is not None:
        return major
    text = json.dumps(config)
    if any(k in text for k in ('"batch_shape"', '"DTypePolicy"', '"__keras_tensor__"')):
        return 3
    if any(k in text for k in ('"batch_input_shape"', '"time_major"')):
        return 2
    return 3


def drops_list_masks(version) -> bool:
    """Whether Keras ``version`` ("3.0.5"; None when unknown) is 3.0 to 3.3, which give the
    output of a layer called on a list of tensors no mask (see :mod:`.keras_graph`)."""
    parts = str(version).strip().split(".") if version is not None else []
    if len(parts) < 2 or not (parts[0].isdigit() and parts[1].isdigit()):
        return False
    return int(parts[0]) == 3 and int(parts[1]) < 4


def convert_model(
    config: dict, weights, *, keras_major: int, source: str, keras_version=None
) -> KerasConverted:
    """A :class:`KerasConverted` from a model config and a weights lookup.

    Parameters
    ----------
    config : dict
        ``{"class_name": ..., "config": ...}`` (``model.to_json()``).
    weights : callable
        ``weights(layer_spec) -> list of ndarray`` in ``layer.get_weights()`` order.
    keras_major : int
    source : str
        Named in error messages.
    keras_version : str or None
        The full version that wrote the model, where known ("3.0.5"): Keras 3.0-3.3 propagate
        masks differently (:func:`drops_list_masks`).
    """
    try:
        spec = model_spec(config, keras_major=keras_major, where=source)
    except FormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise FormatError(f"{source}: malformed model config ({exc!r})") from None
    ctx = Context(keras_major, source)
    pair = getattr(weights, "pair_by_order", None)  # legacy .h5: by name, else by order
    if pair is not None:
        pair([name for name, layer in spec.layers.items() if _holds_weights(layer)])
    ops = {}
    for name, layer in spec.layers.items():
        needs = not layer.is_operation and layer.class_name not in ("InputLayer", "Dropout")
        if layer.class_name in MODEL_CLASSES:
            raise UnsupportedError(
                f"{source}: nested model {name!r} ({layer.class_name}) is not supported; "
                "save or pass the inner model itself, or flatten it"
            )
        arrays = weights(layer) if needs else []
        try:
            ops[name] = build_op(layer, arrays, ctx)
        except (FormatError, UnsupportedError):
            raise
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise FormatError(
                f"{source}: layer {name!r} ({layer.class_name}) has a malformed config ({exc!r})"
            ) from None
    inner = config.get("config")
    model_name = inner.get("name") if isinstance(inner, dict) else None
    name = model_name or os.path.basename(source)
    graph = lower(spec, ops, name, drop_list_masks=drops_list_masks(keras_version))
    return KerasConverted(graph, spec, name)


def _holds_weights(layer) -> bool:
    """Whether a config layer of a class pylstm runs stores weights (an ``.h5`` lists it)."""
    cls = layer.class_name
    if cls in RECURRENT or cls in ("Bidirectional", "RNN", "Dense", "Embedding"):
        return True
    if canonical_class(cls) in WEIGHTED:
        cfg = layer.config or {}
        if canonical_class(cls) in ("Attention", "AdditiveAttention"):
            return bool(cfg.get("use_scale")) or cfg.get("score_mode") == "concat"
        if canonical_class(cls) == "LayerNormalization":
            return bool(cfg.get("center", True) or cfg.get("scale", True))
        return True
    if cls == "TimeDistributed":
        inner = (layer.config or {}).get("layer") or {}
        return isinstance(inner, dict) and inner.get("class_name") == "Dense"
    return False


def _config_option(config, path_name: str) -> dict:
    if isinstance(config, dict):
        return config
    if isinstance(config, (str, os.PathLike)) and not str(config).lstrip().startswith("{"):
        name = check_regular_file(config)
        with open(name, "rb") as fh:
            return read_json(fh.read(), name, "the config file")
    if isinstance(config, (str, bytes)):
        return read_json(config, path_name, "config=")
    raise TypeError(f"config must be a path to a model.to_json() file or a dict, got {config!r}")


def _version_option(value):
    if value is None:
        return None
    major = keras_major_of(str(value))
    if major not in (1, 2, 3):
        raise ValueError(f"keras_version must look like '2.15' or '3', got {value!r}")
    return major


def convert_file(path, **options) -> KerasConverted:
    """A Keras file converted (see :func:`pylstm.assemble.load_keras` for the files and
    options)."""
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise TypeError(
            f"load() got option(s) {', '.join(unknown)} that do not apply to Keras files; Keras "
            f"files take: {', '.join(sorted(_OPTIONS))}"
        )
    name = check_regular_file(path)
    source = os.path.basename(name)
    forced = _version_option(options.get("keras_version"))
    forced_text = str(options["keras_version"]) if forced else None
    given = options.get("config")
    if is_zip_archive(name):
        if given is not None:
            raise TypeError("config= is for weights-only files; a .keras file holds its config")
        with KerasZip(name) as archive:
            major = forced or keras_major_of(archive.keras_version)
            major = major or guess_keras_major(archive.config)
            return convert_model(
                archive.config,
                archive.weights,
                keras_major=major,
                source=source,
                keras_version=forced_text or archive.keras_version,
            )
    config = _config_option(given, source) if given is not None else None
    with open_h5(name, source) as f:
        try:
            if config is None and "model_config" not in f.attrs:
                raise FormatError(
                    f"{source} holds weights only; pass the architecture with "
                    "config='model.json' (the output of model.to_json())"
                )
            return _load_h5(f, config, forced, source, forced_text)
        except (FormatError, UnsupportedError):
            raise
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise FormatError(f"{source}: corrupt or unreadable HDF5 content ({exc})") from None


def _load_h5(f, config, forced, source, forced_text=None):
    """The HDF5 half of :func:`convert_file` (whole-model ``.h5`` or a weights file)."""
    attrs = f.attrs
    if config is None:
        text = read_attribute(f, "model_config", source)
        config = read_json(text, source, "the model_config attribute")
    if "model_weights" in f:
        group = f["model_weights"]
        holder = f if "keras_version" in attrs else group
        version = (
            read_attribute(holder, "keras_version", source)
            if ("keras_version" in holder.attrs)
            else None
        )
        weights = LegacyWeights(group, source)
    elif read_attribute_list(f, "layer_names"):
        version = read_attribute(f, "keras_version", source) if "keras_version" in attrs else None
        weights = LegacyWeights(f, source)
    elif "layers" in f or "vars" in f:
        version = None
        weights = V3Weights(f, source)
    else:
        raise FormatError(f"{source}: no Keras weights found (no model_weights or layers)")
    major = forced or keras_major_of(version) or guess_keras_major(config)
    text = forced_text or (str(version) if version is not None else config.get("keras_version"))
    return convert_model(config, weights, keras_major=major, source=source, keras_version=text)


def _live_version(obj):
    package = sys.modules.get(type(obj).__module__.split(".")[0])
    return getattr(package, "__version__", None)


def _live_major(obj) -> int:
    return keras_major_of(_live_version(obj)) or 3


def convert_live(obj) -> KerasConverted:
    """A live Keras object converted (see :func:`pylstm.assemble.from_keras`)."""
    cls = type(obj).__name__
    get_config = getattr(obj, "get_config", None)
    if get_config is None or not hasattr(obj, "get_weights"):
        raise UnsupportedError(
            f"from_keras takes a Keras model or recurrent layer, got {type(obj).__module__}.{cls}"
        )
    major = _live_major(obj)
    try:
        inner = get_config()
    except NotImplementedError:
        raise UnsupportedError(
            f"{cls}: a subclassed Keras model has no config; pylstm needs a Sequential or "
            "functional model"
        ) from None
    is_model = hasattr(obj, "get_layer") and isinstance(inner, dict) and "layers" in inner
    if is_model:
        kind = "Sequential" if "input_layers" not in inner else "Functional"
        config = {"class_name": kind, "config": inner}

        def weights(spec):
            return [w for w in obj.get_layer(spec.name).get_weights()]
    elif cls in RECURRENT or cls in ("Bidirectional", "RNN"):
        if not obj.get_weights():
            raise ValueError(f"{cls} {obj.name!r} has no weights yet: build it (call it once)")
        config = {"class_name": cls, "config": inner}

        def weights(spec):
            return list(obj.get_weights())
    else:
        raise UnsupportedError(
            f"from_keras takes a Sequential or functional model or a recurrent layer; got {cls} "
            f"(supported layers: {SUPPORTED})"
        )
    return convert_model(
        config,
        weights,
        keras_major=major,
        source=f"{cls} {getattr(obj, 'name', '')!r}",
        keras_version=_live_version(obj),
    )
