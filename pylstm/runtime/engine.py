"""Engine: a canonical network (:class:`pylstm.convert.canonical.CanonicalLayer` list) packed for a device.

Faces (``pylstm/faces``) hold an Engine and give its results the caller's framework shape.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import _core
from ..convert.builder import as_canonical, layer_from_core
from ..convert.canonical import CanonicalLayer, LayerSizes, check_stack
from .system import check_device, load_cuda, simd_level


@dataclass(frozen=True)
class DirectionShape:
    """One packed direction without its weights: what faces and streams ask of it."""

    reverse: bool
    activations: tuple  # of Activation
    has_bias: bool
    has_peephole: bool


@dataclass(frozen=True)
class LayerShape(LayerSizes):
    """A packed layer without its weights (:attr:`Engine.layers`): sizes and options only.

    The weights live once, packed inside the engine; :meth:`Engine.unpack` rebuilds them.
    """

    cell: str
    input_size: int
    hidden_size: int
    proj_size: int
    clip: float | None
    input_forget: bool
    linear_before_reset: bool
    masked_output: str
    directions: tuple  # of DirectionShape

    @classmethod
    def of(cls, layer: CanonicalLayer) -> LayerShape:
        return cls(
            cell=layer.cell,
            input_size=layer.input_size,
            hidden_size=layer.hidden_size,
            proj_size=layer.proj_size,
            clip=layer.clip,
            input_forget=layer.input_forget,
            linear_before_reset=layer.linear_before_reset,
            masked_output=layer.masked_output,
            directions=tuple(
                DirectionShape(
                    reverse=d.reverse,
                    activations=tuple(d.activations),
                    has_bias=d.bias_w is not None,
                    has_peephole=d.peephole is not None,
                )
                for d in layer.directions
            ),
        )


#: Weight precisions of the CPU engine.
PRECISIONS = ("fp32", "bf16", "int8")
#: Precisions of the CUDA engine (weights and activations; sums and the LSTM cell state float32).
CUDA_PRECISIONS = ("fp32", "fp16", "bf16")
#: How the CUDA engine runs each layer (``PYLSTM_CUDA_STRATEGY``; see cuda/src/layer_run.hpp):
#: ``auto`` picks by batch size, ``persistent`` the persistent kernel wherever it fits,
#: ``graph`` the per-step cuBLAS + gate-kernel loop in CUDA graphs, ``steps`` that loop launched
#: directly.
CUDA_STRATEGIES = ("auto", "persistent", "graph", "steps")


def check_precision(precision, device: str = "cpu") -> str:
    """``precision`` checked against what ``device`` offers: :data:`PRECISIONS` on the CPU,
    :data:`CUDA_PRECISIONS` on CUDA (TypeError / ValueError otherwise)."""
    if not isinstance(precision, str):
        raise TypeError(f"precision must be a string, got {type(precision).__name__}")
    if device.startswith("cuda"):
        if precision not in CUDA_PRECISIONS:
            extra = " (int8 weights are CPU-only)" if precision == "int8" else ""
            raise ValueError(
                f"precision must be one of {', '.join(CUDA_PRECISIONS)} on {device}; got "
                f"{precision!r}{extra}"
            )
    elif precision not in PRECISIONS:
        extra = " (fp16 is for device='cuda')" if precision in CUDA_PRECISIONS else ""
        raise ValueError(
            f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}{extra}"
        )
    return precision


def cuda_strategy() -> str:
    """``PYLSTM_CUDA_STRATEGY`` (default ``auto``), checked against :data:`CUDA_STRATEGIES`."""
    value = os.environ.get("PYLSTM_CUDA_STRATEGY", "auto").strip().lower() or "auto"
    if value not in CUDA_STRATEGIES:
        raise ValueError(
            f"PYLSTM_CUDA_STRATEGY must be one of {', '.join(CUDA_STRATEGIES)}; got {value!r}"
        )
    return value


class Engine:
    """Runs a stack of recurrent layers.

    Parameters
    ----------
    layers : sequence of CanonicalLayer or pylstm.Layer
        The canonical layers (a :class:`pylstm.Layer` is taken as its canonical form). Their
        weights are packed for the device and not kept: :attr:`layers` holds each layer's
        :class:`LayerShape` (sizes and options), :meth:`unpack` rebuilds the weights.
    device : str
        ``"cpu"``, or ``"cuda"`` / ``"cuda:N"`` (needs the CUDA backend and a GPU).
    precision : str
        CPU: ``"fp32"``, ``"bf16"`` or ``"int8"``: how the weights are stored. ``"bf16"``
        (bfloat16) halves and ``"int8"`` (one scale per gate row) quarters the bytes each step
        reads; states and sums stay float32. CUDA: ``"fp32"``, ``"fp16"`` or ``"bf16"``:
        weights and activations in that type, sums and the LSTM cell state in float32.

    Raises
    ------
    DeviceError
        ``device`` cannot be used here (the message says why).
    ValueError
        A precision the device does not offer.
    """

    def __init__(
        self, layers: Sequence[CanonicalLayer], device: str = "cpu", precision: str = "fp32"
    ):
        layers = [as_canonical(layer) for layer in layers]
        check_stack(layers)
        self.device = check_device(device)
        self.precision = check_precision(precision, self.device)
        cores = [layer.to_core() for layer in layers]
        if self.device == "cpu":
            self._net = _core.Network(cores, simd_level(), self.precision)
        else:
            self._net = load_cuda().Network(
                cores, self.precision, self.device_index, cuda_strategy()
            )
        del cores
        # The weights are now held once, packed in self._net; the engine keeps only the layers'
        # shapes (a caller that built `layers` keeps its own arrays as long as it holds them).
        self.layers = tuple(LayerShape.of(layer) for layer in layers)
        self.input_size = layers[0].input_size
        self.output_size = layers[-1].output_size * layers[-1].num_directions
        # Rows of the state arrays: one per (layer, direction).
        self.state_rows = sum(layer.num_directions for layer in layers)

    def __reduce__(self):
        """Pickles as its layers rebuilt from the packed weights (``_core.Network.unpack``: plain
        dicts of float32 arrays), its device and precision (see :mod:`pylstm.runtime.pickling`)."""
        from .pickling import reduce

        state = {"layers": self._net.unpack(), "device": self.device, "precision": self.precision}
        return reduce(self, state)

    @classmethod
    def _from_state(cls, state: dict) -> Engine:
        from .pickling import receiving_device

        layers = [layer_from_core(core) for core in state["layers"]]  # checked again
        return cls(layers, receiving_device(state["device"]), state["precision"])

    def unpack(self) -> list:
        """The canonical layers rebuilt from the packed weights (float32; bf16 and int8 weights
        widened; each direction's two biases folded into ``bias_w``, ``bias_r`` zeros, except
        the GRU's recurrent ``n`` bias under ``linear_before_reset``). An engine built from them
        with the same precision gives bit-identical outputs. Costs a copy of the weights: for
        pickling and moving a model, not for every call."""
        return [layer_from_core(core) for core in self._net.unpack()]

    @property
    def backend(self) -> str:
        """The code path in use, e.g. ``"cpu/avx512"`` or ``"cuda:0/fp16 (NVIDIA H100 ...)"``."""
        return self._net.backend

    @property
    def is_cuda(self) -> bool:
        return self.device != "cpu"

    @property
    def device_index(self) -> int:
        """The CUDA device number (``cuda:N``); -1 on the CPU."""
        return int(self.device.split(":")[1]) if self.is_cuda else -1

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

        On a CUDA engine the arrays are copied to the device and back; the call returns when
        the outputs are written.
        """
        self._net.forward(x, y, mask, h0, c0, h_n, c_n)

    def forward_device(
        self,
        x,
        y,
        mask=None,
        h0=None,
        c0=None,
        h_n=None,
        c_n=None,
        *,
        state_dtype: str = "float32",
        stream: int = 0,
    ) -> None:
        """Run a CUDA engine on device memory; enqueued on ``stream``, returns without waiting.

        Parameters
        ----------
        x, y : tuple
            ``(ptr, dtype, T, B, F, stride_t, stride_b)``: device ``[T, B, F]`` arrays (feature
            axis contiguous, element strides), dtype ``"float32"``, ``"float16"`` or
            ``"bfloat16"``; ``y`` is written.
        mask : int, optional
            Device pointer to a contiguous uint8 ``[T, B]`` mask.
        h0, c0, h_n, c_n : int, optional
            Device pointers to contiguous state blocks (as :meth:`forward`) of ``state_dtype``.
        stream : int
            The ``cudaStream_t`` to run on (0: the legacy default stream).
        """
        if not self.is_cuda:
            raise ValueError("forward_device needs a CUDA engine (device='cuda')")
        self._net.forward_device(x, y, mask, h0, c0, h_n, c_n, state_dtype, stream)

    def stream_core(self, batch_size: int, batch_first: bool):
        """The object behind :class:`pylstm.Stream`: a ``_core.Stream`` on any device (methods
        ``step``, ``reset``, ``set_state``, ``h``, ``c``). On CUDA its state stays in device
        memory between steps; a step copies only its inputs in and its outputs out."""
        return _core.Stream(self._net, batch_size, batch_first)
