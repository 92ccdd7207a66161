"""The Python side of the C API (``pylstm/include/pylstm_capi.h``, ``pylstm/capi.pxd``).

The C functions live in ``cpp/bindings/register_capi.cpp``; when an extension opens a handle on a
Python object they ask this module which engine object serves it, so that what the C API accepts
is decided here, in one place:

* models whose whole computation is the C++ engine on the CPU -- :class:`pylstm.TorchModel`
  (``from_torch``, ``from_arrays``, ``load`` of PyTorch files) and bare
  :class:`pylstm.runtime.engine.Engine` -- run without the GIL;
* their streams (``model.stream(B)``) too;
* :class:`pylstm.BatchedStream` (``StreamBatcher(model).open()``) of such a model runs through
  :class:`BatchedStreamAdapter`: each call takes the GIL inside and waits for its batch;
* Keras and ONNX models (numpy layers around the engine), and CUDA models, are refused with
  ``NotImplementedError`` (``PYLSTM_ERR_UNSUPPORTED`` in C): call them from Python.
"""

from __future__ import annotations

import os

from .runtime.engine import Engine


def get_include() -> str:
    """The folder holding ``pylstm_capi.h``, for a C compiler's include path (the Cython
    declarations, ``pylstm/capi.pxd``, include it too).

    Returns
    -------
    str
        An absolute path.
    """
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


def _cpu_engine(engine: Engine, what: str) -> Engine:
    if engine.is_cuda:
        raise NotImplementedError(
            f"the pylstm C API runs CPU models; this {what} is on {engine.device} (build it "
            "with device='cpu')"
        )
    return engine


def model_network(model):
    """The ``_core.Network`` that runs ``model`` entirely (C API ``model_open``).

    Raises
    ------
    NotImplementedError
        A model with layers outside the engine (Keras, ONNX) or on a GPU.
    TypeError
        Not a pylstm model.
    """
    from .faces.keras_face import KerasModel
    from .faces.onnx_face import OnnxModel
    from .faces.torch_face import TorchModel

    if isinstance(model, Engine):
        return _cpu_engine(model, "engine")._net
    if isinstance(model, TorchModel):
        return _cpu_engine(model.engine, "model")._net
    if isinstance(model, (KerasModel, OnnxModel)):
        raise NotImplementedError(
            f"the pylstm C API runs models whose whole computation is the C++ engine "
            f"(from_torch, from_arrays, PyTorch files); a {type(model).__name__} runs numpy "
            "layers around it, which need the GIL: call it from Python"
        )
    raise TypeError(
        f"expected a pylstm model (from_torch, from_arrays, load), got {type(model).__name__}"
    )


def stream_core(stream):
    """``(core, network)`` for a stream the C API steps without the GIL: its ``_core.Stream``
    and ``_core.Network`` (C API ``stream_open``).

    Raises
    ------
    NotImplementedError
        A stream of a Keras, ONNX or GPU model.
    TypeError
        Not a pylstm stream.
    """
    from .faces.keras_face import KerasStream
    from .faces.torch_face import TorchModel
    from .runtime.batcher import BatchedStream
    from .runtime.stream import Stream

    if isinstance(stream, Stream):
        engine = _cpu_engine(stream._model.engine, "stream's model")
        return stream._core, engine._net
    if isinstance(stream, BatchedStream):
        model = stream._batcher.model
        if not isinstance(model, TorchModel):
            raise NotImplementedError(
                f"the pylstm C API steps StreamBatcher streams of PyTorch-style models "
                f"(from_torch, from_arrays, PyTorch files); this batcher serves a "
                f"{type(model).__name__}: step it from Python"
            )
        return BatchedStreamAdapter(stream, model), None
    if isinstance(stream, KerasStream) or type(stream).__name__ == "OnnxStream":
        raise NotImplementedError(
            f"the pylstm C API steps streams of models whose whole computation is the C++ "
            f"engine; a {type(stream).__name__} runs numpy layers around it: step it from Python"
        )
    raise TypeError(
        "expected a pylstm stream (model.stream(B) or StreamBatcher.open()), got "
        f"{type(stream).__name__}"
    )


class BatchedStreamAdapter:
    """A :class:`pylstm.BatchedStream` as the C API calls a stream that lives in Python (with
    the GIL, from ``register_capi.cpp``): one sequence (B = 1), time-major ``[T, 1, F]`` arrays,
    the state flat as the C API lays it out (``[rows, 1, Hout]`` and ``[rows, 1, H]``)."""

    batch_size = 1

    def __init__(self, stream, model):
        self.stream = stream
        self.input_size = model.engine.input_size
        self.output_size = model.engine.output_size
        h_shape, c_shape = model._state_shapes(1)
        self.h_size = h_shape[0] * h_shape[2]
        self.c_size = c_shape[0] * c_shape[2] if model.cell == "lstm" else 0

    def step(self, x):
        """x: float32 ``[T, 1, I]``; returns ``[T, 1, O]``."""
        return self.stream.step(x[:, 0])[:, None]

    def get_state(self):
        """``(h, c)``: flat float32 copies (``c`` None without LSTM layers)."""
        arrays = self.stream.state.arrays  # [1, rows, Hout] and [1, rows, H]
        return arrays[0].ravel(), (arrays[1].ravel() if self.c_size else None)

    def set_state(self, h, c):
        raise NotImplementedError(
            "a StreamBatcher stream's state is set when it is opened: "
            "batcher.open(initial_state=...)"
        )

    def reset(self):
        self.stream.reset()
