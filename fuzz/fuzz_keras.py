"""Harness ``keras``: ``pylstm.load`` of a mutated ``.keras`` file, then one small run of the model."""

from __future__ import annotations

from fuzz.common import load_bytes
from fuzz.exercise import exercise

NAME = "keras"
SUFFIX = ".keras"


def test_one_input(data: bytes) -> None:
    """One input: load it (allowed errors are fine), run what loads."""
    model = load_bytes(data, "case" + SUFFIX)
    if model is not None:
        exercise(model)
