"""Assembling: the one place engines are built and faces made from converted models.

The flow: read (bytes -> plain data, :mod:`pylstm.read`) -> convert (plain data -> frozen
canonical layers and the options the face needs, :mod:`pylstm.convert`) -> assemble (canonical
layers -> :class:`~pylstm.runtime.engine.Engine` -> a face, :mod:`pylstm.faces`). Every format
reaches the engine through :func:`build_engine`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from .runtime.engine import Engine
from .runtime.system import releases_freed_memory


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


@releases_freed_memory
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


@releases_freed_memory
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


# -- ONNX and Keras models: graphs run by the one graph executor --------------------------------


def onnx_model(proto, *, base_dir: str, device="cpu", precision="fp32", source="model"):
    """The :class:`~pylstm.OnnxModel` of a parsed ``ModelProto``: decoded
    (:mod:`pylstm.read.onnx_proto`, tensors within ``max_bytes``), its graph built (constants
    folded) with each LSTM/GRU/RNN node converted to a canonical layer
    (:mod:`pylstm.convert.onnx_rnn`) on an engine of its own."""
    from .convert.onnx import convert_model, recurrent_layer
    from .faces.onnx_face import OnnxModel
    from .read.onnx_tensors import TensorBudget, tensor_budget
    from .runtime.graph import Graph
    from .runtime.graph_recurrent import OnnxRecurrent

    def make_recurrent(node, constants):
        layer, layout = recurrent_layer(node, constants, source)
        return OnnxRecurrent(node, layout, build_engine([layer], device, precision))

    with tensor_budget(TensorBudget(source, proto.ByteSize())):
        data = convert_model(proto, base_dir=base_dir, source=source)
        graph = Graph(
            data.nodes,
            data.constants,
            [a.name for a in data.inputs],
            [a.name for a in data.outputs],
            make_recurrent,
            source=source,
        )
    return OnnxModel(graph, data.inputs, data.outputs, source=source, device=device)


@releases_freed_memory
def from_onnx_model(model, *, base_dir: str = ".", device="cpu", precision="fp32"):
    """An :class:`OnnxModel` from an ``onnx.ModelProto`` or its serialized bytes (in memory);
    ``pylstm.from_onnx``.

    Parameters
    ----------
    model : onnx.ModelProto, bytes, bytearray or memoryview
        The model, parsed or serialized.
    base_dir : str
        The folder external data (if any) is read from; nothing outside it is read.
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
    OnnxModel
        ``model.run(output_names, feeds)`` as ``onnxruntime.InferenceSession.run``. Float
        feeds may be float16, bfloat16 (torch tensors, ``ml_dtypes`` arrays), float32 or
        float64.

    Raises
    ------
    ImportError
        The ``onnx`` package is not installed.
    pylstm.FormatError (a ValueError)
        Bytes that are not a readable ONNX model, or missing or corrupt external data.
    pylstm.UnsupportedError (a NotImplementedError)
        An operator, attribute or element type pylstm does not run; names it.
    pylstm.DeviceError (a RuntimeError)
        ``device`` names CUDA and this build has no CUDA backend, the backend cannot be loaded,
        or there is no GPU (or no GPU ``N``); the message says which.
    ValueError
        ``device`` is not ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, or ``precision`` is not one
        the device offers (``"fp16"`` is CUDA-only, ``"int8"`` CPU-only).
    TypeError
        ``device`` or ``precision`` is not a string.
    """
    from .read.onnx_proto import parse_model_bytes

    if isinstance(model, (bytes, bytearray, memoryview)):
        model = parse_model_bytes(model, "bytes")
    return onnx_model(model, base_dir=base_dir, device=device, precision=precision, source="model")


def load_onnx(path, *, device="cpu", precision="fp32", **options):
    """Load an ONNX model file (``pylstm.load`` calls this for ``.onnx`` files).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.onnx`` file; external data is read from its folder only.
    device : str
        Where the model runs: ``"cpu"`` (the default), ``"cuda"`` (the first GPU) or
        ``"cuda:N"``. CUDA needs pylstm built with its CUDA backend and a visible GPU;
        ``pylstm info`` (or :func:`pylstm.info`, ``cuda_status``) says whether and why not.
    precision : str
        How the weights are stored. On the CPU ``"fp32"`` (default), ``"bf16"`` (halves the
        bytes each step reads) or ``"int8"`` (one scale per gate row; a quarter), with inputs,
        states and sums in float32. On CUDA ``"fp32"``, ``"fp16"`` or ``"bf16"``: weights and
        activations in that type on the GPU, sums and the LSTM cell state in float32.
    **options
        None are accepted for ONNX files (TypeError otherwise).

    Returns
    -------
    OnnxModel
        ``model.run(output_names, feeds)`` as ``onnxruntime.InferenceSession.run``. Float
        feeds may be float16, bfloat16 (torch tensors, ``ml_dtypes`` arrays), float32 or
        float64.

    Raises
    ------
    FileNotFoundError
        No such file.
    ImportError
        The ``onnx`` package is not installed.
    pylstm.FormatError (a ValueError)
        Unreadable, truncated or corrupt file, or missing external data; names the file.
    pylstm.UnsupportedError (a NotImplementedError)
        An operator, attribute or element type pylstm does not run; names it.
    pylstm.DeviceError (a RuntimeError)
        ``device`` names CUDA and this build has no CUDA backend, the backend cannot be loaded,
        or there is no GPU (or no GPU ``N``); the message says which.
    ValueError
        ``device`` is not ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, or ``precision`` is not one
        the device offers (``"fp16"`` is CUDA-only, ``"int8"`` CPU-only).
    TypeError
        Any option (ONNX files take none); ``device`` or ``precision`` not a string.
    """
    from .read.onnx_proto import read_model_proto

    if options:
        raise TypeError(
            f"load() got option(s) {', '.join(sorted(options))} that do not apply to ONNX files; "
            "ONNX files take: no options"
        )
    name = os.fspath(path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if not os.path.exists(name):
        raise FileNotFoundError(2, "No such file", name)
    return onnx_model(
        read_model_proto(name),
        base_dir=os.path.dirname(os.path.abspath(name)),
        device=device,
        precision=precision,
        source=name,
    )


def keras_model(converted, device="cpu", precision="fp32"):
    """The :class:`~pylstm.KerasModel` of a converted Keras model
    (:class:`pylstm.convert.keras.KerasConverted`): an engine per canonical layer of each
    recurrent layer (shared by the layer's calls), the lowered graph built for the graph
    executor."""
    from .faces.keras_face import KerasModel
    from .runtime.graph import Graph
    from .runtime.graph_recurrent import KerasRecurrent

    # One set of engines per converted layer (a layer called twice shares them). The weights
    # then live packed in the engines only: the nodes keep the spec without its layers.
    engines, shaped = {}, {}  # id(shaped spec) -> engines; id(converted spec) -> shaped spec
    for node in converted.graph.nodes:
        if not node.recurrent:
            continue
        spec = node.attrs["recurrent"]
        if id(spec) not in shaped:
            built = [build_engine([layer], device, precision) for layer in spec.layers]
            shaped[id(spec)] = replace(spec, layers=())
            engines[id(shaped[id(spec)])] = built
        node.attrs["recurrent"] = shaped[id(spec)]

    def make_recurrent(node, constants):
        return KerasRecurrent(node, engines[id(node.attrs["recurrent"])])

    k = converted.graph
    graph = Graph(k.nodes, {}, k.inputs, k.outputs, make_recurrent, source=k.name, keras=True)
    return KerasModel(graph, k, converted.spec, name=converted.name)


def load_keras(path, *, device="cpu", precision="fp32", **options):
    """Load a Keras model file without Keras, TensorFlow or torch.

    Parameters
    ----------
    path : str or os.PathLike
        ``.keras`` (Keras 3, or tf.keras >= 2.13), ``.h5`` written by ``model.save`` (Keras 3 or
        tf.keras 2), or a weights file (``.weights.h5``, or a tf.keras 2 ``save_weights`` ``.h5``)
        with ``config=``.
    device : str
        Where the model runs: ``"cpu"`` (the default), ``"cuda"`` (the first GPU) or
        ``"cuda:N"``. CUDA needs pylstm built with its CUDA backend and a visible GPU;
        ``pylstm info`` (or :func:`pylstm.info`, ``cuda_status``) says whether and why not.
    precision : str
        How the weights are stored. On the CPU ``"fp32"`` (default), ``"bf16"`` (halves the
        bytes each step reads) or ``"int8"`` (one scale per gate row; a quarter), with inputs,
        states and sums in float32. On CUDA ``"fp32"``, ``"fp16"`` or ``"bf16"``: weights and
        activations in that type on the GPU, sums and the LSTM cell state in float32.
    config : str, os.PathLike or dict, optional
        The architecture (a ``model.to_json()`` file) for weights-only files.
    keras_version : str, optional
        Overrides the Keras version the file says wrote it (e.g. ``"2.15"``); it decides what
        ``hard_sigmoid`` means.

    Returns
    -------
    KerasModel
        ``model(x)`` returns what the Keras model returns. Inputs of float16, bfloat16
        (torch tensors, ``ml_dtypes`` arrays), float32 or float64 are converted to float32.

    Raises
    ------
    FileNotFoundError
        No such file.
    pylstm.FormatError (a ValueError)
        Unreadable, truncated or inconsistent files (the message names the file and layer).
    pylstm.UnsupportedError (a NotImplementedError)
        A layer or option pylstm does not run (the message names the layer class).
    pylstm.DeviceError (a RuntimeError)
        ``device`` names CUDA and this build has no CUDA backend, the backend cannot be loaded,
        or there is no GPU (or no GPU ``N``); the message says which.
    ValueError
        ``device`` is not ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, or ``precision`` is not one
        the device offers (``"fp16"`` is CUDA-only, ``"int8"`` CPU-only).
    TypeError
        ``device`` or ``precision`` is not a string, an option that Keras files do not take,
        or ``config=`` with a ``.keras`` file.
    """
    from .convert.keras import convert_file

    return keras_model(convert_file(path, **options), device, precision)


@releases_freed_memory
def from_keras(obj, *, device="cpu", precision="fp32"):
    """Build a model from a live Keras object.

    Parameters
    ----------
    obj : keras.Model, keras.Sequential, or a recurrent layer
        A Keras 3 (or tf.keras 2) ``Sequential`` or functional model (one or several inputs), or a
        built ``LSTM``, ``GRU``, ``SimpleRNN``, ``RNN`` or ``Bidirectional`` layer.
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
    KerasModel
        ``model(x)`` returns what ``obj(x)`` returns, as numpy. Inputs of float16, bfloat16
        (torch tensors, ``ml_dtypes`` arrays), float32 or float64 are converted to float32.

    Raises
    ------
    pylstm.UnsupportedError (a NotImplementedError)
        A layer pylstm does not run, or an object that is not a Keras model or recurrent layer
        (the message names its class).
    pylstm.DeviceError (a RuntimeError)
        ``device`` names CUDA and this build has no CUDA backend, the backend cannot be loaded,
        or there is no GPU (or no GPU ``N``); the message says which.
    ValueError
        A recurrent layer that has no weights yet (not built); ``device`` is not ``"cpu"``,
        ``"cuda"`` or ``"cuda:N"``, or ``precision`` is not one the device offers (``"fp16"``
        is CUDA-only, ``"int8"`` CPU-only).
    TypeError
        ``device`` or ``precision`` is not a string.
    """
    from .convert.keras import convert_live

    return keras_model(convert_live(obj), device, precision)
