"""The Keras face: ``model(x)`` returning what the Keras model or layer returns (numpy float32;
a list where Keras returns a list), with Keras' masks, ``go_backwards``, ``Bidirectional``
merge modes, ``return_state`` and ``stateful`` layers.

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

from ..convert.keras_recurrent import Recurrent
from ..errors import FormatError, UnsupportedError
from ..read.keras_config import TensorRef
from ..runtime.engine import empty_output
from ..runtime.ops.keras_layers import Embedding, TensorOp
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

    def __init__(self, spec, ops: dict, *, name: str = "model"):
        self.spec, self.ops, self.name = spec, ops, name
        for node in spec.nodes:
            op = ops[node.layer]
            if isinstance(op, Recurrent) and node.initial_state and len(node.tensor_args) > 1:
                raise UnsupportedError(
                    f"{name}: layer {node.layer!r} is called on {len(node.tensor_args)} tensors "
                    "and an initial_state"
                )
            multi = isinstance(op, (TensorOp, Recurrent)) or getattr(op, "multi_input", False)
            if not multi and len(node.tensor_args) != 1:
                raise UnsupportedError(
                    f"{name}: layer {node.layer!r} is called on {len(node.tensor_args)} tensors; "
                    "pylstm runs layers with one input"
                )
            if node.initial_state and not isinstance(op, Recurrent):
                raise UnsupportedError(
                    f"{name}: layer {node.layer!r} takes an initial_state but is not recurrent"
                )
        self._check_references()
        self._inputs = spec.inputs if hasattr(spec, "extra_inputs") else [spec.input]
        self._token_inputs = [
            any(isinstance(ops[n.layer], Embedding) and ref in n.tensor_args for n in spec.nodes)
            for ref in self._inputs
        ]
        self.takes_token_ids = self._token_inputs[0]
        self._recurrent = [n for n in spec.nodes if isinstance(ops[n.layer], Recurrent)]
        self.stateful = any(ops[n.layer].stateful for n in self._recurrent)
        self._state: dict = {}
        shape = None
        if spec.input_config:
            shape = spec.input_config.get("batch_shape") or spec.input_config.get(
                "batch_input_shape"
            )
        features = shape[-1] if isinstance(shape, (list, tuple)) and shape else None
        self._features = features if isinstance(features, int) and features > 0 else None

    def _check_references(self):
        """Every tensor the graph reads exists (FormatError otherwise)."""
        spec = self.spec
        inputs = [spec.input, *getattr(spec, "extra_inputs", [])]
        outputs = {(r.layer, r.node): 1 for r in inputs}
        for node in spec.nodes:
            outputs[(node.layer, node.index)] = getattr(self.ops[node.layer], "num_outputs", 1)
        refs = [*inputs, *(spec.outputs or [])]
        for node in spec.nodes:
            refs += node.tensor_args + list(getattr(node, "initial_state", []))
            refs += [node.mask] if node.mask is not None else []
        for ref in refs:
            if not 0 <= ref.index < outputs.get((ref.layer, ref.node), 0):
                raise FormatError(
                    f"{self.name}: the graph reads output {ref.index} of call {ref.node} of layer "
                    f"{ref.layer!r}, which does not exist"
                )

    def __reduce__(self):
        """Pickles as its graph of layers (their weights, recurrent ones as canonical engines)
        and the state of stateful layers (see :mod:`pylstm.runtime.pickling`)."""
        from ..runtime.pickling import reduce

        state = {"spec": self.spec, "ops": self.ops, "name": self.name, "state": self._state}
        return reduce(self, state)

    @classmethod
    def _from_state(cls, state: dict) -> KerasModel:
        model = cls(state["spec"], state["ops"], name=state["name"])
        model._state = state["state"]
        return model

    def __repr__(self):
        layers = ", ".join(type(self.ops[n.layer]).__name__ for n in self.spec.nodes)
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
        name = self._inputs[k].layer
        if self._token_inputs[k]:
            ids = to_numpy(value)
            if ids.dtype.kind not in "iu" or ids.ndim != 2:
                raise TypeError(
                    f"input {name!r} feeds an Embedding: expected [B, T] integer token ids, got "
                    f"dtype {ids.dtype}, shape {ids.shape}"
                )
            return ids
        x = as_float_array(value, f"input {name!r}")
        layer = self.spec.layers.get(name)
        shape = (layer.config or {}) if layer is not None else {}
        shape = shape.get("batch_shape") or shape.get("batch_input_shape")
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
        names = [r.layer for r in self._inputs]
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
        if mask is None:
            return None
        m = to_numpy(mask)
        if m.shape != tuple(x.shape[:2]):
            raise ValueError(f"mask: expected shape {tuple(x.shape[:2])} [B, T], got {m.shape}")
        return m.astype(bool)

    # -- running ----------------------------------------------------------------------------
    def _run(self, x, mask, carry, stream: bool, others=()):
        """``x``: the first input, ``mask`` its mask; ``others``: the other inputs, in order."""
        spec = self.spec
        if x.shape[1] == 0:
            raise ValueError(f"x: the sequence length must be at least 1, got shape {x.shape}")
        values = {spec.input: (x, mask)}
        for ref, value in zip(self._inputs[1:], others):
            values[ref] = (value, None)
        last = None
        for node in spec.nodes:
            op = self.ops[node.layer]
            args = [values[a][0] if isinstance(a, TensorRef) else a for a in node.args]
            tensors = node.tensor_args
            in_mask = (
                values[node.mask][0]
                if node.mask is not None
                else (values[tensors[0]][1] if tensors else None)
            )
            if isinstance(op, Recurrent):
                # initial_state: Keras 3 records it as a keyword, Keras 2 as further inputs.
                # Keras 3 propagates no mask into a call with several tensor arguments (only a
                # mask passed explicitly, which its config records); tf.keras 2 does.
                refs = list(getattr(node, "initial_state", [])) or tensors[1:]
                if getattr(node, "initial_state", None) and node.mask is None:
                    in_mask = None
                initial = [values[r][0] for r in refs]
                outs, masks = run_recurrent(op, node, args[0], in_mask, carry, stream, initial)
            elif hasattr(op, "run_call"):  # layers around (keras_around): a mask per input
                arg_masks = [values[t][1] for t in tensors]
                if node.mask is not None:
                    arg_masks[0] = values[node.mask][0]
                outs, masks = op.run_call(args, arg_masks, node.kwargs)
            else:
                outs, masks = op.run(args, in_mask)
            for k, (out, m) in enumerate(zip(outs, masks)):
                values[TensorRef(node.layer, node.index, k)] = (out, m)
            last = node, len(outs)
        if spec.outputs is None:
            node, count = last
            refs = [TensorRef(node.layer, node.index, k) for k in range(count)]
        else:
            refs = spec.outputs
        outs = [np.ascontiguousarray(values[r][0], dtype=np.float32) for r in refs]
        if spec.output_keys is not None:
            return dict(zip(spec.output_keys, outs))
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
        state = self._state if self.stateful else None
        return self._run(x, self._mask(mask, x), state, stream=False, others=others)

    @property
    def input_names(self) -> list:
        """The names of the model's inputs (its ``InputLayer`` s), in call order."""
        return [r.layer for r in self._inputs]

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


class KerasStream:
    """Feed a Keras-sourced model chunk by chunk with the state carried over, like a stateful
    Keras model, for a fixed batch size.

    ``step(chunk)`` returns what the model returns for that chunk; for models that return
    sequences, the chunks' outputs concatenated along time equal one call on the whole
    sequence (masked steps at the start of a chunk repeat the previous chunk's output, as they
    would in one call). Bidirectional and ``go_backwards`` layers need whole sequences and are
    refused.
    """

    def __init__(self, model: KerasModel, batch_size: int):
        self.batch_size = positive_int(batch_size, "batch_size")
        if len(model._inputs) > 1:
            raise ValueError(
                f"cannot stream: the model has {len(model._inputs)} inputs "
                f"({', '.join(model.input_names)}); streams feed models with one input"
            )
        for node in model.spec.nodes:
            op = model.ops[node.layer]
            if getattr(op, "mixes_time", False):
                raise UnsupportedError(
                    f"cannot stream: layer {node.layer!r} ({op.cls}) reads other time steps than "
                    "the current one, so chunks would not add up to one call; call the model "
                    "instead"
                )
        for node in model._recurrent:
            op = model.ops[node.layer]
            if op.bidirectional or any(s.go_backwards for s in op.subs):
                raise ValueError(
                    f"cannot stream: layer {node.layer!r} runs backwards in time (Bidirectional "
                    "or go_backwards), which needs the whole sequence; call the model instead"
                )
        self._model = model
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
        return self._model._run(x, self._model._mask(mask, x), self._carry, stream=True)

    def reset(self) -> None:
        """Forget the carried state (back to zeros)."""
        self._carry.clear()

    # -- the stream protocol (pylstm/stream_state.py) -------------------------------------------
    def open_state(self, batch_size: int):
        """Zero :class:`~pylstm.runtime.stream_state.StreamState` of ``batch_size`` sequences: per
        recurrent layer ``h`` ``[B, 1, H]``, ``c`` ``[B, 1, H]`` (LSTM) and the last output
        ``y`` ``[B, H]`` (which masked steps at the start of the next chunk repeat)."""
        from ..runtime.stream_state import keras_open_state

        return keras_open_state(self._model, positive_int(batch_size, "batch_size"))

    def step_state(self, chunk, state, mask=None):
        """Run ``chunk`` (as :meth:`step` takes it, ``[B, t, F]`` or ``[B, t]`` token ids, for
        ``state.batch_size`` sequences) from ``state``; returns ``(outputs, new_state)``.
        This stream's own state is not used."""
        from ..runtime.stream_state import keras_carry_from_state, keras_state_from_carry

        model = self._model
        x = model._input(chunk)
        if x.shape[0] != state.batch_size:
            raise ValueError(
                f"chunk: expected {state.batch_size} sequences (the state's), got shape {x.shape}"
            )
        carry = keras_carry_from_state(model, state)
        out = model._run(x, model._mask(mask, x), carry, stream=True)
        return out, keras_state_from_carry(model, carry, state.names)

    def get_state(self):
        """A copy of this stream's carried state as a :class:`~pylstm.runtime.stream_state.StreamState`."""
        from ..runtime.stream_state import keras_state_from_carry

        state = self.open_state(self.batch_size)
        if not self._carry:
            return state
        carry = {k: v for k, v in self._carry.items()}
        for node in self._model._recurrent:  # layers not run yet keep zeros
            key = (node.layer, node.index)
            if key not in carry:
                return state  # (a stream has run every layer after its first chunk)
        return keras_state_from_carry(self._model, carry, state.names).copy()


def _engine_run(engine, x, mask, h0, c0):
    """One engine over batch-first x ``[B, T, I]``; returns y ``[B, T, D*H]``, h_n, c_n."""
    B, T, _ = x.shape
    y = empty_output((B, T, engine.output_size))
    layer = engine.layers[0]
    shape = (layer.num_directions, B, layer.hidden_size)
    h_n = np.zeros(shape, np.float32)
    c_n = np.zeros(shape, np.float32) if layer.cell == "lstm" else None
    engine.forward(x.transpose(1, 0, 2), y.transpose(1, 0, 2), mask, h0, c0, h_n, c_n)
    return y, h_n, c_n


def _hold_across_chunks(y, mask_t, previous):
    """Streaming: steps before a sequence's first valid step in this chunk repeat the last
    output of the previous chunk (the engine starts each call from zero outputs)."""
    valid = mask_t.T.astype(bool)  # [B, T]
    first = np.where(valid.any(axis=1), valid.argmax(axis=1), valid.shape[1])
    before = np.arange(valid.shape[1])[None, :] < first[:, None]
    y[before] = np.broadcast_to(previous[:, None, :], y.shape)[before]


def _initial_states(op: Recurrent, states: list, B: int) -> list:
    """Keras' ``initial_state`` list (``[h, c]`` per direction, forward first) as ``(h0, c0)``
    per engine of ``op`` (``[D, B, H]`` float32, zeros for what is not given)."""
    need = sum(2 if s.cell == "lstm" else 1 for s in op.subs)
    if len(states) != need:
        raise ValueError(
            f"layer {op.name!r}: initial_state has {len(states)} tensors, expected {need} "
            f"({' + '.join('[h, c]' if s.cell == 'lstm' else '[h]' for s in op.subs)})"
        )
    out = []
    for engine in op.engines:
        layer = engine.layers[0]
        shape = (layer.num_directions, B, layer.hidden_size)
        c0 = np.zeros(shape, np.float32) if layer.cell == "lstm" else None
        out.append([np.zeros(shape, np.float32), c0])
    k = 0
    for sub in op.subs:
        for part in range(2 if sub.cell == "lstm" else 1):
            a = np.asarray(states[k], np.float32)
            if a.shape != (B, sub.units):
                raise ValueError(
                    f"layer {op.name!r}: initial_state[{k}] has shape {a.shape}, expected "
                    f"{(B, sub.units)}"
                )
            out[sub.engine][part][sub.slot] = a
            k += 1
    return out


def run_recurrent(op: Recurrent, node, x, mask, carry, stream: bool, initial=()):
    """Run one Keras recurrent layer (see the module docstring). ``carry``: a dict keeping the
    state between calls (stateful layers, streams), or None; ``initial``: the ``initial_state``
    arrays, which take precedence over a carried state (as in Keras). Returns (outputs,
    masks)."""
    x = np.asarray(x)
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    if x.ndim != 3 or x.shape[-1] != op.input_size:
        raise ValueError(
            f"layer {op.name!r}: expected input [B, T, {op.input_size}], got shape {x.shape}"
        )
    if x.strides[-1] != 4:
        x = np.ascontiguousarray(x)
    B, T, _ = x.shape
    if mask is not None and np.shape(mask) != (B, T):
        raise ValueError(
            f"layer {op.name!r}: its mask has shape {np.shape(mask)}, expected [B, T] = {(B, T)}"
        )
    mask_t = None if mask is None else np.ascontiguousarray(np.asarray(mask, bool).T, np.uint8)
    key = (node.layer, node.index)
    keep = carry is not None and (stream or op.stateful)
    saved = carry.get(key) if keep else None
    if saved is not None and saved[0][0].shape[1] != B:
        raise ValueError(
            f"layer {op.name!r} is stateful and holds the state of {saved[0][0].shape[1]} "
            f"sequences; got a batch of {B} (call reset_states() to start over)"
        )
    given = _initial_states(op, list(initial), B) if len(initial) else None
    results = []
    for e, engine in enumerate(op.engines):
        h0, c0, prev = saved[e] if saved is not None else (None, None, None)
        if given is not None:
            h0, c0 = given[e]
        y, h_n, c_n = _engine_run(engine, x, mask_t, h0, c0)
        if stream and op.hold and mask_t is not None and prev is not None:
            _hold_across_chunks(y, mask_t, prev)
        results.append((y, h_n, c_n))
    if keep:
        carry[key] = [(h, c, y[:, -1].copy()) for y, h, c in results]

    def sequence(sub):  # the sub-layer's outputs in Keras' (processing) order
        y = results[sub.engine][0][:, :, sub.slot * sub.units : (sub.slot + 1) * sub.units]
        return y[:, ::-1] if sub.go_backwards else y

    def last(sub):
        y = results[sub.engine][0]
        t = 0 if sub.go_backwards else T - 1
        return y[:, t, sub.slot * sub.units : (sub.slot + 1) * sub.units]

    pick = sequence if op.return_sequences else last
    seq_mask = mask if op.return_sequences else None
    if not op.bidirectional:
        outs, masks = [pick(op.subs[0])], [seq_mask]
    else:
        fwd, bwd = op.subs
        if (
            op.return_sequences
            and op.merge_mode == "concat"
            and len(op.engines) == 1
            and not fwd.go_backwards
            and bwd.go_backwards
        ):
            outs = [results[0][0]]  # the engine's two-direction output is Keras' concat
        else:
            y, y_rev = pick(fwd), pick(bwd)
            if op.return_sequences:
                y_rev = y_rev[:, ::-1]
            merged = {
                "concat": lambda: [np.concatenate([y, y_rev], axis=-1)],
                "sum": lambda: [y + y_rev],
                "mul": lambda: [y * y_rev],
                "ave": lambda: [(y + y_rev) / np.float32(2)],
                None: lambda: [y, y_rev],
            }[op.merge_mode]()
            outs = merged
        masks = [seq_mask] * len(outs)
    if op.return_state:
        for sub in op.subs:
            _, h_n, c_n = results[sub.engine]
            outs.append(h_n[sub.slot])
            masks.append(None)
            if sub.cell == "lstm":
                outs.append(c_n[sub.slot])
                masks.append(None)
    return outs, masks
