"""The benchmark suite's logic (pylstm/bench, ``pylstm bench``): the grid, the timing loop, the
JSON record, streaming, precision rows, plotting and the command line. Nothing here times for
long: tiny models, tiny budgets, a small GEMM."""

import io
import json
import os
import subprocess
import sys
import time
from itertools import product
from pathlib import Path

import numpy as np
import pytest
from child_process import child_env

import pylstm
from pylstm.bench import configs as bench_configs
from pylstm.bench.configs import BenchConfig, StreamConfig
from pylstm.bench.timing import measure

TINY = BenchConfig("lstm", 1, 16, 16, 5)
AGREE = 1e-4  # fp32 engines agree within this on unit-scale outputs (absolute)


def bench_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "pylstm.cli", "bench", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=cwd,
    )


def test_default_grid_is_the_standard_grid():
    grid = bench_configs.default_configs()
    assert all(c.input_size == c.hidden_size for c in grid)
    assert all(c.steps == (25 if c.hidden_size == 1024 else 100) for c in grid)
    single = {
        (c.cell, c.batch, c.hidden_size) for c in grid if c.layers == 1 and not c.bidirectional
    }
    assert single == set(product(("lstm", "gru"), (1, 8, 64, 256), (64, 256, 512, 1024)))
    assert len(grid) == len(set(grid))
    for cell, batch in product(("lstm", "gru"), (1, 64)):
        assert any(c.layers == 2 and c.cell == cell and c.batch == batch for c in grid)
    assert {c.layers for c in grid} == {1, 2}
    assert len([c for c in grid if c.bidirectional]) == 1


def test_stream_precision_and_quick_points():
    streams = bench_configs.stream_configs()
    assert {(s.cell, s.hidden_size) for s in streams} == {
        ("lstm", 32),
        ("lstm", 64),
        ("lstm", 128),
        ("gru", 64),
    }
    assert all(s.batch == 1 and s.input_size == s.hidden_size for s in streams)
    assert len(bench_configs.stream_configs(quick=True)) == 1
    assert set(bench_configs.precision_configs()) == {
        BenchConfig("lstm", 1, 1024, 1024, 25),
        BenchConfig("gru", 1, 512, 512, 100),
    }
    assert bench_configs.PRECISIONS == ("fp32", "bf16", "int8")
    quick = bench_configs.quick_configs()
    assert 3 <= len(quick) <= 8 and len([c for c in quick if c.cell == "gru"]) == 1


def test_filters_apply_to_every_kind_of_point():
    points = bench_configs.default_configs() + bench_configs.stream_configs()
    picked = bench_configs.filter_configs(points, cells=["gru"], batches=[1], hidden_sizes=[64])
    assert picked == [BenchConfig("gru", 1, 64, 64, 100), StreamConfig("gru", 64, 64)]
    assert bench_configs.filter_configs(points) == points


def test_flops_count_gate_gemms():
    # per layer, direction and step: 2 * G * B * H * (I + H)
    assert TINY.flops() == 2 * 4 * 1 * 16 * (16 + 16) * 5
    two = BenchConfig("gru", 2, 8, 4, 3, layers=2, bidirectional=True)
    assert two.flops() == 2 * 3 * 4 * 2 * 2 * 3 * ((8 + 4) + (8 + 4))


class _Counter:
    def __init__(self, name):
        self.name, self.calls = name, 0

    def run(self):
        self.calls += 1


def test_measure_bounds_rounds_by_budget():
    fast = [_Counter("a"), _Counter("b")]
    t = measure(fast, budget_s=10.0, max_rounds=7)
    assert t.rounds == 7 and set(t.median_s) == {"a", "b"}
    assert t.samples["a"] == 7 * 20  # bursts of max_burst timed calls
    t = measure([_Counter("a")], budget_s=0.0, min_rounds=3)
    assert t.rounds == 3 and all(v >= 0 for v in t.median_s.values())


@pytest.fixture
def torch_and_ort():
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")


@pytest.fixture
def precision_from_torch(monkeypatch):
    """pylstm.from_torch accepting ``precision`` (ignored: the rows run at fp32)."""
    real = pylstm.from_torch

    def from_torch(module, *, precision="fp32", **kwargs):
        return real(module, **kwargs)

    monkeypatch.setattr(pylstm, "from_torch", from_torch)


def test_record_schema_of_a_tiny_run(tmp_path, torch_and_ort, precision_from_torch):
    from pylstm.bench import run_benchmarks

    path = tmp_path / "run.json"
    out = io.StringIO()
    run_benchmarks(
        [TINY],
        threads=1,
        budget_s=0.01,
        precision_configs=[BenchConfig("gru", 1, 16, 16, 5)],
        stream_configs=[StreamConfig("lstm", 8, 8)],
        quick_ceiling=True,
        json_path=str(path),
        command="pylstm bench (test)",
        out=out,
    )
    record = json.loads(path.read_text())
    assert record["threads"] == 1 and record["command"] == "pylstm bench (test)"
    assert record["date"] and record["device"] == "cpu"
    for key in ("cpu", "cpus", "caches", "simd", "platform", "python"):
        assert key in record["machine"]
    assert set(record["versions"]) >= {"pylstm", "numpy", "torch", "onnxruntime"}
    assert record["gemm_ceiling_gflops"] > 0 and record["gemm"]["torch_gflops"] > 0
    assert record["fma_peak_gflops"] > 0 and record["fma_peak"]["threads"] == 1
    kinds = [r["kind"] for r in record["results"]]
    assert kinds == ["grid", "precision", "precision", "precision", "stream"]
    grid, *prec, stream = record["results"]
    assert grid["config"] == TINY.as_dict() and grid["name"] == TINY.name
    for key in ("pylstm_ms", "onnxruntime_ms", "torch_ms", "pylstm_gflops", "ceiling_fraction"):
        assert grid[key] > 0
    assert grid["peak_fraction"] == pytest.approx(grid["pylstm_gflops"] / record["fma_peak_gflops"])
    assert grid["speedup_vs_onnxruntime"] == pytest.approx(
        grid["onnxruntime_ms"] / grid["pylstm_ms"]
    )
    assert grid["max_abs_diff"] < AGREE
    assert [p["precision"] for p in prec] == ["fp32", "bf16", "int8"]
    assert all(p["max_abs_diff_vs_torch_fp32"] < AGREE and p["speedup_vs_torch"] > 0 for p in prec)
    assert stream["pylstm_us"] > 0 and stream["onnxruntime_us"] > 0 and stream["torch_us"] > 0
    assert record["summary"]["grid"]["points"] == 1
    assert record["summary"]["stream"]["faster_than_torch"] in (0, 1)
    text = out.getvalue()
    assert "x ort = ONNX Runtime time / pylstm time" in text and "GEMM ceiling" in text
    assert "FMA peak" in text and "% peak" in text
    assert "grid points: pylstm faster than ONNX Runtime on" in text


def test_fma_peak_is_at_least_what_a_blas_product_reaches():
    """The FMA peak bounds every fp32 product on the same threads: one thread of numpy's BLAS on
    a 512^3 product (best of 5) must not beat the best instruction set's peak (a peak measured
    wrong, e.g. chains the compiler folded or spilled to memory, shows here). 5% for timer noise.
    And two threads reach more than one (the chains run on every thread at once)."""
    from threadpoolctl import threadpool_limits

    isa = pylstm._core.supported_isas()[0]
    one = pylstm._core.fma_peak_gflops(isa, 1)
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((512, 512), dtype=np.float32) for _ in range(2))
    c = np.empty_like(a)
    with threadpool_limits(limits=1, user_api="blas"):
        np.matmul(a, b, out=c)
        best = min(_seconds(lambda: np.matmul(a, b, out=c)) for _ in range(5))
    blas_gflops = 2 * 512**3 / best / 1e9
    assert one >= 0.95 * blas_gflops, (one, blas_gflops)
    if len(os.sched_getaffinity(0)) >= 2:
        assert pylstm._core.fma_peak_gflops(isa, 2) > 1.3 * one  # 2 cores: ~2x (noisy VMs: 1.3)


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_unsupported_precision_is_skipped_with_a_note(monkeypatch, torch_and_ort):
    from pylstm.bench.runner import measure_precision_point

    real = pylstm.from_torch

    def from_torch(module, *, device="cpu"):  # a pylstm without the option: TypeError
        return real(module, device=device)

    monkeypatch.setattr(pylstm, "from_torch", from_torch)
    skipped = {}
    rows = measure_precision_point(TINY, threads=1, budget_s=0.01, skipped=skipped)
    assert rows == [] and set(skipped) == {"bf16", "int8"}
    assert "precision" in skipped["bf16"]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_stream_measurement_gives_positive_times(cell, torch_and_ort):
    from pylstm.bench.streaming import measure_stream

    row = measure_stream(StreamConfig(cell, 6, 8), threads=1, budget_s=0.02)
    assert row["kind"] == "stream"
    assert row["pylstm_us"] > 0 and row["onnxruntime_us"] > 0 and row["torch_us"] > 0
    assert row["max_abs_diff"] < AGREE  # streamed steps equal torch on the whole sequence


def _recorded(tmp_path):
    """A record as ``pylstm bench`` writes it, with made-up times (nothing measured)."""
    results = []
    for cell, hidden, batch in product(("lstm", "gru"), (16, 32), (1, 8)):
        cfg = BenchConfig(cell, batch, hidden, hidden, 5)
        ms = {"pylstm_ms": 0.1 * batch, "onnxruntime_ms": 0.2 * batch, "torch_ms": 0.3 * batch}
        results.append(
            {"kind": "grid", "name": cfg.name, "config": cfg.as_dict(), **ms, "max_abs_diff": 0.0}
        )
        for peer in ("onnxruntime", "torch"):
            results[-1][f"speedup_vs_{peer}"] = ms[f"{peer}_ms"] / ms["pylstm_ms"]
    record = {
        "date": "2024-01-01T00:00:00",
        "threads": 2,
        "machine": {"cpu": "test CPU", "cpus": 2, "simd": "avx2"},
        "versions": {"pylstm": pylstm.__version__, "numpy": "2"},
        "results": results,
    }
    path = tmp_path / "cpu-test.json"
    path.write_text(json.dumps(record))
    return path


def test_plot_from_a_recorded_json(tmp_path):
    pytest.importorskip("matplotlib")
    from pylstm.bench.plot import plot_record
    from pylstm.bench.report import load_record

    png = tmp_path / "direct.png"
    assert plot_record(load_record(str(_recorded(tmp_path))), str(png)) == ["grid"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_draws_a_panel_per_section_with_ratios(tmp_path):
    """Every section whose entries carry speed-up ratios is drawn, also kinds the plot does not
    know (a section added later); entries without ratios are left out."""
    pytest.importorskip("matplotlib")
    from pylstm.bench.plot import plot_record, ratio_panels

    record = json.loads(_recorded(tmp_path).read_text())
    extra = [
        {"kind": "precision", "name": "LSTM L=1 B=1 I=16 H=16 T=5", "precision": "int8",
         "speedup_vs_onnxruntime": 2.0, "speedup_vs_torch": 3.0},
        {"kind": "stream", "name": "GRU stream B=1 I=8 H=8 (1 step/call)",
         "speedup_vs_onnxruntime": 7.5, "speedup_vs_torch": 0.8},
        {"kind": "service", "name": "idle gaps", "speedup_vs_onnxruntime": 1.3},
        {"kind": "neighbours", "name": "4 processes", "speedup_vs_someengine": 0.9},
        {"kind": "notes_only", "name": "no ratio here", "pylstm_ms": 1.0},
    ]  # fmt: skip
    record["results"] += extra
    png = tmp_path / "sections.png"
    drawn = plot_record(record, str(png))
    assert drawn == ["grid", "precision", "stream", "service", "neighbours"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    panels = ratio_panels(record)
    assert [kind for kind, _, _ in panels] == drawn  # 8 grid rows: one panel
    (_, title, rows), *_ = [p for p in panels if p[0] == "precision"]
    assert "precision" in title.lower() and len(rows) == 1
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_record({"results": extra[-1:]}, str(tmp_path / "none.png"))


def test_plot_of_the_recorded_run_draws_every_section(tmp_path):
    """The README's recorded run: the grid (one panel per cell: 45 rows), precision and
    streaming, every row of the record in a panel."""
    pytest.importorskip("matplotlib")
    from pylstm.bench.plot import plot_record, ratio_panels
    from pylstm.bench.report import load_record

    path = Path(__file__).parent.parent / "bench" / "results" / "cpu-20261123.json"
    if not path.exists():
        pytest.skip("the recorded run is not in this checkout")
    record = load_record(str(path))
    panels = ratio_panels(record)
    assert [title.split(": ")[-1] for kind, title, _ in panels if kind == "grid"] == ["LSTM", "GRU"]
    assert sum(len(rows) for _, _, rows in panels) == len(record["results"])
    png = tmp_path / "recorded.png"
    assert plot_record(record, str(png)) == ["grid", "precision", "stream"]
    assert png.stat().st_size > 10_000


def test_cli_replots_and_reprints_a_recorded_json(tmp_path):
    pytest.importorskip("matplotlib")
    path = _recorded(tmp_path)
    res = bench_cli("--from-json", str(path), "--plot", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "LSTM L=1 B=8 I=32 H=32 T=5" in res.stdout and "x ort" in res.stdout
    assert "grid points: pylstm faster than ONNX Runtime on 8 of 8" in res.stdout
    assert (tmp_path / "cpu-test.png").stat().st_size > 0  # next to the JSON


def test_cli_prints_a_recorded_json_as_markdown(tmp_path):
    res = bench_cli("--from-json", str(_recorded(tmp_path)), "--markdown", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    table = [line for line in res.stdout.splitlines() if line.startswith("|")]
    # header, alignment row, 8 grid rows; every row has the header's number of cells
    assert len(table) == 10, res.stdout
    cells = {line.replace("\\|", "").count("|") for line in table}
    assert len(cells) == 1, table
    assert table[1].startswith("|---|---:|")
    assert any(line.startswith("| LSTM L=1 B=8 I=32 H=32 T=5 |") for line in table)
    assert "grid points: pylstm faster than ONNX Runtime on 8 of 8" in res.stdout


def test_plot_without_matplotlib_says_what_to_install(monkeypatch, tmp_path):
    from pylstm.bench.plot import plot_record

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    with pytest.raises(RuntimeError, match="pip install matplotlib"):
        plot_record({"results": []}, str(tmp_path / "x.png"))


def test_cli_list_shows_every_section_and_filters(tmp_path):
    res = bench_cli("--list", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    conditions = len(bench_configs.condition_configs())  # service, shared, neighbours, scaling
    assert len(lines) == len(bench_configs.default_configs()) + 2 + 4 + conditions
    assert "LSTM L=1 B=256 I=1024 H=1024 T=25" in lines
    assert "LSTM L=1 B=1 I=1024 H=1024 T=25 at fp32, bf16, int8" in lines
    assert "GRU stream B=1 I=64 H=64 (1 step/call)" in lines
    res = bench_cli("--list", "--cell", "gru", "--batch", "1", "--hidden", "64", cwd=tmp_path)
    assert res.stdout.splitlines() == [
        "GRU L=1 B=1 I=64 H=64 T=100",
        "GRU stream B=1 I=64 H=64 (1 step/call)",
    ]
    res = bench_cli("--hidden", "7", "--no-json", cwd=tmp_path)
    assert res.returncode == 2 and "no configuration matches" in res.stderr
