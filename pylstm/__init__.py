"""pylstm: fast, framework-exact inference for LSTM, GRU and RNN models.

Build a model with :func:`from_torch`, :func:`load` or :func:`from_arrays`, then call it like
the object it came from. See README.md for the quick starts and the supported features.
"""

from .errors import DeviceError, FormatError, UnsupportedError
from .formats.arrays import from_arrays
from .formats.keras import from_keras
from .formats.torch import from_torch
from .loading import load
from .network import Activation, Direction, Layer, reorder_gates
from .runtime import __version__, get_num_threads, info, set_num_threads
from .stream import Stream

__all__ = [
    "Activation",
    "DeviceError",
    "Direction",
    "FormatError",
    "Layer",
    "Stream",
    "UnsupportedError",
    "__version__",
    "from_arrays",
    "from_keras",
    "from_torch",
    "get_num_threads",
    "info",
    "load",
    "reorder_gates",
    "set_num_threads",
]
