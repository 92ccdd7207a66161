"""Keras models (placeholder until the Keras reader lands)."""

from ..errors import UnsupportedError


def load_keras(path, *, device="cpu", precision="fp32", **options):
    """Load a Keras model file. Not implemented yet: raises UnsupportedError."""
    raise UnsupportedError(f"{path}: Keras files are not supported by this version of pylstm")


def from_keras(obj, *, device="cpu", precision="fp32"):
    """Build a model from a live Keras object. Not implemented yet: raises UnsupportedError."""
    raise UnsupportedError("Keras models are not supported by this version of pylstm")
