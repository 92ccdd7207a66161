"""``pylstm.load``: one entry point for every file format, recognised by content."""

from __future__ import annotations

import os

from .errors import UnsupportedError
from .read.sniff import detect_format
from .runtime.system import releases_freed_memory

_TORCH_OPTIONS = {"prefix", "batch_first", "nonlinearity"}


def _check_options(options: dict, allowed: set, kind: str) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(
            f"load() got option(s) {', '.join(unknown)} that do not apply to {kind} files; "
            f"{kind} files take: {', '.join(sorted(allowed)) or 'no options'}"
        )


@releases_freed_memory
def load(path, *, device: str = "cpu", precision: str = "fp32", max_bytes=None, **options):
    """Load a model from a file written by a framework, without that framework installed.

    The format is recognised from the file's content (the suffix only breaks ties for ONNX).

    Parameters
    ----------
    path : str or os.PathLike
        The file. Its format is read from its content: a PyTorch state dict (zip or legacy
        ``torch.save``, ``torch.jit.save`` archives, ``.safetensors``), a Keras file
        (``.keras``, ``.h5``, ``.weights.h5`` with ``config=``) or an ``.onnx`` model.
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
        PyTorch state dicts (``.pt``/``.pth`` zip or legacy, ``.safetensors``):
        ``prefix="encoder."`` selects the recurrent module in a larger state dict (required
        when there are several; the error lists them); ``batch_first=False`` and
        ``nonlinearity="tanh"`` say what a state dict does not record.
        Keras files: ``config="model.json"`` (the architecture, ``model.to_json()``) for a
        ``.weights.h5``; ``keras_version="2"`` or ``"3"`` when the file does not say which Keras
        wrote it (it decides defaults such as hard_sigmoid's definition).
    max_bytes : int, optional
        The most bytes reading the file may inflate, declare or allocate (zip members,
        tensor and string sizes, pickled objects; for ONNX also the largest value one
        operator may produce at run time). Default ``max(256 MiB, min(64 x file size, 4 GiB),
        4 x file size)`` (``pylstm.read.limits``); a file over it raises ``FormatError``
        naming the limit.

    Returns
    -------
    TorchModel
        For PyTorch files of a module: ``model(x, hx=None, *, lengths=None)``.
    CellModel
        For PyTorch files of a cell (``LSTMCell``, ``GRUCell``, ``RNNCell``: keys
        ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``): ``model(x, hx=None)``, one
        step, as the cell. Every model takes inputs
        of float16, bfloat16 (torch tensors, ``ml_dtypes`` arrays), float32 or float64,
        converted to float32 (integer token ids for Keras models that start with an
        ``Embedding``).
    OnnxModel
        For ``.onnx`` files (no options): ``model.run(output_names, feeds)`` as
        ``onnxruntime.InferenceSession.run``.
    KerasModel
        For ``.keras``, ``.h5`` and ``.weights.h5`` (with ``config=``): ``model(x)`` returns what
        Keras returns.

    Raises
    ------
    FileNotFoundError
        No such file.
    pylstm.errors.FormatError (a ValueError)
        Unreadable, truncated, corrupt or hostile file; the message names the file and the
        tensor or layer it failed on.
    TypeError
        An option that does not apply to the file's format; ``device`` or ``precision`` not a
        string.
    pylstm.errors.UnsupportedError (a NotImplementedError)
        A format this version does not read yet, or a layer, operator or attribute it does not
        run (the message names it).
    pylstm.DeviceError (a RuntimeError)
        ``device`` names CUDA and this build has no CUDA backend, the backend cannot be loaded,
        or there is no GPU (or no GPU ``N``); the message says which.
    ValueError
        ``device`` is not ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, ``precision`` is not one the
        device offers (``"fp16"`` is CUDA-only, ``"int8"`` CPU-only), a state dict holding
        several recurrent modules without ``prefix=``, a ``prefix`` that matches none, or a bad
        ``nonlinearity``.
    ImportError
        An ``.onnx`` file without the ``onnx`` package installed.
    """
    from .read.limits import load_limit

    with load_limit(max_bytes):
        return _load(path, device=device, precision=precision, **options)


def _load(path, *, device, precision, **options):
    """:func:`load` once the ``max_bytes`` limit is in place."""
    from .assemble import load_torch_state
    from .read.safetensors_file import read_safetensors
    from .read.torch_pickle import read_torch_file

    kind = detect_format(path)
    name = os.fspath(path)
    if kind in ("torch-zip", "torch-legacy", "safetensors"):
        _check_options(options, _TORCH_OPTIONS, "PyTorch")
        # read -> convert -> assemble: a TorchModel, or a CellModel for a cell's weights
        state = read_safetensors(path) if kind == "safetensors" else read_torch_file(path)
        return load_torch_state(
            state, options=options, source=name, device=device, precision=precision
        )
    if kind == "onnx":
        from .assemble import load_onnx

        return load_onnx(path, device=device, precision=precision, **options)
    if kind in ("keras", "hdf5"):
        from .assemble import load_keras

        return load_keras(path, device=device, precision=precision, **options)
    raise UnsupportedError(f"{name}: {kind} files are not supported by this version of pylstm")
