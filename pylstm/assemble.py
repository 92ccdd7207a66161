"""Assembling: the one place engines are built and faces made from converted models.

The flow: read (bytes -> plain data, :mod:`pylstm.read`) -> convert (plain data -> frozen
canonical layers and the options the face needs, :mod:`pylstm.convert`) -> assemble (canonical
layers -> :class:`~pylstm.runtime.engine.Engine` -> a face, :mod:`pylstm.faces`). Every format
reaches the engine through :func:`build_engine`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .runtime.engine import Engine


def build_engine(layers: Sequence, device: str = "cpu", precision: str = "fp32") -> Engine:
    """An :class:`Engine` running the canonical ``layers`` on ``device`` at ``precision``.

    Raises what :class:`Engine` raises (``DeviceError``, ``ValueError``, ``TypeError``).
    """
    return Engine(layers, device, precision)


# -- PyTorch-style models ---------------------------------------------------------------------


def torch_face(converted, device: str = "cpu", precision: str = "fp32"):
    """The face of a converted PyTorch module or cell
    (:class:`pylstm.convert.torch.TorchConverted`): a :class:`~pylstm.TorchModel`, or a
    :class:`~pylstm.CellModel` for a cell."""
    from .faces.cell_face import CellModel
    from .faces.torch_face import TorchModel

    engine = build_engine(converted.layers, device, precision)
    if converted.is_cell:
        return CellModel(engine)
    return TorchModel(engine, batch_first=converted.batch_first)


def from_torch(module, *, device: str = "cpu", precision: str = "fp32"):
    """Build a model from a live ``torch.nn.LSTM``, ``GRU`` or ``RNN``, or a cell
    (``torch.nn.LSTMCell``, ``GRUCell``, ``RNNCell``).

    The weights are copied (widened to float32 whatever the module's dtype), so later changes
    to ``module`` do not reach the model.

    Parameters
    ----------
    module : torch.nn.LSTM | GRU | RNN | LSTMCell | GRUCell | RNNCell
        Any constructor options (``num_layers``, ``bidirectional``, ``bias``, ``batch_first``,
        ``proj_size``, ``nonlinearity``), on any device and of any float dtype. Dropout is
        ignored (inference).
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
        For a module: ``model(x, hx=None, *, lengths=None)`` returns what ``module`` returns,
        as numpy. Inputs of float16, bfloat16 (torch tensors, ``ml_dtypes`` arrays), float32
        or float64 are converted to float32.
    CellModel
        For a cell: ``model(x, hx=None)`` returns what the cell returns (``(h', c')`` for
        ``LSTMCell``, ``h'`` for ``GRUCell``/``RNNCell``), ``x`` ``[B, I]`` or ``[I]``;
        ``model.stream(B)`` steps it.

    Raises
    ------
    pylstm.UnsupportedError (a NotImplementedError)
        ``module`` is not one of the three recurrent modules or three cells (the message
        names its class).
    pylstm.FormatError (a ValueError)
        A weight holds NaN or infinity (the message names the tensor).
    pylstm.DeviceError (a RuntimeError)
        ``device`` names CUDA and this build has no CUDA backend, the backend cannot be loaded,
        or there is no GPU (or no GPU ``N``); the message says which.
    ValueError
        ``device`` is not ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, or ``precision`` is not one
        the device offers (``"fp16"`` is CUDA-only, ``"int8"`` CPU-only).
    TypeError
        ``device`` or ``precision`` is not a string.
    """
    from .convert.torch import convert_module

    return torch_face(convert_module(module), device, precision)


def load_torch_state(state, *, options: dict, source: str, device: str, precision: str):
    """The model of a PyTorch state dict read from a file (``pylstm.load``): ``options`` are
    ``load``'s PyTorch options (``prefix``, ``nonlinearity``, ``batch_first``)."""
    from .convert.torch import convert_state_dict

    converted = convert_state_dict(
        state,
        prefix=options.get("prefix"),
        nonlinearity=options.get("nonlinearity", "tanh"),
        batch_first=options.get("batch_first"),
        source=os.path.basename(source),
    )
    return torch_face(converted, device, precision)


def from_arrays(layers, *, batch_first: bool = False, device: str = "cpu", precision="fp32"):
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
    from .convert.arrays import convert_layers
    from .convert.torch import TorchConverted

    converted = TorchConverted(convert_layers(layers), batch_first=bool(batch_first))
    return torch_face(converted, device, precision)
