"""A converted Keras model lowered to plain graph nodes (:class:`~pylstm.read.nodes.Node`), the
form the runtime's one graph executor runs (the same as an ONNX graph's).

Every Keras tensor ``TensorRef(layer, call, k)`` becomes a graph value, and its Keras mask
another (``<value>#mask``; None when the tensor has none), so that Keras' mask propagation is
plain data flow:

* a recurrent layer's call (``recurrent=True``, op type its class) reads ``[x, mask,
  *initial_state]`` and writes its outputs then their masks. The mask is the one passed
  explicitly (Keras 3 records the masks it propagated that way), else the propagated mask of
  ``x`` -- except for a call with ``initial_state``, which Keras 3 passes no propagated mask
  (tf.keras 2 records ``initial_state`` as further inputs, and passes it);
* any other layer's call reads its tensor arguments, then their masks (one per tensor for the
  layers of :mod:`.keras_around`, else the one mask of the call), and writes its outputs then
  their masks.

Graph inputs: per model input, its value then its mask (only the first input's mask is ever
given, ``model(x, mask=...)``).

Keras 3.0 to 3.3 give the output of a layer called on a list of tensors (merge layers,
``Attention``) no mask: ``Layer.__call__`` took the output mask from the first argument, a list,
which has none (keras-team/keras#19685 fixed it in 3.4). A model written by those versions
(``drop_list_masks``) is lowered the same way: such a call's output masks are read by nobody.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FormatError, UnsupportedError
from ..read.keras_config import TensorRef
from ..read.nodes import KERAS_DOMAIN, Node
from .keras_around import AROUND_OPS
from .keras_recurrent import OpSpec, Recurrent, Stacked


@dataclass(frozen=True)
class KerasGraph:
    """A Keras model as graph nodes, and what its face needs to shape arguments and results.

    Attributes
    ----------
    nodes : list of Node
    inputs : list of str
        Graph input names: per model input its value, then its mask.
    outputs : list of str
        The values the model returns, in order.
    output_keys : list of str or None
        A dict of outputs (Keras 3) has these keys.
    input_names : list of str
        The model's inputs (``InputLayer`` names), in call order.
    token_inputs : list of bool
        Per input: it feeds an ``Embedding`` (integer token ids).
    input_shapes : list
        Per input, its ``InputLayer``'s ``batch_shape`` (None when unknown).
    stateful : bool
        Some recurrent layer is ``stateful``.
    name : str
    """

    nodes: list
    inputs: list
    outputs: list
    output_keys: list | None
    input_names: list
    token_inputs: list
    input_shapes: list
    stateful: bool
    name: str


def value_name(ref: TensorRef) -> str:
    return f"{ref.layer}[{ref.node}].{ref.index}"


def mask_name(ref: TensorRef) -> str:
    return value_name(ref) + "#mask"


def _check(spec, ops: dict, name: str) -> None:
    """Calls pylstm runs, and every tensor the graph reads exists (FormatError otherwise)."""
    for node in spec.nodes:
        op = ops[node.layer]
        recurrent = isinstance(op, (Recurrent, Stacked))
        if isinstance(op, Stacked) and (node.initial_state or len(node.tensor_args) > 1):
            raise UnsupportedError(
                f"{name}: layer {node.layer!r} (RNN over StackedRNNCells) is called with an "
                "initial_state, which is not supported"
            )
        if recurrent and node.initial_state and len(node.tensor_args) > 1:
            raise UnsupportedError(
                f"{name}: layer {node.layer!r} is called on {len(node.tensor_args)} tensors "
                "and an initial_state"
            )
        if not (recurrent or op.multi_input) and len(node.tensor_args) != 1:
            raise UnsupportedError(
                f"{name}: layer {node.layer!r} is called on {len(node.tensor_args)} tensors; "
                "pylstm runs layers with one input"
            )
        if node.initial_state and not recurrent:
            raise UnsupportedError(
                f"{name}: layer {node.layer!r} takes an initial_state but is not recurrent"
            )
    inputs = spec.inputs
    outputs = {(r.layer, r.node): 1 for r in inputs}
    for node in spec.nodes:
        outputs[(node.layer, node.index)] = ops[node.layer].num_outputs
    refs = [*inputs, *(spec.outputs or [])]
    for node in spec.nodes:
        refs += node.tensor_args + list(node.initial_state)
        refs += [node.mask] if node.mask is not None else []
        refs += [m for m in node.masks if m is not None]
    for ref in refs:
        if not 0 <= ref.index < outputs.get((ref.layer, ref.node), 0):
            raise FormatError(
                f"{name}: the graph reads output {ref.index} of call {ref.node} of layer "
                f"{ref.layer!r}, which does not exist"
            )


def _lower_stacked(node, op: Stacked) -> list:
    """One recurrent node per cell of the stack, each reading the one below's output and its
    mask; the last writes the layer's output."""
    first = _lower(node, op.parts[0])
    nodes, value, mask = [], first.inputs[0], first.inputs[1]
    final = TensorRef(node.layer, node.index, 0)
    for k, part in enumerate(op.parts):
        last = k == len(op.parts) - 1
        out = value_name(final) if last else f"{value_name(final)}.cell_{k}"
        nodes.append(
            Node(
                op_type=op.class_name,
                name=part.name,
                inputs=[value, mask],
                outputs=[out, out + "#mask" if not last else mask_name(final)],
                attrs={"recurrent": part, "layer": part.name, "index": node.index},
                domain=KERAS_DOMAIN,
                recurrent=True,
            )
        )
        value, mask = out, nodes[-1].outputs[1]
    return nodes


def _explicit_mask(node):
    """The graph value of the mask passed explicitly to a one-mask call ("" for a recorded
    list whose first mask is None: no mask; Keras' recurrent layers use ``mask[0]`` of a list),
    or None when the call records none (the propagated mask applies)."""
    if node.mask is not None:
        return value_name(node.mask)
    if node.masks:
        return value_name(node.masks[0]) if node.masks[0] is not None else ""
    return None


def _lower(node, op) -> Node:
    tensors = node.tensor_args
    count = op.num_outputs
    outs = [TensorRef(node.layer, node.index, k) for k in range(count)]
    outputs = [value_name(r) for r in outs] + [mask_name(r) for r in outs]
    if isinstance(op, Recurrent):
        # initial_state: Keras 3 records it as a keyword, Keras 2 as further inputs. Keras 3
        # propagates no mask into a call with initial_state (only a mask passed explicitly).
        initial = list(node.initial_state) or tensors[1:]
        if _explicit_mask(node) is not None:
            mask = _explicit_mask(node)
        elif node.initial_state:
            mask = ""
        else:
            mask = mask_name(tensors[0])
        return Node(
            op_type=op.class_name,
            name=node.layer,
            inputs=[value_name(tensors[0]), mask, *(value_name(r) for r in initial)],
            outputs=outputs,
            attrs={"recurrent": op, "layer": node.layer, "index": node.index},
            domain=KERAS_DOMAIN,
            recurrent=True,
        )
    if op.op in AROUND_OPS:  # a mask per tensor; an explicit mask replaces the first tensor's
        masks = [mask_name(t) for t in tensors]
        for k, m in enumerate(node.masks[: len(tensors)]):  # a recorded list, as it is
            masks[k] = value_name(m) if m is not None else ""
        if node.mask is not None:
            masks[0] = value_name(node.mask)
    elif _explicit_mask(node) is not None:
        masks = [_explicit_mask(node)]
    else:
        masks = [mask_name(tensors[0])] if tensors else []
    slots, literals, k = [], [], 0
    for a in node.args:
        if isinstance(a, TensorRef):
            slots.append(k)
            k += 1
        else:
            slots.append(None)
            literals.append(a)
    return Node(
        op_type=op.op,
        name=node.layer,
        inputs=[*(value_name(t) for t in tensors), *masks],
        outputs=outputs,
        attrs={
            "op": op.op,
            "params": op.params,
            "tensors": len(tensors),
            "slots": slots,
            "literals": literals,
            "kwargs": dict(node.kwargs),
        },
        domain=KERAS_DOMAIN,
    )


def _drop_list_masks(nodes: list, spec, ops: dict) -> None:
    """Keras 3.0-3.3: the outputs of a call on a list of tensors carry no mask (module doc)."""
    dead = set()
    for node in spec.nodes:
        if node.list_call and not isinstance(ops[node.layer], (Recurrent, Stacked)):
            dead.update(
                mask_name(TensorRef(node.layer, node.index, k))
                for k in range(ops[node.layer].num_outputs)
            )
    if not dead:
        return
    for node in nodes:
        node.inputs = ["" if i in dead else i for i in node.inputs]
        node.outputs = [o + ".dropped" if o in dead else o for o in node.outputs]


def lower(spec, ops: dict, name: str, *, drop_list_masks: bool = False) -> KerasGraph:
    """The :class:`KerasGraph` of a model's graph (``spec``, a
    :class:`~pylstm.read.keras_config.ModelSpec`) and its converted layers (``ops``: layer name
    -> :class:`OpSpec` or :class:`Recurrent`). ``drop_list_masks``: the model was written by
    Keras 3.0-3.3 (module doc).

    Raises
    ------
    UnsupportedError
        A call pylstm does not run (several tensors into a one-input layer, ...).
    FormatError
        The graph reads a tensor that does not exist.
    """
    _check(spec, ops, name)
    nodes = []
    for node in spec.nodes:
        op = ops[node.layer]
        nodes += _lower_stacked(node, op) if isinstance(op, Stacked) else [_lower(node, op)]
    if drop_list_masks:
        _drop_list_masks(nodes, spec, ops)
    inputs = spec.inputs
    if spec.outputs is None:
        last = spec.nodes[-1]
        count = ops[last.layer].num_outputs
        outputs = [TensorRef(last.layer, last.index, k) for k in range(count)]
    else:
        outputs = spec.outputs
    token_inputs = [
        any(
            isinstance(ops[n.layer], OpSpec)
            and ops[n.layer].op == "Embedding"
            and ref in n.tensor_args
            for n in spec.nodes
        )
        for ref in inputs
    ]
    shapes = []
    for k, ref in enumerate(inputs):
        config = spec.input_config if k == 0 else None
        if k > 0:
            layer = spec.layers.get(ref.layer)
            config = (layer.config or {}) if layer is not None else {}
        shape = None
        if config:
            shape = config.get("batch_shape") or config.get("batch_input_shape")
        shapes.append(list(shape) if isinstance(shape, (list, tuple)) else None)
    stateful = any(getattr(ops[n.layer], "stateful", False) for n in spec.nodes)
    graph_inputs = []
    for ref in inputs:
        graph_inputs += [value_name(ref), mask_name(ref)]
    return KerasGraph(
        nodes=nodes,
        inputs=graph_inputs,
        outputs=[value_name(r) for r in outputs],
        output_keys=spec.output_keys,
        input_names=[r.layer for r in inputs],
        token_inputs=token_inputs,
        input_shapes=shapes,
        stateful=stateful,
        name=name,
    )
