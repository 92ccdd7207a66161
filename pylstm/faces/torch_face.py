"""The PyTorch face: ``model(x, hx=None, *, lengths=None)`` behaving like ``torch.nn.LSTM``,
``GRU`` and ``RNN`` in inference, returning numpy arrays."""

from __future__ import annotations

import numpy as np

from ..engine import Engine
from ..stream import Stream
from ..validation import as_float_array, as_state, lengths_mask


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
            y = np.empty((B, T, self.engine.output_size), np.float32)
            y_tm = y.transpose(1, 0, 2)
        else:
            y = y_tm = np.empty((T, B, self.engine.output_size), np.float32)
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
        x : array, float32 or float64
            ``[T, B, I]`` (``[B, T, I]`` when ``batch_first``), or ``[T, I]`` unbatched.
        hx : array or (array, array), optional
            Initial state: ``h_0`` ``[num_layers*D, B, Hout]`` (and ``c_0``
            ``[num_layers*D, B, H]`` for LSTM); zeros when omitted.
        lengths : sequence of int, optional
            Valid length of each sequence (``1..T``). Same result as
            ``pack_padded_sequence(x, lengths, enforce_sorted=False)`` -> module ->
            ``pad_packed_sequence(total_length=T)``.

        Returns
        -------
        output : ndarray, float32, ``[T, B, D*Hout]`` (``[B, T, D*Hout]`` batch-first)
        h_n : ndarray ``[num_layers*D, B, Hout]``, or ``(h_n, c_n)`` for LSTM

        Raises
        ------
        TypeError
            Non-float input or state, integer-valued lengths of the wrong type.
        ValueError
            Wrong shapes, sizes or lengths; the message names the argument.
        """
        xt, unbatched = self._time_major(x, "x")
        T, B, _ = xt.shape
        if T == 0:
            raise ValueError(f"x: the sequence length must be at least 1, got shape {x.shape}")
        h0, c0 = self._initial_state(hx, B, unbatched)
        mask: np.ndarray | None = None
        if lengths is not None:
            if unbatched:
                raise ValueError("lengths needs batched input x (3-D)")
            mask = lengths_mask(lengths, B, T)
        y, h_n, c_n = self._run(xt, h0, c0, mask, batch_first=self.batch_first and not unbatched)
        if unbatched:
            y = y[:, 0]
        return y, self._format_state(h_n, c_n, unbatched)

    def stream(self, batch_size: int) -> Stream:
        """A :class:`pylstm.stream.Stream` feeding this model chunk by chunk."""
        return Stream(self, batch_size)
