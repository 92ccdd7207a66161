"""ONNX models (placeholder until the ONNX reader lands)."""

from ..errors import UnsupportedError


def load_onnx(path, *, device="cpu", precision="fp32", **options):
    """Load an ONNX model file. Not implemented yet: raises UnsupportedError."""
    raise UnsupportedError(f"{path}: ONNX files are not supported by this version of pylstm")
