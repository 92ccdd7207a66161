"""How much memory a loaded model's weights cost: RSS growth of a fresh process per load path.

Issue 12's targets, for ``LSTM(1024, 1024, num_layers=4)`` (128 MiB of float32 weights):
``pylstm.load`` of its state dict raises RSS by at most 1.15x the weight bytes with
``precision="fp32"``, 0.6x with ``"bf16"``, 0.35x with ``"int8"``. Each measurement runs in its
own fresh interpreter (``python bench/weight_memory.py --one PATH PRECISION``), which imports
pylstm and numpy first, reads RSS, loads the model, runs it once, collects garbage and reads RSS
again. Usage::

    python bench/weight_memory.py            # the table, for .pt, .safetensors and .onnx files
    python bench/weight_memory.py --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import warnings

HIDDEN, LAYERS = 1024, 4
TARGETS = {"fp32": 1.15, "bf16": 0.6, "int8": 0.35}


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def weight_bytes(hidden: int = HIDDEN, layers: int = LAYERS) -> int:
    """float32 bytes of ``LSTM(hidden, hidden, num_layers=layers)``: W, R, two biases per layer."""
    per_layer = 4 * hidden * hidden * 2 + 4 * hidden * 2
    return 4 * per_layer * layers


def write_files(folder: str, hidden: int = HIDDEN, layers: int = LAYERS) -> dict:
    """The same LSTM as a ``torch.save`` state dict, a ``.safetensors`` file and an ``.onnx``
    model (the last two when safetensors and onnx are installed), in ``folder``."""
    import torch

    torch.manual_seed(0)
    module = torch.nn.LSTM(hidden, hidden, num_layers=layers)
    paths = {"pt": os.path.join(folder, "lstm.pt")}
    torch.save(module.state_dict(), paths["pt"])
    try:
        from safetensors.torch import save_file

        paths["safetensors"] = os.path.join(folder, "lstm.safetensors")
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, paths["safetensors"])
    except ImportError:
        pass
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)

        paths["onnx"] = os.path.join(folder, "lstm.onnx")
        x = torch.zeros(2, 1, hidden)
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation notes
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), paths["onnx"], dynamo=False, input_names=["x"])
    except ImportError:
        pass
    return paths


def measure_one(path: str, precision: str) -> dict:
    """Run in a fresh process: RSS growth of ``pylstm.load(path, precision=precision)``."""
    import numpy as np

    import pylstm

    x = np.ones((2, 1, HIDDEN), np.float32)
    if path.endswith(".onnx"):
        import onnx  # noqa: F401  (the package's code, ~9 MiB, is not the model's weights)
    gc.collect()
    before = rss_bytes()
    model = pylstm.load(path, precision=precision)
    if isinstance(model, pylstm.OnnxModel):
        model.run(None, {model.get_inputs()[0].name: x})
    else:
        model(x)
    gc.collect()
    after = rss_bytes()
    return {"path": os.path.basename(path), "precision": precision, "rss_growth": after - before}


def measure(path: str, precision: str) -> dict:
    """:func:`measure_one` in a fresh interpreter; adds the ratio to the float32 weight bytes."""
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--one", path, precision],
        capture_output=True,
        text=True,
        check=True,
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["weight_bytes"] = weight_bytes()
    row["ratio"] = row["rss_growth"] / row["weight_bytes"]
    row["target"] = TARGETS[precision]
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=2, metavar=("PATH", "PRECISION"), help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(*args.one)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for kind, path in write_files(folder).items():
            for precision in TARGETS:
                row = measure(path, precision)
                rows.append(row)
                print(
                    f"{kind:12s} {precision:5s} RSS +{row['rss_growth'] / 2**20:7.1f} MiB = "
                    f"{row['ratio']:.2f}x the fp32 weights (target <= {row['target']})"
                )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
