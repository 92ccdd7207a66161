"""The Keras face: ``model(x)`` returning what the Keras model or layer returns (numpy float32;
a list where Keras returns a list), with Keras' masks, ``go_backwards``, ``Bidirectional``
merge modes, ``return_state`` and ``stateful`` layers.

The face only shapes arguments (one array, a list or a dict of inputs, a mask) and results (an
array, a list or a dict; the state of ``stateful`` layers); the model runs as a graph in the one
graph executor (:mod:`pylstm.runtime.graph`), lowered by :mod:`pylstm.convert.keras_graph`, its
recurrent layers as :class:`pylstm.runtime.graph_recurrent.KerasRecurrent`.

How a Keras recurrent layer maps onto the engine (checked against Keras 3 and tf.keras 2):

* a masked step carries the state; its output repeats the previous output of that direction
  (zero before the first valid step), or is zero with ``zero_output_for_mask`` (which
  ``Bidirectional`` sets when it returns sequences): the engine's ``masked_output``;
* ``go_backwards`` is a reverse direction, and Keras returns its sequence in processing order,
  i.e. reversed in time; its last output is the one at time 0. ``Bidirectional`` flips the
  backward sequence back, so a standard one is the engine's two-direction output as it is;
* ``return_sequences=False`` returns the output of the last processed step (held through masks);
  ``return_state`` appends ``h`` (and ``c`` for LSTM) per direction, forward first;
  ``initial_state`` (tensors of the graph: other inputs, another layer's states) is taken in the
  same order, ``[h, c]`` per direction, forward first. Keras 3 passes no propagated mask (e.g.
  from ``Embedding(mask_zero=True)``) to a layer called with ``initial_state``, only a ``mask=``
  given explicitly; tf.keras 2 passes it. pylstm does what the config's Keras did.
"""

from __future__ import annotations

import numpy as np

from ..runtime.graph import op_types, recurrent_runners, runners_by_name
from ..runtime.graph_recurrent import RunContext
from ..runtime.graph_stream import GraphStream, check_keras_streamable
from ..runtime.masks import batch_mask
from ..runtime.validation import as_float_array, positive_int, to_numpy


class KerasModel:
    """A Keras model or layer with Keras' calling convention, run by pylstm.

    Built by :func:`pylstm.from_keras` and :func:`pylstm.load` (``.keras``, ``.h5``,
    ``.weights.h5``).

    Attributes
    ----------
    name : str
    takes_token_ids : bool
        The model starts with an ``Embedding``: inputs are integer ids ``[B, T]``.
    stateful : bool
        Some recurrent layer is ``stateful``: its state is kept between calls.
    """

    def __init__(self, graph, keras, spec, *, name: str = "model"):
        self._graph, self._keras, self.spec, self.name = graph, keras, spec, name
        self._inputs = list(keras.input_names)
        self._token_inputs = list(keras.token_inputs)
        self.takes_token_ids = self._token_inputs[0]
        self._recurrent = recurrent_runners(graph)
        self.stateful = keras.stateful
        self._state: dict = {}
        shape = keras.input_shapes[0]
        features = shape[-1] if shape else None
        self._features = features if isinstance(features, int) and features > 0 else None

    @property
    def ops(self) -> dict:
        """Layer name -> the runner of (its last call in) the graph (recurrent layers: with
        their ``engines``)."""
        return runners_by_name(self._graph)

    def __reduce__(self):
        """Pickles as its graph of layers (their weights, recurrent ones as canonical engines)
        and the state of stateful layers (see :mod:`pylstm.runtime.pickling`)."""
        from ..runtime.pickling import reduce

        state = {
            "graph": self._graph,
            "keras": self._keras,
            "spec": self.spec,
            "name": self.name,
            "state": self._state,
        }
        return reduce(self, state)

    @classmethod
    def _from_state(cls, state: dict) -> KerasModel:
        model = cls(state["graph"], state["keras"], state["spec"], name=state["name"])
        model._state = state["state"]
        return model

    def __repr__(self):
        layers = ", ".join(op_types(self._graph))
        return f"pylstm.KerasModel({self.name!r}: {layers})"

    # -- inputs -----------------------------------------------------------------------------
    def _input(self, x):
        """The (first) input, checked: ``[B, T, F]`` floats, or ``[B, T]`` token ids."""
        if self.takes_token_ids:
            try:
                ids = to_numpy(x)
            except Exception as exc:
                raise TypeError(f"x must be an array of integer token ids: {exc}") from None
            if ids.dtype.kind not in "iu":
                raise TypeError(
                    f"x: this model starts with an Embedding and takes integer token ids, got "
                    f"dtype {ids.dtype}"
                )
            if ids.ndim != 2:
                raise ValueError(f"x must be 2-D [B, T] token ids, got shape {ids.shape}")
            return ids
        x = as_float_array(x, "x")
        if x.ndim != 3:
            raise ValueError(f"x must be 3-D [B, T, F] (batch first, as Keras), got {x.shape}")
        if self._features not in (None, x.shape[-1]):
            raise ValueError(f"x: expected {self._features} features (last axis), got {x.shape}")
        return x

    def _other_input(self, k: int, value):
        """Input ``k`` >= 1 of a model with several: token ids where it feeds an ``Embedding``,
        else floats of the ``InputLayer``'s rank and last dimension (e.g. a state ``[B, H]``)."""
        name = self._inputs[k]
        if self._token_inputs[k]:
            ids = to_numpy(value)
            if ids.dtype.kind not in "iu" or ids.ndim != 2:
                raise TypeError(
                    f"input {name!r} feeds an Embedding: expected [B, T] integer token ids, got "
                    f"dtype {ids.dtype}, shape {ids.shape}"
                )
            return ids
        x = as_float_array(value, f"input {name!r}")
        shape = self._keras.input_shapes[k]
        known = isinstance(shape, (list, tuple)) and len(shape) > 0
        if known and (
            x.ndim != len(shape) or (isinstance(shape[-1], int) and x.shape[-1] != shape[-1])
        ):
            want = ["B", *("?" if d is None else d for d in shape[1:])]
            raise ValueError(f"input {name!r}: expected shape {want}, got {x.shape}")
        return x

    def _inputs_of(self, x) -> tuple:
        """``(first input, [the others])`` from what the model is called with: the array itself
        for a model with one input; a list (in the model's input order) or a dict keyed by
        input names for several, as Keras takes them."""
        names = self._inputs
        if len(names) == 1:
            return self._input(x), []
        if isinstance(x, dict):
            missing = [n for n in names if n not in x]
            unknown = [k for k in x if k not in names]
            if missing or unknown:
                raise ValueError(
                    f"x: this model's inputs are {names}; missing {missing}, unknown {unknown}"
                )
            values = [x[n] for n in names]
        elif isinstance(x, (list, tuple)) and len(x) == len(names):
            values = list(x)
        else:
            raise TypeError(
                f"x: this model has {len(names)} inputs ({', '.join(names)}): pass a list of "
                f"{len(names)} arrays in that order, or a dict keyed by these names"
            )
        first = self._input(values[0])
        others = [self._other_input(k, v) for k, v in enumerate(values[1:], start=1)]
        for k, other in enumerate(others, start=1):
            if other.shape[0] != first.shape[0]:
                raise ValueError(
                    f"input {names[k]!r} holds {other.shape[0]} sequences, input {names[0]!r} "
                    f"{first.shape[0]}"
                )
        return first, others

    @staticmethod
    def _mask(mask, x):
        return batch_mask(mask, x.shape[:2])

    # -- running ----------------------------------------------------------------------------
    def _run(self, x, mask, context, others=()):
        """``x``: the first input, ``mask`` its mask; ``others``: the other inputs, in order;
        ``context``: the :class:`RunContext` of streams and stateful layers, or None."""
        if x.shape[1] == 0:
            raise ValueError(f"x: the sequence length must be at least 1, got shape {x.shape}")
        names = self._keras.inputs
        feeds = {names[0]: x, names[1]: mask}
        for k, value in enumerate(others, start=1):
            feeds[names[2 * k]], feeds[names[2 * k + 1]] = value, None
        values = self._graph.run(feeds, self._keras.outputs, context)
        outs = [np.ascontiguousarray(v, dtype=np.float32) for v in values]
        if self._keras.output_keys is not None:
            return dict(zip(self._keras.output_keys, outs))
        return outs[0] if len(outs) == 1 else outs

    def __call__(self, x, mask=None):
        """Run the model on a batch, as ``keras_model(x)``.

        Parameters
        ----------
        x : array_like, or a list or dict of them
            ``[B, T, F]`` of float16, bfloat16, float32 or float64 (batch first, as Keras),
            converted to float32; or ``[B, T]`` integer token ids when the model starts with an
            ``Embedding`` (:attr:`takes_token_ids`). A numpy array, a torch tensor (bfloat16
            too), an ``ml_dtypes`` bfloat16 array or nested lists. A model with several inputs
            (:attr:`input_names`) takes a list of them in that order or a dict keyed by these
            names, as Keras does: each of the ``InputLayer``'s shape (e.g. ``[B, H]`` for a state
            passed as ``initial_state``).
        mask : array_like of bool, shape ``[B, T]``, optional
            A mask for the (first) input, as ``keras_model(x, mask=mask)`` (False = skipped
            step); any dtype, read as bool.

        Returns
        -------
        ndarray or list of ndarray, float32
            What Keras returns: ``[B, T, O]`` or ``[B, O]``; a list with ``return_state``
            (``[output, h, c]``; ``Bidirectional``: ``[output, h_fwd, c_fwd, h_bwd, c_bwd]``),
            ``merge_mode=None`` or several model outputs.

        Raises
        ------
        TypeError
            Float input to a model that takes token ids, integer input to one that does not,
            or a dtype not listed above.
        ValueError
            Wrong shapes, out-of-range token ids, a batch size that differs from the one a
            stateful layer holds.
        """
        x, others = self._inputs_of(x)
        context = RunContext(self._state, stream=False) if self.stateful else None
        return self._run(x, self._mask(mask, x), context, others=others)

    @property
    def input_names(self) -> list:
        """The names of the model's inputs (its ``InputLayer`` s), in call order."""
        return list(self._inputs)

    def reset_states(self) -> None:
        """Zero the state that ``stateful`` layers keep between calls (Keras' ``reset_states``)."""
        self._state.clear()

    reset_state = reset_states

    def stream(self, batch_size: int) -> KerasStream:
        """A :class:`KerasStream`: the model fed chunk by chunk, state carried over.

        Parameters
        ----------
        batch_size : int
            The number of sequences ``B`` every chunk holds.

        Raises
        ------
        TypeError
            ``batch_size`` is not an int.
        ValueError
            ``batch_size`` < 1, or a layer runs backwards in time (``Bidirectional``,
            ``go_backwards``), which needs whole sequences.
        """
        return KerasStream(self, batch_size)


class KerasStream(GraphStream):
    """Feed a Keras-sourced model chunk by chunk with the state carried over, like a stateful
    Keras model, for a fixed batch size.

    ``step(chunk)`` returns what the model returns for that chunk; for models that return
    sequences, the chunks' outputs concatenated along time equal one call on the whole
    sequence (masked steps at the start of a chunk repeat the previous chunk's output, as they
    would in one call). Bidirectional and ``go_backwards`` layers need whole sequences and are
    refused.

    Implements the stream protocol (:mod:`pylstm.runtime.stream_state`: ``open_state``,
    ``step_state``, ``get_state``, ``set_state``, ``reset`` per sequence) as every graph stream
    does (:class:`pylstm.runtime.graph_stream.GraphStream`): per recurrent layer ``h``
    ``[B, D, H]``, ``c`` (LSTM) and the last output ``y`` ``[B, D*H]`` (which masked steps at
    the start of the next chunk repeat).
    """

    def __init__(self, model: KerasModel, batch_size: int):
        self.batch_size = positive_int(batch_size, "batch_size")
        if len(model._inputs) > 1:
            raise ValueError(
                f"cannot stream: the model has {len(model._inputs)} inputs "
                f"({', '.join(model.input_names)}); streams feed models with one input"
            )
        check_keras_streamable(model._graph)
        self._model = model
        self._graph = model._graph
        self._carry: dict = {}

    def __reduce__(self):
        """Pickles as its model, batch size and carried state (see :mod:`pylstm.runtime.pickling`)."""
        from ..runtime.pickling import reduce

        state = {"model": self._model, "batch_size": self.batch_size, "carry": self._carry}
        return reduce(self, state)

    @classmethod
    def _from_state(cls, state: dict) -> KerasStream:
        stream = cls(state["model"], state["batch_size"])
        stream._carry = state["carry"]
        return stream

    def step(self, chunk, mask=None):
        """Run the next time steps.

        Parameters
        ----------
        chunk : array_like
            ``[B, t, F]`` of float16, bfloat16, float32 or float64 (``[B, t]`` integer token
            ids for Embedding models), as :meth:`KerasModel.__call__` takes ``x``.
        mask : array_like of bool ``[B, t]``, optional

        Returns
        -------
        ndarray or list of ndarray, float32
            As ``model(chunk)`` would return, with the state of the previous chunks.

        Raises
        ------
        TypeError
            A dtype :meth:`KerasModel.__call__` refuses.
        ValueError
            Wrong shapes, or not ``batch_size`` sequences.
        """
        x = self._model._input(chunk)
        if x.shape[0] != self.batch_size:
            raise ValueError(
                f"chunk: expected {self.batch_size} sequences (this stream's batch_size), got "
                f"shape {x.shape}"
            )
        context = RunContext(self._carry, stream=True)
        return self._model._run(x, self._model._mask(mask, x), context)

    def _carried(self) -> dict:
        return self._carry

    def _forget(self) -> None:
        self._carry.clear()

    # -- the stream protocol (pylstm/runtime/stream_state.py) -----------------------------------
    def step_state(self, chunk, state, mask=None):
        """Run ``chunk`` (as :meth:`step` takes it, ``[B, t, F]`` or ``[B, t]`` token ids, for
        ``state.batch_size`` sequences) from ``state``; returns ``(outputs, new_state)``.
        This stream's own state is not used."""
        model = self._model
        x = model._input(chunk)
        if x.shape[0] != state.batch_size:
            raise ValueError(
                f"chunk: expected {state.batch_size} sequences (the state's), got shape {x.shape}"
            )
        context = self._context_of(state)
        out = model._run(x, model._mask(mask, x), context)
        return out, self._state_of(context.states, state.names)
