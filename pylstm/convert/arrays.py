"""Models built straight from numpy arrays, for weights trained elsewhere."""

from __future__ import annotations

from collections.abc import Sequence

from ..faces.torch_face import TorchModel
from ..runtime.engine import Engine
from .canonical import Layer


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
        Where the model runs: ``"cpu"`` (the default), ``"cuda"`` (the first GPU) or
        ``"cuda:N"``. CUDA needs pylstm built with its CUDA backend and a visible GPU;
        ``pylstm info`` (or :func:`pylstm.info`, ``cuda_status``) says whether and why not.
    precision : str
        How the weights are stored. On the CPU ``"fp32"`` (default), ``"bf16"`` (halves the
        bytes each step reads) or ``"int8"`` (one scale per gate row; a quarter), with inputs,
        states and sums in float32. On CUDA ``"fp32"``, ``"fp16"`` or ``"bf16"``: weights and
        activations in that type on the GPU, sums and the LSTM cell state in float32.

    Returns
    -------
    TorchModel
        Called as ``model(x, hx=None, *, lengths=None)`` like a ``torch.nn.LSTM``. Inputs of
        float16, bfloat16 (torch tensors, ``ml_dtypes`` arrays), float32 or float64 are
        converted to float32.

    Raises
    ------
    TypeError
        An element of ``layers`` is not a :class:`pylstm.Layer`; ``device`` or ``precision``
        not a string.
    ValueError
        Layers that do not stack (the next layer's input size is not the previous one's
        output size, or they differ in cell, direction count or sizes), ``device`` not
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, ``precision`` not one the device offers.
    pylstm.DeviceError (a RuntimeError)
        ``device`` names CUDA and this build has no CUDA backend, the backend cannot be loaded,
        or there is no GPU (or no GPU ``N``); the message says which.

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
