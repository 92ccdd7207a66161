"""Pickling: every model and stream travels as its canonical form and rebuilds its engine where
it is unpickled.

Each picklable class has ``__reduce__`` returning :func:`reduce` ``(obj, state)`` and a
``_from_state(state)`` class method. ``state`` is plain data: numpy arrays, dicts, lists,
strings, numbers, and pylstm's own data classes (a Keras layer's spec, an ONNX node); never a
function or a lambda. An :class:`pylstm.runtime.engine.Engine` travels as its canonical layers
rebuilt from its packed weights (``Engine.unpack``: float32, canonical gate order, see
:mod:`pylstm.convert.canonical`), its device and its weight precision; the receiving process packs
them again, which gives the same packed weights and so bit-identical outputs (bf16 and int8
weights widen to float32 exactly and pack back to the same values). A pickle is therefore about
the size of the float32 weights, whatever the precision, and lets the receiver pack them for its
own CPU or device.

Unpickling runs code chosen by whoever wrote the pickle, as for any Python object: unpickle
only what you would import.
"""

from __future__ import annotations

import importlib

#: Version of the layout of ``state``; a pickle of another version is refused with a message.
PICKLE_FORMAT = 1

# What :func:`restore` may rebuild: a key of a pickle -> (module, class).
_CLASSES = {
    "Engine": ("pylstm.runtime.engine", "Engine"),
    "TorchModel": ("pylstm.faces.torch_face", "TorchModel"),
    "CellModel": ("pylstm.faces.cell_face", "CellModel"),
    "KerasModel": ("pylstm.faces.keras_face", "KerasModel"),
    "KerasStream": ("pylstm.faces.keras_face", "KerasStream"),
    "OnnxModel": ("pylstm.faces.onnx_face", "OnnxModel"),
    "OnnxStream": ("pylstm.runtime.graph_stream", "OnnxStream"),
    "Stream": ("pylstm.runtime.stream", "Stream"),
}


def reduce(obj, state: dict) -> tuple:
    """``obj.__reduce__()``: unpickling calls ``type(obj)._from_state(state)``.

    Parameters
    ----------
    obj : a pylstm model, stream or engine
    state : dict
        Plain data (see the module docstring) that ``_from_state`` rebuilds ``obj`` from.
    """
    kind = type(obj).__name__
    if kind not in _CLASSES:
        raise TypeError(f"pylstm does not know how to pickle {kind} objects")
    return restore, (kind, PICKLE_FORMAT, state)


def restore(kind: str, version: int, state: dict):
    """Rebuild an object pickled by :func:`reduce` (called by ``pickle.loads``)."""
    if version != PICKLE_FORMAT:
        raise ValueError(
            f"this {kind} was pickled by a pylstm whose pickle format is {version}; this pylstm "
            f"reads format {PICKLE_FORMAT} (use the same pylstm version on both sides)"
        )
    if kind not in _CLASSES:
        raise ValueError(f"not a pylstm pickle: unknown kind {kind!r}")
    module, name = _CLASSES[kind]
    cls = getattr(importlib.import_module(module), name)
    return cls._from_state(state)


def receiving_device(device: str) -> str:
    """Where an engine pickled on ``device`` is rebuilt in this process: the CPU for the CPU; for
    ``cuda:N``, the same device where this process has it, else ``cuda:0`` (a worker given one
    GPU sees it as device 0).

    Raises
    ------
    DeviceError
        A CUDA engine unpickled where no CUDA device can be used (the message says why).
    """
    from ..errors import DeviceError
    from .system import check_device, cuda_status

    if device == "cpu":
        return "cpu"
    names, reason = cuda_status()
    if not names:
        raise DeviceError(
            f"this model was pickled on {device} and needs a CUDA device to be unpickled, but "
            f"this process has none ({reason}); load the weights with device='cpu' instead"
        )
    index = int(device.split(":")[1]) if ":" in device else 0
    return check_device(device if index < len(names) else "cuda:0")
