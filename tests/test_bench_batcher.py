"""The batcher section of ``pylstm bench`` (``--sections batcher``): its configurations, and one
tiny point measured by every method with the fields the table and README show. Nothing here
asserts a timing."""

import io
import json

import pytest

from pylstm.bench.batcher import (
    METHODS,
    SATURATING_RATE_HZ,
    BatcherConfig,
    batcher_configs,
    markdown_table,
    measure_batcher_point,
    run_batcher_section,
)
from pylstm.bench.report import markdown_lines
from pylstm.bench.runner import new_record


def test_configs_cover_latency_at_a_service_load_and_capacity():
    full = batcher_configs()
    assert {c.streams for c in full} == {1, 16, 256, 1024}
    capacity = [c for c in full if c.rate_hz == SATURATING_RATE_HZ]
    assert {(c.cell, c.hidden_size, c.streams) for c in capacity} == {
        (cell, h, 256) for cell in ("lstm", "gru") for h in (64, 256)
    }
    assert all(c.rate_hz == 200.0 for c in batcher_configs(quick=True))


def test_one_point_by_every_method_agrees_with_stream():
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    entry = measure_batcher_point(BatcherConfig("gru", 8, 4, rate_hz=400.0), budget_s=0.1)
    for method in METHODS:
        m = entry[method]
        assert m["steps_per_s"] > 0 and m["p50_ms"] <= m["p99_ms"], (method, m)
        assert 0 < m["completed"] <= 1.0
    # Every method's outputs for stream 0 against stream.step's (float32 engines: ONNX
    # Runtime's kernels round differently, 1e-5 absolute on outputs in [-1, 1]).
    assert entry["max_abs_diff"] < 1e-5
    assert entry["throughput_vs_onnxruntime"] > 0


def test_section_prints_its_table_and_records_entries():
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    record = new_record(2, "pylstm bench (test)")
    out = io.StringIO()
    run_batcher_section(
        record, [BatcherConfig("lstm", 8, 1, rate_hz=500.0)], budget_s=0.05, out=out
    )
    (entry,) = [r for r in record["results"] if r["kind"] == "batcher"]
    assert "LSTM H=8 N=1" in out.getvalue()
    assert entry["batcher_step_us"] > 0 and entry["stream_step_us"] > 0  # one-stream extras
    table = markdown_table([entry])
    assert table.count("\n") >= 2 and entry["name"] in table
    # `pylstm bench --from-json FILE --markdown` prints it too
    assert table in "\n".join(markdown_lines(record))


def test_plotting_a_batcher_only_run_writes_no_plot_and_does_not_fail(tmp_path):
    """``pylstm bench --sections batcher --plot``: the batcher's tables are throughputs, not
    speed-up ratios, so there is nothing to draw; the run must still end successfully."""
    pytest.importorskip("matplotlib")
    from test_bench_suite import bench_cli

    record = new_record(2, "pylstm bench (test)")
    record["results"].append(
        {"kind": "batcher", "name": "LSTM H=8 N=1 @200/s each", "throughput_vs_onnxruntime": 1.0}
    )
    path = tmp_path / "batcher.json"
    path.write_text(json.dumps(record))
    png = tmp_path / "batcher.png"
    proc = bench_cli("--from-json", str(path), "--plot", str(png), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "no plot written" in proc.stdout and not png.exists()
