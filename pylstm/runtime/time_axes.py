"""Where the time axis runs through an ONNX graph, and whether every node treats time steps
independently -- the static check behind streaming ONNX models (``onnx_stream.py``).

Each axis of each value gets a label; labels are merged where operators align axes
(broadcasting, MatMul batch axes, Reshape's copied dimensions, Shape -> ConstantOfShape ...), and
the labels on the time axis of the recurrent nodes' ``X`` are the time axis everywhere. A node
that reduces, slices, concatenates, sorts or contracts along the time axis, or an operator whose
effect on axes is not known here, makes the graph unstreamable (``NotStreamable`` names the node
and why). Values that summarise the sequence (``Y_h``, ``Y_c`` and what is computed from them
alone) may be graph outputs but may not flow back into per-step values or recurrent nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TIME = ("<time>",)

# Operators whose output at each position depends only on the inputs at the same (broadcast)
# position.
# fmt: off
_ELEMENTWISE = {
    "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Sin",
    "Cos", "Tan", "Atan", "Tanh", "Sigmoid", "Relu", "Softplus", "Softsign", "Erf", "Mish",
    "HardSwish", "Not", "IsNaN", "IsInf", "LeakyRelu", "Elu", "Celu", "Selu", "HardSigmoid",
    "ThresholdedRelu", "Gelu", "PRelu", "Clip", "Add", "Sub", "Mul", "Div", "Pow", "Mod",
    "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor",
    "BitwiseAnd", "BitwiseOr", "Sum", "Max", "Min", "Mean", "Where", "Cast", "CastLike",
    "Identity", "Dropout",
}
# fmt: on
# fmt: off
_REDUCE = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2",
           "ReduceSumSquare", "ArgMax", "ArgMin"}
# fmt: on
_SHAPE_ARITH = {"Add", "Sub", "Mul", "Div"}
# Operators on [N, C, *spatial] whose outputs read windows of the spatial axes.
_NEIGHBOURHOOD = {
    "Conv",
    "ConvTranspose",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Resize",
    "Upsample",
}


class NotStreamable(ValueError):
    """The graph cannot be run chunk by chunk; the message names the node and why."""


@dataclass
class Elem:
    """One element of a value computed from tensor shapes: the axis label it copies (if it is
    exactly a dimension), the labels it depends on, and its value when known."""

    direct: object = None
    deps: frozenset = frozenset()
    value: int | None = None


@dataclass
class AV:
    """Abstract value: one label per axis (None for an axis known to have size 1), whether it
    mixes time steps (depends on steps other than its own, or on the sequence length), and, for
    small integer vectors computed from shapes, their elements."""

    labels: list | None
    mixed: bool = False
    elems: list | None = None
    consts: object = field(default=None, repr=False)


class _Labels:
    """Union-find over axis labels."""

    def __init__(self):
        self.parent = {}

    def find(self, a):
        if a is None:
            return None
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a, b):
        if a is None or b is None:
            return a if b is None else b
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if rb == self.find(TIME):
                ra, rb = rb, ra
            self.parent[rb] = ra
        return ra

    def is_time(self, a) -> bool:
        return a is not None and self.find(a) == self.find(TIME)


class Analysis:
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

    def _shape_arith(self, node, ins):
        a, b = ins[0], ins[1]
        n = max(len(a.elems), len(b.elems))
        ea = a.elems * n if len(a.elems) == 1 else a.elems
        eb = b.elems * n if len(b.elems) == 1 else b.elems
        out = []
        for x, y in zip(ea, eb):
            value = None
            if x.value is not None and y.value is not None:
                fn = {"Add": int.__add__, "Sub": int.__sub__, "Mul": int.__mul__}.get(node.op_type)
                value = (
                    fn(x.value, y.value)
                    if fn
                    else (int(np.trunc(x.value / y.value)) if y.value else None)
                )
            out.append(Elem(None, x.deps | y.deps, value))
        labels = self._broadcast([a, b])
        return AV(labels, False, out)

    def _squeeze(self, node, op, x, ins, mixed):
        axes = node.attrs.get("axes") if node.opset < 13 else None
        if node.opset >= 13 and len(ins) > 1 and ins[1] is not None:
            axes = self._ints(node, ins[1], "axes")
        labels = list(x.labels)
        if op == "Unsqueeze":
            if axes is None:
                raise NotStreamable(f"cannot stream: {node.describe()} has no axes")
            rank = len(labels) + len(axes)
            for a in sorted(v % rank for v in axes):
                labels.insert(a, None)
            elems = x.elems if x.elems is not None and len(labels) <= 1 else None
            return AV(labels, mixed, elems)
        if axes is None:
            if any(lab is not None for lab in labels):
                raise NotStreamable(
                    f"cannot stream: {node.describe()} squeezes without axes a value whose sizes "
                    "are only known at run time"
                )
            return AV([], mixed, x.elems)
        axes = sorted((v % len(labels) for v in axes), reverse=True)
        for a in axes:
            if self.L.is_time(labels[a]):
                self._fail(node, "removes the time axis")
            del labels[a]
        return AV(labels, mixed, x.elems if x.elems is not None and len(labels) <= 1 else None)

    def _concat(self, node, ins, mixed):
        ins = [a for a in ins if a is not None]
        rank = len(ins[0].labels)
        axis = node.attrs["axis"] % max(rank, 1)
        if all(a.elems is not None for a in ins) and rank == 1:
            return AV([(node.name, 0, 0)], False, [e for a in ins for e in a.elems])
        labels = []
        for k in range(rank):
            if k == axis:
                if any(self.L.is_time(a.labels[k]) for a in ins):
                    self._fail(node, "concatenates along the time axis")
                labels.append((node.name, 0, k))
            else:
                labels.append(self._broadcast([AV([a.labels[k]]) for a in ins])[0])
        self._combine_check(node, ins, labels)
        return AV(labels, mixed)

    def _gather(self, node, x, idx, mixed):
        axis = node.attrs.get("axis", 0) % max(len(x.labels), 1)
        if x.elems is not None and len(x.labels) == 1 and idx.elems is not None:
            picks = [x.elems[v] for v in self._ints(node, idx, "indices")]
            return AV(list(idx.labels), False, picks)
        if self.L.is_time(x.labels[axis]):
            self._fail(node, "selects steps along the time axis")
        labels = x.labels[:axis] + list(idx.labels) + x.labels[axis + 1 :]
        return AV(labels, mixed)

    def _slice(self, node, x, ins, mixed):
        if node.opset < 10:
            axes = node.attrs.get("axes")
            starts = node.attrs["starts"]
            ends = node.attrs["ends"]
        else:
            starts = self._ints(node, ins[1], "starts")
            ends = self._ints(node, ins[2], "ends")
            axes = self._ints(node, ins[3], "axes") if len(ins) > 3 and ins[3] is not None else None
        axes = list(range(len(starts))) if axes is None else axes
        if x.elems is not None and len(x.labels) == 1:
            steps = [1]
            if node.opset >= 10 and len(ins) > 4 and ins[4] is not None:
                steps = self._ints(node, ins[4], "steps")
            big = np.iinfo(np.int64).max
            s, e = max(min(starts[0], big), -big), max(min(ends[0], big), -big)
            return AV([(node.name, 0, 0)], False, x.elems[slice(s, e, steps[0])])
        labels = list(x.labels)
        for a in axes:
            a %= len(labels)
            if self.L.is_time(labels[a]):
                self._fail(node, "slices along the time axis")
            labels[a] = (node.name, 0, a)
        return AV(labels, mixed)

    def _target(self, node, av, what):
        """Elements of a shape operand (ConstantOfShape, Expand, Reshape)."""
        if av.elems is None:
            raise NotStreamable(
                f"cannot stream: {node.describe()} takes its {what} from a value pylstm cannot "
                "follow"
            )
        return av.elems

    def _shaped(self, node, op, x, ins, mixed):
        elems = self._target(node, ins[0] if op == "ConstantOfShape" else ins[1], "shape")
        labels = []
        for k, e in enumerate(elems):
            if e.direct is not None:
                labels.append(e.direct)
            elif e.value == 1:
                labels.append(None)
            elif op == "Reshape" and e.value == 0 and not node.attrs.get("allowzero", 0):
                labels.append(x.labels[k])
            else:
                if any(self.L.is_time(d) for d in e.deps):
                    self._fail(node, "computes a size from the sequence length")
                labels.append((node.name, 0, k))
        if op == "ConstantOfShape":
            return AV(labels, False)
        if op == "Expand":
            return AV(self._broadcast([x, AV(labels)]), mixed)
        # Reshape: the time axis must stay an axis of its own, with the same axes before it.
        src = [lab for lab in x.labels if lab is not None]
        dst = [lab for lab in labels if lab is not None]
        for k, lab in enumerate(src):
            if self.L.is_time(lab):
                roots = [self.L.find(v) for v in dst]
                j = roots.index(self.L.find(lab)) if self.L.find(lab) in roots else -1
                if j < 0 or [self.L.find(v) for v in src[:k]] != roots[:j]:
                    self._fail(node, "merges or splits the time axis with other axes")
        return AV(labels, mixed)

    def _flatten(self, node, x, mixed):
        axis = node.attrs.get("axis", 1) % (len(x.labels) + 1)
        groups = [x.labels[:axis], x.labels[axis:]]
        out = []
        for g in groups:
            real = [lab for lab in g if lab is not None]
            if any(self.L.is_time(lab) for lab in real) and len(real) > 1:
                self._fail(node, "merges the time axis with other axes")
            out.append(real[0] if len(real) == 1 else None if not real else (node.name, len(out)))
        return AV(out, mixed)

    def _matmul(self, node, op, ins, mixed):
        a, b = ins[0], ins[1]
        la, lb = list(a.labels), list(b.labels)
        if op == "Gemm":
            if node.attrs.get("transA", 0):
                la = la[::-1]
            if node.attrs.get("transB", 0):
                lb = lb[::-1]
        if len(la) == 1:
            la = [None, *la]
        if len(lb) == 1:
            lb = [*lb, None]
        if self.L.is_time(la[-1]) or self.L.is_time(lb[-2]):
            self._fail(node, "sums over the time axis")
        if self.L.is_time(lb[-1]):
            self._fail(node, "uses the time axis of its second operand as output columns")
        self.L.union(la[-1], lb[-2])
        batch = self._broadcast([AV(la[:-2]), AV(lb[:-2])])
        labels = [*batch, la[-2], lb[-1]]
        if len(a.labels) == 1:
            del labels[-2]
        if len(b.labels) == 1:
            del labels[-1]
        if op == "Gemm" and len(ins) > 2 and ins[2] is not None:
            labels = self._broadcast([AV(labels), ins[2]])
        self._combine_check(node, ins, labels)
        return AV(labels, mixed)

    def _reduce(self, node, op, x, ins, mixed):
        rank = len(x.labels)
        if op in ("Softmax", "LogSoftmax"):
            if node.opset < 13:
                axes = list(range(node.attrs.get("axis", 1) % rank, rank))
            else:
                axes = [node.attrs.get("axis", -1) % rank]
        elif op == "LayerNormalization":
            axes = list(range(node.attrs.get("axis", -1) % rank, rank))
        elif op in ("ArgMax", "ArgMin"):
            axes = [node.attrs.get("axis", 0) % rank]
        else:
            since = 13 if op == "ReduceSum" else 18
            if node.opset >= since:
                axes = (
                    self._ints(node, ins[1], "axes") if len(ins) > 1 and ins[1] is not None else []
                )
            else:
                axes = node.attrs.get("axes") or []
            if not axes and not node.attrs.get("noop_with_empty_axes", 0):
                axes = list(range(rank))
            axes = [v % rank for v in axes]
        if any(self.L.is_time(x.labels[a]) for a in axes):
            self._fail(node, "reduces or normalises along the time axis")
        if op in ("Softmax", "LogSoftmax", "LayerNormalization"):
            return [AV(list(x.labels), mixed)] * len(node.outputs)
        keep = node.attrs.get("keepdims", 1)
        labels = [None if k in axes else lab for k, lab in enumerate(x.labels)]
        if not keep:
            labels = [lab for k, lab in enumerate(x.labels) if k not in axes]
        return [AV(labels, mixed)]
