"""What the stream batcher needs from each kind of model: checking one stream's chunk, stacking
the chunks of k streams into one batch, running it from their k states, and splitting the
outputs back per stream.

A served model (one of the classes here) has:

``prepare(chunk) -> (payload, key, one_step)``
    Runs in the caller's thread: checks one stream's chunk (no batch axis) and raises the
    usual ``TypeError`` / ``ValueError``. Chunks whose ``key`` is equal can be stacked.
``run(payloads, one_step, state) -> (outputs, new_state)``
    Runs in the batcher: k payloads of one key, ``state`` a
    :class:`~pylstm.runtime.stream_state.StreamState` of k sequences; ``outputs`` has one entry per
    stream, shaped as ``model.stream(1).step`` returns it without the batch axis.
``open_state(batch_size)``, ``initial_state(value) -> StreamState of one sequence``.

Every kind runs its batches through the stream protocol of its model's ``stream(1)``
(:mod:`pylstm.runtime.stream_state`: ``open_state``, ``step_state``); what differs per kind is
only the shape of one stream's chunk and outputs.
"""

from __future__ import annotations

import numpy as np

from .engine import Engine
from .stream_state import StreamState
from .validation import as_float_array, as_state, to_numpy


def served_model(model):
    """The served form of ``model`` (TypeError for objects the batcher cannot serve).

    The kinds are told apart by what they offer (the runtime does not import the faces): an
    engine-only model (``from_torch``, ``from_arrays``, cells) has an :class:`Engine`
    ``engine``; an ONNX model ``get_inputs`` and ``check_feeds``; a Keras model
    ``takes_token_ids``.
    """
    if isinstance(getattr(model, "engine", None), Engine) and callable(
        getattr(model, "stream", None)
    ):
        return EngineModel(model)
    if callable(getattr(model, "get_inputs", None)) and callable(
        getattr(model, "check_feeds", None)
    ):
        return OnnxServed(model)
    if hasattr(model, "takes_token_ids") and callable(getattr(model, "stream", None)):
        return KerasServed(model)
    raise TypeError(
        f"StreamBatcher serves pylstm models (from_torch, from_arrays, from_keras, load); got "
        f"{type(model).__name__}"
    )


def _one_state(served, value) -> StreamState:
    """``value`` (a StreamState of one sequence) checked against the model's state."""
    if not isinstance(value, StreamState):
        raise TypeError(
            f"initial_state must be a pylstm StreamState of one sequence, got "
            f"{type(value).__name__}"
        )
    template = served.open_state(1)
    if value.batch_size != 1 or value.shapes != template.shapes:
        raise ValueError(
            f"initial_state: expected one sequence of shapes {list(template.shapes)} "
            f"({', '.join(template.names)}), got {value!r}"
        )
    return value


class _Served:
    """What every kind shares: the model's ``stream(1)``, whose stream protocol (open_state,
    step_state) runs the batches."""

    def __init__(self, model):
        self.model = model
        self.stream = model.stream(1)  # refuses models that cannot stream (reverse layers, ...)

    def open_state(self, batch_size: int) -> StreamState:
        return self.stream.open_state(batch_size)

    def initial_state(self, value) -> StreamState:
        return _one_state(self, value)


class EngineModel(_Served):
    """A PyTorch-style model (``from_torch``, ``from_arrays``, cells): the k streams' chunks
    stacked and run by :meth:`pylstm.Stream.step_state` (one engine forward, the states as
    ``h0``/``c0``).

    A stream's chunk: ``[T, I]`` floats, or ``[I]`` for one step; outputs ``[T, O]`` or
    ``[O]``.
    """

    def __init__(self, model):
        super().__init__(model)
        self.engine = model.engine
        self.batch_first = bool(model.batch_first)
        self.device = model.engine.device

    def initial_state(self, value) -> StreamState:
        """A StreamState, or the model's ``hx`` for one sequence: ``h`` (GRU/RNN) or
        ``(h, c)`` (LSTM), each ``[rows, H]`` or ``[rows, 1, H]``."""
        if isinstance(value, StreamState):
            return _one_state(self, value)
        template = self.open_state(1)  # h [1, rows, Hout] (and c [1, rows, H])
        cell = self.model.cell
        if len(template.names) == 2:
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise TypeError("initial_state for an LSTM must be a tuple (h, c)")
            parts = [value[0], value[1]]
        else:
            if isinstance(value, (tuple, list)):
                raise TypeError(
                    f"initial_state for a {cell.upper()} must be one array h, not a tuple"
                )
            parts = [value]
        arrays = []
        for a, name, (rows, size) in zip(parts, template.names, template.shapes):
            arr = as_float_array(a, name)
            if arr.shape == (rows, size):
                arr = arr[:, None]
            arrays.append(as_state(arr, name, (rows, 1, size)).transpose(1, 0, 2).copy())
        return StreamState(template.names, arrays)

    def prepare(self, chunk):
        x = as_float_array(chunk, "chunk")
        features = self.engine.input_size
        if x.ndim not in (1, 2) or x.shape[-1] != features:
            raise ValueError(
                f"chunk: expected [T, {features}] (steps, features) or [{features}] (one step), "
                f"no batch axis; got shape {x.shape}"
            )
        one_step = x.ndim == 1
        if one_step:
            x = x[None]
        return x, x.shape[0], one_step

    def run(self, payloads, one_step: bool, state: StreamState):
        k = len(payloads)
        if one_step:  # [k, I]
            y, new = self.stream.step_state(
                payloads[0] if k == 1 else np.concatenate(payloads), state
            )
            return list(y), new
        batch_first = self.batch_first
        if k == 1:
            x = payloads[0][None] if batch_first else payloads[0][:, None]
        else:
            x = np.stack(payloads, axis=0 if batch_first else 1)
        y, new = self.stream.step_state(x, state)
        # step_state's outputs are batch-major underneath: each stream's [T, O] is one block
        return list(y if batch_first else y.transpose(1, 0, 2)), new


def _probe_axes(step, shapes_at):
    """Where the batch and time axes of each output are, found by running ``step`` on zero
    chunks of (B, T) = (2, 5), (3, 5) and (2, 7). ``step(B, T)`` returns a list of arrays.
    Returns ``[(batch_axis, time_axis or None), ...]``."""
    base, more_b, more_t = step(2, 5), step(3, 5), step(2, 7)
    axes = []
    for i, (a, b, t) in enumerate(zip(base, more_b, more_t)):
        batch = [d for d in range(a.ndim) if a.shape[d] != b.shape[d]]
        time = [d for d in range(a.ndim) if a.shape[d] != t.shape[d]]
        if len(batch) != 1 or len(time) > 1 or (time and time == batch):
            raise ValueError(
                f"cannot serve this model: output {i} has shapes {shapes_at(a, b, t)} for "
                "(batch, steps) = (2, 5), (3, 5), (2, 7); the batcher needs exactly one batch "
                "axis and at most one time axis per output"
            )
        axes.append((batch[0], time[0] if time else None))
    return axes


def _split(leaves, axes, k: int, one_step: bool):
    """Per stream j: each output with its batch axis indexed at j (and its time axis at 0 for
    one-step chunks); views where the batch is the first axis, else C-contiguous copies."""
    per_stream = [[] for _ in range(k)]
    for leaf, (b, t) in zip(leaves, axes):
        for j in range(k):
            index = [slice(None)] * leaf.ndim
            index[b] = j
            if one_step and t is not None:
                index[t] = 0
            part = leaf[tuple(index)]
            per_stream[j].append(part if b == 0 else np.ascontiguousarray(part))
    return per_stream


class KerasServed(_Served):
    """A Keras model: the k chunks stacked to ``[k, T, F]`` (``[k, T]`` token ids) and run by
    :meth:`KerasStream.step_state`.

    A stream's chunk: ``[T, F]`` floats or ``[F]`` for one step (``[T]`` / a scalar token id
    for models that start with an Embedding). Outputs: what the model returns for one sequence
    without the batch axis (and without the time axis for one-step chunks).
    """

    def __init__(self, model):
        super().__init__(model)
        self.device = getattr(model, "device", "cpu")
        self._structure = None

        def step(B, T):
            if model.takes_token_ids:
                x = np.ones((B, T), np.int64)
            else:
                features = model._features or self._guess_features()
                x = np.zeros((B, T, features), np.float32)
            out, _ = self.stream.step_state(x, self.stream.open_state(B))
            return self._leaves(out)

        self.axes = _probe_axes(step, lambda *arrays: [list(a.shape) for a in arrays])

    def _guess_features(self) -> int:
        first = self.model._recurrent[0] if self.model._recurrent else None
        if first is None:
            raise ValueError("cannot serve a Keras model without recurrent layers")
        op = self.model.ops[first.layer]
        return op.input_size

    def _leaves(self, out):
        if isinstance(out, dict):
            self._structure = ("dict", list(out))
            return list(out.values())
        if isinstance(out, list):
            self._structure = ("list", len(out))
            return out
        self._structure = ("array", 1)
        return [out]

    def _pack(self, leaves):
        kind, keys = self._structure
        if kind == "dict":
            return dict(zip(keys, leaves))
        return leaves if kind == "list" else leaves[0]

    def prepare(self, chunk):
        model = self.model
        if model.takes_token_ids:
            try:
                x = to_numpy(chunk)
            except Exception as exc:
                raise TypeError(f"chunk must be an array of integer token ids: {exc}") from None
            if x.ndim not in (0, 1):
                raise ValueError(
                    f"chunk: expected [T] token ids or one id (no batch axis), got shape {x.shape}"
                )
            one_step = x.ndim == 0
        else:
            x = as_float_array(chunk, "chunk")
            if x.ndim not in (1, 2):
                raise ValueError(
                    f"chunk: expected [T, F] (steps, features) or [F] (one step), no batch axis; "
                    f"got shape {x.shape}"
                )
            one_step = x.ndim == 1
        if one_step:
            x = x[None]
        x = model._input(x[None])[0]  # the model's own checks (dtype, features)
        if x.shape[0] == 0:
            raise ValueError(f"chunk: the sequence length must be at least 1, got shape {x.shape}")
        return x, x.shape, one_step

    def run(self, payloads, one_step: bool, state: StreamState):
        x = np.stack(payloads)
        out, new = self.stream.step_state(x, state)
        per_stream = _split(self._leaves(out), self.axes, len(payloads), one_step)
        return [self._pack(leaves) for leaves in per_stream], new


class OnnxServed(_Served):
    """An ONNX model: each time input's chunks concatenated along its batch axis (the one of
    the first two axes that is not time) and run by :meth:`OnnxStream.step_state`.

    A stream's chunk: an array for the model's one time input, or a dict of them, each without
    the batch axis and with time first (``[T, ...]``), or without time too for one step.
    Outputs: the list ``run`` returns, each without the batch axis (and without the time axis
    for one-step chunks). Graph inputs that do not vary with time (e.g. ``initial_h``) are not
    taken: give the state with ``open(initial_state=...)``.
    """

    def __init__(self, model):
        super().__init__(model)
        self.device = model.device
        inputs = {a.name: a for a in model.get_inputs()}
        self.inputs = {}
        for name, arg in inputs.items():
            t = self.stream.input_axes.get(name)
            if t is None:
                raise ValueError(
                    f"cannot serve this model: its input {name!r} does not vary with time; the "
                    "batcher takes time inputs only (give states with open(initial_state=...))"
                )
            if t not in (0, 1) or arg.shape is None or len(arg.shape) < 2:
                raise ValueError(
                    f"cannot serve this model: input {name!r} (shape {arg.shape}) has its time "
                    f"axis at {t}; the batcher needs time and batch as the first two axes"
                )
            self.inputs[name] = (1 - t, arg)
        self.time_inputs = list(self.inputs)

        def step(B, T):
            feeds = {}
            for name, (b, arg) in self.inputs.items():
                shape = []
                for axis, dim in enumerate(arg.shape):
                    if axis == b:
                        shape.append(B)
                    elif axis == 1 - b:
                        shape.append(T)
                    elif isinstance(dim, int):
                        shape.append(dim)
                    else:
                        raise ValueError(
                            f"cannot serve this model: input {name!r} has the symbolic size "
                            f"{dim!r} on axis {axis}; the batcher needs fixed feature sizes"
                        )
                feeds[name] = np.zeros(shape, arg.dtype or np.float32)
            out, _ = self.stream.step_state(feeds, self.stream.open_state(B))
            return out

        self.axes = _probe_axes(step, lambda *arrays: [list(a.shape) for a in arrays])

    def prepare(self, chunk):
        if not isinstance(chunk, dict):
            if len(self.time_inputs) != 1:
                raise TypeError(
                    f"this model has the time inputs {self.time_inputs}: pass a dict of feeds"
                )
            chunk = {self.time_inputs[0]: chunk}
        unknown = [n for n in chunk if n not in self.inputs]
        missing = [n for n in self.inputs if n not in chunk]
        if unknown or missing:
            raise ValueError(
                f"chunk: expected the time inputs {self.time_inputs}; unknown {unknown}, "
                f"missing {missing}"
            )
        one_step = None
        batched = {}
        for name, value in chunk.items():
            b, arg = self.inputs[name]
            try:
                arr = to_numpy(value)
            except Exception as exc:
                raise TypeError(f"input {name!r} must be an array: {exc}") from None
            rank = len(arg.shape)
            if arr.ndim not in (rank - 1, rank - 2):
                raise ValueError(
                    f"input {name!r}: expected [T, ...] of rank {rank - 1} (one stream, no batch "
                    f"axis) or rank {rank - 2} for one step, got shape {list(arr.shape)}"
                )
            this_one = arr.ndim == rank - 2
            if one_step is not None and this_one != one_step:
                raise ValueError("chunk: every input must hold one step, or every input T steps")
            one_step = this_one
            if one_step:
                arr = arr[None]
            batched[name] = np.expand_dims(arr, b)  # time first in the chunk; batch inserted
        feeds = self.model.check_feeds(batched, required=False)
        key = tuple((name, a.shape, a.dtype.str) for name, a in feeds.items())
        return feeds, key, one_step

    def run(self, payloads, one_step: bool, state: StreamState):
        feeds = {
            name: np.concatenate([p[name] for p in payloads], axis=self.inputs[name][0])
            for name in self.time_inputs
        }
        out, new = self.stream.step_state(feeds, state)
        return _split(out, self.axes, len(payloads), one_step), new
