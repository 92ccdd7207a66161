"""The recurrent node type of the graph executor: an engine call with a step mask, initial states
and final states. ONNX LSTM/GRU/RNN nodes run as :class:`OnnxRecurrent` (ONNX's inputs, layouts
and outputs), Keras recurrent layers as :class:`KerasRecurrent` (Keras' masks, ``go_backwards``,
``Bidirectional`` merges, ``return_state``, ``stateful``).

Both read and write the carried state of a :class:`RunContext` (streams, stateful layers), keyed
by the runner, and describe it as stream state arrays (``state_layout``, ``carried_from``,
``arrays_of``; see :mod:`pylstm.runtime.graph_stream`).
"""

from __future__ import annotations

import numpy as np

from .masks import engine_mask, hold_across_chunks, lengths_mask, sequence_lens
from .output_buffers import empty_output

_INPUT_COUNT = {"LSTM": 8, "GRU": 6, "RNN": 6}  # X, W, R, B, sequence_lens, initial_h(, c, P)


class RunContext:
    """What one run of a graph carries in and out of its recurrent nodes.

    Attributes
    ----------
    states : dict
        Runner -> its carried state (each runner's own form), read as the initial state and
        replaced by the final state.
    stream : bool
        A stream: every recurrent node carries its state (else only ``stateful`` Keras layers).
    batch_size : int or None
        A stream's batch size, checked by ONNX nodes.
    """

    def __init__(self, states=None, *, stream: bool = True, batch_size=None):
        self.states = {} if states is None else states
        self.stream = stream
        self.batch_size = batch_size

    def check_batch(self, what: str, batch: int) -> None:
        if self.batch_size is not None and batch != self.batch_size:
            raise ValueError(
                f"{what}: this stream was made for batch_size {self.batch_size}, but the chunk "
                f"has {batch} sequences"
            )


def _float_input(value, name: str, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind != "f":
        raise TypeError(f"{what}: input {name} must be a float tensor, got dtype {arr.dtype}")
    return arr


class OnnxRecurrent:
    """Runs one ONNX LSTM/GRU/RNN node on the engine, with ONNX's inputs and outputs.

    Called by the graph executor with the node's input arrays (``None`` for omitted ones), a
    flag per output telling whether it is used, and the :class:`RunContext` (or None).

    Parameters
    ----------
    node : Node
    layout : int
        ONNX's ``layout`` attribute.
    engine : Engine
        Runs the node's canonical layer (:func:`pylstm.convert.onnx_rnn.build_layer`), whose
        weights it holds packed; the node keeps the layer's shape only.
    """

    def __init__(self, node, layout: int, engine):
        self.op = node.op_type
        self.name = node.name or node.outputs[0]
        self.what = f"{node.describe()}"
        self.layout = layout
        self.engine = engine
        self.D = self.layer.num_directions
        self.H = self.layer.hidden_size
        self.I = self.layer.input_size

    @property
    def layer(self):
        """The node's layer shape (its weights live packed in the engine)."""
        return self.engine.layers[0]

    @property
    def reverse(self) -> bool:
        """Whether any direction runs backwards in time."""
        return any(d.reverse for d in self.layer.directions)

    def _state(self, value, name: str, B: int):
        """An initial state ([D, B, H], or [B, D, H] with layout 1) as C-contiguous [D, B, H]."""
        if value is None:
            return None
        arr = _float_input(value, name, self.what)
        expected = (self.D, B, self.H) if self.layout == 0 else (B, self.D, self.H)
        if arr.shape != expected:
            raise ValueError(
                f"{self.what}: {name} must have shape {list(expected)}, got {list(arr.shape)}"
            )
        if self.layout == 1:
            arr = arr.transpose(1, 0, 2)
        return np.ascontiguousarray(arr, np.float32)

    def __call__(self, args: list, wanted: list, context=None) -> list:
        args = list(args) + [None] * (_INPUT_COUNT[self.op] - len(args))
        X = _float_input(args[0], "X", self.what)
        if X.ndim != 3:
            raise ValueError(f"{self.what}: X must be 3-D, got shape {list(X.shape)}")
        if X.shape[2] != self.I:
            raise ValueError(
                f"{self.what}: X has {X.shape[2]} features (last axis), W expects {self.I}; "
                f"X shape {list(X.shape)}"
            )
        out_dtype = X.dtype
        xt = X if self.layout == 0 else X.transpose(1, 0, 2)  # [T, B, I] view
        T, B = xt.shape[0], xt.shape[1]
        lens = sequence_lens(args[4], B, T, self.what)
        h0 = self._state(args[5], "initial_h", B)
        c0 = self._state(args[6], "initial_c", B) if self.op == "LSTM" else None
        if context is not None:
            context.check_batch(self.what, B)
            if self in context.states:
                h0, c0 = context.states[self]
        if self.op == "LSTM" and (h0 is None) != (c0 is None):
            zeros = np.zeros((self.D, B, self.H), np.float32)
            h0 = zeros if h0 is None else h0
            c0 = zeros.copy() if c0 is None else c0
        h_n = np.zeros((self.D, B, self.H), np.float32)
        c_n = np.zeros((self.D, B, self.H), np.float32) if self.op == "LSTM" else None
        # The engine writes [T, B, D*H] (directions innermost): a [T, B, D, H] buffer for
        # layout 0 (transposed to [T, D, B, H] below), [B, T, D, H] for layout 1 (final as is).
        if self.layout == 0:
            y = np.zeros((T, B, self.D, self.H), np.float32)
            y_tm = y.reshape(T, B, self.D * self.H)
        else:
            y = np.zeros((B, T, self.D, self.H), np.float32)
            y_tm = y.reshape(B, T, self.D * self.H).transpose(1, 0, 2)
        if T and B:
            xf = np.asarray(xt, np.float32)
            if xf.shape[2] > 1 and xf.strides[2] != 4:
                xf = np.ascontiguousarray(xf)
            mask = lengths_mask(lens, T)
            self.engine.forward(xf, y_tm, mask, h0, c0, h_n, c_n)
        if context is not None:  # streaming carries the state through padded or empty chunks
            carried_h = h_n.copy() if T else h0
            carried_c = (c_n.copy() if T else c0) if c_n is not None else None
            context.states[self] = (carried_h, carried_c)
        # A sequence of length 0 (or no steps at all) gives Y_h = Y_c = 0, as in ONNX Runtime.
        empty = np.ones(B, bool) if T == 0 else None if lens is None else lens == 0
        if empty is not None and empty.any():
            h_n[:, empty] = 0
            if c_n is not None:
                c_n[:, empty] = 0
        # Views, not copies: a following Transpose (PyTorch exports turn Y back into
        # [T, B, D*H]) then costs nothing; the face copies graph outputs that are views.
        Y = y.transpose(0, 2, 1, 3) if self.layout == 0 else y
        outs = [Y]
        for state in (h_n, c_n)[: len(wanted) - 1]:
            outs.append(state if state is None or self.layout == 0 else state.transpose(1, 0, 2))
        if out_dtype != np.float32:
            outs = [None if o is None else o.astype(out_dtype) for o in outs]
        return [o if w else None for o, w in zip(outs, wanted)]

    # -- the stream protocol (pylstm.runtime.graph_stream) --------------------------------------
    def state_layout(self) -> list:
        """``(name, shape)`` of this node's stream state arrays (per sequence): ``h`` ``[D, H]``
        and, for LSTM, ``c`` ``[D, H]``."""
        layout = [(f"{self.name}/h", (self.D, self.H))]
        if self.op == "LSTM":
            layout.append((f"{self.name}/c", (self.D, self.H)))
        return layout

    def carried_from(self, arrays) -> tuple:
        """The carried ``(h [D, B, H], c or None)`` from the next of ``arrays`` (``[B, ...]``)."""
        h = np.ascontiguousarray(next(arrays).transpose(1, 0, 2))
        c = np.ascontiguousarray(next(arrays).transpose(1, 0, 2)) if self.op == "LSTM" else None
        return h, c

    def arrays_of(self, carried) -> list:
        """The stream state arrays (``[B, ...]`` views) of a carried state; None when this node
        has carried nothing yet (it started from a fed initial state)."""
        h, c = carried
        if h is None:
            return None
        return [h.transpose(1, 0, 2)] + ([c.transpose(1, 0, 2)] if self.op == "LSTM" else [])


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


def _initial_states(op, engines, states: list, B: int) -> list:
    """Keras' ``initial_state`` list (``[h, c]`` per direction, forward first) as ``(h0, c0)``
    per engine of ``op`` (``[D, B, H]`` float32, zeros for what is not given)."""
    need = sum(2 if s.cell == "lstm" else 1 for s in op.subs)
    if len(states) != need:
        raise ValueError(
            f"layer {op.name!r}: initial_state has {len(states)} tensors, expected {need} "
            f"({' + '.join('[h, c]' if s.cell == 'lstm' else '[h]' for s in op.subs)})"
        )
    out = []
    for engine in engines:
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


class KerasRecurrent:
    """Runs one call of a Keras recurrent layer (``LSTM``, ``GRU``, ``SimpleRNN``, ``RNN``,
    ``Bidirectional``) on its engines, the way Keras does (see :mod:`pylstm.faces.keras_face`).

    The node's inputs are ``[x, mask, *initial_state]`` (batch-first ``x`` ``[B, T, I]``, a
    ``[B, T]`` bool mask or None); its outputs the layer's outputs, then their masks. The
    :class:`RunContext` carries, per engine, ``(h [D, B, H], c or None, last output [B, D*H])``
    between calls (streams; ``stateful`` layers); an ``initial_state`` takes precedence over a
    carried state (as in Keras).

    Parameters
    ----------
    node : Node
        Its ``attrs["recurrent"]`` is the converted layer
        (:class:`pylstm.convert.keras_recurrent.Recurrent`).
    engines : list of Engine
        One per canonical layer of the converted layer.
    """

    def __init__(self, node, engines):
        self.node = node
        self.spec = node.attrs["recurrent"]
        self.engines = list(engines)
        self.name = self.spec.name
        self.layer = node.attrs["layer"]
        self.tag = f"{node.attrs['layer']}[{node.attrs['index']}]"

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    @property
    def stateful(self) -> bool:
        return self.spec.stateful

    @property
    def reverse(self) -> bool:
        """Whether it runs backwards in time (``Bidirectional``, ``go_backwards``)."""
        return self.spec.bidirectional or any(s.go_backwards for s in self.spec.subs)

    def __call__(self, args: list, wanted=None, context=None) -> list:
        args = list(args) + [None] * (2 - len(args))
        outs, masks = self.run(args[0], args[1], context, args[2:])
        return [*outs, *masks]

    def run(self, x, mask, context, initial=()):
        """(outputs, masks) of the layer on ``x`` with ``mask``."""
        op = self.spec
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
                f"layer {op.name!r}: its mask has shape {np.shape(mask)}, expected [B, T] = "
                f"{(B, T)}"
            )
        mask_t = engine_mask(mask)
        stream = context is not None and context.stream
        keep = context is not None and (stream or op.stateful)
        saved = context.states.get(self) if keep else None
        if saved is not None and saved[0][0].shape[1] != B:
            raise ValueError(
                f"layer {op.name!r} is stateful and holds the state of {saved[0][0].shape[1]} "
                f"sequences; got a batch of {B} (call reset_states() to start over)"
            )
        given = _initial_states(op, self.engines, list(initial), B) if len(initial) else None
        results = []
        for e, engine in enumerate(self.engines):
            h0, c0, prev = saved[e] if saved is not None else (None, None, None)
            if given is not None:
                h0, c0 = given[e]
            y, h_n, c_n = _engine_run(engine, x, mask_t, h0, c0)
            if stream and op.hold and mask_t is not None and prev is not None:
                hold_across_chunks(y, mask_t, prev)
            results.append((y, h_n, c_n))
        if keep:
            context.states[self] = [(h, c, y[:, -1].copy()) for y, h, c in results]
        return _keras_outputs(op, results, mask, T)

    # -- the stream protocol (pylstm.runtime.graph_stream) --------------------------------------
    def state_layout(self) -> list:
        """``(name, shape)`` of its stream state arrays (per sequence), per engine: ``h``
        ``[D, H]``, ``c`` ``[D, H]`` (LSTM) and ``y`` ``[D*H]`` (the last output, which masked
        steps at the start of the next chunk repeat)."""
        layout = []
        for e, engine in enumerate(self.engines):
            layer = engine.layers[0]
            d, h = layer.num_directions, layer.hidden_size
            tag = self.tag + (f".{e}" if len(self.engines) > 1 else "")
            layout.append((f"{tag}/h", (d, h)))
            if layer.cell == "lstm":
                layout.append((f"{tag}/c", (d, h)))
            layout.append((f"{tag}/y", (engine.output_size,)))
        return layout

    def carried_from(self, arrays) -> list:
        per_engine = []
        for engine in self.engines:
            h = np.ascontiguousarray(next(arrays).transpose(1, 0, 2))
            c = None
            if engine.layers[0].cell == "lstm":
                c = np.ascontiguousarray(next(arrays).transpose(1, 0, 2))
            per_engine.append((h, c, next(arrays)))
        return per_engine

    def arrays_of(self, carried) -> list:
        arrays = []
        for h, c, y in carried:
            arrays.append(h.transpose(1, 0, 2))
            if c is not None:
                arrays.append(c.transpose(1, 0, 2))
            arrays.append(y)
        return arrays


def _keras_outputs(op, results, mask, T: int):
    """The layer's outputs (and their masks) from each engine's ``(y, h_n, c_n)``: picked,
    reversed and merged as Keras does."""

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
            and len(results) == 1  # one engine runs both directions
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
