"""``pylstm.load``: one entry point for every file format, recognised by content."""

from __future__ import annotations

import os

from .engine import Engine
from .errors import UnsupportedError
from .faces.torch_face import TorchModel
from .formats.sniff import detect_format

_TORCH_OPTIONS = {"prefix", "batch_first", "nonlinearity"}


def _check_options(options: dict, allowed: set, kind: str) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(
            f"load() got option(s) {', '.join(unknown)} that do not apply to {kind} files; "
            f"{kind} files take: {', '.join(sorted(allowed)) or 'no options'}"
        )


def load(path, *, device: str = "cpu", precision: str = "fp32", **options):
    """Load a model from a file written by a framework, without that framework installed.

    The format is recognised from the file's content (the suffix only breaks ties for ONNX).

    Parameters
    ----------
    path : str or os.PathLike
    device : str
    precision : {"fp32", "bf16", "int8"}
        Storage of the weights (see :class:`pylstm.engine.Engine`); compute stays float32.
    **options
        PyTorch state dicts (``.pt``/``.pth`` zip or legacy, ``.safetensors``):
        ``prefix="encoder."`` selects the recurrent module in a larger state dict (required
        when there are several; the error lists them); ``batch_first=False`` and
        ``nonlinearity="tanh"`` say what a state dict does not record.
        Keras files: ``config="model.json"`` (the architecture, ``model.to_json()``) for a
        ``.weights.h5``; ``keras_version="2"`` or ``"3"`` when the file does not say which Keras
        wrote it (it decides defaults such as hard_sigmoid's definition).

    Returns
    -------
    TorchModel
        For PyTorch files: ``model(x, hx=None, *, lengths=None)``.
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
        An option that does not apply to the file's format.
    pylstm.errors.UnsupportedError (a NotImplementedError)
        A format this version does not read yet.
    """
    from .formats.safetensors_file import read_safetensors
    from .formats.torch import layers_from_state_dict
    from .formats.torch_pickle import read_torch_file

    kind = detect_format(path)
    name = os.fspath(path)
    if kind in ("torch-zip", "torch-legacy", "safetensors"):
        _check_options(options, _TORCH_OPTIONS, "PyTorch")
        state = read_safetensors(path) if kind == "safetensors" else read_torch_file(path)
        layers = layers_from_state_dict(
            state,
            prefix=options.get("prefix"),
            nonlinearity=options.get("nonlinearity", "tanh"),
            source=os.path.basename(name),
        )
        engine = Engine(layers, device, precision)
        return TorchModel(engine, batch_first=bool(options.get("batch_first", False)))
    if kind == "onnx":
        from .formats.onnx import load_onnx

        return load_onnx(path, device=device, precision=precision, **options)
    if kind in ("keras", "hdf5"):
        from .formats.keras import load_keras

        return load_keras(path, device=device, precision=precision, **options)
    raise UnsupportedError(f"{name}: {kind} files are not supported by this version of pylstm")
