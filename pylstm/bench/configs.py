"""What ``pylstm bench`` measures: the grid of whole-sequence points, the streaming points and the
reduced-precision points, plus the filters the command line applies to all three."""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: Gate GEMMs per cell: an LSTM step does 4 gate products, a GRU 3, a plain RNN 1.
GATES = {"lstm": 4, "gru": 3, "rnn": 1}

#: The grid's axes (I = H everywhere).
GRID_CELLS = ("lstm", "gru")
GRID_BATCHES = (1, 8, 64, 256)
GRID_HIDDEN = (64, 256, 512, 1024)

#: pylstm weight precisions of the reduced-precision section; fp32 is the reference.
PRECISIONS = ("fp32", "bf16", "int8")


def grid_steps(hidden_size: int) -> int:
    """Sequence length T of a grid point: 100, or 25 at H = 1024 (keeps the big points short)."""
    return 25 if hidden_size >= 1024 else 100


@dataclass(frozen=True)
class BenchConfig:
    """One whole-sequence point: a ``cell`` stack of ``layers`` with I = ``input_size``, H =
    ``hidden_size``, run on an input ``[steps, batch, input_size]`` in one call."""

    cell: str
    batch: int
    input_size: int
    hidden_size: int
    steps: int
    layers: int = 1
    bidirectional: bool = False

    @property
    def name(self) -> str:
        bi = " bi" if self.bidirectional else ""
        return (
            f"{self.cell.upper()} L={self.layers}{bi} B={self.batch} I={self.input_size} "
            f"H={self.hidden_size} T={self.steps}"
        )

    def flops(self) -> float:
        """Floating-point operations of one forward call: 2 x the multiply-adds of the gate GEMMs
        (per layer, direction and step ``2·G·B·H·(I_layer + H)``, G = 4 LSTM, 3 GRU, 1 RNN)."""
        dirs = 2 if self.bidirectional else 1
        total = 0
        for layer in range(self.layers):
            in_size = self.input_size if layer == 0 else self.hidden_size * dirs
            total += 2 * GATES[self.cell] * self.hidden_size * (in_size + self.hidden_size) * dirs
        return float(total * self.batch * self.steps)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StreamConfig:
    """One streaming point: a single-layer ``cell`` fed one time step per call from Python, input
    ``[batch, input_size]`` per call, the state carried between calls."""

    cell: str
    input_size: int
    hidden_size: int
    batch: int = 1

    @property
    def name(self) -> str:
        return (
            f"{self.cell.upper()} stream B={self.batch} I={self.input_size} H={self.hidden_size} "
            "(1 step/call)"
        )

    def as_dict(self) -> dict:
        return asdict(self)


def default_configs() -> list:
    """The standard grid (45 points).

    * one layer, every combination of cell in {LSTM, GRU}, B in {1, 8, 64, 256} and
      I = H in {64, 256, 512, 1024}, T = 100 (T = 25 at H = 1024);
    * two layers, per cell: H = 256 at B in {1, 8, 64, 256} and H = 512 at B in {1, 64};
    * one bidirectional point: LSTM B = 8, I = H = 256, T = 100.
    """
    out = []
    for cell in GRID_CELLS:
        for hidden in GRID_HIDDEN:
            for batch in GRID_BATCHES:
                out.append(BenchConfig(cell, batch, hidden, hidden, grid_steps(hidden)))
        for hidden, batches in ((256, GRID_BATCHES), (512, (1, 64))):
            for batch in batches:
                out.append(BenchConfig(cell, batch, hidden, hidden, grid_steps(hidden), layers=2))
    out.append(BenchConfig("lstm", 8, 256, 256, 100, bidirectional=True))
    return out


def quick_configs() -> list:
    """A handful of grid points for ``--quick`` (one GRU point among them)."""
    return [
        BenchConfig("lstm", 1, 256, 256, 100),
        BenchConfig("lstm", 8, 256, 256, 100),
        BenchConfig("lstm", 64, 512, 512, 100),
        BenchConfig("gru", 1, 512, 512, 100),
        BenchConfig("lstm", 8, 256, 256, 100, layers=2),
        BenchConfig("lstm", 8, 256, 256, 100, bidirectional=True),
    ]


def stream_configs(quick: bool = False) -> list:
    """Streaming points: LSTM at H = 32, 64, 128 and GRU at H = 64 (I = H, B = 1);
    ``quick``: LSTM H = 64 only."""
    if quick:
        return [StreamConfig("lstm", 64, 64)]
    return [StreamConfig("lstm", h, h) for h in (32, 64, 128)] + [StreamConfig("gru", 64, 64)]


def precision_configs(quick: bool = False) -> list:
    """Points where pylstm runs at each of :data:`PRECISIONS` (ONNX Runtime and PyTorch at fp32):
    LSTM B = 1, I = H = 1024, T = 25 and GRU B = 1, I = H = 512, T = 100; ``quick``: the LSTM."""
    lstm = BenchConfig("lstm", 1, 1024, 1024, 25)
    return [lstm] if quick else [lstm, BenchConfig("gru", 1, 512, 512, 100)]


def condition_configs(quick: bool = False) -> list:
    """Points of the service-condition sections (service, shared, neighbours, scaling): LSTM and
    GRU at B = 1, I = H = 256, T = 100; LSTM at B = 8 and B = 64 (H = 256, T = 100); one
    single-step call ``model(x)`` with T = 1, B = 1, H = 256; and, in the service section only,
    streaming LSTM H = 64 (``stream.step``, one step per call, the state carried).
    ``quick``: the LSTM B = 1 point."""
    lstm = BenchConfig("lstm", 1, 256, 256, 100)
    if quick:
        return [lstm]
    return [
        lstm,
        BenchConfig("gru", 1, 256, 256, 100),
        BenchConfig("lstm", 8, 256, 256, 100),
        BenchConfig("lstm", 64, 256, 256, 100),
        BenchConfig("lstm", 1, 256, 256, 1),
        StreamConfig("lstm", 64, 64),
    ]


def filter_configs(configs: list, *, cells=None, batches=None, hidden_sizes=None) -> list:
    """The configurations (of any kind above) whose cell, batch and hidden size are among the
    given ones; ``None`` or empty keeps every value of that axis."""
    return [
        c
        for c in configs
        if (not cells or c.cell in cells)
        and (not batches or c.batch in batches)
        and (not hidden_sizes or c.hidden_size in hidden_sizes)
    ]
