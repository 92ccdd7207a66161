"""Assembling: the one place engines are built and faces made from converted models.

The flow is read (bytes -> plain data, :mod:`pylstm.read`) -> convert (plain data -> canonical
layers, :mod:`pylstm.convert`) -> assemble (canonical layers -> :class:`~pylstm.runtime.engine.Engine`
-> a face, :mod:`pylstm.faces`). Every format reaches the engine through :func:`build_engine`.
"""

from __future__ import annotations

from collections.abc import Sequence

from .runtime.engine import Engine


def build_engine(layers: Sequence, device: str = "cpu", precision: str = "fp32") -> Engine:
    """An :class:`Engine` running the canonical ``layers`` on ``device`` at ``precision``.

    Raises what :class:`Engine` raises (``DeviceError``, ``ValueError``, ``TypeError``).
    """
    return Engine(layers, device, precision)
