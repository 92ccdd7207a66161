"""Reading ONNX files: the protobuf parsed with the ``onnx`` package (imported lazily, so that
``import pylstm`` does not need it), attributes, inputs and outputs decoded, and the graph's
nodes and initializers turned into plain data (:class:`~pylstm.read.nodes.Node`, numpy arrays).
Tensors -- inline or in external data files next to the model -- are decoded by
:mod:`pylstm.read.onnx_tensors`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import FormatError, UnsupportedError
from .nodes import DEFAULT_DOMAINS, Node, Subgraph
from .onnx_tensors import numpy_dtype, tensor_to_array, type_name


@dataclass(frozen=True)
class NodeArg:
    """A graph input or output as ONNX Runtime describes it.

    Attributes
    ----------
    name : str
    shape : list
        One entry per axis: an int for a fixed size, a str for a symbolic one, None when
        unknown. None (not a list) when the model does not record the rank.
    type : str
        ``"tensor(float)"``, ``"tensor(int64)"``, ...
    """

    name: str
    shape: list | None
    type: str
    dtype: np.dtype | None = None

    def __repr__(self):
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape!r})"


@dataclass(frozen=True)
class ModelMeta:
    """What a node needs to be run alone by ONNX Runtime: the model's opset imports (domain ->
    version, the default domain as ``""``) and IR version."""

    opsets: dict
    ir_version: int


@dataclass
class OnnxNode(Node):
    """A :class:`~pylstm.read.nodes.Node` decoded from an ONNX file, keeping its serialized
    ``NodeProto`` (``proto``; None for ``Constant`` nodes, which pylstm always runs) and the
    model's :class:`ModelMeta`, so that a node pylstm does not implement can be handed to ONNX
    Runtime (:mod:`pylstm.runtime.ops.ort_fallback`)."""

    proto: bytes | None = field(default=None, repr=False)
    meta: ModelMeta | None = field(default=None, repr=False)


def import_onnx():
    """The ``onnx`` package, or ImportError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "reading .onnx files needs the onnx package: pip install onnx "
            "(or pip install 'pylstm[onnx]')"
        ) from None
    return onnx


def read_model_proto(path: str):
    """Parse an ONNX file into a ``ModelProto`` without loading external data.

    Raises
    ------
    FormatError
        The bytes are not a valid ``ModelProto`` (truncated, corrupt) or hold no graph.
    """
    onnx = import_onnx()
    with open(path, "rb") as fh:
        data = fh.read()
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # google.protobuf DecodeError and friends
        raise FormatError(
            f"{path}: not a readable ONNX model (truncated or corrupt?): {exc}"
        ) from None
    if not model.HasField("graph"):
        raise FormatError(f"{path}: not an ONNX model: it has no graph")
    return model


def _attribute(attr, onnx, base_dir: str, source: str, where: str, subgraph=None):
    A = onnx.AttributeProto
    if attr.ref_attr_name:
        raise UnsupportedError(f"{source}: {where}: attribute references are not supported")
    kind = attr.type
    if kind == A.FLOAT:
        return float(attr.f)
    if kind == A.INT:
        return int(attr.i)
    if kind == A.STRING:
        return attr.s.decode("utf-8", "replace")
    if kind == A.TENSOR:
        return tensor_to_array(attr.t, base_dir=base_dir, source=source)
    if kind == A.FLOATS:
        return [float(v) for v in attr.floats]
    if kind == A.INTS:
        return [int(v) for v in attr.ints]
    if kind == A.STRINGS:
        return [v.decode("utf-8", "replace") for v in attr.strings]
    if kind == A.TENSORS:
        return [tensor_to_array(t, base_dir=base_dir, source=source) for t in attr.tensors]
    if kind == A.GRAPH and subgraph is not None:
        return subgraph(attr.g)  # If branches, Loop/Scan bodies (read.nodes.Subgraph)
    if kind in (A.GRAPH, A.GRAPHS):
        return None  # only control-flow ops have subgraphs; the graph refuses them by name
    raise UnsupportedError(
        f"{source}: {where}: attribute {attr.name!r} of type {A.AttributeType.Name(kind)} is "
        "not supported"
    )


def _value_info(vi, source: str, *, is_input: bool) -> NodeArg:
    t = vi.type
    if t.WhichOneof("value") != "tensor_type":
        if is_input:
            raise UnsupportedError(
                f"{source}: input {vi.name!r} is a {t.WhichOneof('value') or 'untyped value'}; "
                "pylstm runs models whose inputs are tensors"
            )
        return NodeArg(vi.name, None, "unknown", None)
    elem = t.tensor_type.elem_type
    shape = None
    if t.tensor_type.HasField("shape"):
        shape = []
        for d in t.tensor_type.shape.dim:
            which = d.WhichOneof("value")
            shape.append(
                int(d.dim_value) if which == "dim_value" else d.dim_param if which else None
            )
    dtype = None
    if elem:  # bfloat16 values are held as float32 (numpy has no bfloat16)
        dtype = numpy_dtype(elem, f"{source}: {'input' if is_input else 'output'} {vi.name!r}")
    return NodeArg(vi.name, shape, f"tensor({type_name(elem)})", dtype)


def _check_names(model, source: str) -> None:
    """Every name the graph is wired by must be text: protobuf hands back ``bytes`` for a string
    field that is not valid UTF-8 (a corrupt file), which would break the graph's lookups."""
    g = model.graph
    names = [g.name]
    for n in g.node:
        names += [n.name, n.op_type, n.domain, *n.input, *n.output]
        names += [a.name for a in n.attribute]
    for t in g.initializer:
        names.append(t.name)
        names += [e.key for e in t.external_data] + [e.value for e in t.external_data]
    names += [v.name for v in (*g.input, *g.output, *g.value_info)]
    names += [o.domain for o in model.opset_import]
    for name in names:
        if not isinstance(name, str):
            raise FormatError(
                f"{source}: the name {bytes(name)[:40]!r} is not valid UTF-8: corrupt file"
            )


def parse_model_bytes(data, source: str = "bytes"):
    """A ``ModelProto`` from serialized bytes (FormatError when they are not one)."""
    onnx = import_onnx()
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(bytes(data))
    except Exception as exc:
        raise FormatError(f"{source}: not a readable ONNX model: {exc}") from None
    return proto


@dataclass
class OnnxGraphData:
    """A decoded ONNX graph: nodes, initializers, input and output descriptions."""

    nodes: list
    constants: dict
    inputs: list
    outputs: list


def decode_model(model, *, base_dir: str, source: str) -> OnnxGraphData:
    """The graph of a parsed ``ModelProto`` as plain data (tensors within the current
    :class:`~pylstm.read.onnx_tensors.TensorBudget`).

    Parameters
    ----------
    model : onnx.ModelProto
    base_dir : str
        Folder that external data locations are relative to.
    source : str
        Named in error messages.
    """
    _check_names(model, source)
    onnx = import_onnx()
    graph = model.graph
    opsets = {}
    for entry in model.opset_import:
        domain = "" if entry.domain in DEFAULT_DOMAINS else entry.domain
        opsets[domain] = int(entry.version)
    if "" not in opsets and any(n.domain in DEFAULT_DOMAINS for n in graph.node):
        raise FormatError(f"{source}: the model does not say which ONNX opset it uses")
    if graph.sparse_initializer:
        raise UnsupportedError(f"{source}: sparse initializers are not supported")
    constants = {}
    for t in graph.initializer:
        constants[t.name] = tensor_to_array(t, base_dir=base_dir, source=source)
    inputs = [
        _value_info(vi, source, is_input=True) for vi in graph.input if vi.name not in constants
    ]
    outputs = [_value_info(vi, source, is_input=False) for vi in graph.output]
    meta = ModelMeta(dict(opsets), int(model.ir_version))
    depth = [0]

    def decode_nodes(proto_nodes, prefix=""):
        out = []
        for k, n in enumerate(proto_nodes):
            domain = "" if n.domain in DEFAULT_DOMAINS else n.domain
            where = f"node {n.name or k!r} ({n.op_type})"
            attrs = {
                a.name: _attribute(a, onnx, base_dir, source, where, subgraph) for a in n.attribute
            }
            out.append(
                OnnxNode(
                    op_type=n.op_type,
                    name=n.name or f"{prefix}{n.op_type}_{k}",
                    inputs=list(n.input),
                    outputs=list(n.output),
                    attrs=attrs,
                    domain=domain,
                    opset=opsets.get(domain, 1),
                    proto=None if n.op_type == "Constant" else n.SerializeToString(),
                    meta=meta,
                )
            )
        return out

    def subgraph(g):
        """A subgraph attribute (an If branch) as plain data: its nodes (decoded the same
        way), initializers and output names."""
        if depth[0] >= 16:
            raise FormatError(f"{source}: subgraphs nested more than 16 deep")
        if g.sparse_initializer:
            raise UnsupportedError(f"{source}: sparse initializers are not supported")
        names = [g.name, *(o.name for o in g.output), *(t.name for t in g.initializer)]
        for n in g.node:
            names += [n.name, n.op_type, n.domain, *n.input, *n.output]
        if not all(isinstance(name, str) for name in names):
            raise FormatError(f"{source}: a name in subgraph {g.name!r} is not valid UTF-8")
        depth[0] += 1
        try:
            consts = {
                t.name: tensor_to_array(t, base_dir=base_dir, source=source) for t in g.initializer
            }
            sub_nodes = decode_nodes(g.node, prefix=f"{g.name or 'subgraph'}/")
        finally:
            depth[0] -= 1
        return Subgraph(g.name, sub_nodes, consts, [o.name for o in g.output])

    return OnnxGraphData(decode_nodes(graph.node), constants, inputs, outputs)
