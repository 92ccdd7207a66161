"""Run a model that a harness managed to load, once, on a small input of the right shape.

What a loaded hostile file may do at run time is bounded too (ONNX operators' outputs, see
``pylstm/runtime/ops/limits.py``); a run may raise ``ValueError`` (shapes the file declares
inconsistently) or ``TypeError`` (a dtype the model declares for an input that its operators do
not take: the documented error for a wrong dtype), never anything else.
"""

from __future__ import annotations

import numpy as np

RUN_ERRORS = (ValueError, TypeError, NotImplementedError)


def _feed_for(arg, rng):
    shape = []
    for d in arg.shape or []:
        shape.append(d if isinstance(d, int) and 0 <= d <= 8 else 2)
    dtype = arg.dtype if arg.dtype is not None else np.float32
    if np.dtype(dtype).kind in "iub":
        return rng.integers(0, 3, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def exercise(model, seed: int = 0) -> None:
    """One small call of ``model`` (any pylstm model kind); allowed errors are swallowed."""
    rng = np.random.default_rng(seed)
    try:
        if hasattr(model, "get_inputs"):  # ONNX
            feeds = {a.name: _feed_for(a, rng) for a in model.get_inputs()}
            model.run(None, feeds)
        elif hasattr(model, "input_size") and hasattr(model, "hidden_size"):  # torch
            size = int(model.input_size)
            if size <= 4096:
                model(rng.standard_normal((3, 2, size)).astype(np.float32))
        elif hasattr(model, "reset_states"):  # Keras: input shape from the spec when known
            shape = getattr(model, "input_shape", None)
            if isinstance(shape, tuple) and all(isinstance(d, int) or d is None for d in shape):
                dims = [2 if d is None else min(int(d), 8) for d in shape]
                dims[0] = 2
                model(rng.standard_normal(dims).astype(np.float32))
    except RUN_ERRORS:
        pass
