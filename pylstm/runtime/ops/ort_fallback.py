"""Operators pylstm does not implement, run by ONNX Runtime.

When an ONNX graph holds a node that pylstm's numpy operators do not implement (an operator of
another domain such as ``com.microsoft``, a rare default-domain operator, ``Loop``, ``Scan``),
the graph executor (:mod:`pylstm.runtime.graph`) hands each maximal run of such nodes (nodes
adjacent in its topological order, so the run is convex: no path leaves it and comes back) to
one :class:`OrtGroup`: a small ONNX model holding just those nodes -- their inputs the values
the run reads from the rest of the graph, their outputs everything the run produces, the
constants they read as initializers -- and an ``onnxruntime.InferenceSession`` over it. The
recurrent nodes and every operator pylstm implements stay on pylstm's engine and numpy.

The session is made at the first run (the element types of the group's inputs are known then;
a new combination of types, or a forked child, makes another) and kept; it is not pickled: an
unpickled model makes its own. Sessions get pylstm's thread count and threads that sleep when
idle. ``onnxruntime`` is imported lazily, here only: without it, such a node raises
:class:`~pylstm.UnsupportedError` at load naming the operator and ``pip install onnxruntime``.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from ...errors import UnsupportedError
from ..system import get_num_threads

INSTALL = "pip install onnxruntime"


def import_onnxruntime():
    """The ``onnxruntime`` module, or None when it cannot be imported."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime


_SCHEMAS = {}


def _schemas():
    """(domain, op type) -> [(since_version, min_in, max_in, max_out)] of ONNX Runtime's
    registered operators; None when this onnxruntime build cannot list them."""
    if "ops" not in _SCHEMAS:
        try:
            from onnxruntime.capi import onnxruntime_pybind11_state as state

            table = {}
            for s in state.get_all_operator_schema():
                key = ("" if s.domain in ("", "ai.onnx") else s.domain, s.name)
                table.setdefault(key, []).append(
                    (s.since_version, s.min_input, s.max_input, s.max_output)
                )
            _SCHEMAS["ops"] = table
        except Exception:  # a build without schema listing
            _SCHEMAS["ops"] = None
    return _SCHEMAS["ops"]


def check_runnable(node, source: str) -> None:
    """Raise :class:`UnsupportedError` unless ONNX Runtime can run ``node`` (a node pylstm does
    not implement): onnxruntime importable, the node's protobuf kept by the reader, the operator
    registered by ONNX Runtime for the node's opset, with as many inputs and outputs as it
    takes."""
    what = f"{source}: operator {node.op_type}"
    if node.domain:
        what += f" of domain {node.domain!r}"
    what += f" ({node.describe()})"
    if getattr(node, "proto", None) is None:
        raise UnsupportedError(f"{what} is not supported: not implemented by pylstm")
    ort = import_onnxruntime()
    if ort is None:
        raise UnsupportedError(
            f"{what} is not implemented by pylstm; with ONNX Runtime installed pylstm runs it "
            f"through ONNX Runtime (the recurrent nodes staying on pylstm's engine): {INSTALL}"
        )
    table = _schemas()
    if table is None:
        return
    versions = [v for v in table.get((node.domain, node.op_type), []) if v[0] <= node.opset]
    if not versions:
        raise UnsupportedError(
            f"{what} is implemented neither by pylstm nor by ONNX Runtime {ort.__version__} "
            f"(opset {node.opset})"
        )
    _, min_in, max_in, max_out = max(versions)
    n_in, n_out = len(node.inputs), len(node.outputs)
    if not min_in <= n_in <= max_in or n_out > max_out:
        raise UnsupportedError(
            f"{what} is not implemented by pylstm, and ONNX Runtime cannot run it: it has "
            f"{n_in} inputs and {n_out} outputs, ONNX Runtime's {node.op_type} takes "
            f"{min_in} to {max_in} inputs and gives at most {max_out} outputs"
        )


def implicit_inputs(node) -> list:
    """Names the subgraphs of ``node`` (``Loop``/``Scan`` bodies, ``If`` branches) read from the
    enclosing graph: read and not produced, declared or initialized inside, recursively."""
    import onnx

    proto = onnx.NodeProto.FromString(node.proto)
    reads = []

    def visit(graph, outer_known):
        known = set(outer_known)
        known.update(i.name for i in graph.input)
        known.update(t.name for t in graph.initializer)
        for n in graph.node:
            for name in n.input:
                if name and name not in known and name not in reads:
                    reads.append(name)
            for attr in n.attribute:
                for g in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                    visit(g, known)
            known.update(o for o in n.output if o)
        for o in graph.output:
            if o.name not in known and o.name not in reads:
                reads.append(o.name)

    for attr in proto.attribute:
        for g in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
            visit(g, set())
    return [r for r in reads if r not in proto.input]


class OrtGroup:
    """Runs a run of ``nodes`` (each with ``proto`` bytes and ``meta``) in ONNX Runtime.

    Parameters
    ----------
    nodes : list of Node
        Adjacent in the executor's topological order.
    constants : dict
        The graph's constants; those the nodes read become initializers of the group's model.

    Attributes
    ----------
    inputs, outputs : list of str
        The values the group reads from the rest of the graph (constants excluded), and every
        value it produces.
    """

    def __init__(self, nodes, constants: dict):
        self.op_types = [n.op_type for n in nodes]
        self.names = [n.name for n in nodes]
        self.protos = [n.proto for n in nodes]
        meta = nodes[0].meta
        self.opsets = dict(meta.opsets)
        self.ir_version = meta.ir_version
        produced, reads = set(), []
        for n in nodes:
            for name in n.inputs:
                if name and name not in produced and name not in reads:
                    reads.append(name)
            produced.update(o for o in n.outputs if o)
        self.initializers = {n: constants[n] for n in reads if n in constants}
        self.inputs = [n for n in reads if n not in constants]
        self.outputs = [o for n in nodes for o in n.outputs if o]
        self._sessions = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        inside = ", ".join(f"{n} ({t})" for n, t in zip(self.names, self.op_types))
        return f"ONNX Runtime over {inside}"

    def model_bytes(self, dtypes) -> bytes:
        """The group's ONNX model with inputs of element types ``dtypes`` (numpy dtypes)."""
        import onnx
        from onnx import helper, numpy_helper

        graph = onnx.GraphProto(name="pylstm_fallback")
        graph.node.extend(onnx.NodeProto.FromString(p) for p in self.protos)
        for name, dtype in zip(self.inputs, dtypes):
            seq = isinstance(dtype, tuple)  # ("seq", dtype): an ONNX sequence of tensors
            elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype[1] if seq else dtype))
            make = helper.make_sequence_value_info if seq else helper.make_tensor_value_info
            graph.input.append(make(name, elem, None))
        for name in self.outputs:
            graph.output.append(onnx.ValueInfoProto(name=name))
        for name, value in self.initializers.items():
            graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid(d, v) for d, v in self.opsets.items()],
            producer_name="pylstm",
        )
        model.ir_version = self.ir_version
        return model.SerializeToString()

    def session(self, dtypes):
        # per process too: a session made before a fork (its thread pool) is not used after it
        key = (os.getpid(), *(d if isinstance(d, tuple) else np.dtype(d).str for d in dtypes))
        sess = self._sessions.get(key)
        if sess is not None:
            return sess
        with self._lock:
            sess = self._sessions.get(key)
            if sess is None:
                ort = import_onnxruntime()
                if ort is None:  # unpickled where onnxruntime is missing
                    raise UnsupportedError(
                        f"{self.describe()}: these operators are not implemented by pylstm and "
                        f"run through ONNX Runtime, which is not installed: {INSTALL}"
                    )
                options = ort.SessionOptions()
                options.log_severity_level = 3
                # pylstm's thread count, and threads that sleep when idle: spinning ONNX
                # Runtime threads would take the cores from the engine's threads next
                options.intra_op_num_threads = get_num_threads()
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                sess = ort.InferenceSession(
                    self.model_bytes(dtypes), options, providers=["CPUExecutionProvider"]
                )
                self._sessions[key] = sess
        return sess

    def __call__(self, *args):
        feeds, dtypes = {}, []
        for name, value in zip(self.inputs, args):
            if value is None:
                raise ValueError(f"{self.describe()}: input {name!r} has no value")
            if isinstance(value, list) and value:  # a sequence made by another session
                feeds[name] = [np.asarray(v) for v in value]
                dtypes.append(("seq", feeds[name][0].dtype.str))
            else:
                feeds[name] = np.asarray(value)
                dtypes.append(feeds[name].dtype)
        sess = self.session(dtypes)
        try:
            outs = sess.run(self.outputs, feeds)
        except Exception as exc:  # onnxruntime's Fail, InvalidArgument, ...
            raise ValueError(f"{self.describe()} failed: {exc}") from None
        return [o if isinstance(o, list) else np.asarray(o) for o in outs]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_sessions"] = {}
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
