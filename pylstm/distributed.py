"""Batch inference on Ray Data and Dask: :class:`Predictor`, one callable for both.

Ray Data builds a callable class once per actor::

    ds.map_batches(pylstm.distributed.Predictor, fn_constructor_kwargs={"model_or_path": path},
                   concurrency=2, batch_size=256)

Dask calls it on each partition or block::

    predict = pylstm.distributed.Predictor("model.pt")
    ddf.map_partitions(predict, meta=...)          # a column of sequences
    x.map_blocks(predict, dtype="float32", ...)    # [batch, time, features] blocks

What travels to a worker is the model's path (a few bytes), or the model's pickle (its canonical
float32 weights, see :mod:`pylstm.runtime.pickling`); each worker process builds the engine once and
keeps it for every later batch, however many times the Predictor itself is unpickled there.
"""

from __future__ import annotations

import os
import pickle
import threading
import uuid

import numpy as np

#: Engines built in this process, by Predictor token: a Predictor unpickled again in a worker
#: (Dask ships the callable with every task) finds its model here instead of rebuilding it.
_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()


def _env_threads() -> int | None:
    from .runtime.system import MAX_THREADS

    for name in ("PYLSTM_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) >= 1:
            return min(int(value), MAX_THREADS)
    return None


def worker_threads() -> int:
    """Threads one pylstm call should use in this process: ``PYLSTM_NUM_THREADS``, else
    ``OMP_NUM_THREADS`` (which Ray sets to the CPUs of a task or actor, and Dask's nanny to 1
    in each worker process), else the CPUs this process may run on (its affinity mask)."""
    from . import _core

    return _env_threads() or _core.available_cpus()


def _as_column(values):
    """A list of per-row arrays as a 1-D object array (a column of tensors of varying shape)."""
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def _is_model(obj) -> bool:
    from .faces.keras_face import KerasModel
    from .faces.onnx_face import OnnxModel
    from .faces.torch_face import TorchModel

    return isinstance(obj, (TorchModel, KerasModel, OnnxModel))


class Predictor:
    """Runs a pylstm model on batches of sequences, for Ray Data ``map_batches`` and Dask
    ``map_partitions`` / ``map_blocks``.

    Parameters
    ----------
    model_or_path : pylstm model, str or os.PathLike
        A model (from :func:`pylstm.load`, :func:`pylstm.from_torch`, ...), or a file that each
        worker loads with ``pylstm.load(path, **load_options)``.
    input_column : str
        The column of input sequences in a batch given as a dict (Ray's numpy batches) or a
        pandas DataFrame (Ray's pandas batches, Dask partitions).
    output_column : str
        The column the outputs are written to (the other columns are kept).
    output : {"sequence", "last"}
        ``"sequence"``: each sequence's outputs ``[T, O]``; ``"last"``: the output at its last
        valid step ``[O]``.
    num_threads : int, optional
        Threads per call in each process that runs the Predictor (process-wide,
        :func:`pylstm.set_num_threads`, applied before its first batch there). Default: what
        the process was given, ``PYLSTM_NUM_THREADS`` or ``OMP_NUM_THREADS`` (Ray sets it to
        the CPUs of each actor, Dask's nanny to 1), so that N workers given M CPUs each use
        N x M threads; with neither set, the process's own setting stays.
    onnx_input, onnx_output : str, optional
        For ONNX models: the graph input fed with the batch (default the first) and the output
        returned (default the first). The batch is fed as it is (rows first).
    **load_options
        Passed to :func:`pylstm.load` with a path (``device``, ``precision``, ``prefix``, ...).

    Notes
    -----
    A batch's sequences are the rows of an array ``[B, T, I]`` (PyTorch-style models are fed in
    their own layout: time-major ones get the batch transposed). Rows of an object column may
    differ in length for PyTorch-style models: they are padded, run with ``lengths=`` and the
    outputs cut back to each row's length. Keras models take the batch as ``model(x)``.
    """

    def __init__(
        self,
        model_or_path,
        *,
        input_column: str = "x",
        output_column: str = "y",
        output: str = "sequence",
        num_threads: int | None = None,
        onnx_input: str | None = None,
        onnx_output: str | None = None,
        **load_options,
    ):
        if output not in ("sequence", "last"):
            raise ValueError(f"output must be 'sequence' or 'last', got {output!r}")
        if _is_model(model_or_path):
            if load_options:
                raise TypeError(
                    f"load options {sorted(load_options)} apply to a path, not to a model object"
                )
            self._path = None
        elif isinstance(model_or_path, (str, os.PathLike)):
            self._path = os.fspath(model_or_path)
        else:
            raise TypeError(
                "model_or_path must be a pylstm model or a path to a model file, got "
                f"{type(model_or_path).__name__}"
            )
        self.input_column = input_column
        self.output_column = output_column
        self.output = output
        self.num_threads = num_threads
        self.onnx_input, self.onnx_output = onnx_input, onnx_output
        self.load_options = load_options
        self._token = uuid.uuid4().hex
        self._model = model_or_path if self._path is None else None
        self._model_bytes = None
        self._threads_set = False

    # -- travelling ---------------------------------------------------------------------------
    def __getstate__(self):
        state = dict(self.__dict__)
        if self._path is None and self._model_bytes is None:
            self._model_bytes = pickle.dumps(self._model, protocol=pickle.HIGHEST_PROTOCOL)
        state["_model_bytes"] = self._model_bytes
        state["_model"] = None  # rebuilt (once per process) from the bytes or the path
        state["_threads_set"] = False
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    @property
    def model(self):
        """The model, built in this process on first use (once per process and Predictor)."""
        if self._model is None:
            with _MODELS_LOCK:
                model = _MODELS.get(self._token)
                if model is None:
                    model = self._build()
                    _MODELS[self._token] = model
            self._model = model
        return self._model

    def _set_threads(self) -> None:
        from .runtime.system import get_num_threads, set_num_threads

        self._threads_set = True
        threads = self.num_threads or _env_threads()
        if threads and threads != get_num_threads():
            set_num_threads(threads)

    def _build(self):
        from .loading import load

        if self._path is not None:
            return load(self._path, **self.load_options)
        return pickle.loads(self._model_bytes)

    # -- running ------------------------------------------------------------------------------
    def __call__(self, batch):
        """Run the model on one batch.

        Parameters
        ----------
        batch : dict of str to array, pandas.DataFrame, or ndarray
            A dict (Ray's numpy batches) or a DataFrame (Ray's pandas batches, Dask partitions)
            with the sequences in ``input_column``: an array ``[B, T, I]`` or a column of
            ``[T, I]`` arrays; or the array ``[B, T, I]`` itself (a Dask array block).

        Returns
        -------
        Same kind as ``batch``: the dict or DataFrame with ``output_column`` added (an array
        ``[B, T, O]`` / ``[B, O]``, or a column of per-row arrays when the input was one), or
        the output array.
        """
        if not self._threads_set:
            self._set_threads()
        if isinstance(batch, dict):
            out = dict(batch)
            y = self._predict(batch[self.input_column])
            out[self.output_column] = _as_column(y) if isinstance(y, list) else y
            return out
        if hasattr(batch, "columns") and hasattr(batch, "assign"):  # a pandas DataFrame
            column = batch[self.input_column]
            y = self._predict(list(column.to_numpy()) if len(column) else [])
            values = list(y) if isinstance(y, np.ndarray) else y
            import pandas as pd

            return batch.assign(
                **{self.output_column: pd.Series(values, index=batch.index, dtype=object)}
            )
        return self._predict(batch)

    def _predict(self, sequences):
        """Outputs for a batch of sequences: an array when the sequences form one, else a list
        of per-row arrays."""
        if isinstance(sequences, np.ndarray) and sequences.dtype != object:
            return self._run(np.asarray(sequences), None)
        rows = [np.asarray(s) for s in sequences]
        if not rows:
            return []
        if rows[0].dtype.kind not in "fiu" or rows[0].ndim == 0:
            raise TypeError(
                f"{self.input_column!r} must hold arrays of sequences, got {rows[0].dtype} values"
                " (Dask turns object columns into strings unless "
                "dask.config.set({'dataframe.convert-string': False}))"
            )
        lengths = [len(r) for r in rows]
        if len(set(lengths)) == 1:
            return list(self._run(np.stack(rows), None))
        T = max(lengths)
        x = np.zeros((len(rows), T, *rows[0].shape[1:]), np.result_type(*rows))
        for i, r in enumerate(rows):
            x[i, : len(r)] = r
        y = self._run(x, lengths)
        if self.output == "last":
            return list(y)
        return [y[i, :n] for i, n in enumerate(lengths)]

    def _run(self, x: np.ndarray, lengths):
        from .faces.keras_face import KerasModel
        from .faces.onnx_face import OnnxModel

        model = self.model
        if isinstance(model, OnnxModel):
            if lengths is not None:
                raise ValueError("rows of different lengths need a PyTorch-style model")
            name = self.onnx_input or model.get_inputs()[0].name
            outputs = [self.onnx_output] if self.onnx_output else None
            return model.run(outputs, {name: x})[0]
        if isinstance(model, KerasModel):
            if lengths is not None:
                raise ValueError("rows of different lengths need a PyTorch-style model")
            y = model(x)
            y = y[0] if isinstance(y, list) else y
            if self.output == "last" and y.ndim == 3:
                y = y[:, -1]
            return y
        if x.ndim != 3:
            raise ValueError(f"a batch of sequences must be [B, T, I], got shape {x.shape}")
        xt = x if model.batch_first else x.transpose(1, 0, 2)
        y, _ = model(xt, lengths=lengths)
        y = y if model.batch_first else y.transpose(1, 0, 2)
        if self.output == "last":
            last = (
                np.asarray(lengths) - 1 if lengths is not None else np.full(len(x), x.shape[1] - 1)
            )
            return np.ascontiguousarray(y[np.arange(len(x)), last])
        return np.ascontiguousarray(y)

    def __repr__(self):
        source = self._path if self._path is not None else "a model object"
        return (
            f"pylstm.distributed.Predictor({source!r}, input_column={self.input_column!r}, "
            f"output_column={self.output_column!r}, output={self.output!r})"
        )
