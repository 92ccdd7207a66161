"""The PyTorch cell face: ``model(x, hx=None)`` behaving like ``torch.nn.LSTMCell``, ``GRUCell``
and ``RNNCell`` in inference: one step of one layer, returning numpy arrays.

A cell is the engine's one-layer, one-direction network run for one time step (no kernels of
its own); :meth:`CellModel.stream` steps it with the state kept in the engine.
"""

from __future__ import annotations

from ..runtime.engine import Engine
from ..runtime.stream import Stream
from ..runtime.validation import as_float_array, is_device_array
from .torch_face import TorchModel

_NAMES = {"lstm": "LSTMCell", "gru": "GRUCell", "rnn": "RNNCell"}


class CellModel:
    """A recurrent cell with PyTorch's calling convention.

    Built by :func:`pylstm.from_torch` from a ``torch.nn.LSTMCell``/``GRUCell``/``RNNCell`` and
    by :func:`pylstm.load` from a cell's state dict (``weight_ih``, ``weight_hh``, ``bias_ih``,
    ``bias_hh``).

    Attributes
    ----------
    cell : {"lstm", "gru", "rnn"}
    input_size, hidden_size : int
    bias : bool
    nonlinearity : {"tanh", "relu"} or None
        The RNN cell's activation (None for LSTM and GRU cells).
    device : str
    """

    batch_first = False  # what Stream reads: chunks are [t, B, I] or [B, I]

    def __init__(self, engine: Engine):
        layers = engine.layers
        if len(layers) != 1 or layers[0].num_directions != 1 or layers[0].directions[0].reverse:
            raise ValueError("a cell is one layer with one forward direction")
        layer = layers[0]
        if layer.proj_size:
            raise ValueError("a cell has no projection (proj_size)")
        self.engine = engine
        self._model = TorchModel(engine)
        self.cell = layer.cell
        self.input_size = layer.input_size
        self.hidden_size = layer.hidden_size
        self.bias = layer.directions[0].has_bias
        self.nonlinearity = layer.directions[0].activations[0].name if self.cell == "rnn" else None
        self.device = engine.device

    def __reduce__(self):
        """Pickles as its engine's canonical layer (see :mod:`pylstm.runtime.pickling`)."""
        from ..runtime.pickling import reduce

        return reduce(self, {"engine": self.engine})

    @classmethod
    def _from_state(cls, state: dict) -> CellModel:
        return cls(state["engine"])

    def __repr__(self):
        extra = f", nonlinearity={self.nonlinearity!r}" if self.cell == "rnn" else ""
        return (
            f"pylstm.CellModel({_NAMES[self.cell]}, input_size={self.input_size}, "
            f"hidden_size={self.hidden_size}, bias={self.bias}{extra}, "
            f"backend={self.engine.backend!r})"
        )

    # -- result shaping for streams -------------------------------------------------------------
    def _stream_state(self, h, c):
        """What ``stream.state`` shows: the carried ``h`` ``[1, B, H]`` (and ``c``) as the
        cell's ``[B, H]``."""
        return (h[0], c[0]) if self.cell == "lstm" else h[0]

    # -- running ---------------------------------------------------------------------------------
    def _lead(self, a, name: str, shape: tuple):
        """``a`` (host or device array) checked against ``shape``, with a leading axis of 1."""
        if not is_device_array(a):
            a = as_float_array(a, name)
        if tuple(a.shape) != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {tuple(a.shape)}")
        return a[None]

    def __call__(self, x, hx=None):
        """One step of the cell.

        Parameters
        ----------
        x : array_like of float16, bfloat16, float32 or float64
            ``[B, I]``, or ``[I]`` unbatched. A numpy array (any strides), a CPU torch tensor
            or nested lists, converted to float32; on a CUDA model also a CUDA device array.
        hx : optional
            The state, zeros when omitted: ``(h, c)`` for an LSTM cell, ``h`` for GRU and RNN
            cells; each ``[B, H]`` (``[H]`` for unbatched ``x``), the same dtypes as ``x``.

        Returns
        -------
        ``(h', c')`` for an LSTM cell, ``h'`` for GRU and RNN cells
            float32 ``[B, H]`` (``[H]`` unbatched); for a device array ``x`` on a CUDA model,
            arrays of ``x``'s library on its device.

        Raises
        ------
        TypeError
            ``x`` or ``hx`` not of a float dtype listed above; ``hx`` of an LSTM cell not a
            pair, or a pair for a GRU/RNN cell.
        ValueError
            ``x`` not 1-D or 2-D, a wrong feature count, or ``hx`` of the wrong shape.
        """
        if not is_device_array(x):
            x = as_float_array(x, "input")
        if x.ndim not in (1, 2):
            raise ValueError(
                f"input: {_NAMES[self.cell]} expects 1-D [I] or 2-D [B, I] input, got shape "
                f"{tuple(x.shape)}"
            )
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"input: expected {self.input_size} features (last axis), got shape "
                f"{tuple(x.shape)}"
            )
        shape = (self.hidden_size,) if x.ndim == 1 else (x.shape[0], self.hidden_size)
        state = None
        if hx is not None:
            if self.cell == "lstm":
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError("hx for an LSTMCell must be a tuple (h, c)")
                state = (self._lead(hx[0], "h", shape), self._lead(hx[1], "c", shape))
            else:
                if isinstance(hx, (tuple, list)):
                    raise TypeError(
                        f"hx for a {_NAMES[self.cell]} must be one array h, not a tuple"
                    )
                state = self._lead(hx, "hx", shape)
        # one time step: [1, B, I], or [1, I] (TorchModel's unbatched form)
        _, h_n = self._model(x[None], state)
        if self.cell == "lstm":
            return h_n[0][0], h_n[1][0]
        return h_n[0]

    def stream(self, batch_size: int) -> Stream:
        """A :class:`pylstm.runtime.stream.Stream` stepping this cell with its state carried over.

        Parameters
        ----------
        batch_size : int
            ``B``, the number of sequences.

        Returns
        -------
        Stream
            ``stream.step(x)`` takes one step ``[B, I]`` (returns ``h'`` ``[B, H]``) or ``t``
            steps ``[t, B, I]`` (returns the ``t`` successive ``h`` ``[t, B, H]``);
            ``stream.state`` is ``(h, c)`` (LSTM cell) or ``h``, each ``[B, H]``;
            ``stream.reset()`` goes back to zeros.

        Raises
        ------
        TypeError
            ``batch_size`` is not an int.
        ValueError
            ``batch_size`` < 1.
        """
        return Stream(self, batch_size, view=self._stream_state)
