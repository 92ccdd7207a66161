"""Where the time axis runs through an ONNX graph, and whether every node treats time steps
independently -- the static check behind streaming ONNX models (``graph_stream.py``).

Each axis of each value gets a label; labels are merged where operators align axes
(broadcasting, MatMul batch axes, Reshape's copied dimensions, Shape -> ConstantOfShape ...), and
the labels on the time axis of the recurrent nodes' ``X`` are the time axis everywhere. A node
that reduces, slices, concatenates, sorts or contracts along the time axis, or an operator whose
effect on axes is not known here, makes the graph unstreamable (``NotStreamable`` names the node
and why). Values that summarise the sequence (``Y_h``, ``Y_c`` and what is computed from them
alone) may be graph outputs but may not flow back into per-step values or recurrent nodes.

The abstract values and the rules of the operators that move, join or contract axes are in
:mod:`.time_axes_ops`.
"""

from __future__ import annotations

import numpy as np

from .time_axes_ops import (
    _ELEMENTWISE,
    _NEIGHBOURHOOD,
    _REDUCE,
    AV,
    TIME,
    AxisRules,
    Elem,
    NotStreamable,
    _Labels,
)

__all__ = ["AV", "TIME", "Analysis", "Elem", "NotStreamable"]


class Analysis(AxisRules):
    """Finds the time axis of every input and output of ``graph`` for the ``wanted`` outputs.

    Attributes
    ----------
    input_axes : dict of str to int or None
        Time axis of each graph input (None: the input does not vary with time).
    output_axes : dict of str to int or None
        Time axis of each wanted output (None: a value that summarises the chunk).
    """

    def __init__(self, graph, input_ranks: dict, wanted: list):
        self.graph = graph
        self.L = _Labels()
        self.nodes, _ = graph.plan(wanted)
        for node in self.nodes:
            if node.recurrent:
                rn = node.run
                if rn.reverse:
                    raise NotStreamable(
                        f"cannot stream: {node.describe()} runs backwards in time "
                        f"({'bidirectional' if rn.D == 2 else 'reverse'}), which needs the whole "
                        "sequence; call run() on complete sequences instead"
                    )
                if len(node.inputs) > 4 and node.inputs[4]:
                    raise NotStreamable(
                        f"cannot stream: {node.describe()} takes sequence_lens; stream sequences "
                        "of equal length (or call run() with sequence_lens)"
                    )
        if not any(n.recurrent for n in self.nodes):
            raise NotStreamable("cannot stream: the outputs do not depend on a recurrent node")
        self._check = False
        self._run(input_ranks)  # pass 1: find the time labels
        self._check = True
        env = self._run(input_ranks)  # pass 2: check every node with the time labels known
        used = {n for node in self.nodes for n in node.inputs if n in graph.constants}
        for name in sorted(used):
            if self._has_time(env[name]):
                raise NotStreamable(
                    f"cannot stream: the constant {name!r} varies along the time axis (e.g. a "
                    "positional table of fixed length)"
                )
        self.input_axes = {}
        for name in graph.inputs:
            av = env.get(name)
            axes = [k for k, lab in enumerate(av.labels) if self.L.is_time(lab)] if av else []
            self.input_axes[name] = axes[0] if axes else None
        self.output_axes = {}
        for name in wanted:
            av = env[name]
            if av.labels is None:
                raise NotStreamable(f"cannot stream: the rank of output {name!r} is not known")
            axes = [k for k, lab in enumerate(av.labels) if self.L.is_time(lab)]
            if axes and self._mixed(av):
                raise NotStreamable(
                    f"cannot stream: output {name!r} mixes time steps (it depends on steps other "
                    "than its own, or on the sequence length)"
                )
            if len(axes) > 1:
                raise NotStreamable(f"cannot stream: output {name!r} has two time axes")
            self.output_axes[name] = axes[0] if axes else None

    # -- helpers ------------------------------------------------------------------------------
    def _fail(self, node, why: str):
        if self._check:
            raise NotStreamable(f"cannot stream: {node.describe()} {why}")

    def _has_time(self, av) -> bool:
        return av is not None and av.labels is not None and any(map(self.L.is_time, av.labels))

    def _mixed(self, av) -> bool:
        if av is None:
            return False
        if av.mixed:
            return True
        return bool(av.elems) and any(any(self.L.is_time(d) for d in e.deps) for e in av.elems)

    def _combine_check(self, node, ins, labels) -> None:
        """A per-step result may not be computed from a value that summarises the sequence."""
        if labels is None or not any(map(self.L.is_time, labels)):
            return
        for a in ins:
            if a is not None and self._mixed(a) and not self._has_time(a):
                self._fail(
                    node, "combines a value that summarises the sequence with per-step values"
                )

    def _const_av(self, name, arr):
        arr = np.asarray(arr)
        labels = [None if d == 1 else (name, k) for k, d in enumerate(arr.shape)]
        elems = None
        if arr.dtype.kind in "iu" and arr.ndim <= 1 and arr.size <= 64:
            elems = [Elem(value=int(v)) for v in arr.reshape(-1)]
        return AV(labels, False, elems, arr)

    def _ints(self, node, av, what):
        """Constant integer values of an input (axes, starts ...), or fail."""
        if av is not None and av.elems is not None and all(e.value is not None for e in av.elems):
            return [e.value for e in av.elems]
        raise NotStreamable(
            f"cannot stream: {node.describe()} takes its {what} from a value computed at run time"
        )

    def _broadcast(self, avs) -> list | None:
        ranks = [len(a.labels) for a in avs if a is not None and a.labels is not None]
        if len(ranks) != len([a for a in avs if a is not None]):
            return None
        rank = max(ranks) if ranks else 0
        out = []
        for k in range(rank):
            lab = None
            for a in avs:
                if a is None:
                    continue
                j = k - (rank - len(a.labels))
                if j >= 0 and a.labels[j] is not None:
                    lab = a.labels[j] if lab is None else self.L.union(lab, a.labels[j])
            out.append(lab)
        return out

    # -- the walk -----------------------------------------------------------------------------
    def _run(self, input_ranks):
        env = {}
        for name, rank in input_ranks.items():
            env[name] = AV(None if rank is None else [(name, k) for k in range(rank)])
        for name, arr in self.graph.constants.items():
            env[name] = self._const_av(name, arr)
        for node in self.nodes:
            ins = [env.get(n) if n else None for n in node.inputs]
            try:
                outs = self._node(node, ins)
            except NotStreamable:
                raise
            except (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError):
                raise NotStreamable(
                    f"cannot stream: pylstm could not follow the axes through {node.describe()}"
                ) from None
            for name, av in zip(node.outputs, outs):
                if name:
                    env[name] = av
        return env

    def _node(self, node, ins):
        op = node.op_type

        def fresh(k, o=0):
            return (node.name, o, k)

        if any(a is not None and a.labels is None for a in ins):
            raise NotStreamable(
                f"cannot stream: {node.describe()} reads a value of unknown rank (declare the "
                "shapes of the graph inputs)"
            )
        mixed = any(self._mixed(a) for a in ins)
        x = ins[0] if ins else None
        if node.recurrent:
            return self._recurrent(node, ins)
        if op in _ELEMENTWISE:
            if op in ("Add", "Sub", "Mul", "Div") and all(
                a is not None and a.elems is not None for a in ins
            ):
                return [self._shape_arith(node, ins)]
            labels = self._broadcast(ins)
            elems = x.elems if op in ("Cast", "Identity", "CastLike") else None
            self._combine_check(node, ins, labels)
            return [AV(labels, mixed, elems)] + [AV(list(labels), mixed)] * (len(node.outputs) - 1)
        if op == "Shape":
            start = node.attrs.get("start", 0)
            end = node.attrs.get("end")
            labs = x.labels[start:end]
            elems = [Elem(value=1) if lab is None else Elem(lab, frozenset([lab])) for lab in labs]
            return [AV([fresh(0)], False, elems)]
        if op == "Size":
            return [AV([], False, [Elem(None, frozenset(x.labels))])]
        if op == "Transpose":
            perm = node.attrs.get("perm") or list(range(len(x.labels)))[::-1]
            return [AV([x.labels[p] for p in perm], mixed)]
        if op in ("Unsqueeze", "Squeeze"):
            return [self._squeeze(node, op, x, ins, mixed)]
        if op == "Concat":
            return [self._concat(node, ins, mixed)]
        if op == "Gather":
            return [self._gather(node, x, ins[1], mixed)]
        if op == "Slice":
            return [self._slice(node, x, ins, mixed)]
        if op == "Split":
            axis = node.attrs.get("axis", 0) % max(len(x.labels), 1)
            if self.L.is_time(x.labels[axis]):
                self._fail(node, "splits along the time axis")
            labs = list(x.labels)
            outs = []
            for o in range(len(node.outputs)):
                labs_o = list(labs)
                labs_o[axis] = (node.name, o, axis)
                outs.append(AV(labs_o, mixed or self.L.is_time(x.labels[axis])))
            return outs
        if op in ("ConstantOfShape", "Expand", "Reshape"):
            return [self._shaped(node, op, x, ins, mixed)]
        if op == "Flatten":
            return [self._flatten(node, x, mixed)]
        if op in ("MatMul", "Gemm"):
            return [self._matmul(node, op, ins, mixed)]
        if op in ("Softmax", "LogSoftmax", "LayerNormalization") or op in _REDUCE:
            return self._reduce(node, op, x, ins, mixed)
        if op in ("Range",):
            return [AV([fresh(0)], mixed)]
        if op == "BatchNormalization":
            return [AV(list(x.labels), mixed)]
        if op in ("Pad", "Tile", "CumSum"):
            if self._has_time(x):
                self._fail(node, f"({op}) works along axes that may include the time axis")
            return [AV([fresh(k) for k in range(len(x.labels))], mixed)]
        if op in _NEIGHBOURHOOD and x is not None and len(x.labels) >= 3:
            # [N, C, *spatial]: each output position reads a window of spatial positions (the
            # spatial labels are kept so that the time axis is found through the node)
            if any(self.L.is_time(lab) for lab in x.labels[2:]):
                self._fail(node, f"({op}) reads neighbouring time steps")
            return [AV([x.labels[0], fresh(1), *x.labels[2:]], mixed)]
        if any(self._has_time(a) for a in ins if a is not None):
            self._fail(node, "is an operator whose effect on the time axis pylstm cannot check")
        return [AV(None if x is None else [fresh(k) for k in range(len(x.labels))], mixed)]

    def _recurrent(self, node, ins):
        rn = node.run
        x = ins[0]
        if len(x.labels) != 3:
            raise NotStreamable(f"cannot stream: {node.describe()}: X must be 3-D")
        t_axis, b_axis = (0, 1) if rn.layout == 0 else (1, 0)
        if x.labels[t_axis] is None:
            raise NotStreamable(f"cannot stream: {node.describe()}: the time axis of X has size 1")
        self.L.union(TIME, x.labels[t_axis])
        if self._check and self._mixed(x):
            self._fail(node, "reads an X that mixes time steps")
        for k in (5, 6):
            s = ins[k] if len(ins) > k else None
            if s is not None and (self._mixed(s) or self._has_time(s)):
                self._fail(node, "takes an initial state computed from the sequence")
        t, b = x.labels[t_axis], x.labels[b_axis]
        d, h = (node.name, "D"), (node.name, "H")
        if rn.D == 1:
            d = None
        y = [t, d, b, h] if rn.layout == 0 else [b, t, d, h]
        state = [d, b, h] if rn.layout == 0 else [b, d, h]
        return [AV(y, False), AV(list(state), True), AV(list(state), True)]
