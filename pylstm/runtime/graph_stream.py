"""Streaming a graph (an ONNX model or a Keras model): the graph runs on each chunk of time steps
while every recurrent node's final state becomes its initial state for the next chunk, kept in a
:class:`~pylstm.runtime.graph_recurrent.RunContext`.

:class:`GraphStream` is the one stream over the one graph executor: the stream protocol of
:mod:`pylstm.runtime.stream_state` (open a state for B sequences, step a chunk from a state,
read / replace / reset the stream's own state per sequence), with each recurrent runner
describing its carried state as arrays. :class:`OnnxStream` and :class:`pylstm.faces.keras_face.KerasStream` shape the
arguments and results of their format.

A stream equals one run on the whole sequence only when every recurrent node runs forward in
time and every other node treats time steps independently: for ONNX graphs
``time_axes.Analysis`` checks that before a stream is made (and finds the time axis of each
input and output); Keras streams check their layers' ``mixes_time``.
"""

from __future__ import annotations

from ..errors import UnsupportedError
from .graph import recurrent_runners
from .graph_recurrent import RunContext
from .stream_state import StreamState, checked_state, rows_of
from .time_axes import Analysis


class GraphStream:
    """The stream protocol over a graph's recurrent runners (``self._graph``).

    A subclass keeps its carried states in the dict :meth:`_carried` returns (runner -> its
    carried state, each runner's own form) and forgets everything in :meth:`_forget`.
    """

    _graph = None
    batch_size = 0

    def _carried(self) -> dict:
        raise NotImplementedError

    def _forget(self) -> None:
        raise NotImplementedError

    def _layout(self) -> list:
        return [entry for r in recurrent_runners(self._graph) for entry in r.state_layout()]

    def open_state(self, batch_size: int) -> StreamState:
        """Zero :class:`~pylstm.runtime.stream_state.StreamState` of ``batch_size`` sequences:
        the arrays of every recurrent node, in graph order (see their ``state_layout``)."""
        from .validation import positive_int

        layout = self._layout()
        return StreamState.zeros(
            [n for n, _ in layout], [s for _, s in layout], positive_int(batch_size, "batch_size")
        )

    def _context_of(self, state: StreamState, batch_size=None) -> RunContext:
        """A context carrying ``state`` into the recurrent runners."""
        return RunContext(self._states_of(state), stream=True, batch_size=batch_size)

    def _states_of(self, state: StreamState) -> dict:
        """Runner -> its carried state, read from ``state``."""
        arrays = iter(state.arrays)
        return {r: r.carried_from(arrays) for r in recurrent_runners(self._graph)}

    def _state_of(self, states: dict, names):
        """The ``StreamState`` of carried ``states``; None when a node has carried nothing."""
        arrays = []
        for r in recurrent_runners(self._graph):
            part = r.arrays_of(states[r]) if r in states else None
            if part is None:
                return None
            arrays += part
        return StreamState(names, arrays)

    def get_state(self, rows=None) -> StreamState:
        """A copy of this stream's carried state as a
        :class:`~pylstm.runtime.stream_state.StreamState` (zeros until every recurrent node
        has carried a state); of the sequences ``rows`` only when given (an int, a sequence of
        ints or a slice; the state keeps its batch axis)."""
        state = self.open_state(self.batch_size)
        carried = self._state_of(dict(self._carried()), state.names)
        if carried is not None:
            state = carried.copy()
        return state if rows is None else state.take(rows_of(rows, self.batch_size))

    def set_state(self, state: StreamState, rows=None) -> None:
        """Replace the carried state with ``state``: of every sequence (``state`` holds
        :attr:`batch_size` sequences), or of the sequences ``rows`` (``state`` holds one per
        row, or one for all). Every recurrent node then carries a state (which wins over
        initial states fed to the graph).

        Raises
        ------
        TypeError
            ``state`` is not a StreamState.
        ValueError
            Its shapes or its number of sequences are not this stream's.
        """
        layout = self._layout()
        index = checked_state(
            state, [n for n, _ in layout], [s for _, s in layout], self.batch_size, rows
        )
        if index is None:
            full = state.copy()
        else:
            full = self.get_state()
            full.put(index, state)
        self._carried().update(self._states_of(full))

    def reset(self, rows=None) -> None:
        """Forget the carried state (back to zeros): of every sequence (and what else the
        stream remembers between chunks), or of the sequences ``rows`` (an int, a sequence of
        ints or a slice)."""
        if rows is None:
            self._forget()
            return
        full = self.get_state()
        full.reset(rows_of(rows, self.batch_size))
        self._carried().update(self._states_of(full))


def check_keras_streamable(graph) -> None:
    """Refuse (with the layer's name) a Keras graph whose chunks would not add up to one call:
    a layer that reads other time steps than the current one (``mixes_time``:
    :class:`~pylstm.errors.UnsupportedError`), or a recurrent layer that runs backwards in time
    (ValueError)."""
    for node in graph.nodes:
        op = getattr(node.run, "op", None)
        if getattr(op, "mixes_time", False):
            raise UnsupportedError(
                f"cannot stream: layer {node.name!r} ({op.cls}) reads other time steps than "
                "the current one, so chunks would not add up to one call; call the model "
                "instead"
            )
    for runner in recurrent_runners(graph):
        if runner.reverse:
            raise ValueError(
                f"cannot stream: layer {runner.layer!r} runs backwards in time (Bidirectional "
                "or go_backwards), which needs the whole sequence; call the model instead"
            )


class OnnxStream(GraphStream):
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
        self._graph = model._graph
        self._forget()

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

    def _carried(self) -> dict:
        return self._context.states

    def _forget(self) -> None:
        """Forget the carried states and the remembered non-time inputs."""
        self._context = RunContext(batch_size=self.batch_size)
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

    # -- the stream protocol (pylstm/runtime/stream_state.py) -----------------------------------
    def step_state(self, chunk, state):
        """Run ``chunk`` (a dict of feeds, or an array for the one time input; every input of
        the graph must be given, batched for ``state.batch_size`` sequences) from ``state``;
        returns ``(outputs, new_state)``. This stream's own state is not used."""
        if not isinstance(chunk, dict):
            if len(self._time_inputs) != 1:
                raise TypeError(
                    f"this model has the time inputs {self._time_inputs}: pass a dict of feeds"
                )
            chunk = {self._time_inputs[0]: chunk}
        feeds = self._model.check_feeds(chunk)
        context = self._context_of(state, state.batch_size)
        values = self._graph.run(feeds, self.output_names, context)
        outs = [self._model._own(n, v) for n, v in zip(self.output_names, values)]
        return outs, self._state_of(context.states, state.names)
