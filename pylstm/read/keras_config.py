"""Walk a Keras model config (``model.to_json()``, ``config.json`` of a ``.keras``, the
``model_config`` attribute of an ``.h5``) into a plain graph, shared by live objects and files.

Accepted forms: ``Sequential`` (layers as a list, or the old Keras 2 bare list), ``Functional`` /
``Model`` graphs with one or several inputs (recurrent layers may take ``initial_state`` tensors
from other layers or inputs; Keras 3 nodes ``{"args": [...], "kwargs": {...}}`` whose tensors
carry ``keras_history``; Keras 2 nodes ``[[name, node_index, tensor_index, kwargs], ...]``), and a
single layer (for ``from_keras(layer)``). Keras 3 functional configs also hold operations such as
``NotEqual`` and ``Any`` (how ``Embedding(mask_zero=True)`` and ``Masking`` masks were recorded) and
pass masks explicitly as a ``mask`` keyword: both are kept in the graph.

Each layer also gets its weight key in a Keras 3 weights file (``layers/<snake_case class>[_n]``,
numbered by position among the model's layers, not by layer name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

from ..errors import FormatError, UnsupportedError


class TensorRef(NamedTuple):
    """One tensor of the graph: output ``index`` of call ``node`` of layer ``layer``."""

    layer: str
    node: int
    index: int


INPUT = TensorRef("__input__", 0, 0)


@dataclass
class LayerSpec:
    """A layer (or Keras 3 operation) of the config.

    Attributes
    ----------
    class_name : str
    name : str
    config : dict
        The layer's own config (``{"units": 4, "activation": "tanh", ...}``).
    weights_key : str or None
        Path of its group in a Keras 3 weights file (``"layers/lstm_1"``); None for operations.
    is_operation : bool
        A Keras 3 operation (``keras.src.ops``), not a layer: no weights.
    """

    class_name: str
    name: str
    config: dict
    weights_key: str | None = None
    is_operation: bool = False


@dataclass
class NodeSpec:
    """One call of a layer in the graph.

    Attributes
    ----------
    layer : str
        The layer's name.
    index : int
        Which call of the layer (its outputs are ``TensorRef(layer, index, k)``).
    args : list
        Positional arguments: ``TensorRef`` for tensors, plain values otherwise.
    mask : TensorRef or None
        A mask passed explicitly (Keras 3 records the masks it propagated this way).
    kwargs : dict
        Other keyword arguments that are not tensors.
    initial_state : list of TensorRef
        A recurrent layer's ``initial_state`` tensors (Keras order: ``[h, c]`` per direction,
        forward first); empty when the layer starts from zeros.
    masks : list
        Per tensor argument, the mask passed to a call on a list of tensors (TensorRef, or None:
        no mask): Keras 3.0-3.3 record the propagated masks of such a call this way
        (``mask=[m1, None]``), and every Keras 3 passes such a list as it is; empty when the
        config records no list.
    list_call : bool
        The layer was called on a list of tensors (``Add()([a, b])``, ``Attention()([q, v])``),
        as a Keras 3 config records it.
    """

    layer: str
    index: int
    args: list
    mask: TensorRef | None = None
    kwargs: dict = field(default_factory=dict)
    initial_state: list = field(default_factory=list)
    masks: list = field(default_factory=list)
    list_call: bool = False

    @property
    def tensor_args(self) -> list:
        return [a for a in self.args if isinstance(a, TensorRef)]

    @property
    def reads(self) -> list:
        """Every tensor this call needs: its arguments, ``initial_state`` and mask."""
        masks = [m for m in self.masks if m is not None]
        return self.tensor_args + self.initial_state + ([self.mask] if self.mask else []) + masks


@dataclass
class ModelSpec:
    """The graph of a model.

    Attributes
    ----------
    kind : {"sequential", "functional", "layer"}
    layers : dict of str to LayerSpec
        In config order.
    nodes : list of NodeSpec
        In an order where every input is computed before it is used.
    input : TensorRef
        The model's (first) input (``INPUT`` or an ``InputLayer`` output).
    input_config : dict or None
        The ``InputLayer`` config (``batch_shape`` / ``batch_input_shape``, ``dtype``), if any.
    outputs : list of TensorRef, or None
        None: every output of the last node (Sequential models and single layers). Either way
        the model returns one array when there is one output (Keras unpacks lists of one).
    output_keys : list of str, or None
        Keras 3 models with a dict of outputs return a dict with these keys.
    extra_inputs : list of TensorRef
        A functional model's other inputs, in ``input_layers`` order (``[input, *extra_inputs]``
        is what the model is called with).
    """

    kind: str
    layers: dict
    nodes: list
    input: TensorRef
    input_config: dict | None
    outputs: list | None
    output_keys: list | None = None
    extra_inputs: list = field(default_factory=list)

    @property
    def inputs(self) -> list:
        return [self.input, *self.extra_inputs]


def snake_case(name: str) -> str:
    """Keras' ``to_snake_case`` (``SimpleRNN`` -> ``simple_rnn``), used for weight keys."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


# Keras 3 operations that functional configs record for masks; legacy .h5 files written by
# Keras 3 drop the "module" key that tells operations from layers, so they are known by name.
# Merge layers' masks add ExpandDims, ZerosLike, OnesLike and the Concatenate operation (known
# there from the Concatenate layer by its config, which has no "trainable").
MASK_OPERATIONS = (
    "NotEqual",
    "Equal",
    "Any",
    "All",
    "LogicalNot",
    "LogicalAnd",
    "LogicalOr",
    "ExpandDims",
    "ZerosLike",
    "OnesLike",
    "Concatenate",
)


def _is_operation(entry: dict) -> bool:
    module = str(entry.get("module") or "")
    if module:
        return module.startswith(("keras.src.ops", "keras.ops"))
    if entry.get("class_name") == "Concatenate":
        return "trainable" not in (entry.get("config") or {"trainable": True})
    return entry.get("class_name") in MASK_OPERATIONS


def _layer_spec(entry, where: str) -> LayerSpec:
    if not isinstance(entry, dict) or "class_name" not in entry:
        raise FormatError(f"{where}: a layer entry has no class_name: {str(entry)[:200]}")
    config = entry.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise FormatError(f"{where}: layer {entry['class_name']} has a malformed config")
    name = entry.get("name") or config.get("name") or snake_case(entry["class_name"])
    return LayerSpec(str(entry["class_name"]), str(name), config, None, _is_operation(entry))


def _assign_weight_keys(specs: list) -> None:
    """``layers/<snake_case class>`` numbered ``_1``, ``_2``... by position (Keras 3 saving)."""
    used: dict = {}
    for spec in specs:
        base = snake_case(spec.class_name)
        if base in used:
            used[base] += 1
            spec.weights_key = f"layers/{base}_{used[base]}"
        else:
            used[base] = 0
            spec.weights_key = f"layers/{base}"


def _sequential(config, where: str) -> ModelSpec:
    entries = config if isinstance(config, list) else config.get("layers")
    if not isinstance(entries, list) or not entries:
        raise FormatError(f"{where}: Sequential config has no layers")
    specs = [_layer_spec(e, where) for e in entries]
    input_config = None
    source = INPUT
    if specs[0].class_name == "InputLayer":
        input_config = specs[0].config
        specs = specs[1:]
    else:
        first = specs[0].config
        if "batch_input_shape" in first or "batch_shape" in first:
            input_config = first
    if not specs:
        raise FormatError(f"{where}: Sequential model has only an InputLayer")
    _assign_weight_keys(specs)
    nodes = []
    for spec in specs:
        nodes.append(NodeSpec(spec.name, 0, [source]))
        source = TensorRef(spec.name, 0, 0)
    layers = {s.name: s for s in specs}
    if len(layers) != len(specs):
        raise FormatError(f"{where}: two layers share a name")
    return ModelSpec("sequential", layers, nodes, INPUT, input_config, None)


def _keras3_value(value, where: str):
    """A Keras 3 node argument: tensors -> TensorRef, lists mapped, other values as they are."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        history = (value.get("config") or {}).get("keras_history")
        if not isinstance(history, list) or len(history) != 3:
            raise FormatError(f"{where}: malformed tensor reference {str(value)[:200]}")
        return TensorRef(str(history[0]), int(history[1]), int(history[2]))
    if isinstance(value, list):
        return [_keras3_value(v, where) for v in value]
    return value


def _parse_node(layer: str, index: int, node, where: str) -> NodeSpec:
    list_call = False
    if isinstance(node, dict):  # Keras 3
        args = [_keras3_value(a, where) for a in node.get("args", [])]
        if len(args) == 1 and isinstance(args[0], list):  # called on a list of tensors
            args = args[0]
            list_call = True
        raw = node.get("kwargs") or {}
    elif isinstance(node, list):  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        args, raw = [], {}
        for item in node:
            if not isinstance(item, list) or len(item) < 3:
                raise FormatError(f"{where}: malformed inbound node of layer {layer!r}")
            args.append(TensorRef(str(item[0]), int(item[1]), int(item[2])))
            if len(item) > 3 and isinstance(item[3], dict):
                raw = item[3]
    else:
        raise FormatError(f"{where}: malformed inbound node of layer {layer!r}")
    kwargs = {}
    mask = None
    masks = []
    initial_state = []
    for key, value in raw.items():
        value = _keras3_value(value, where)
        if key == "training":
            continue
        if key == "initial_state" and value is not None:
            states = value if isinstance(value, list) else [value]
            states = [_as_ref(v) for v in states]
            if not all(isinstance(v, TensorRef) for v in states):
                raise UnsupportedError(
                    f"{where}: layer {layer!r} has an initial_state that is not a list of tensors"
                )
            initial_state = states
            continue
        if key == "mask":
            if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
                value = TensorRef(str(value[0]), int(value[1]), int(value[2]))
            if isinstance(value, list) and all(
                v is None or isinstance(v, TensorRef) for v in value
            ):
                # a call on a list of tensors: one mask per tensor, None for none (Keras
                # 3.0-3.3 record the propagated ones; Keras passes a recorded list as it is)
                masks = list(value)
                continue
            if value is not None and not isinstance(value, TensorRef):
                raise UnsupportedError(f"{where}: layer {layer!r} is called with a list of masks")
            mask = value
            continue
        if isinstance(value, TensorRef) or (
            isinstance(value, list) and any(isinstance(v, (TensorRef, list)) for v in value)
        ):
            raise UnsupportedError(
                f"{where}: layer {layer!r} is called with tensor argument {key!r}; pylstm "
                "passes tensors between layers as inputs and as initial_state only"
            )
        kwargs[key] = value
    return NodeSpec(layer, index, args, mask, kwargs, initial_state, masks, list_call)


def _as_ref(value):
    """A ``[name, node, index]`` triple (Keras 2) as a TensorRef; other values as they are."""
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return TensorRef(str(value[0]), int(value[1]), int(value[2]))
    return value


def _refs(value, where: str, what: str) -> tuple:
    """``input_layers`` / ``output_layers``: one [name, node, tensor], a list of them, or (Keras
    3) a dict of them. Returns (list of TensorRef, the dict's keys or None)."""
    keys = None
    if isinstance(value, dict):
        keys, value = list(value), list(value.values())
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        value = [value]
    if isinstance(value, list) and all(isinstance(v, list) and len(v) == 3 for v in value):
        return [TensorRef(str(v[0]), int(v[1]), int(v[2])) for v in value], keys
    raise FormatError(f"{where}: malformed {what}: {str(value)[:200]}")


def _functional(config: dict, keras_major: int, where: str) -> ModelSpec:
    entries = config.get("layers")
    if not isinstance(entries, list) or not entries:
        raise FormatError(f"{where}: functional model config has no layers")
    specs, raw_nodes = [], {}
    for entry in entries:
        spec = _layer_spec(entry, where)
        specs.append(spec)
        raw_nodes[spec.name] = entry.get("inbound_nodes") or []
    layers = {s.name: s for s in specs}
    if len(layers) != len(specs):
        raise FormatError(f"{where}: two layers share a name")
    _assign_weight_keys([s for s in specs if not s.is_operation])
    inputs, _ = _refs(config.get("input_layers"), where, "input_layers")
    outputs, keys = _refs(config.get("output_layers"), where, "output_layers")
    for model_input in inputs:
        if (
            layers.get(model_input.layer) is None
            or layers[model_input.layer].class_name != "InputLayer"
        ):
            raise FormatError(
                f"{where}: input_layers names {model_input.layer!r}, not an InputLayer"
            )
    if len({r.layer for r in inputs}) != len(inputs):
        raise FormatError(f"{where}: input_layers names an InputLayer twice")
    model_input = inputs[0]
    pending = []
    for spec in specs:
        if spec.class_name == "InputLayer":
            continue
        for i, node in enumerate(raw_nodes[spec.name]):
            pending.append(_parse_node(spec.name, i, node, f"{where}: layer {spec.name!r}"))
    # Order the calls so that each one's inputs exist (shared layers may be listed early).
    known = {(r.layer, 0) for r in inputs}
    nodes = []
    while pending:
        ready = [n for n in pending if all((r.layer, r.node) in known for r in n.reads)]
        if not ready:
            missing = {
                r.layer
                for n in pending
                for r in n.reads
                if r.layer not in layers or (r.layer, r.node) not in known
            }
            if any(m in layers and layers[m].class_name == "InputLayer" for m in missing):
                raise FormatError(
                    f"{where}: the graph reads an InputLayer that is not among the model's "
                    f"input_layers: {sorted(missing)}"
                )
            raise FormatError(f"{where}: the graph refers to unknown layers or calls: {missing}")
        for n in ready:
            known.add((n.layer, n.index))
            pending.remove(n)
            nodes.append(n)
    for ref in outputs:
        if (ref.layer, ref.node) not in known:
            raise FormatError(f"{where}: output_layers names an unknown call {tuple(ref)}")
    used = {n.layer for n in nodes} | {r.layer for r in inputs}
    layers = {k: v for k, v in layers.items() if k in used}
    return ModelSpec(
        "functional",
        layers,
        nodes,
        model_input,
        layers[model_input.layer].config,
        outputs,
        keys,
        inputs[1:],
    )


MODEL_CLASSES = ("Sequential", "Functional", "Model")


def plain_config(value):
    """``value`` with every tuple turned into a list, as a JSON round trip would: a live Keras
    3 ``get_config()`` holds tuples (``output_layers``, shapes, ``keras_history``) where saved
    configs hold lists. Dicts and lists are copied; other values are kept as they are."""
    if isinstance(value, dict):
        return {k: plain_config(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_config(v) for v in value]
    return value


def model_spec(config, *, keras_major: int, where: str) -> ModelSpec:
    """The graph of a model config, or of a single layer's.

    Parameters
    ----------
    config : dict
        ``{"class_name": ..., "config": ...}`` as in ``model.to_json()``.
    keras_major : int
        2 or 3: how the config's functional nodes are written when ambiguous.
    where : str
        Named in error messages (the file name).

    Raises
    ------
    FormatError
        A malformed config.
    UnsupportedError
        Tensors passed to a layer other than as its inputs or ``initial_state``.
    """
    if not isinstance(config, dict) or "class_name" not in config:
        raise FormatError(f"{where}: the model config has no class_name")
    try:
        config = plain_config(config)
    except RecursionError:
        raise FormatError(f"{where}: the model config is nested too deeply") from None
    class_name = config["class_name"]
    inner = config.get("config")
    if class_name == "Sequential":
        return _sequential(inner if inner is not None else [], where)
    if class_name in ("Functional", "Model"):
        if not isinstance(inner, dict):
            raise FormatError(f"{where}: functional model config is malformed")
        return _functional(inner, keras_major, where)
    spec = _layer_spec(config, where)
    node = NodeSpec(spec.name, 0, [INPUT])
    return ModelSpec("layer", {spec.name: spec}, [node], INPUT, None, None)
