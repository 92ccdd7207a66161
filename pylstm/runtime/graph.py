"""The graph executor: the one interpreter of every graph pylstm runs, ONNX graphs and Keras
models alike (a Keras model is lowered to the same plain nodes by
:mod:`pylstm.convert.keras_graph`).

Recurrent nodes (ONNX LSTM, GRU, RNN; Keras recurrent layers) run on the engine
(:mod:`pylstm.runtime.graph_recurrent`, built by the caller's ``make_recurrent``); every other
node runs in numpy: ONNX operators from :mod:`pylstm.runtime.ops.onnx_ops`, Keras layers
(domain ``pylstm.keras``) from :mod:`pylstm.runtime.ops.keras_layers`, the quantized operators
(and their ``com.microsoft`` fusions) from :mod:`pylstm.runtime.ops.quantized`. An ONNX node
that pylstm does not implement (another domain's operator, a rare one, ``Loop``, ``Scan``) runs
in ONNX Runtime when it is installed: each run of such nodes adjacent in topological order
becomes one node whose runner is an ONNX Runtime session over them
(:mod:`pylstm.runtime.ops.ort_fallback`); without onnxruntime it is refused at load, naming the
operator and what to install. ``If``: a condition known at load inlines the branch it
takes (both branches are decoded and checked); a run-time condition runs the chosen branch, a
graph of its own that sees the enclosing graph's values. At load time the graph is sorted topologically and every
node whose inputs are all constants is computed once (constant folding: ``Constant`` nodes,
weights transposed or sliced in the graph, shape arithmetic on constants), so that recurrent
weights computed by such subgraphs are packed like initializers. At run time only the nodes
needed for the requested outputs run, and intermediate values are dropped after their last use.
"""

from __future__ import annotations

import numpy as np

from ..errors import FormatError, UnsupportedError
from ..read import limits
from ..read.nodes import DEFAULT_DOMAINS, KERAS_DOMAIN, Node, Subgraph
from ..read.onnx_tensors import current_budget
from .ops import limits as onnx_limits
from .ops.keras_layers import KERAS_OPS, KerasCall
from .ops.onnx_ops import OPS
from .ops.ort_fallback import OrtGroup, check_runnable, implicit_inputs
from .ops.quantized import MS_OPS
from .system import single_threaded_blas

__all__ = ["DEFAULT_DOMAINS", "Graph", "Node", "Subgraph"]

RECURRENT_OPS = ("LSTM", "GRU", "RNN")
# W, R, B, (LSTM) P and (a lowered DynamicQuantizeLSTM) the scales and zero points of W and R:
# converted into the engine at load time
PACKED_INPUTS = (1, 2, 3, 7, 8, 9, 10, 11)
#: The op type of a node standing for a run of nodes that ONNX Runtime runs.
ORT_GROUP = "OnnxRuntime"


def _prepare_if(node: Node, source: str) -> None:
    """``If``: both branches decoded, their outer-scope reads appended to the node's inputs
    (after ``cond``) so that sorting, folding and planning see them."""
    branches = [node.attrs.get("then_branch"), node.attrs.get("else_branch")]
    if not all(isinstance(b, Subgraph) for b in branches):
        raise FormatError(f"{source}: {node.describe()} lacks a then_branch or else_branch graph")
    for b in branches:
        if len(b.outputs) != len(node.outputs):
            raise FormatError(
                f"{source}: {node.describe()}: branch {b.name!r} has {len(b.outputs)} outputs, "
                f"the node {len(node.outputs)}"
            )
    cond = node.inputs[0] if node.inputs else ""
    if not cond:
        raise FormatError(f"{source}: {node.describe()} has no condition input")
    outer = []
    for b in branches:
        outer += [n for n in b.outer_reads() if n != cond and n not in outer]
    node.inputs = [cond, *outer]
    node.attrs["outer"] = outer


class IfRunner:
    """Runs the branch an ``If`` node's run-time condition picks, with the outer values the
    branch reads visible (each branch a :class:`Graph` of its own, built at load)."""

    def __init__(self, node: Node, then_graph, else_graph):
        self.node, self.then_graph, self.else_graph = node, then_graph, else_graph

    def __call__(self, cond, *outer, context=None):
        flag = np.asarray(cond)
        if flag.size != 1:
            raise ValueError(f"{self.node.describe()}: cond must hold one value, got {flag.shape}")
        graph = self.then_graph if bool(flag.reshape(-1)[0]) else self.else_graph
        values = dict(zip(self.node.attrs["outer"], outer))
        feeds = {k: values[k] for k in graph.inputs if k in values}
        return [np.asarray(v) for v in graph.run(feeds, graph.outputs, context)]


class Graph:
    """A topologically sorted, constant-folded graph.

    Parameters
    ----------
    nodes : list of Node
    constants : dict of str to ndarray
        Initializers (and anything else known at load time).
    inputs, outputs : list of str
        Graph input and output names (inputs exclude initializers).
    make_recurrent : callable(Node, dict) -> callable
        Builds the runner of a recurrent node from the node and the constants.
    source : str
        Named in error messages.
    keras : bool
        A Keras model lowered by :mod:`pylstm.convert.keras_graph`: its nodes are Keras layers
        (domain ``pylstm.keras``, refused in other graphs), and the bytes each operator produces
        are not bounded (its sizes follow from checked weights). ONNX graphs (False) bound them.

    Raises
    ------
    UnsupportedError
        An operator (or domain) that pylstm does not run; the message names the op type and node.
    FormatError
        A node input that nothing produces, a cycle, or a constant subgraph that fails.
    """

    def __init__(
        self, nodes, constants, inputs, outputs, make_recurrent, source="model", keras=False
    ):
        self.source = source
        self.keras = keras
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self._make_recurrent = make_recurrent
        self._fallback = set()  # ids of the nodes ONNX Runtime runs
        for node in nodes:
            self._check_supported(node)
        self._check_fallback_inputs(nodes, set(constants) | set(self.inputs))
        nodes = self._sorted(nodes, set(constants) | set(self.inputs))
        self.constants = dict(constants)
        # Run-time bound on one operator's outputs (onnx_limits.py): relative to the largest
        # initializer, folded constant, feed or recurrent output, or the explicit max_bytes.
        self.max_bytes = limits.explicit_max_bytes()
        self._budget = current_budget()
        self.nodes = []
        work = list(reversed(nodes))  # a stack: If nodes with a constant condition push a branch
        while work:
            node = work.pop()
            if node.op_type == "If" and node.inputs[0] in self.constants:
                work.extend(reversed(self._inline_if(node)))
                continue
            if node.op_type == "If":
                node.run = self._if_runner(node)
                self.nodes.append(node)
                continue
            if id(node) in self._fallback:
                self.nodes.append(node)
                continue
            foldable = not node.recurrent and node.domain != KERAS_DOMAIN
            if foldable and all(not n or n in self.constants for n in node.inputs):
                self._fold(node)
                continue
            if node.recurrent:
                try:
                    node.run = make_recurrent(node, self.constants)
                except (TypeError, AttributeError, IndexError, KeyError) as exc:
                    # an attribute of the wrong type (a list where an int belongs, ...)
                    raise FormatError(
                        f"{source}: {node.describe()} has a malformed attribute or input ({exc})"
                    ) from None
            else:
                node.run = KerasCall(node) if node.domain == KERAS_DOMAIN else NumpyRunner(node)
            self.nodes.append(node)
        self.nodes = self._grouped(self.nodes)
        known = set(self.constants) | set(self.inputs)
        for node in self.nodes:
            known.update(n for n in node.outputs if n)
        missing = [o for o in self.outputs if o not in known]
        if missing:
            raise FormatError(f"{source}: graph outputs {missing} are produced by no node")
        # Keep only the constants something still reads at run time: recurrent weights now
        # live packed in their engines, folded intermediates are no longer needed.
        needed = set(self.outputs)
        for node in self.nodes:
            packed = PACKED_INPUTS if node.recurrent else ()
            needed.update(n for k, n in enumerate(node.inputs) if n and k not in packed)
        self.largest_constant = onnx_limits.largest_nbytes(self.constants.values())
        self.constants = {k: v for k, v in self.constants.items() if k in needed}
        self._plans = {}
        self._budget = None
        self._make_recurrent = None

    # -- load time ----------------------------------------------------------------------------
    def _inline_if(self, node: Node) -> list:
        """The nodes of the branch a constant condition takes (the other branch was checked
        at load too), then Identity nodes from the branch's outputs to the node's."""
        flag = np.asarray(self.constants[node.inputs[0]])
        if flag.size != 1:
            raise FormatError(f"{self.source}: {node.describe()}: cond holds {flag.size} values")
        taken = node.attrs["then_branch" if bool(flag.reshape(-1)[0]) else "else_branch"]
        for name, value in taken.constants.items():
            self.constants[name] = value
        for inner in taken.nodes:
            self._check_supported(inner)
        available = set(self.constants) | set(self.inputs)
        available |= {o for n in self.nodes for o in n.outputs if o}
        out = self._sorted(list(taken.nodes), available)
        for src, dst in zip(taken.outputs, node.outputs):
            if dst:
                out.append(Node("Identity", f"{node.name}/{dst}", [src], [dst], {}, "", 13))
        for extra in out[len(taken.nodes) :]:
            extra.recurrent = False
        return out

    def _if_runner(self, node: Node) -> IfRunner:
        """Each branch as a :class:`Graph` whose inputs are the outer values it reads (those
        known at load are its constants)."""
        graphs = []
        for key in ("then_branch", "else_branch"):
            branch = node.attrs[key]
            outer = branch.outer_reads()
            consts = {n: self.constants[n] for n in outer if n in self.constants}
            consts.update(branch.constants)
            feeds = [n for n in outer if n not in consts]
            graphs.append(
                Graph(
                    branch.nodes,
                    consts,
                    feeds,
                    branch.outputs,
                    self._make_recurrent,
                    source=f"{self.source}: {node.describe()} {key}",
                    keras=self.keras,
                )
            )
        return IfRunner(node, *graphs)

    def _check_supported(self, node: Node) -> None:
        if node.domain == KERAS_DOMAIN and self.keras:  # lowered by convert.keras_graph
            if not node.recurrent and node.attrs.get("op") not in KERAS_OPS:
                raise UnsupportedError(f"{self.source}: {node.describe()} is not a Keras operator")
            return
        if node.domain == "com.microsoft" and node.op_type in MS_OPS:
            return
        if node.domain not in DEFAULT_DOMAINS:
            if node.domain == KERAS_DOMAIN or getattr(node, "proto", None) is None:
                raise UnsupportedError(
                    f"{self.source}: {node.describe()} is in the operator domain "
                    f"{node.domain!r}; pylstm runs operators of the default ONNX domain only"
                )
            return self._mark_fallback(node)
        node.recurrent = node.op_type in RECURRENT_OPS
        if node.op_type == "If":
            if "outer" not in node.attrs:
                _prepare_if(node, self.source)
            return
        if node.recurrent or node.op_type in OPS:
            return
        self._mark_fallback(node)

    def _mark_fallback(self, node: Node) -> None:
        """``node`` is run by ONNX Runtime (UnsupportedError when it cannot be): the values its
        subgraphs read from this graph are appended to its inputs, for sorting and planning."""
        check_runnable(node, self.source)
        node.inputs = list(node.inputs)
        extra = implicit_inputs(node) if node.op_type in ("Loop", "Scan", "If") else []
        node.inputs += [n for n in extra if n not in node.inputs]
        self._fallback.add(id(node))

    def _check_fallback_inputs(self, nodes, available) -> None:
        """A node for ONNX Runtime that reads a value nothing produces is refused as
        unsupported (pylstm cannot hand it over), naming the operator."""
        produced = set(available) | {o for n in nodes for o in n.outputs if o}
        for node in nodes:
            if id(node) not in self._fallback:
                continue
            missing = [n for n in node.inputs if n and n not in produced]
            if missing:
                raise UnsupportedError(
                    f"{self.source}: operator {node.op_type} ({node.describe()}) is not "
                    "implemented by pylstm, and ONNX Runtime cannot run it here: it reads "
                    f"{missing[0]!r}, which is not a graph input, an initializer or the output "
                    "of any node"
                )

    def _grouped(self, nodes: list) -> list:
        """Each maximal run of ONNX Runtime nodes (adjacent in topological order, so that no
        path leaves the run and comes back) replaced by one node running an :class:`OrtGroup`;
        other nodes drop their serialized protobuf."""
        out, run = [], []
        for node in [*_sunk(nodes, self._fallback), None]:
            if node is not None and id(node) in self._fallback:
                run.append(node)
                continue
            if run:
                group = OrtGroup(run, self.constants)
                out.append(
                    Node(ORT_GROUP, group.describe(), group.inputs, group.outputs, {}, "", 1, group)
                )
                run = []
            if node is not None:
                if getattr(node, "proto", None) is not None:
                    node.proto = None
                out.append(node)
        self._fallback = set()
        return out

    def _sorted(self, nodes, available):
        """Kahn's algorithm, keeping the file's order among ready nodes."""
        producer = {}
        for i, node in enumerate(nodes):
            for name in node.outputs:
                if name:
                    if name in producer or name in available:
                        raise FormatError(
                            f"{self.source}: value {name!r} is produced twice ({node.describe()})"
                        )
                    producer[name] = i
        waiting = []
        users = [[] for _ in nodes]
        for i, node in enumerate(nodes):
            deps = set()
            for name in node.inputs:
                if not name or name in available:
                    continue
                if name not in producer:
                    raise FormatError(
                        f"{self.source}: {node.describe()} reads {name!r}, which is not a graph "
                        "input, an initializer or the output of any node"
                    )
                deps.add(producer[name])
            waiting.append(len(deps))
            for d in deps:
                users[d].append(i)
        ready = [i for i, w in enumerate(waiting) if w == 0]
        order = []
        while ready:
            ready.sort(reverse=True)
            i = ready.pop()
            order.append(nodes[i])
            for u in users[i]:
                waiting[u] -= 1
                if waiting[u] == 0:
                    ready.append(u)
        if len(order) != len(nodes):
            stuck = [nodes[i].describe() for i, w in enumerate(waiting) if w > 0]
            raise FormatError(
                f"{self.source}: the graph has a cycle through {', '.join(stuck[:5])}"
            )
        return order

    def _fold(self, node: Node) -> None:
        values = [self.constants[n] if n else None for n in node.inputs]
        predicted = onnx_limits.predicted_bytes(node, _trim(values))
        budget = self._budget
        if budget is not None and predicted is not None:
            budget.take(predicted, f"{node.describe()} (folded at load time)")
        try:
            outs = OPS[node.op_type](node, *_trim(values))
        except (UnsupportedError, FormatError):
            raise
        except Exception as exc:
            raise FormatError(
                f"{self.source}: {node.describe()} fails on its constant inputs: {exc}"
            ) from None
        for name, value in zip(node.outputs, outs):
            if name:
                self.constants[name] = value

    # -- run time -----------------------------------------------------------------------------
    def plan(self, wanted):
        """The nodes needed for ``wanted`` outputs, and after each the values to drop."""
        key = tuple(wanted)
        if key in self._plans:
            return self._plans[key]
        needed = set(wanted)
        chosen = []
        for node in reversed(self.nodes):
            if any(o in needed for o in node.outputs if o):
                chosen.append(node)
                needed.update(n for n in node.inputs if n)
        chosen.reverse()
        last_use = {}
        for i, node in enumerate(chosen):
            for n in node.inputs:
                if n:
                    last_use[n] = i
        keep = set(wanted) | set(self.constants) | set(self.inputs)
        drops = [[] for _ in chosen]
        for name, i in last_use.items():
            if name not in keep:
                drops[i].append(name)
        plan = (chosen, drops)
        self._plans[key] = plan
        return plan

    def run(self, feeds: dict, wanted, context=None) -> list:
        """Values of ``wanted`` (names) given ``feeds`` (name -> array, already checked).

        ``context`` goes to recurrent nodes (a :class:`~.graph_recurrent.RunContext`: states).
        """
        with single_threaded_blas:  # BLAS threads left spinning would slow the engine
            return self._run(feeds, wanted, context)

    def _run(self, feeds: dict, wanted, context) -> list:
        nodes, drops = self.plan(wanted)
        env = dict(self.constants)
        env.update(feeds)
        largest = max(
            getattr(self, "largest_constant", 0), onnx_limits.largest_nbytes(feeds.values())
        )
        guard = not getattr(self, "keras", False)
        for node, drop in zip(nodes, drops):
            args = _trim([env.get(n) if n else None for n in node.inputs])
            limit = onnx_limits.run_limit(largest, getattr(self, "max_bytes", None))
            if guard and not node.recurrent:
                predicted = onnx_limits.predicted_bytes(node, args)
                if predicted is not None and predicted > limit:
                    raise _over_run_limit(node, predicted, limit)
            try:
                if node.recurrent:
                    outs = node.run(args, [bool(o) for o in node.outputs], context)
                elif node.op_type == "If":
                    outs = node.run(*args, context=context)
                else:
                    outs = node.run(*args)
            except (TypeError, ValueError, NotImplementedError):
                raise
            except MemoryError:
                raise ValueError(f"{node.describe()}: out of memory computing its output") from None
            except Exception as exc:  # numpy errors on unexpected shapes or values
                raise ValueError(f"{node.describe()} failed: {exc}") from None
            produced = onnx_limits.largest_nbytes(o for o in outs if o is not None)
            if node.recurrent:  # its outputs' sizes follow from the inputs and real weights
                largest = max(largest, produced)
            elif guard and sum(int(getattr(o, "nbytes", 0)) for o in outs) > limit:
                raise _over_run_limit(node, produced, limit)
            for name, value in zip(node.outputs, outs):
                if name:
                    env[name] = value
            for name in drop:
                env.pop(name, None)
        return [env[name] for name in wanted]


def _sunk(nodes: list, fallback: set) -> list:
    """``nodes`` (topologically sorted) with each ONNX Runtime node moved as late as it can go
    before the next ONNX Runtime node or the first node reading its outputs: still a
    topological order, with ONNX Runtime nodes gathered into fewer, longer runs (values such as
    ONNX sequences then stay inside one session)."""
    order = list(nodes)
    for i in range(len(order) - 1, -1, -1):
        node = order[i]
        if id(node) not in fallback:
            continue
        made = {o for o in node.outputs if o}
        j = i + 1
        while j < len(order):
            nxt = order[j]
            if id(nxt) in fallback or made.intersection(nxt.inputs):
                break
            j += 1
        order.insert(j - 1, order.pop(i))
    return order


def _over_run_limit(node: Node, nbytes: int, limit: int) -> ValueError:
    return ValueError(
        f"{node.describe()} would produce {nbytes} bytes, more than the limit of {limit} bytes "
        f"for one operator's outputs (max({onnx_limits.RUN_MULTIPLE} x the largest initializer, "
        f"input or recurrent output, {onnx_limits.RUN_FLOOR} bytes, max_bytes)); if you trust "
        "the model, load it with pylstm.load(path, max_bytes=N)"
    )


def _trim(values: list) -> list:
    """Drop trailing omitted (None) optional inputs."""
    while values and values[-1] is None:
        values = values[:-1]
    return values


class NumpyRunner:
    """Runs ``node`` with its numpy operator; pickles as the node (the operator is looked up by
    its op type, never pickled)."""

    def __init__(self, node: Node):
        self.node = node

    def __call__(self, *args):
        node = self.node
        try:
            outs = OPS[node.op_type](node, *args)
        except UnsupportedError:
            raise
        except (ValueError, IndexError, TypeError, KeyError) as exc:  # AxisError is both
            raise ValueError(f"{node.describe()}: {exc}") from None
        return [np.asarray(o) for o in outs]


def recurrent_runners(graph) -> list:
    """The runners of ``graph``'s recurrent nodes, in graph order."""
    return [n.run for n in graph.nodes if n.recurrent]


def runners_by_name(graph) -> dict:
    """Node name -> runner (the last node of a name: a Keras layer's last call)."""
    return {n.name: n.run for n in graph.nodes}


def op_types(graph) -> list:
    """The op type of each node, in graph order."""
    return [n.op_type for n in graph.nodes]
