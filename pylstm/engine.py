"""Engine: a canonical network (list of :class:`pylstm.network.Layer`) packed for a device.

Faces (``pylstm/faces``) hold an Engine and give its results the caller's framework shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _core
from .network import Layer, check_stack
from .runtime import check_device, simd_level

PRECISIONS = ("fp32", "bf16", "int8")


def check_precision(precision) -> str:
    """``precision`` checked against :data:`PRECISIONS` (TypeError / ValueError otherwise)."""
    if not isinstance(precision, str):
        raise TypeError(f"precision must be a string, got {type(precision).__name__}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


class Engine:
    """Runs a stack of recurrent layers.

    Parameters
    ----------
    layers : sequence of Layer
    device : str
        ``"cpu"`` (``"cuda"`` needs the CUDA backend).
    precision : {"fp32", "bf16", "int8"}
        How the weights are stored. ``"bf16"`` (bfloat16) halves and ``"int8"`` (one scale per
        gate row) quarters the bytes each step reads; states and sums stay float32.
    """

    def __init__(self, layers: Sequence[Layer], device: str = "cpu", precision: str = "fp32"):
        layers = list(layers)
        check_stack(layers)
        self.device = check_device(device)
        if self.device != "cpu":  # pragma: no cover - check_device refuses CUDA in CPU builds
            raise NotImplementedError("the CUDA engine is not part of this version")
        self.layers = layers
        self.precision = check_precision(precision)
        self._net = _core.Network(
            [layer.to_core() for layer in layers], simd_level(), self.precision
        )
        self.input_size = layers[0].input_size
        self.output_size = layers[-1].output_size * layers[-1].num_directions
        # Rows of the state arrays: one per (layer, direction).
        self.state_rows = sum(layer.num_directions for layer in layers)

    @property
    def backend(self) -> str:
        """The code path in use, e.g. ``"cpu/avx512"``."""
        return self._net.backend

    def forward(
        self,
        x: np.ndarray,
        y: np.ndarray,
        mask: np.ndarray | None = None,
        h0: np.ndarray | None = None,
        c0: np.ndarray | None = None,
        h_n: np.ndarray | None = None,
        c_n: np.ndarray | None = None,
    ) -> None:
        """Run the network; writes ``y`` and, when given, ``h_n`` / ``c_n``. Releases the GIL.

        Parameters
        ----------
        x : float32 ndarray, shape ``[T, B, I]``, last axis contiguous, any other strides
        y : float32 ndarray, shape ``[T, B, O]``, writeable, last axis contiguous
        mask : uint8 ndarray, shape ``[T, B]``, optional; 0 marks a padded step
        h0, c0, h_n, c_n : C-contiguous float32, optional
            For each layer in order, ``[D, B, Hout]`` (h) and ``[D, B, H]`` (c) blocks.
        """
        self._net.forward(x, y, mask, h0, c0, h_n, c_n)
