"""Service endurance in reduced form (tools/endurance.py runs 10^6 calls and 10^5 streams):
2*10^4 calls with random shapes and lengths from 8 threads, then 10^4 streams opened, stepped and
dropped; resident memory may not grow by more than 32 MiB after the first tenth of each."""

from __future__ import annotations

import importlib.util
import os

import pytest

pytest.importorskip("torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _endurance():
    spec = importlib.util.spec_from_file_location(
        "endurance", os.path.join(ROOT, "tools", "endurance.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_calls_and_streams_do_not_grow_memory():
    calls = int(os.environ.get("PYLSTM_ENDURANCE_CALLS", 20_000))
    streams = int(os.environ.get("PYLSTM_ENDURANCE_STREAMS", 10_000))
    record = _endurance().run(calls=calls, streams=streams, threads=8)
    assert record["calls"] == calls
    assert record["call_growth_mb"] <= 32, record
    assert record["stream_growth_mb"] <= 32, record
