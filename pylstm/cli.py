"""The pylstm command: info, run (batch inference from files) and bench (timings against ONNX
Runtime and PyTorch). Kept as plain text: it is also the text of ``pylstm --help``."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

import numpy as np


def _cmd_info(args) -> int:
    import pylstm

    info = pylstm.info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"pylstm {info['version']}")
    print(f"  SIMD level     {info['simd']} (available: {', '.join(info['simd_available'])})")
    print(f"  threads        {info['num_threads']} of {info['cpus']} CPUs")
    print(f"  CUDA compiled  {'yes' if info['cuda_compiled'] else 'no'}")
    devices = ", ".join(info["cuda_devices"])
    if not devices:  # say why: not compiled, not loadable, no driver, no GPU
        reason = info.get("cuda_status") or "no device found"
        devices = f"none ({reason})"
    print(f"  CUDA devices   {devices}")
    return 0


class ProgressBar:
    """Progress on stderr: done/total, rate and time left.

    On a terminal the bar redraws one line in place (``\\r``); anywhere else (a log file, a pipe,
    CI) nothing is drawn while running and :meth:`close` writes one summary line.
    """

    def __init__(self, total: int, unit: str, enabled: bool, stream=None):
        self.stream = sys.stderr if stream is None else stream
        self.total, self.unit, self.enabled = total, unit, enabled
        isatty = getattr(self.stream, "isatty", None)
        self.live = enabled and bool(isatty and isatty())
        self.start = time.perf_counter()
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        if not self.live:
            return
        elapsed = time.perf_counter() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (self.total - done) / rate if rate > 0 else 0.0
        width = 30
        filled = int(width * done / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(
            f"\r[{bar}] {done}/{self.total} {self.unit} {rate:,.1f} {self.unit}/s, {left:.0f}s left "
        )
        if done >= self.total:
            self.stream.write("\n")
        self.stream.flush()

    def close(self) -> None:
        """Off a terminal: one line, ``ran done/total unit in S s (R unit/s)``."""
        if not self.enabled or self.live:
            return
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        self.stream.write(
            f"ran {self.done}/{self.total} {self.unit} in {elapsed:.1f} s "
            f"({rate:,.1f} {self.unit}/s)\n"
        )
        self.stream.flush()


def _cmd_run(args) -> int:
    import pylstm

    options = {}
    if args.prefix is not None:
        options["prefix"] = args.prefix
    if args.nonlinearity is not None:
        options["nonlinearity"] = args.nonlinearity
    if args.threads:
        pylstm.set_num_threads(args.threads)
    from pylstm.read.sniff import detect_format

    kind = detect_format(args.model)
    if kind == "onnx":
        raise ValueError(
            f"{args.model}: pylstm run takes models called as model(x) (PyTorch and Keras files); "
            "run ONNX models from Python with pylstm.load(path).run(output_names, feeds)"
        )
    if kind in ("torch-zip", "torch-legacy", "safetensors"):
        options["batch_first"] = True  # the model sees batch-first chunks [n, T, I]
    elif options:
        raise ValueError(f"{args.model}: --prefix and --nonlinearity are for PyTorch state dicts")
    model = pylstm.load(args.model, device=args.device, **options)
    if os.path.isdir(args.input):  # a folder of .npy shards -> a folder of output shards
        from pylstm.batch_files import run_folder

        return run_folder(model, args, ProgressBar, _outputs)
    x = np.load(args.input, mmap_mode="r", allow_pickle=False)
    if x.ndim not in (2, 3):
        raise ValueError(
            f"{args.input}: expected [N, T, I] (or [N, T] token ids), got shape {x.shape}"
        )
    if args.time_major:
        x = x.swapaxes(0, 1)
    lengths = None
    if args.lengths:
        lengths = np.load(args.lengths, allow_pickle=False)
        if lengths.shape != (x.shape[0],):
            raise ValueError(
                f"{args.lengths}: expected one length per sequence, shape ({x.shape[0]},), got "
                f"{lengths.shape}"
            )
    n = x.shape[0]
    bar = ProgressBar(n, "seq", enabled=not args.quiet)
    y_file = y = None
    for start in range(0, n, args.batch_size):
        stop = min(n, start + args.batch_size)
        chunk_lengths = None if lengths is None else lengths[start:stop]
        out = _outputs(model, np.asarray(x[start:stop]), chunk_lengths)
        if y_file is None:  # the output's shape is known once the model has run
            shape = (n, *out.shape[1:])
            if args.time_major and out.ndim == 3:
                shape = (shape[1], n, shape[2])
            y_file = np.lib.format.open_memmap(args.output, "w+", dtype=np.float32, shape=shape)
            y = y_file.swapaxes(0, 1) if args.time_major and out.ndim == 3 else y_file
        y[start:stop] = out
        bar.update(stop)
    if y_file is None:
        raise ValueError(f"{args.input}: no sequences to run (N = 0)")
    bar.close()
    y_file.flush()
    if not args.quiet:
        print(f"wrote {args.output} {y_file.shape} float32", file=sys.stderr)
    return 0


def _outputs(model, chunk, lengths):
    """The model's (first) output for a batch-first chunk [n, T, I]."""
    from pylstm import TorchModel

    if isinstance(model, TorchModel):
        return model(chunk, lengths=lengths)[0]
    if lengths is not None:
        raise ValueError("--lengths is for PyTorch models; Keras models mask with their own layers")
    out = model(chunk)
    if isinstance(out, dict):  # a functional model with named outputs: the first one
        out = next(iter(out.values()))
    return out[0] if isinstance(out, (list, tuple)) else out


def _output_paths(args, device: str) -> tuple:
    """``(json_path or None, png or None)`` for a run: ``--json`` / ``--no-json``, ``--plot
    [PNG]`` and ``--output-dir`` (default: :func:`pylstm.bench.runner.results_dir`)."""
    from pylstm.bench.runner import default_record_path

    json_path = args.json
    if json_path is None and not args.no_json:
        json_path = default_record_path(device, args.output_dir)
    png = args.plot
    if png == "":  # --plot without a path: next to the record (or where it would have gone)
        png = os.path.splitext(json_path or default_record_path(device, args.output_dir))[0]
        png += ".png"
    return json_path, png


def _write_plot(record: dict, png: str) -> None:
    from pylstm.bench.plot import plot_record, ratio_panels

    if not ratio_panels(record):  # e.g. --sections batcher: its tables are throughputs
        print(f"no plot written ({png}): the run has no sections with speed-up ratios to draw")
        return
    folder = os.path.dirname(os.path.abspath(png))
    os.makedirs(folder, exist_ok=True)
    plot_record(record, png)
    print(f"wrote {png}")


def _cmd_bench(args) -> int:
    import pylstm
    from pylstm import bench

    if args.from_json:  # re-print (and re-plot) a recorded run; nothing is measured
        record = bench.load_record(args.from_json)
        if args.markdown:
            print("\n".join(bench.markdown_lines(record)))
        else:
            bench.print_record(record)
        if args.plot is not None:
            png = args.plot
            if not png:  # next to the record, or in --output-dir
                stem = os.path.splitext(os.path.basename(args.from_json))[0] + ".png"
                folder = args.output_dir or os.path.dirname(args.from_json)
                png = os.path.join(folder, stem)
            _write_plot(record, png)
        return 0
    if args.plot is not None and not args.list:
        from pylstm.bench.plot import require_matplotlib

        require_matplotlib()  # fail now, not after the whole run
    command = "pylstm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.device != "cpu":
        from pylstm.bench.cuda import run_from_args

        if args.list:
            return run_from_args(args, command)
        args.json, png = _output_paths(args, "cuda")
        status = run_from_args(args, command)
        if png and args.json:
            _write_plot(bench.load_record(args.json), png)
        return status
    from pylstm.bench.conditions import CONDITION_SECTIONS, sections_measuring

    sections = set(args.sections or ("grid", "precision", "stream", *CONDITION_SECTIONS))
    axes = {"cells": args.cell, "batches": args.batch, "hidden_sizes": args.hidden}
    grid = bench.quick_configs() if args.quick else bench.default_configs()
    grid = bench.filter_configs(grid, **axes) if "grid" in sections else []
    precision = bench.filter_configs(bench.precision_configs(args.quick), **axes)
    precision = precision if "precision" in sections else []
    streams = bench.filter_configs(bench.stream_configs(args.quick), **axes)
    streams = streams if "stream" in sections else []
    batchers = []
    if "batcher" in sections:
        from pylstm.bench.batcher import batcher_configs

        batchers = [
            c
            for c in batcher_configs(args.quick)
            if (not args.cell or c.cell in args.cell)
            and (not args.hidden or c.hidden_size in args.hidden)
        ]
    conditions = sorted(sections & set(CONDITION_SECTIONS), key=CONDITION_SECTIONS.index)
    condition_points = [
        cfg
        for cfg in bench.filter_configs(bench.configs.condition_configs(args.quick), **axes)
        if sections_measuring(cfg, conditions)
    ]
    if args.list:
        for cfg in grid:
            print(cfg.name)
        for cfg in precision:
            print(f"{cfg.name} at {', '.join(bench.configs.PRECISIONS)}")
        for cfg in [*streams, *batchers]:
            print(cfg.name)
        for cfg in condition_points:
            print(f"{cfg.name}: {', '.join(sections_measuring(cfg, conditions))}")
        return 0
    if not (grid or precision or streams or batchers or condition_points):
        print("pylstm bench: no configuration matches the filters", file=sys.stderr)
        return 2
    json_path, png = _output_paths(args, "cpu")
    budget = args.budget if args.budget is not None else (0.15 if args.quick else 2.0)
    record = bench.run_benchmarks(
        grid,
        threads=args.threads or pylstm.get_num_threads(),
        budget_s=budget,
        stream_configs=streams,
        precision_configs=precision,
        batcher_configs=batchers,
        condition_configs=condition_points,
        condition_sections=conditions,
        quick_ceiling=args.quick,
        json_path=json_path,
        command=command,
    )
    if png:
        _write_plot(record, png)
    return 0


DESCRIPTION = """\
pylstm: fast, framework-exact inference for LSTM, GRU and RNN models.
'pylstm COMMAND --help' describes each command's options."""

EXAMPLES = """\
examples:
  pylstm info
  pylstm run model.pt inputs.npy -o outputs.npy --batch-size 128
  pylstm bench --quick --plot"""

RUN_DESCRIPTION = """\
Run MODEL on every sequence of INPUT (a .npy file [N, T, I], or [N, T] integer
token ids for a Keras model that starts with an Embedding) in batches and write
its first output, float32, to OUTPUT (.npy). PyTorch state dicts are read
batch-first here. On a terminal a progress bar shows on stderr; elsewhere (a
log file, a pipe) one summary line is written at the end."""

BENCH_DESCRIPTION = """\
Time pylstm, ONNX Runtime and PyTorch side by side (interleaved calls, the same
threads, medians): whole sequences (the grid), reduced-precision weights and
streaming, with the measured GEMM ceiling; then service conditions: calls after
idle gaps (each engine in its own process), engines sharing a process, a busy
neighbour core, one thread against all. The filters apply to every section.

Where results go: the JSON record is written to the user data folder,
$XDG_DATA_HOME/pylstm/bench (by default ~/.local/share/pylstm/bench), named
cpu-<date>.json, unless --output-dir DIR or --json FILE says otherwise; --plot
without a file name puts the PNG next to the record. Every file written is
printed ("wrote PATH")."""


def build_parser() -> argparse.ArgumentParser:
    from pylstm.runtime.system import __version__

    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="pylstm", description=DESCRIPTION, epilog=EXAMPLES, formatter_class=raw
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"pylstm {__version__}",
        help="print the version and exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "info",
        help="version, SIMD level, threads, CUDA (or why not)",
        description="Print the version, the SIMD level in use, the thread count and whether "
        "CUDA can be used; when no CUDA device is usable, the reason (not compiled, no "
        "driver, no GPU).",
    )
    p.add_argument("--json", action="store_true", help="print pylstm.info() as JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "run",
        help="batch inference: MODEL file on INPUT.npy -> OUTPUT.npy",
        description=RUN_DESCRIPTION,
        formatter_class=raw,
    )
    p.add_argument(
        "model", help="a PyTorch or Keras model file (.pt, .pth, .safetensors, .keras, .h5)"
    )
    p.add_argument(
        "input",
        help=".npy of shape [N, T, I] (N sequences; token ids for Embedding models), or a "
        "folder of .npy shards (then -o is a folder: one output shard per input shard)",
    )
    p.add_argument("-o", "--output", required=True, help="where to write the outputs [N, T, O]")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per call (default 64)")
    p.add_argument("--lengths", help="int .npy [N] of valid lengths (padded sequences)")
    p.add_argument("--time-major", action="store_true", help="input and output are [T, N, ...]")
    p.add_argument("--prefix", help="module prefix inside a larger state dict")
    p.add_argument("--nonlinearity", choices=["tanh", "relu"], help="for RNN state dicts")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--threads", type=int, help="threads to use (default: all CPUs)")
    p.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no summary lines"
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "bench",
        help="time pylstm against ONNX Runtime and PyTorch on this machine",
        description=BENCH_DESCRIPTION,
        formatter_class=raw,
    )
    p.add_argument("--quick", action="store_true", help="a few points, small budgets: < 1 minute")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda (against cuDNN)")
    p.add_argument("--threads", type=int, help="threads for every engine (default: all CPUs)")
    p.add_argument("--cell", nargs="+", choices=["lstm", "gru"], help="only these cells")
    p.add_argument("--batch", nargs="+", type=int, help="only these batch sizes")
    p.add_argument("--hidden", nargs="+", type=int, help="only these hidden sizes")
    p.add_argument(
        "--sections",
        nargs="+",
        choices=[
            "grid",
            "precision",
            "stream",
            "batcher",
            "service",
            "shared",
            "neighbours",
            "scaling",
        ],
        help="only these sections (default: all but 'batcher', many streams served by "
        "pylstm.StreamBatcher, which runs only when named; service, shared, neighbours and "
        "scaling measure service conditions: idle gaps, engines sharing a process, a busy "
        "core, one thread against all)",
    )
    p.add_argument(
        "--budget",
        type=float,
        help="seconds of timing per point (default 2; 0.15 with --quick); slow points take "
        "at least 3 rounds",
    )
    p.add_argument(
        "--output-dir",
        metavar="DIR",
        help="folder for the record and the plot (default $XDG_DATA_HOME/pylstm/bench, "
        "~/.local/share/pylstm/bench)",
    )
    p.add_argument(
        "--json", metavar="FILE", help="write the record to FILE (default DIR/cpu-<date>.json)"
    )
    p.add_argument("--no-json", action="store_true", help="do not write a JSON record")
    p.add_argument(
        "--plot",
        nargs="?",
        const="",
        metavar="PNG",
        help="also draw the speed-up ratios, one panel per section (needs matplotlib); "
        "without PNG, next to the record",
    )
    p.add_argument(
        "--from-json",
        metavar="FILE",
        help="print (and with --plot, plot) a recorded run instead of measuring",
    )
    p.add_argument(
        "--markdown", action="store_true", help="with --from-json: print the tables as Markdown"
    )
    p.add_argument("--list", action="store_true", help="list the points and exit")
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "batch_size", 1) < 1:
        print("pylstm: error: --batch-size must be >= 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, NotImplementedError, RuntimeError) as exc:
        print(f"pylstm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
