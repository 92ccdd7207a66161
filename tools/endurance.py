"""Service endurance: many calls with random shapes and lengths from several threads, and many
streams opened and dropped, with the process's resident memory sampled throughout.

    python tools/endurance.py                       # 10^6 calls from 8 threads, 10^5 streams
    python tools/endurance.py --calls 20000 --streams 10000

A service must not grow: after a warm-up (the first tenth of the work, when allocator pools and
caches fill), resident memory may rise by at most ``--max-growth-mb``. Prints one JSON record
(calls/s, streams/s, RSS at start, after warm-up and at the end, the largest sample) and exits 1
when memory grew more. tests/test_endurance.py runs it in reduced form.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
import time

import numpy as np


def rss_mb() -> float:
    """Resident memory of this process, MiB (Linux /proc; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_models():
    """Two LSTMs (16 inputs, 32 hidden, 2 layers): bidirectional for calls, forward for
    streams (a stream cannot run backwards in time)."""
    import torch

    import pylstm

    torch.manual_seed(0)
    calls = pylstm.from_torch(torch.nn.LSTM(16, 32, num_layers=2, bidirectional=True))
    streams = pylstm.from_torch(torch.nn.LSTM(16, 32, num_layers=2))
    return calls, streams


def run(calls: int, streams: int, threads: int, seed: int = 0) -> dict:
    """Run the workload; returns the record described in the module docstring."""
    model, stream_model = build_models()
    samples = []
    start_rss = rss_mb()
    per_thread = calls // threads
    warm_calls = per_thread // 10
    barrier = threading.Barrier(threads + 1)
    errors = []

    def worker(k: int) -> None:
        rng = np.random.default_rng(seed + k)
        try:
            for i in range(per_thread):
                if i == warm_calls:
                    barrier.wait()
                T = int(rng.integers(1, 17))
                B = int(rng.integers(1, 9))
                x = rng.standard_normal((T, B, 16), dtype=np.float32)
                lengths = rng.integers(1, T + 1, size=B)
                y, (_h, _c) = model(x, lengths=lengths) if i % 2 else model(x)
                assert y.shape == (T, B, 64)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            barrier.abort()

    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    warm_rss = rss_mb()
    while any(t.is_alive() for t in pool):
        samples.append(rss_mb())
        time.sleep(0.05)
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    call_seconds = time.perf_counter() - t0
    after_calls = rss_mb()

    rng = np.random.default_rng(seed)
    t1 = time.perf_counter()
    warm_streams = max(streams // 10, 1)
    stream_warm_rss = None
    for i in range(streams):
        if i == warm_streams:
            stream_warm_rss = rss_mb()
        B = int(rng.integers(1, 5))
        stream = stream_model.stream(B)
        stream.step(rng.standard_normal((int(rng.integers(1, 4)), B, 16), dtype=np.float32))
        if i % 3 == 0:
            stream.reset()
        close = getattr(stream, "close", None)
        if close is not None:
            close()
        del stream
        if i % 1000 == 0:
            samples.append(rss_mb())
    stream_seconds = time.perf_counter() - t1
    end_rss = rss_mb()
    return {
        "calls": per_thread * threads,
        "threads": threads,
        "streams": streams,
        "calls_per_s": round(per_thread * threads / call_seconds, 1),
        "streams_per_s": round(streams / stream_seconds, 1),
        "rss_start_mb": round(start_rss, 1),
        "rss_after_warmup_mb": round(warm_rss, 1),
        "rss_after_calls_mb": round(after_calls, 1),
        "rss_after_stream_warmup_mb": round(stream_warm_rss or after_calls, 1),
        "rss_end_mb": round(end_rss, 1),
        "rss_peak_sample_mb": round(max(samples, default=end_rss), 1),
        "call_growth_mb": round(after_calls - warm_rss, 1),
        "stream_growth_mb": round(end_rss - (stream_warm_rss or after_calls), 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--streams", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--max-growth-mb", type=float, default=32.0)
    args = parser.parse_args(argv)
    record = run(args.calls, args.streams, args.threads)
    print(json.dumps(record))
    grew = max(record["call_growth_mb"], record["stream_growth_mb"])
    return 1 if grew > args.max_growth_mb else 0


if __name__ == "__main__":
    raise SystemExit(main())
