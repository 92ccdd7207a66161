"""Streaming an ONNX model: the graph runs on each chunk of time steps while every recurrent
node's final state becomes its initial state for the next chunk.

That equals one run on the whole sequence only when every recurrent node runs forward in time
and every other node treats time steps independently, which ``onnx_time_axes.Analysis`` checks
before a stream is made; it also finds the time axis of each input and output.
"""

from __future__ import annotations

from .time_axes import Analysis


class StreamContext:
    """The states carried between chunks, one pair per recurrent node."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.states = {}

    def initial_state(self, node, batch: int, h0, c0):
        if batch != self.batch_size:
            raise ValueError(
                f"{node.what}: this stream was made for batch_size {self.batch_size}, but the chunk "
                f"has {batch} sequences"
            )
        if node in self.states:
            return self.states[node]
        return h0, c0

    def final_state(self, node, h, c):
        self.states[node] = (h, c)


class OnnxStream:
    """Runs an ONNX model on successive chunks of time steps, with the recurrent states carried
    over: the time outputs of successive :meth:`step` calls, concatenated along their time
    axis, equal one :meth:`~pylstm.faces.onnx_face.OnnxModel.run` on the whole sequence.

    Created by ``model.stream(batch_size, output_names=None)``.

    Parameters
    ----------
    model : OnnxModel
    batch_size : int
    output_names : list of str, optional
        Outputs each step returns (default: all).

    Attributes
    ----------
    input_axes : dict of str to int or None
        The time axis of each graph input (None for inputs that do not vary with time, such as
        initial states: given with the first chunk, they are remembered until :meth:`reset`).
    output_axes : dict of str to int or None
        The time axis of each output; None for outputs that summarise the sequence (such as
        ``Y_h``): a step returns their value at the end of its chunk.

    Raises
    ------
    ValueError
        The model cannot be streamed; the message names the node and why.
    """

    def __init__(self, model, batch_size: int, output_names=None):
        self._model = model
        self.batch_size = batch_size
        self.output_names = model._check_output_names(output_names)
        ranks = {a.name: None if a.shape is None else len(a.shape) for a in model.get_inputs()}
        analysis = Analysis(model._graph, ranks, self.output_names)
        self.input_axes = analysis.input_axes
        self.output_axes = analysis.output_axes
        self._time_inputs = [n for n, a in self.input_axes.items() if a is not None]
        self.reset()

    def __reduce__(self):
        """Pickles as its model, options and carried states (see :mod:`pylstm.runtime.pickling`)."""
        from .pickling import reduce

        state = {
            "model": self._model,
            "batch_size": self.batch_size,
            "output_names": self.output_names,
            "states": self._context.states,
            "remembered": self._remembered,
        }
        return reduce(self, state)

    @classmethod
    def _from_state(cls, state: dict) -> OnnxStream:
        stream = cls(state["model"], state["batch_size"], state["output_names"])
        stream._context.states = state["states"]
        stream._remembered = state["remembered"]
        return stream

    def reset(self) -> None:
        """Forget the carried states and the remembered non-time inputs."""
        self._context = StreamContext(self.batch_size)
        self._remembered = {}

    def step(self, chunk) -> list:
        """Run the next chunk of time steps.

        Parameters
        ----------
        chunk : array or dict of str to array
            An array when the model has exactly one input that varies with time (and its other
            inputs were given before or are not needed); else a dict of feeds as for ``run``.
            Inputs that do not vary with time may be left out after the first chunk.

        Returns
        -------
        list of ndarray
            The outputs for these steps (time outputs cover the chunk's steps only).
        """
        if not isinstance(chunk, dict):
            if len(self._time_inputs) != 1:
                raise TypeError(
                    f"this model has the time inputs {self._time_inputs}: pass a dict of feeds"
                )
            chunk = {self._time_inputs[0]: chunk}
        missing = [n for n in self._time_inputs if n not in chunk]
        if missing:
            raise ValueError(f"chunk: the time input(s) {missing} are missing")
        feeds = dict(self._remembered)
        feeds.update(self._model.check_feeds(chunk, required=False))
        absent = [a.name for a in self._model.get_inputs() if a.name not in feeds]
        if absent:
            raise ValueError(
                f"chunk: input(s) {absent} are missing (give them with the first chunk)"
            )
        for name in feeds:
            if self.input_axes.get(name) is None:
                self._remembered[name] = feeds[name]
        values = self._model._graph.run(feeds, self.output_names, self._context)
        return [self._model._own(n, v) for n, v in zip(self.output_names, values)]

    # -- the stream protocol (pylstm/stream_state.py) -------------------------------------------
    def open_state(self, batch_size: int):
        """Zero :class:`~pylstm.runtime.stream_state.StreamState` of ``batch_size`` sequences: per
        recurrent node ``h`` ``[B, D, H]`` and, for LSTM, ``c`` ``[B, D, H]``."""
        from .stream_state import onnx_open_state
        from .validation import positive_int

        return onnx_open_state(self._model, positive_int(batch_size, "batch_size"))

    def step_state(self, chunk, state):
        """Run ``chunk`` (a dict of feeds, or an array for the one time input; every input of
        the graph must be given, batched for ``state.batch_size`` sequences) from ``state``;
        returns ``(outputs, new_state)``. This stream's own state is not used."""
        from .stream_state import onnx_state_from_states, onnx_states_from_state

        if not isinstance(chunk, dict):
            if len(self._time_inputs) != 1:
                raise TypeError(
                    f"this model has the time inputs {self._time_inputs}: pass a dict of feeds"
                )
            chunk = {self._time_inputs[0]: chunk}
        feeds = self._model.check_feeds(chunk)
        context = StreamContext(state.batch_size)
        context.states = onnx_states_from_state(self._model, state)
        values = self._model._graph.run(feeds, self.output_names, context)
        outs = [self._model._own(n, v) for n, v in zip(self.output_names, values)]
        return outs, onnx_state_from_states(self._model, context.states, state.names)

    def get_state(self):
        """A copy of this stream's carried state as a :class:`~pylstm.runtime.stream_state.StreamState`
        (zeros for nodes that have not run yet or started from a fed initial state)."""
        from .stream_state import onnx_state_from_states

        state = self.open_state(self.batch_size)
        states = dict(self._context.states)
        if len(states) != len(self._model.recurrent_nodes) or any(
            h is None for h, _ in states.values()
        ):
            return state
        return onnx_state_from_states(self._model, states, state.names).copy()
