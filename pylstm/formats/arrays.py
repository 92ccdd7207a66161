"""Models built straight from numpy arrays, for weights trained elsewhere."""

from __future__ import annotations

from collections.abc import Sequence

from ..engine import Engine
from ..faces.torch_face import TorchModel
from ..network import Layer


def from_arrays(
    layers: Sequence[Layer], *, batch_first: bool = False, device: str = "cpu", precision="fp32"
):
    """Build a model from canonical layers.

    Parameters
    ----------
    layers : sequence of :class:`pylstm.Layer`
        Each with its :class:`pylstm.Direction` weights. Every variant the engine runs is
        available: LSTM with projection, peepholes, coupled input-forget gate, ``clip``, any
        of the eleven ONNX activation functions (with alpha/beta), GRU with the reset gate
        before or after the recurrent product, RNN with any activation, bias or not,
        forward, reverse or bidirectional. Use ``Layer(..., gate_order="iofc")`` for weights
        whose gates are not in canonical order.
    batch_first : bool
        Input and output are ``[B, T, F]`` instead of ``[T, B, F]``.
    device : str
    precision : {"fp32", "bf16", "int8"}
        Storage of the weights (see :class:`pylstm.engine.Engine`); compute stays float32.

    Returns
    -------
    TorchModel
        Called as ``model(x, hx=None, *, lengths=None)`` like a ``torch.nn.LSTM``.

    Examples
    --------
    >>> import numpy as np, pylstm
    >>> H, I = 8, 3
    >>> rng = np.random.default_rng(0)
    >>> d = pylstm.Direction(w=rng.normal(size=(4 * H, I)), r=rng.normal(size=(4 * H, H)))
    >>> model = pylstm.from_arrays([pylstm.Layer("lstm", [d])])
    >>> y, (h, c) = model(rng.normal(size=(5, 2, I)))
    >>> y.shape, h.shape
    ((5, 2, 8), (1, 2, 8))
    """
    if isinstance(layers, Layer):
        layers = [layers]
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"layers[{i}] must be a pylstm.Layer, got {type(layer).__name__}")
    return TorchModel(Engine(layers, device, precision), batch_first=batch_first)
