"""The PyTorch face: ``model(x, hx=None, *, lengths=None)`` behaving like ``torch.nn.LSTM``,
``GRU`` and ``RNN`` in inference, returning numpy arrays."""

from __future__ import annotations

import numpy as np

from ..runtime.engine import Engine
from ..runtime.masks import packed_lengths_mask
from ..runtime.output_buffers import empty_output
from ..runtime.stream import Stream
from ..runtime.validation import as_float_array, as_state, is_device_array


class TorchModel:
    """A recurrent stack with PyTorch's calling convention.

    Built by :func:`pylstm.from_torch`, :func:`pylstm.load` (state dicts) and
    :func:`pylstm.from_arrays`. All layers share cell kind, direction count and sizes, as in
    one ``torch.nn.LSTM``/``GRU``/``RNN``.

    Attributes
    ----------
    cell : {"lstm", "gru", "rnn"}
    input_size, hidden_size, proj_size, num_layers : int
    bidirectional, batch_first : bool
    device : str
    """

    def __init__(self, engine: Engine, *, batch_first: bool = False):
        layers = engine.layers
        first = layers[0]
        for i, layer in enumerate(layers[1:], start=1):
            if (layer.cell, layer.num_directions, layer.hidden_size, layer.proj_size) != (
                first.cell,
                first.num_directions,
                first.hidden_size,
                first.proj_size,
            ):
                raise ValueError(
                    f"layers[{i}] differs from layers[0] in cell, directions or sizes; a "
                    "PyTorch-style model stacks identical layers (build one model per layer)"
                )
        self.engine = engine
        self.batch_first = bool(batch_first)
        self.cell = first.cell
        self.num_layers = len(layers)
        self.bidirectional = first.num_directions == 2
        self.input_size = first.input_size
        self.hidden_size = first.hidden_size
        self.proj_size = first.proj_size
        self.device = engine.device
        self._out = first.output_size

    def __reduce__(self):
        """Pickles as its engine's canonical layers and options (see :mod:`pylstm.runtime.pickling`)."""
        from ..runtime.pickling import reduce

        return reduce(self, {"engine": self.engine, "batch_first": self.batch_first})

    @classmethod
    def _from_state(cls, state: dict) -> TorchModel:
        return cls(state["engine"], batch_first=state["batch_first"])

    def __repr__(self):
        extra = f", proj_size={self.proj_size}" if self.proj_size else ""
        return (
            f"pylstm.TorchModel({self.cell.upper()}, input_size={self.input_size}, "
            f"hidden_size={self.hidden_size}{extra}, num_layers={self.num_layers}, "
            f"bidirectional={self.bidirectional}, batch_first={self.batch_first}, "
            f"backend={self.engine.backend!r})"
        )

    # -- state helpers ------------------------------------------------------------------------
    def _state_shapes(self, batch: int):
        rows = self.engine.state_rows
        return (rows, batch, self._out), (rows, batch, self.hidden_size)

    def _zero_state(self, batch: int):
        h_shape, c_shape = self._state_shapes(batch)
        c = np.zeros(c_shape, np.float32) if self.cell == "lstm" else None
        return np.zeros(h_shape, np.float32), c

    def _format_state(self, h, c, unbatched: bool):
        if unbatched:
            h = h[:, 0]
            c = None if c is None else c[:, 0]
        return (h, c) if self.cell == "lstm" else h

    def _initial_state(self, hx, batch: int, unbatched: bool):
        if hx is None:
            return None, None
        h_shape, c_shape = self._state_shapes(batch)
        if unbatched:
            h_shape, c_shape = (h_shape[0], h_shape[2]), (c_shape[0], c_shape[2])
        if self.cell == "lstm":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("hx for an LSTM must be a tuple (h_0, c_0)")
            h0 = as_state(hx[0], "h_0", h_shape)
            c0 = as_state(hx[1], "c_0", c_shape)
        else:
            if isinstance(hx, (tuple, list)):
                raise TypeError(f"hx for a {self.cell.upper()} must be one array h_0, not a tuple")
            h0, c0 = as_state(hx, "h_0", h_shape), None
        if unbatched:
            h0 = h0[:, None].copy()
            c0 = None if c0 is None else c0[:, None].copy()
        return h0, c0

    # -- running ------------------------------------------------------------------------------
    def _run(self, xt: np.ndarray, h0, c0, mask, *, batch_first: bool):
        """xt: [T, B, I] float32 view. Returns (y in the requested layout, h_n, c_n)."""
        T, B, _ = xt.shape
        if batch_first:
            y = empty_output((B, T, self.engine.output_size))
            y_tm = y.transpose(1, 0, 2)
        else:
            y = y_tm = empty_output((T, B, self.engine.output_size))
        h_n, c_n = self._zero_state(B)
        self.engine.forward(xt, y_tm, mask, h0, c0, h_n, c_n)
        return y, h_n, c_n

    def _time_major(self, x, name: str):
        """Check ``x`` and view it as ``[T, B, I]`` float32. Returns ``(view, unbatched)``."""
        x = as_float_array(x, name)
        if x.ndim not in (2, 3):
            layout = "[B, T, I]" if self.batch_first else "[T, B, I]"
            raise ValueError(
                f"{name} must be 3-D {layout} or 2-D [T, I] (unbatched), got shape {x.shape}"
            )
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: expected {self.input_size} input features (last axis), got shape {x.shape}"
            )
        if x.ndim == 2:
            return x[:, None, :], True
        return (x.transpose(1, 0, 2) if self.batch_first else x), False

    def __call__(self, x, hx=None, *, lengths=None):
        """Run the model on a batch of sequences.

        Parameters
        ----------
        x : array_like of float16, bfloat16, float32 or float64
            ``[T, B, I]`` (``[B, T, I]`` when ``batch_first``), or ``[T, I]`` unbatched. A
            numpy array (any strides), a CPU torch tensor (bfloat16 too; one that requires grad
            is detached) or nested lists; converted to float32. On a CUDA model also a CUDA
            device array (torch, CuPy, ``__cuda_array_interface__``, DLPack) of float16,
            bfloat16, float32 or float64, used in place on the device.
        hx : array_like or (array_like, array_like), optional
            Initial state, the same dtypes as ``x``: ``h_0`` ``[num_layers*D, B, Hout]`` (and
            ``c_0`` ``[num_layers*D, B, H]`` for LSTM; without the ``B`` axis for unbatched
            ``x``); zeros when omitted. ``D`` is 2 when bidirectional, ``Hout`` is
            ``proj_size`` or ``hidden_size``.
        lengths : sequence of int, optional
            Valid length of each sequence (``1..T``), integers (numpy, torch or a list). Same
            result as ``pack_padded_sequence(x, lengths, enforce_sorted=False)`` -> module ->
            ``pad_packed_sequence(total_length=T)``: outputs past a length are 0 and ``h_n``
            is the state at the last valid step.

        Returns
        -------
        output : ndarray, float32, ``[T, B, D*Hout]`` (``[B, T, D*Hout]`` batch-first)
            A numpy array; for a device array ``x`` on a CUDA model, an array of ``x``'s
            library on its device, in ``x``'s dtype (float64 input is computed in float32).
        h_n : ndarray ``[num_layers*D, B, Hout]``, or ``(h_n, c_n)`` for LSTM

        Raises
        ------
        TypeError
            ``x`` or ``hx`` not of a float dtype listed above (integers, booleans, complex,
            objects), ``lengths`` not integers.
        ValueError
            Wrong shapes, sizes or lengths (outside ``1..T``), ``T = 0``, a device array on
            another GPU than the model; the message names the argument.
        """
        if (
            hx is None
            and lengths is None
            and type(x) is np.ndarray
            and x.ndim == 3
            and x.dtype.char == "f"
            and x.strides[2] == 4
            and x.shape[2] == self.input_size
            and x.shape[0] > 0
            and x.shape[1] > 0
        ):  # the common call, checked cheaply: a one-step call's whole budget is microseconds
            xt = x.transpose(1, 0, 2) if self.batch_first else x
            y, h_n, c_n = self._run(xt, None, None, None, batch_first=self.batch_first)
            return y, self._format_state(h_n, c_n, False)
        if self.engine.is_cuda and is_device_array(x):
            return self._call_device(x, hx, lengths)
        xt, unbatched = self._time_major(x, "x")
        T, B, _ = xt.shape
        if T == 0:
            raise ValueError(f"x: the sequence length must be at least 1, got shape {x.shape}")
        h0, c0 = self._initial_state(hx, B, unbatched)
        mask: np.ndarray | None = None
        if lengths is not None:
            if unbatched:
                raise ValueError("lengths needs batched input x (3-D)")
            mask = packed_lengths_mask(lengths, B, T)
        y, h_n, c_n = self._run(xt, h0, c0, mask, batch_first=self.batch_first and not unbatched)
        if unbatched:
            y = y[:, 0]
        return y, self._format_state(h_n, c_n, unbatched)

    # -- device arrays (CUDA engine) -----------------------------------------------------------
    def _call_device(self, x, hx, lengths):
        """``__call__`` for a device array ``x`` on a CUDA engine: outputs are new arrays of the
        same library, device and dtype (float64 computes as float32), and the work is enqueued
        on that library's current stream; nothing goes through the host (except ``lengths``,
        which PyTorch too takes on the host)."""
        from ..runtime.device_arrays import KERNEL_DTYPES, adopt, rows_desc

        x, io = adopt(x)
        if io.device != self.engine.device_index:
            raise ValueError(
                f"x is on cuda:{io.device} but the model is on {self.engine.device}; move one of "
                "them"
            )
        view = io.view(x)
        if view.dtype not in (*KERNEL_DTYPES, "float64"):
            raise TypeError(f"x must be float32, float16, bfloat16 or float64, got {view.dtype}")
        dtype = view.dtype if view.dtype in KERNEL_DTYPES else "float32"
        if len(view.shape) not in (2, 3):
            layout = "[B, T, I]" if self.batch_first else "[T, B, I]"
            raise ValueError(
                f"x must be 3-D {layout} or 2-D [T, I] (unbatched), got shape {view.shape}"
            )
        if view.shape[-1] != self.input_size:
            raise ValueError(
                f"x: expected {self.input_size} input features (last axis), got shape {view.shape}"
            )
        if view.dtype != dtype or (view.shape[-1] > 1 and view.strides[-1] != 1):
            x = io.as_type(x, dtype, contiguous=True)
            view = io.view(x)
        unbatched = len(view.shape) == 2
        batch_first = self.batch_first and not unbatched
        if unbatched:
            t_axis, b_axis = 0, None
        else:
            t_axis, b_axis = (1, 0) if batch_first else (0, 1)
        xd = rows_desc(view, t_axis, b_axis)
        T, B = xd[2], xd[3]
        if T == 0:
            raise ValueError(f"x: the sequence length must be at least 1, got shape {view.shape}")
        O = self.engine.output_size
        y = io.empty((T, O) if unbatched else ((B, T, O) if batch_first else (T, B, O)), dtype)
        yd = rows_desc(io.view(y), t_axis, b_axis)

        rows = self.engine.state_rows
        lead = (rows,) if unbatched else (rows, B)
        h_shape, c_shape = (*lead, self._out), (*lead, self.hidden_size)
        lstm = self.cell == "lstm"
        h0 = c0 = None
        if hx is not None:
            if lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError("hx for an LSTM must be a tuple (h_0, c_0)")
                h0 = self._device_state(io, hx[0], "h_0", h_shape, dtype)
                c0 = self._device_state(io, hx[1], "c_0", c_shape, dtype)
            else:
                if isinstance(hx, (tuple, list)):
                    raise TypeError(
                        f"hx for a {self.cell.upper()} must be one array h_0, not a tuple"
                    )
                h0 = self._device_state(io, hx, "h_0", h_shape, dtype)
        mask = None
        if lengths is not None:
            if unbatched:
                raise ValueError("lengths needs batched input x (3-D)")
            mask = io.from_host(packed_lengths_mask(lengths, B, T))
        h_n = io.empty(h_shape, dtype)
        c_n = io.empty(c_shape, dtype) if lstm else None

        def ptr(a):
            return None if a is None else io.view(a).ptr

        self.engine.forward_device(
            xd,
            yd,
            ptr(mask),
            ptr(h0),
            ptr(c0),
            ptr(h_n),
            ptr(c_n),
            state_dtype=dtype,
            stream=io.stream,
        )
        return y, ((h_n, c_n) if lstm else h_n)

    @staticmethod
    def _device_state(io, a, name: str, shape: tuple, dtype: str):
        """An initial state on the model's device as a contiguous ``dtype`` array of ``shape``
        (host arrays are copied over; device arrays are used in place when they already are)."""
        from ..runtime.device_arrays import adopt

        if is_device_array(a):
            a, other = adopt(a)
            if other.device != io.device or other.lib != io.lib:
                raise ValueError(f"{name} must be a {io.lib} array on cuda:{io.device}, like x")
            view = io.view(a)
            if not view.dtype.startswith(("float", "bfloat")):
                raise TypeError(f"{name} must be a float array, got dtype {view.dtype}")
        else:
            a = io.from_host(as_float_array(a, name))
            view = io.view(a)
        if tuple(view.shape) != tuple(shape):
            raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(view.shape)}")
        return io.as_type(a, dtype, contiguous=True)

    def stream(self, batch_size: int) -> Stream:
        """A :class:`pylstm.runtime.stream.Stream` feeding this model chunk by chunk.

        Parameters
        ----------
        batch_size : int
            The number of sequences ``B`` every chunk holds.

        Returns
        -------
        Stream
            ``stream.step(chunk)`` takes ``[t, B, I]`` (``[B, t, I]`` batch-first) of the dtypes
            :meth:`__call__` takes and returns that chunk's outputs.

        Raises
        ------
        TypeError
            ``batch_size`` is not an int.
        ValueError
            ``batch_size`` < 1.
        """
        return Stream(self, batch_size)
