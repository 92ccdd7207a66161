"""Harness ``h5``: ``pylstm.load`` of a mutated ``.h5`` file, then one small run of the model."""

from __future__ import annotations

from fuzz.common import load_bytes
from fuzz.exercise import exercise

NAME = "h5"
SUFFIX = ".h5"


def test_one_input(data: bytes) -> None:
    """One input: load it (allowed errors are fine), run what loads."""
    model = load_bytes(data, "case" + SUFFIX)
    if model is not None:
        exercise(model)
