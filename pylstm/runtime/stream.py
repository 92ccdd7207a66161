"""Streaming: feed a sequence in chunks of time steps, the state carried between chunks."""

from __future__ import annotations

import numpy as np

from .engine import empty_output
from .validation import as_float_array, positive_int


class Stream:
    """Stateful step-by-step runner over one model, for a fixed batch size.

    Create with ``model.stream(batch_size)``. Concatenating the outputs of successive
    :meth:`step` calls along the time axis equals one call on the whole sequence. The state
    lives in the engine, so a one-step call costs a single call into C++.

    Parameters
    ----------
    model : a pylstm model
        Its layers must all run forward in time (no bidirectional or reverse layers: those
        need the end of the sequence before the first output).
    batch_size : int
    """

    def __init__(self, model, batch_size: int):
        self.batch_size = positive_int(batch_size, "batch_size")
        for i, layer in enumerate(model.engine.layers):
            if any(d.reverse for d in layer.directions):
                raise ValueError(
                    f"cannot stream: layer {i} runs backwards in time (bidirectional or reverse), "
                    "which needs the whole sequence; call the model on complete sequences instead"
                )
        self._model = model
        self._core = model.engine.stream_core(self.batch_size, model.batch_first)
        # The bound C++ methods themselves, so a call does not go through a Python frame.
        self.step = self._core.step
        self.reset = self._core.reset

    def __reduce__(self):
        """Pickles as its model, batch size and carried state (see :mod:`pylstm.runtime.pickling`)."""
        from .pickling import reduce

        state = {
            "model": self._model,
            "batch_size": self.batch_size,
            "h": self._core.h,
            "c": self._core.c,
        }
        return reduce(self, state)

    @classmethod
    def _from_state(cls, state: dict) -> Stream:
        stream = cls(state["model"], state["batch_size"])
        stream._core.set_state(state["h"], state["c"])
        return stream

    def step(self, chunk) -> np.ndarray:  # replaced per instance by the C++ method
        """Run the next time steps.

        Parameters
        ----------
        chunk : array of float16, bfloat16 (torch tensors, ml_dtypes), float32 or float64
            ``[t, B, I]`` (``[B, t, I]`` for a batch-first model) for t steps, or ``[B, I]``
            for exactly one step.

        Returns
        -------
        ndarray, float32
            The outputs for these steps, in the same layout as ``chunk``.

        Raises
        ------
        TypeError
            Non-float chunk.
        ValueError
            Wrong batch size or feature count.
        """
        return self._core.step(chunk)

    def reset(self) -> None:  # replaced per instance by the C++ method
        """Forget the carried state (back to zeros)."""
        self._core.reset()

    # -- the stream protocol (pylstm/stream_state.py) -------------------------------------------
    def open_state(self, batch_size: int):
        """Zero :class:`~pylstm.runtime.stream_state.StreamState` of ``batch_size`` sequences: ``h``
        ``[B, rows, Hout]`` (and ``c`` ``[B, rows, H]`` for LSTM), rows = layers x directions."""
        from .stream_state import engine_open_state

        return engine_open_state(self._model, positive_int(batch_size, "batch_size"))

    def step_state(self, chunk, state):
        """Run ``chunk`` (as :meth:`step` takes it, for ``state.batch_size`` sequences) from
        ``state``; returns ``(outputs, new_state)``. This stream's own state is not used."""
        from .stream_state import engine_step

        engine, model = self._model.engine, self._model
        x = as_float_array(chunk, "chunk")
        if x.ndim not in (2, 3) or x.shape[-1] != engine.input_size:
            raise ValueError(
                f"chunk: expected [B, {engine.input_size}] or a 3-D chunk of steps, got shape "
                f"{x.shape}"
            )
        one_step = x.ndim == 2
        xt = x[None] if one_step else (x.transpose(1, 0, 2) if model.batch_first else x)
        if xt.shape[1] != state.batch_size:
            raise ValueError(
                f"chunk: expected {state.batch_size} sequences (the state's), got shape {x.shape}"
            )
        y = empty_output((xt.shape[0], xt.shape[1], engine.output_size))
        new = engine_step(engine, xt, y, state)
        if one_step:
            return y[0], new
        return (y.transpose(1, 0, 2).copy() if model.batch_first else y), new

    def get_state(self):
        """A copy of this stream's carried state as a
        :class:`~pylstm.runtime.stream_state.StreamState` (``[B, rows, H]`` arrays)."""
        from .stream_state import StreamState, engine_state_names

        h_shape, c_shape = self._model._state_shapes(self.batch_size)
        arrays = [self._core.h.reshape(h_shape).transpose(1, 0, 2).copy()]
        if self._model.cell == "lstm":
            arrays.append(self._core.c.reshape(c_shape).transpose(1, 0, 2).copy())
        return StreamState(engine_state_names(self._model), arrays)

    @property
    def state(self):
        """The carried state: ``(h, c)`` for LSTM models, else ``h``; copies, shaped like the
        model's ``h_n`` / ``c_n``."""
        h_shape, c_shape = self._model._state_shapes(self.batch_size)
        h = self._core.h.reshape(h_shape)
        c = self._core.c.reshape(c_shape) if self._model.cell == "lstm" else None
        return self._model._format_state(h, c, unbatched=False)
