"""``pylstm bench --device cuda`` (also ``python -m pylstm.bench.cuda``): pylstm's CUDA engine
against PyTorch's cuDNN LSTM/GRU on the same GPU, same weights, same inputs.

Fairness: PyTorch runs with TF32 off (cuDNN and cuBLAS: exact float32 like pylstm) and its
forward call is captured once in a CUDA graph and replayed, so that neither side pays Python or
launch overhead per step (pylstm captures its own step loop in graphs, or runs the persistent
kernel). Both are timed with CUDA events around a burst of back-to-back calls on one stream;
the medians of several rounds are reported. pylstm is called with torch tensors in and out, so
nothing crosses to the host.

Grid (issue): LSTM and GRU, B in {1, 8, 64, 256}, I = H in {256, 512, 1024, 2048}, T = 100, one
layer, fp32 and fp16 (pylstm ``precision="fp16"`` against ``module.half()``).

Targets checked in the summary: at least 3x cuDNN at B <= 16 where cuDNN runs its standard
algorithm (PyTorch picks CUDNN_RNN_ALGO_PERSIST_STATIC for some fp16 shapes; the record says
which one PyTorch's heuristic chose), at least parity at B = 256, and at most 2 us per step at
B = 1, H = 1024, fp16.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

import pylstm

CELLS = ("lstm", "gru")
BATCHES = (1, 8, 64, 256)
HIDDEN = (256, 512, 1024, 2048)
PRECISIONS = ("fp32", "fp16")
STEPS = 100


@dataclass(frozen=True)
class CudaConfig:
    cell: str
    batch: int
    hidden_size: int
    precision: str
    steps: int = STEPS

    @property
    def input_size(self) -> int:
        return self.hidden_size

    @property
    def name(self) -> str:
        return (
            f"{self.cell.upper()} B={self.batch} H={self.hidden_size} T={self.steps} "
            f"{self.precision}"
        )


def configs(cells=None, batches=None, hidden_sizes=None, precisions=None, quick=False) -> list:
    """The grid, filtered (None keeps every value); ``quick``: B in {1, 64}, H in {256, 1024}."""
    if quick:
        batches = batches or (1, 64)
        hidden_sizes = hidden_sizes or (256, 1024)
    return [
        CudaConfig(c, b, h, p)
        for p in (precisions or PRECISIONS)
        for c in (cells or CELLS)
        for h in (hidden_sizes or HIDDEN)
        for b in (batches or BATCHES)
    ]


def likely_cudnn_algo(torch, cfg: CudaConfig) -> str:
    """What PyTorch's cuDNN heuristic picks (aten/src/ATen/native/cudnn/RNN.cpp, get_algo):
    the persistent static algorithm only for fp16, one unidirectional layer, H <= 1024, H and I
    multiples of 128, batch sizes it lists, on Volta / Turing and large Ampere+ parts."""
    if cfg.precision != "fp16":
        return "standard"
    if not (cfg.hidden_size <= 1024 and cfg.hidden_size % 128 == 0 and cfg.input_size % 128 == 0):
        return "standard"
    prop = torch.cuda.get_device_properties(torch.cuda.current_device())
    b, t = cfg.batch, cfg.steps
    batch_ok = ((b % 16 == 0 and b not in (80, 112)) or b == 8) and (
        (t >= 40 and b <= 128) or (t >= 20 and b <= 96) or (t >= 10 and b <= 32)
    )
    if prop.major == 7:
        return "persist_static (likely)" if batch_ok else "standard"
    if prop.major >= 8 and prop.multi_processor_count >= 98 and prop.minor != 6:
        return "persist_static (likely)" if batch_ok else "standard"
    return "standard"


def event_time(torch, fn, calls: int) -> float:
    """Seconds per call of ``fn`` over ``calls`` back-to-back calls (CUDA events)."""
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop) / 1e3 / calls


def measure_point(torch, cfg: CudaConfig, budget_s: float, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    cls = torch.nn.LSTM if cfg.cell == "lstm" else torch.nn.GRU
    module = cls(cfg.input_size, cfg.hidden_size).eval()
    model = pylstm.from_torch(module, device="cuda", precision=cfg.precision)
    dtype = torch.float16 if cfg.precision == "fp16" else torch.float32
    mod = module.cuda().to(dtype)
    mod.flatten_parameters()
    x = torch.randn(cfg.steps, cfg.batch, cfg.input_size, device="cuda", dtype=dtype)

    def run_pylstm():
        return model(x)[0]

    # PyTorch: warm up on a side stream, capture one forward, replay it.
    torch_mode = "cuda graph"
    with torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                mod(x)
        torch.cuda.current_stream().wait_stream(side)
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                y_torch_static, _ = mod(x)

            def run_torch():
                graph.replay()
                return y_torch_static

            run_torch()
        except Exception as exc:  # some builds cannot capture cuDNN RNNs: time it eagerly
            torch_mode = f"eager ({type(exc).__name__}: {exc})"[:200]

            def run_torch():
                return mod(x)[0]

        y_torch = run_torch().float()
        for _ in range(3):
            y_pylstm = run_pylstm()  # 1st: direct launches; 2nd: graph captured; then replays
        torch.cuda.synchronize()
        diff = float((y_pylstm.float() - y_torch).abs().max())

        per_call = {}
        for name, fn in (("pylstm", run_pylstm), ("torch", run_torch)):
            per_call[name] = event_time(torch, fn, 1)
        samples = {"pylstm": [], "torch": []}
        deadline = time.perf_counter() + budget_s
        rounds = 0
        while rounds < 3 or (time.perf_counter() < deadline and rounds < 50):
            for name, fn in (("pylstm", run_pylstm), ("torch", run_torch))[:: 1 - 2 * (rounds % 2)]:
                calls = int(min(50, max(3, 0.02 / max(per_call[name], 1e-6))))
                samples[name].append(event_time(torch, fn, calls))
            rounds += 1
    pylstm_s = statistics.median(samples["pylstm"])
    torch_s = statistics.median(samples["torch"])
    return {
        "name": cfg.name,
        "config": asdict(cfg),
        "pylstm_ms": pylstm_s * 1e3,
        "torch_ms": torch_s * 1e3,
        "speedup_vs_torch": torch_s / pylstm_s,
        "pylstm_us_per_step": pylstm_s * 1e6 / cfg.steps,
        "torch_us_per_step": torch_s * 1e6 / cfg.steps,
        "pylstm_strategy": list(model.engine._net.last_strategies),
        "torch_cudnn_algo": likely_cudnn_algo(torch, cfg),
        "torch_mode": torch_mode,
        "max_abs_diff": diff,
        "rounds": rounds,
    }


def machine_record(torch) -> dict:
    from pylstm.runtime.system import load_cuda

    cuda = load_cuda()
    dev = torch.cuda.current_device()
    prop = torch.cuda.get_device_properties(dev)
    versions = dict(cuda.versions())
    return {
        "gpu": torch.cuda.get_device_name(dev),
        "compute_capability": f"{prop.major}.{prop.minor}",
        "multiprocessors": prop.multi_processor_count,
        "memory_gib": round(prop.total_memory / 2**30, 1),
        "pylstm_gpu_properties": dict(cuda.device_properties(dev)),
        "cuda_driver": versions.get("cuda_driver"),
        "cuda_runtime_pylstm": versions.get("cuda_runtime"),
        "cublas_pylstm": versions.get("cublas"),
        "cuda_runtime_torch": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "cpu": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def summarize(results: list) -> dict:
    def ratio_ok(r, bound):
        return r["speedup_vs_torch"] >= bound

    small = [
        r for r in results if r["config"]["batch"] <= 16 and r["torch_cudnn_algo"] == "standard"
    ]
    big = [r for r in results if r["config"]["batch"] == 256]
    step = [
        r
        for r in results
        if r["config"]["batch"] == 1
        and r["config"]["hidden_size"] == 1024
        and r["config"]["precision"] == "fp16"
    ]
    out = {
        "points": len(results),
        "faster_than_torch": sum(r["speedup_vs_torch"] > 1 for r in results),
    }
    if results:
        out["geomean_speedup_vs_torch"] = float(
            np.exp(np.mean([np.log(r["speedup_vs_torch"]) for r in results]))
        )
    out["target_3x_small_batch_standard_algo"] = {
        "points": len(small),
        "met": sum(ratio_ok(r, 3.0) for r in small),
        "missed": [r["name"] for r in small if not ratio_ok(r, 3.0)],
    }
    out["target_parity_b256"] = {
        "points": len(big),
        "met": sum(ratio_ok(r, 1.0) for r in big),
        "missed": [r["name"] for r in big if not ratio_ok(r, 1.0)],
    }
    out["target_2us_per_step_b1_h1024_fp16"] = {
        r["name"]: round(r["pylstm_us_per_step"], 3) for r in step
    }
    return out


def print_row(r: dict, out=sys.stdout) -> None:
    print(
        f"{r['name']:<34} {r['pylstm_ms']:>9.3f} {r['torch_ms']:>9.3f} "
        f"{r['speedup_vs_torch']:>7.2f} {r['pylstm_us_per_step']:>9.2f}  "
        f"{'/'.join(r['pylstm_strategy']):<11} {r['torch_cudnn_algo']:<24} {r['max_abs_diff']:.1e}",
        file=out,
        flush=True,
    )


def run(cfgs: list, *, budget_s: float, json_path: str | None, command: str, out=sys.stdout):
    """Measure every point, print a row each, write the JSON record; returns the record."""
    torch = require_torch_cuda()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    record = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": command,
        "device": "cuda",
        "machine": machine_record(torch),
        "versions": {
            "pylstm": pylstm.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "settings": {
            "tf32": False,
            "torch_timing": "CUDA graph replay (eager if capture fails, see torch_mode)",
            "pylstm_strategy_env": os.environ.get("PYLSTM_CUDA_STRATEGY", "auto"),
            "budget_s": budget_s,
        },
        "results": [],
        "notes": [],
    }
    m = record["machine"]
    print(
        f"pylstm {pylstm.__version__} on {m['gpu']} (sm_{m['compute_capability']}, driver CUDA "
        f"{m['cuda_driver']}), torch {torch.__version__} cuDNN {m['cudnn']}; TF32 off",
        file=out,
    )
    print(
        f"{'config':<34} {'pylstm ms':>9} {'torch ms':>9} {'x torch':>7} {'us/step':>9}  "
        f"{'strategy':<11} {'cuDNN algorithm':<24} max|diff|",
        file=out,
    )
    for cfg in cfgs:
        try:
            r = measure_point(torch, cfg, budget_s)
        except Exception as exc:  # out of memory on a small GPU, say: note it, go on
            record["notes"].append(f"{cfg.name}: {type(exc).__name__}: {exc}")
            print(f"{cfg.name:<34} failed: {type(exc).__name__}: {exc}", file=out)
            continue
        record["results"].append(r)
        print_row(r, out)
    record["summary"] = summarize(record["results"])
    print(json.dumps(record["summary"], indent=2), file=out)
    if json_path:
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, "w") as fh:
            json.dump(record, fh, indent=2)
            fh.write("\n")
        print(f"wrote {json_path}", file=out)
    return record


def require_torch_cuda():
    try:
        import torch
    except ImportError:
        raise RuntimeError(
            "the CUDA benchmark compares with PyTorch: install torch with CUDA"
        ) from None
    if not torch.cuda.is_available():
        raise RuntimeError(
            "the CUDA benchmark needs PyTorch with CUDA and a GPU (torch.cuda.is_available() is "
            "False)"
        )
    return torch


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pylstm.bench.cuda", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="B in {1, 64}, H in {256, 1024}")
    p.add_argument("--cell", nargs="+", choices=CELLS)
    p.add_argument("--batch", nargs="+", type=int)
    p.add_argument("--hidden", nargs="+", type=int)
    p.add_argument("--precision", nargs="+", choices=PRECISIONS)
    p.add_argument("--budget", type=float, default=1.0, help="seconds of timing per point")
    p.add_argument("--json", help="record path (default bench/results/cuda-<date>.json)")
    p.add_argument("--no-json", action="store_true")
    p.add_argument("--list", action="store_true", help="list the points and exit")
    return p


def run_from_args(args, argv_text: str = "") -> int:
    """Entry point shared by ``pylstm bench --device cuda`` and ``python -m pylstm.bench.cuda``
    (``args`` from either parser: cell, batch, hidden, quick, budget, json, no_json, list and,
    optionally, precision)."""
    pylstm.runtime.system.check_device("cuda")
    cfgs = configs(
        args.cell, args.batch, args.hidden, getattr(args, "precision", None), quick=args.quick
    )
    if args.list:
        for c in cfgs:
            print(c.name)
        return 0
    json_path = args.json
    if json_path is None and not args.no_json:
        json_path = os.path.join("bench", "results", f"cuda-{time.strftime('%Y%m%d-%H%M%S')}.json")
    budget = args.budget if args.budget is not None else 1.0
    run(cfgs, budget_s=budget, json_path=json_path, command=argv_text)
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    return run_from_args(args, "python -m pylstm.bench.cuda " + " ".join(map(shlex.quote, argv)))


if __name__ == "__main__":
    sys.exit(main())
