"""Built-in benchmark configurations."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark point: a ``cell`` stack of ``layers`` with I = ``input_size``, H =
    ``hidden_size``, run on ``batch`` sequences of ``steps`` time steps."""

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
        """Multiply-adds x 2 of the whole forward pass (gate GEMMs only)."""
        gates = {"lstm": 4, "gru": 3, "rnn": 1}[self.cell]
        dirs = 2 if self.bidirectional else 1
        total = 0
        for layer in range(self.layers):
            in_size = self.input_size if layer == 0 else self.hidden_size * dirs
            total += 2 * gates * self.hidden_size * (in_size + self.hidden_size) * dirs
        return float(total * self.batch * self.steps)

    def as_dict(self) -> dict:
        return asdict(self)


def default_configs() -> list:
    """The built-in grid: LSTM and GRU, B in {1, 8, 64, 256}, I = H in {64, 256, 512, 1024}
    (T = 100; T = 25 at H = 1024), one and two layers, one bidirectional case."""
    out = []
    for cell in ("lstm", "gru"):
        for hidden in (64, 256, 512, 1024):
            steps = 25 if hidden == 1024 else 100
            for batch in (1, 8, 64, 256):
                out.append(BenchConfig(cell, batch, hidden, hidden, steps))
        out.append(BenchConfig(cell, 8, 256, 256, 100, layers=2))
    out.append(BenchConfig("lstm", 8, 256, 256, 100, bidirectional=True))
    return out


def quick_configs() -> list:
    """A handful of points that finish in well under a minute."""
    return [
        BenchConfig("lstm", 1, 256, 256, 100),
        BenchConfig("lstm", 8, 256, 256, 100),
        BenchConfig("lstm", 64, 512, 512, 100),
        BenchConfig("gru", 1, 512, 512, 100),
        BenchConfig("lstm", 8, 256, 256, 100, layers=2),
        BenchConfig("lstm", 8, 256, 256, 100, bidirectional=True),
    ]
