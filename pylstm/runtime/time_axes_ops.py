"""The abstract values of the time-axis analysis (:mod:`.time_axes`) and its rules for the
operators that move, join, cut or contract axes (Squeeze/Unsqueeze, Concat, Gather, Slice,
Reshape/Expand/Tile, Flatten, MatMul/Gemm, reductions, shape arithmetic).
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


class AxisRules:
    """The per-operator rules :class:`pylstm.runtime.time_axes.Analysis` applies (it provides
    ``L``, ``_fail``, ``_mixed``, ``_ints``, ``_broadcast``, ``_combine_check``)."""

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
