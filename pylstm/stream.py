"""Streaming: feed a sequence in chunks of time steps, the state carried between chunks."""

from __future__ import annotations

import numpy as np

from .validation import as_float_array, positive_int


class Stream:
    """Stateful step-by-step runner over one model, for a fixed batch size.

    Create with ``model.stream(batch_size)``. Concatenating the outputs of successive
    :meth:`step` calls along the time axis equals one call on the whole sequence.

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
        self.reset()

    def reset(self) -> None:
        """Forget the carried state (back to zeros)."""
        self._h, self._c = self._model._zero_state(self.batch_size)

    @property
    def state(self):
        """The carried state: ``(h, c)`` for LSTM models, else ``h``; copies."""
        c = None if self._c is None else self._c.copy()
        return self._model._format_state(self._h.copy(), c, unbatched=False)

    def step(self, chunk) -> np.ndarray:
        """Run the next time steps.

        Parameters
        ----------
        chunk : array
            ``[t, B, I]`` (``[B, t, I]`` for a batch-first model) for t steps, or ``[B, I]``
            for exactly one step.

        Returns
        -------
        ndarray, float32
            The outputs for these steps, in the same layout as ``chunk``.
        """
        x = as_float_array(chunk, "chunk")
        one_step = x.ndim == 2
        if one_step:  # [B, I]: one step (not an unbatched sequence as in model(x))
            x = x[:, None, :] if self._model.batch_first else x[None]
        elif x.ndim != 3:
            raise ValueError(f"chunk must be [B, I] or a 3-D chunk of steps, got shape {x.shape}")
        xt, _ = self._model._time_major(x, "chunk")
        if xt.shape[1] != self.batch_size:
            raise ValueError(
                f"chunk: this stream was made for batch_size {self.batch_size}, got a chunk of "
                f"{xt.shape[1]} sequences (shape {x.shape})"
            )
        y, self._h, self._c = self._model._run(xt, self._h, self._c, None, batch_first=False)
        if one_step:
            return y[0]
        return y.transpose(1, 0, 2) if self._model.batch_first else y
