"""pylstm: fast, framework-exact inference for LSTM, GRU and RNN models.

Build a model with :func:`from_torch`, :func:`from_keras`, :func:`load` (PyTorch, Keras and
ONNX files), :func:`from_onnx` or :func:`from_arrays`, then call it like the object it came from. See README.md for the quick starts and the supported features.
"""


def _engine_missing(exc: ImportError) -> ImportError:
    """The error for an ``import pylstm`` that finds no compiled engine next to this file."""
    import glob
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    if glob.glob(os.path.join(here, "_core*")):  # built, but it does not load here
        return ImportError(f"pylstm's compiled engine in {here} does not load: {exc}")
    return ImportError(
        f"pylstm's compiled engine (pylstm/_core) is missing from {here}. This looks like "
        "pylstm's source folder, which has no engine until it is built; when Python starts in "
        f"{os.path.dirname(here)} it shadows an installed pylstm. Run Python from another "
        "folder (the tests: `pytest` from the repository root works too), or build in place "
        "with `pip install -e .`."
    )


try:
    from . import _core  # noqa: F401  (the compiled engine
except ImportError as _exc:
    raise _engine_missing(_exc) from None

from ._capi import get_include
from .assemble import from_arrays, from_keras, from_torch
from .assemble import from_onnx_model as from_onnx
from .convert.builder import Direction, Layer
from .convert.canonical import Activation, reorder_gates
from .errors import BatcherClosed, DeviceError, FormatError, UnsupportedError
from .faces.cell_face import CellModel
from .faces.keras_face import KerasModel, KerasStream
from .faces.onnx_face import OnnxModel
from .faces.torch_face import TorchModel
from .loading import load
from .runtime.batcher import BatchedStream, StreamBatcher
from .runtime.stream import Stream
from .runtime.stream_state import StreamState
from .runtime.system import __version__, get_num_threads, info, set_num_threads

__all__ = [
    "Activation",
    "BatchedStream",
    "BatcherClosed",
    "CellModel",
    "DeviceError",
    "Direction",
    "FormatError",
    "KerasModel",
    "KerasStream",
    "Layer",
    "OnnxModel",
    "Stream",
    "StreamBatcher",
    "StreamState",
    "TorchModel",
    "UnsupportedError",
    "__version__",
    "from_arrays",
    "from_keras",
    "from_onnx",
    "from_torch",
    "get_include",
    "get_num_threads",
    "info",
    "load",
    "reorder_gates",
    "set_num_threads",
]
