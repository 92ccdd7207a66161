"""Throughput of batch inference over a dataset: one process, then Ray Data (an actor pool of 1
and 2) and Dask (a LocalCluster of 1 and 2 worker processes, 1 thread each), with
:class:`pylstm.distributed.Predictor` and the same batches.

Usage: python bench/scale_out.py [--sequences N] [--steps T] [--inputs I] [--hidden H]
                                 [--batch B] [--repeats R] [--output last|sequence]
                                 [--out bench/results/scale_out-DATE.json]
Needs ray[data] and dask[distributed,array] (pip install "pylstm[ray,dask]"); about 4 minutes on
2 CPUs.

Each configuration runs the first half of the dataset and then all of it, ``--repeats`` times
each (best kept; the JSON keeps every run); the cluster is started once, while each Ray run starts
its actors again, as a job would. ``overhead_ms_per_batch`` is (a framework's time with 1
worker - one process's time at 1 thread) / batches: what Ray or Dask add to each batch (scheduling, moving it to and from the
worker, and for Ray starting the actors) on top of the computation. From the two sizes also:
``ms_per_batch`` (the slope: what one more batch costs), ``fixed_seconds`` (the intercept:
starting actors, shipping the model, the first task) and ``overhead_ms_per_batch_slope``; these
need a quiet machine to mean anything. Other work on the same CPUs changes every figure: the JSON
records the CPU and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

import pylstm
from pylstm.bench.machine import cpu_model
from pylstm.distributed import Predictor


def make_model(inputs: int, hidden: int):
    rng = np.random.default_rng(0)
    k = 3.0 / np.sqrt(hidden)
    d = pylstm.Direction(
        w=rng.uniform(-k, k, (4 * hidden, inputs)),
        r=rng.uniform(-k, k, (4 * hidden, hidden)),
        bias_w=rng.uniform(-k, k, 4 * hidden),
        bias_r=rng.uniform(-k, k, 4 * hidden),
    )
    return pylstm.from_arrays([pylstm.Layer("lstm", [d])], batch_first=True)


def best_of(repeats: int, run) -> tuple:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times), times


def bench_local(model, x, batch, repeats, threads, output):
    pylstm.set_num_threads(threads)
    predict = Predictor(model, num_threads=threads, output=output)

    def run():
        for i in range(0, len(x), batch):
            predict(x[i : i + batch])

    return best_of(repeats, run)


def bench_ray(model, x, batch, repeats, workers, expected, output):
    import ray

    blocks = list(np.array_split(x, max(1, len(x) // (4 * batch))))

    def run():
        ds = ray.data.from_numpy(blocks).map_batches(
            Predictor,
            fn_constructor_kwargs={
                "model_or_path": model,
                "input_column": "data",
                "output": output,
            },
            compute=ray.data.ActorPoolStrategy(size=workers),
            batch_size=batch,
        )
        y = np.stack([r["y"] for r in ds.take_all()])
        assert np.array_equal(y, expected), "Ray's result differs from one process's"

    return best_of(repeats, run)


def bench_dask(model, x, batch, repeats, workers, expected, output):
    import dask.array as da
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        xs = da.from_array(x, chunks=(batch, x.shape[1], x.shape[2]))
        xs = client.persist(xs)  # the dataset lives in the workers, as a loaded dataset would
        predict = Predictor(model, output=output)
        if output == "last":
            out_chunks, drop = (xs.chunks[0], (expected.shape[-1],)), 1
        else:
            out_chunks, drop = (xs.chunks[0], (x.shape[1],), (expected.shape[-1],)), []

        def run():
            y = xs.map_blocks(predict, dtype=np.float32, chunks=out_chunks, drop_axis=drop)
            y = y.compute()
            assert np.array_equal(y, expected), "Dask's result differs from one process's"

        return best_of(repeats, run)


def main(argv=None) -> None:
    warnings.filterwarnings("ignore", message="Sending large graph")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=40000)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--inputs", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--output",
        choices=["last", "sequence"],
        default="last",
        help="what each sequence returns: its last output [H] (default: what a classifier or an "
        "encoder keeps; little to move back) or every step's [T, H]",
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(1)
    x = rng.normal(size=(args.sequences, args.steps, args.inputs)).astype(np.float32)
    model = make_model(args.inputs, args.hidden)
    expected = model(x)[0]
    if args.output == "last":
        expected = np.ascontiguousarray(expected[:, -1])
    batches = -(-args.sequences // args.batch)
    results = {}

    half = (args.sequences // 2 // args.batch) * args.batch
    half_batches = half // args.batch

    def record(name, bench):
        """``bench(x, expected)`` on the first half, then on all of the dataset."""
        small, small_runs = bench(x[:half], expected[:half])
        full, full_runs = bench(x, expected)
        slope = (full - small) / (batches - half_batches)
        results[name] = {
            "seconds": full,
            "sequences_per_second": args.sequences / full,
            "seconds_half": small,
            "ms_per_batch": 1000 * slope,
            "fixed_seconds": full - slope * batches,
            "runs": full_runs,
            "runs_half": small_runs,
        }
        print(
            f"{name:>14}: {full:7.3f} s  {args.sequences / full:9.0f} sequences/s  "
            f"{1000 * slope:7.3f} ms/batch  fixed {full - slope * batches:6.3f} s",
            flush=True,
        )

    load_before = os.getloadavg()
    for threads in (1, 2):
        record(
            f"local/{threads}thread",
            lambda xs, ys, n=threads: bench_local(
                model, xs, args.batch, args.repeats, n, args.output
            ),
        )
    pylstm.set_num_threads(1)
    try:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.execution_options.preserve_order = True
        for workers in (1, 2):
            record(
                f"ray/{workers}worker",
                lambda xs, ys, n=workers: bench_ray(
                    model, xs, args.batch, args.repeats, n, ys, args.output
                ),
            )
        ray.shutdown()
    except ImportError as exc:
        print(f"ray skipped: {exc}")
    try:
        for workers in (1, 2):
            record(
                f"dask/{workers}worker",
                lambda xs, ys, n=workers: bench_dask(
                    model, xs, args.batch, args.repeats, n, ys, args.output
                ),
            )
    except ImportError as exc:
        print(f"dask skipped: {exc}")

    local = results["local/1thread"]
    for name in ("ray", "dask"):
        one = results.get(f"{name}/1worker")
        if one is not None:
            one["overhead_ms_per_batch"] = 1000 * (one["seconds"] - local["seconds"]) / batches
            one["overhead_ms_per_batch_slope"] = one["ms_per_batch"] - local["ms_per_batch"]
    report = {
        "what": "batch inference over a dataset: one process vs Ray Data and Dask workers",
        "machine": {
            "cpu": cpu_model(),
            "cpus_available": len(os.sched_getaffinity(0)),
            "python": sys.version.split()[0],
            "pylstm": pylstm.__version__,
            "simd": pylstm.info()["simd"],
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "workload": {
            "model": f"LSTM I={args.inputs} H={args.hidden}, 1 layer, fp32",
            "output": args.output,
            "sequences": args.sequences,
            "steps": args.steps,
            "batch": args.batch,
            "batches": batches,
            "repeats": args.repeats,
        },
        "results": results,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = args.out or os.path.join(
        os.path.dirname(os.path.abspath(__file__)),
        "results",
        f"scale_out-{time.strftime('%Y%m%d', time.gmtime())}.json",
    )
    with open(out, "w") as fh:
        json.dump(report, fh, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
