"""Plain graph nodes: what an ONNX file's nodes decode to and what the Keras conversion lowers a
Keras model to. The runtime's one graph executor (:mod:`pylstm.runtime.graph`) runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

#: The names of the default ONNX operator domain.
DEFAULT_DOMAINS = ("", "ai.onnx")
#: The operator domain of the Keras layers a Keras model lowers to (run by the Keras operator
#: library, :mod:`pylstm.runtime.ops.keras_layers`).
KERAS_DOMAIN = "pylstm.keras"


@dataclass
class Node:
    """One graph node.

    ``inputs`` holds ``""`` for an omitted optional input; ``opset`` is the version of the
    node's domain that the model imports; ``run`` is set by the graph (numpy op or engine).
    ``recurrent`` marks nodes that run on the engine (ONNX LSTM/GRU/RNN, Keras recurrent
    layers).
    """

    op_type: str
    name: str
    inputs: list
    outputs: list
    attrs: dict
    domain: str = ""
    opset: int = 1
    run: Callable | None = field(default=None, repr=False)
    recurrent: bool = False

    def describe(self) -> str:
        return f"node {self.name!r} ({self.op_type})" if self.name else f"a {self.op_type} node"


@dataclass
class Subgraph:
    """A subgraph attribute (``If``'s ``then_branch`` / ``else_branch``) as plain data: its
    nodes, its initializers and its output names. Its nodes may read values of the enclosing
    graphs (outer scope)."""

    name: str
    nodes: list
    constants: dict
    outputs: list

    def outer_reads(self) -> list:
        """Names this subgraph (and those nested in it) reads from enclosing scopes, in order."""
        produced = set(self.constants)
        reads = []
        for node in self.nodes:
            names = list(node.inputs)
            for value in node.attrs.values():
                if isinstance(value, Subgraph):
                    names += value.outer_reads()
            reads += [n for n in names if n and n not in produced and n not in reads]
            produced.update(o for o in node.outputs if o)
        reads += [o for o in self.outputs if o not in produced and o not in reads]
        return reads
