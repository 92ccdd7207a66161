"""The ONNX face: ``model.run(output_names, feeds)`` behaving like
``onnxruntime.InferenceSession.run``, with ``get_inputs()`` / ``get_outputs()`` like ORT's."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..read.onnx_proto import NodeArg
from ..runtime.graph import recurrent_runners
from ..runtime.validation import positive_int, to_numpy

__all__ = ["NodeArg", "OnnxModel"]


def _convert_feed(value, arg: NodeArg) -> np.ndarray:
    """Check one feed against its input's declared type and shape; cast within a kind."""
    try:
        arr = to_numpy(value)
    except Exception as exc:
        raise TypeError(f"input {arg.name!r} must be an array: {exc}") from None
    want = arg.dtype
    if want is not None and arr.dtype != want:
        kind, got = want.kind, arr.dtype.kind
        same_kind = (kind == "f" and got == "f") or (kind in "iu" and got in "iu")
        if not same_kind:
            raise TypeError(
                f"input {arg.name!r} expects {arg.type}, got an array of dtype {arr.dtype}"
            )
        arr = arr.astype(want)
    if arg.shape is not None:
        if arr.ndim != len(arg.shape):
            raise ValueError(
                f"input {arg.name!r}: expected rank {len(arg.shape)} with shape {arg.shape}, got "
                f"shape {list(arr.shape)}"
            )
        for axis, (dim, got) in enumerate(zip(arg.shape, arr.shape)):
            if isinstance(dim, int) and dim != got:
                raise ValueError(
                    f"input {arg.name!r}: expected shape {arg.shape}, got {list(arr.shape)} "
                    f"(axis {axis} must be {dim})"
                )
    return arr


class OnnxModel:
    """An ONNX model run by pylstm: recurrent nodes on the engine, the rest in numpy.

    Built by :func:`pylstm.load` for ``.onnx`` files. Use it as you would an
    ``onnxruntime.InferenceSession``.

    Attributes
    ----------
    recurrent_nodes : list
        The LSTM/GRU/RNN nodes with their canonical layers (``node.layer``) and engines.
    """

    def __init__(self, graph, inputs, outputs, *, source: str = "model", device: str = "cpu"):
        self._graph = graph
        self._inputs = list(inputs)
        self._outputs = list(outputs)
        self._input_by_name = {a.name: a for a in self._inputs}
        self._output_names = [a.name for a in self._outputs]
        self.source = source
        self.device = device
        self.recurrent_nodes = recurrent_runners(graph)

    def __reduce__(self):
        """Pickles as its graph: the nodes, the constants they read at run time and each
        recurrent node's canonical engine (see :mod:`pylstm.runtime.pickling`)."""
        from ..runtime.pickling import reduce

        state = {
            "graph": self._graph,
            "inputs": self._inputs,
            "outputs": self._outputs,
            "source": self.source,
        }
        return reduce(self, state)

    @classmethod
    def _from_state(cls, state: dict) -> OnnxModel:
        graph = state["graph"]
        engines = [r.engine for r in recurrent_runners(graph)]
        device = engines[0].device if engines else "cpu"
        return cls(graph, state["inputs"], state["outputs"], source=state["source"], device=device)

    def __repr__(self):
        ops = ", ".join(f"{r.op}" for r in self.recurrent_nodes) or "no recurrent nodes"
        return (
            f"pylstm.OnnxModel({self.source!r}, inputs={[a.name for a in self._inputs]}, "
            f"outputs={self._output_names}, recurrent=[{ops}])"
        )

    def get_inputs(self) -> list:
        """The graph inputs (initializers excluded), as ``NodeArg``s like ONNX Runtime's."""
        return list(self._inputs)

    def get_outputs(self) -> list:
        """The graph outputs, as ``NodeArg``s."""
        return list(self._outputs)

    def _check_output_names(self, output_names) -> list:
        if output_names is None:
            return list(self._output_names)
        if isinstance(output_names, str):
            raise TypeError("output_names must be a list of names (or None), not a string")
        names = list(output_names)
        if not names:
            return list(self._output_names)
        for n in names:
            if n not in self._output_names:
                raise ValueError(
                    f"output_names: {n!r} is not an output of this model; its outputs are "
                    f"{self._output_names}"
                )
        return names

    def check_feeds(self, input_feed, *, required=True) -> dict:
        """Feeds checked against the declared inputs: names, element kinds and shapes.

        Parameters
        ----------
        input_feed : dict of str to array_like
            As :meth:`run` takes it.
        required : bool
            Every graph input must be fed (False: a subset may be).

        Returns
        -------
        dict of str to ndarray
            The feeds cast to their declared types.

        Raises
        ------
        TypeError
            ``input_feed`` is not a dict, or a feed of the wrong element kind.
        ValueError
            Unknown or missing input names, wrong ranks or fixed sizes.
        """
        if not isinstance(input_feed, Mapping):
            raise TypeError(
                f"input_feed must be a dict of input name -> array, got {type(input_feed).__name__}"
            )
        unknown = [k for k in input_feed if k not in self._input_by_name]
        if unknown:
            raise ValueError(
                f"input_feed: {unknown} not input(s) of this model; its inputs are "
                f"{[a.name for a in self._inputs]}"
            )
        if required:
            missing = [a.name for a in self._inputs if a.name not in input_feed]
            if missing:
                raise ValueError(
                    f"input_feed: required input(s) {missing} are missing (given: {list(input_feed)})"
                )
        return {k: _convert_feed(v, self._input_by_name[k]) for k, v in input_feed.items()}

    def run(self, output_names, input_feed, run_options=None) -> list:
        """Compute outputs, as ``onnxruntime.InferenceSession.run`` does.

        Parameters
        ----------
        output_names : list of str or None
            Outputs to return, in this order; None (or empty) for all, in graph order.
        input_feed : dict of str to array_like
            One array per graph input (numpy, array-likes, torch CPU tensors, ``ml_dtypes``
            arrays). Float inputs take float16, bfloat16, float32 or float64 and integer inputs
            any integer type, cast to the declared type (bfloat16 inputs are fed as float32,
            numpy having no bfloat16).
        run_options : ignored
            Accepted for compatibility with ONNX Runtime.

        Returns
        -------
        list of ndarray
            One per requested output.

        Raises
        ------
        TypeError
            ``input_feed`` is not a dict, or an input of the wrong element kind.
        ValueError
            Unknown or missing input names, unknown output names, wrong ranks or fixed sizes,
            values out of range (e.g. ``sequence_lens``); the message names the input or node.
        """
        names = self._check_output_names(output_names)
        feeds = self.check_feeds(input_feed)
        values = self._graph.run(feeds, names)
        return [self._own(name, v) for name, v in zip(names, values)]

    def _own(self, name, value) -> np.ndarray:
        """Graph outputs as C-contiguous arrays of the caller's own: views (of feeds,
        constants or internal buffers) and the constants or feeds themselves are copied."""
        arr = np.asarray(value)
        if (
            name in self._graph.constants
            or name in self._input_by_name
            or not arr.flags.owndata
            or not arr.flags.c_contiguous
        ):
            return np.array(arr, order="C")
        return arr

    def stream(self, batch_size: int, output_names=None):
        """A stream that runs the model chunk by chunk of time steps, carrying every recurrent
        node's state between chunks (see :class:`pylstm.runtime.graph_stream.OnnxStream`).

        Parameters
        ----------
        batch_size : int
            The number of sequences every chunk holds.
        output_names : list of str, optional
            Outputs each step returns (default: all, in graph order).

        Returns
        -------
        OnnxStream
            ``stream.step(feeds)`` takes the feeds of :meth:`run` (the same dtypes) for a chunk
            of time steps.

        Raises
        ------
        TypeError
            ``batch_size`` is not an int, ``output_names`` a string.
        ValueError
            ``batch_size`` < 1, an unknown output name, or a graph that cannot be streamed (a
            reverse or bidirectional recurrent node, or an operator that mixes time steps); the
            message says which node and why.
        """
        from ..runtime.graph_stream import OnnxStream

        return OnnxStream(self, positive_int(batch_size, "batch_size"), output_names)
