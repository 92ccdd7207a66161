"""Error of reduced-precision weights against fp32, for the README table.

    python bench/precision_error.py            # prints a markdown table

Models are PyTorch modules with their default initialisation (uniform(-1/sqrt(H), 1/sqrt(H)));
inputs are standard normal; the reference is pylstm in fp32 (itself within 3e-5 of PyTorch).
"""

import numpy as np
import torch

import pylstm

CASES = [
    ("lstm", 1, 256, 100),
    ("lstm", 1, 1024, 25),
    ("lstm", 64, 512, 100),
    ("gru", 1, 512, 100),
    ("gru", 8, 1024, 25),
]


def errors(cell, batch, hidden, steps, precision, seed=0):
    torch.manual_seed(seed)
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](hidden, hidden).eval()
    x = np.random.default_rng(seed).standard_normal((steps, batch, hidden), dtype=np.float32)
    ref = pylstm.from_torch(module)(x)[0]
    out = pylstm.from_torch(module, precision=precision)(x)[0]
    diff = np.abs(out - ref)
    return float(diff.max()), float(diff.mean())


def main():
    print("| model | precision | max abs error | mean abs error |")
    print("|---|---|---|---|")
    for cell, batch, hidden, steps in CASES:
        for precision in ("bf16", "int8"):
            mx, mean = errors(cell, batch, hidden, steps, precision)
            name = f"{cell.upper()} B={batch} I=H={hidden} T={steps}"
            print(f"| {name} | {precision} | {mx:.1e} | {mean:.1e} |")


if __name__ == "__main__":
    main()
