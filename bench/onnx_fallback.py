"""ONNX models with operators pylstm does not implement: ``pylstm.load(path).run`` (recurrent
nodes on pylstm's engine, numpy around them, the missing operator in an ONNX Runtime session)
against ONNX Runtime running the whole file, and -- on the same torch export -- pylstm with
every non-recurrent operator forced into ONNX Runtime sessions instead of numpy.

Usage: python bench/onnx_fallback.py [--calls N] [--hidden H] [--threads T]

The model: ``torch.nn.LSTM(I, H, num_layers=2, batch_first=True)`` then ``Linear(H, 32)``,
exported with the TorchScript exporter (``dynamo=False``), then a default-domain
``LpNormalization`` that pylstm does not implement appended to the head. Each figure is the
median over interleaved calls (the engines take turns, ten calls at a time: ONNX
Runtime's idle threads spin for a while after a run and would slow whoever runs next) of one ``run`` on the
shape shown; both engines get the same thread count. Prints the CPU model.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def make_model(path: str, hidden: int, inputs: int = 64) -> None:
    import onnx
    import torch
    from onnx import helper

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(inputs, hidden, num_layers=2, batch_first=True)
            self.fc = torch.nn.Linear(hidden, 32)

        def forward(self, x):
            y, _ = self.lstm(x)
            return self.fc(y)

    torch.onnx.export(
        Net().eval(),
        (torch.randn(2, 5, inputs),),
        path,
        dynamo=False,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch", 1: "time"}},
    )
    model = onnx.load(path)
    model.graph.node.append(helper.make_node("LpNormalization", ["logits"], ["y"], axis=-1))
    del model.graph.output[:]
    model.graph.output.append(helper.make_empty_tensor_value_info("y"))
    onnx.save(model, path)


def load_all_ort(path: str):
    """``pylstm.load(path)`` with every non-recurrent node run by ONNX Runtime sessions."""
    import pylstm
    from pylstm.runtime.graph import Graph

    original = Graph._check_supported

    def everything_to_ort(self, node):
        original(self, node)
        if node.recurrent or node.op_type in ("Constant", "If"):
            return
        if node.domain == "" and getattr(node, "proto", None) is not None:
            self._mark_fallback(node)

    Graph._check_supported = everything_to_ort
    try:
        return pylstm.load(path)
    finally:
        Graph._check_supported = original


BLOCK = 10  # calls in a row per engine: ONNX Runtime's threads spin a while after each run


def median_ms(fns: dict, calls: int) -> dict:
    times = {k: [] for k in fns}
    for fn in fns.values():  # warm up (sessions are made at the first run)
        fn()
        fn()
    for _ in range(max(1, calls // BLOCK)):
        for name, fn in fns.items():
            for _ in range(BLOCK):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--only",
        choices=("ort", "pylstm", "all_ort"),
        help="time this engine alone (run once per engine: each alone in its own process, "
        "as a service runs one of them; the default interleaves all three in one process)",
    )
    args = ap.parse_args(argv)

    import onnxruntime as ort

    import pylstm
    from pylstm.bench.machine import cpu_model, load_average
    from pylstm.runtime.graph import ORT_GROUP

    pylstm.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lstm_lpnorm.onnx")
        make_model(path, args.hidden)
        model = pylstm.load(path)
        all_ort = load_all_ort(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    kinds = [n.op_type for n in model._graph.nodes]
    print(
        f"CPU: {cpu_model()} ({os.cpu_count()} cores), {args.threads} threads; onnxruntime "
        f"{ort.__version__}; load average {load_average()}"
    )
    print(
        f"pylstm graph: {len(kinds)} nodes, {kinds.count(ORT_GROUP)} ONNX Runtime session(s); "
        f"all-ORT variant: {[n.op_type for n in all_ort._graph.nodes].count(ORT_GROUP)} sessions"
    )
    print(
        "| batch x steps | ONNX Runtime, whole model (ms) | pylstm.load().run (ms) | ratio | "
        "pylstm, other ops in ORT sessions (ms) |"
    )
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for B, T in ((1, 100), (8, 100), (32, 50)):
        x = rng.standard_normal((B, T, 64)).astype(np.float32)
        ref = sess.run(None, {"x": x})[0]
        got = model.run(None, {"x": x})[0]
        assert np.abs(ref - got).max() < 1e-4, np.abs(ref - got).max()
        fns = {
            "ort": lambda x=x: sess.run(None, {"x": x}),
            "pylstm": lambda x=x: model.run(None, {"x": x}),
            "all_ort": lambda x=x: all_ort.run(None, {"x": x}),
        }
        if args.only:
            ms = median_ms({args.only: fns[args.only]}, args.calls)
            print(f"| {B} x {T} | {args.only} alone: {ms[args.only]:.3f} ms |")
            continue
        ms = median_ms(fns, args.calls)
        print(
            f"| {B} x {T} | {ms['ort']:.3f} | {ms['pylstm']:.3f} | "
            f"{ms['ort'] / ms['pylstm']:.2f}x | {ms['all_ort']:.3f} |"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
