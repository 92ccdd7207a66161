"""The service-condition sections of ``pylstm bench`` (service, shared, neighbours, scaling):
each runs on a tiny configuration and gives entries with the expected fields, which the tables,
the summary, the Markdown and the plot show. Nothing here asserts a timing."""

import io
import json

import pytest
from test_bench_suite import bench_cli

import pylstm
from pylstm.bench import configs as bench_configs
from pylstm.bench.conditions import CONDITION_SECTIONS, run_condition_sections
from pylstm.bench.conditions_child import pair_cycle
from pylstm.bench.configs import BenchConfig
from pylstm.bench.report import markdown_lines, print_record, summarize, summary_lines
from pylstm.bench.runner import new_record

TINY = [BenchConfig("lstm", 1, 8, 8, 3), BenchConfig("gru", 1, 8, 8, 1)]
PEERS = ("onnxruntime", "torch")
ENGINES = ("pylstm", *PEERS)


@pytest.fixture(scope="module")
def record():
    """One run of every condition section on TINY, its printed tables in ``record["_out"]``."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    rec = new_record(2, "pylstm bench (test)")
    out = io.StringIO()
    run_condition_sections(rec, TINY, CONDITION_SECTIONS, threads=2, budget_s=0.01, out=out)
    rec["_out"] = out.getvalue()
    return rec


def _kind(record, kind):
    return [r for r in record["results"] if r["kind"] == kind]


def test_condition_points_and_quick():
    full = bench_configs.condition_configs()
    assert BenchConfig("lstm", 1, 256, 256, 1) in full  # a single-step call
    assert {(c.cell, c.batch) for c in full} == {("lstm", 1), ("gru", 1), ("lstm", 8), ("lstm", 64)}
    assert bench_configs.condition_configs(quick=True) == [BenchConfig("lstm", 1, 256, 256, 100)]


def test_service_entries_per_point_and_gap(record):
    rows = _kind(record, "service")
    assert [(r["config"], r["gap_ms"]) for r in rows] == [
        (c.as_dict(), gap) for c in TINY for gap in (2, 20)
    ]
    for r in rows:
        for e in ENGINES:
            assert r[f"{e}_median_ms"] > 0 and r[f"{e}_p99_ms"] >= r[f"{e}_median_ms"]
            assert r[f"{e}_back_to_back_ms"] > 0 and r[f"{e}_idle_slowdown"] > 0
            assert r["calls"][e] >= 5
        for p in PEERS:
            assert r[f"speedup_vs_{p}"] == pytest.approx(
                r[f"{p}_median_ms"] / r["pylstm_median_ms"]
            )
            assert r[f"p99_speedup_vs_{p}"] == pytest.approx(r[f"{p}_p99_ms"] / r["pylstm_p99_ms"])
        assert r["max_abs_diff"] < 1e-4  # the three children computed the same outputs
        assert r["pylstm_backend"].startswith("cpu/")


def test_shared_entries_compare_with_alone(record):
    rows = _kind(record, "shared")
    assert [r["name"] for r in rows] == [c.name for c in TINY]
    for r in rows:
        for e in ENGINES:
            assert r[f"{e}_slowdown"] == pytest.approx(r[f"{e}_shared_ms"] / r[f"{e}_alone_ms"])
        for p in PEERS:
            assert r[f"speedup_vs_{p}"] > 0 and r[f"alone_speedup_vs_{p}"] > 0
            assert r[f"slowdown_vs_{p}"] == pytest.approx(r["pylstm_slowdown"] / r[f"{p}_slowdown"])


@pytest.mark.parametrize("engines", [1, 2, 3, 4])
def test_shared_calls_follow_every_other_engine_equally_often(engines):
    """The shared section's call order: each engine right after each other one once per cycle
    (an engine that follows ONNX Runtime or PyTorch meets their threads still spinning)."""
    cycle = pair_cycle(engines)
    assert len(cycle) == max(1, engines * (engines - 1))
    pairs = [(cycle[i], cycle[(i + 1) % len(cycle)]) for i in range(len(cycle))]
    if engines > 1:
        want = {(a, b) for a in range(engines) for b in range(engines) if a != b}
        assert sorted(pairs) == sorted(want)  # each ordered pair exactly once
    assert all(cycle.count(e) == max(1, engines - 1) for e in range(engines))


def test_neighbours_entries_busy_and_quiet(record):
    rows = _kind(record, "neighbours")
    assert len(rows) == len(TINY)
    for r in rows:
        for e in ENGINES:
            assert r[f"{e}_quiet_ms"] > 0 and r[f"{e}_busy_ms"] > 0
            assert r[f"{e}_slowdown"] == pytest.approx(r[f"{e}_busy_ms"] / r[f"{e}_quiet_ms"])
        for p in PEERS:
            assert r[f"speedup_vs_{p}"] > 0 and r[f"quiet_speedup_vs_{p}"] > 0


def test_scaling_entries_one_thread_and_all(record):
    rows = _kind(record, "scaling")
    counts = sorted({1, pylstm.info()["cpus"]})
    assert [r["threads"] for r in rows] == counts * len(TINY)
    for r in rows:
        assert all(r[f"{e}_ms"] > 0 for e in ENGINES)
        assert all(r[f"speedup_vs_{p}"] > 0 for p in PEERS)
        many = r["threads"] > 1
        assert all((f"{e}_thread_speedup" in r) == many for e in ENGINES)
    assert pylstm.get_num_threads() == 2  # the run's thread count is restored


def test_tables_summary_and_markdown_show_every_section(record):
    text = record["_out"]
    for title in ("Service:", "Shared:", "Neighbours:", "Scaling:"):
        assert title in text
    assert "LSTM L=1 B=1 I=8 H=8 T=3, 20 ms gaps" in text
    summary = summarize(record["results"])
    assert set(summary) == set(CONDITION_SECTIONS)
    assert summary["service"]["points"] == 2 * len(TINY)
    lines = summary_lines(summary)
    assert any(line.startswith("shared-process points: pylstm faster than") for line in lines)
    out = io.StringIO()
    print_record({**record, "summary": summary}, out)
    assert "Neighbours:" in out.getvalue() and "pylstm kernel: cpu/" in out.getvalue()
    table = [line for line in markdown_lines(record) if line.startswith("| GRU L=1 B=1 I=8")]
    assert len(table) == 2 + 1 + 1 + 2  # service (2 gaps), shared, neighbours, scaling (1, all)


def test_record_names_the_machine_and_kernel(record):
    m = record["machine"]
    assert m["pylstm_backend"].startswith("cpu/") and m["simd"] in m["pylstm_backend"]
    assert {"isa", "caches", "cache_shared_by", "kernel", "vendor", "load_average"} <= set(m)
    assert any(note.startswith("load average") for note in record["notes"])
    json.dumps(record)  # the record is plain JSON


def test_plot_draws_the_condition_sections(record, tmp_path):
    pytest.importorskip("matplotlib")
    from pylstm.bench.plot import plot_record

    png = tmp_path / "conditions.png"
    assert plot_record(record, str(png)) == list(CONDITION_SECTIONS)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_lists_and_selects_the_sections(tmp_path):
    res = bench_cli("--list", "--quick", "--sections", "service", "scaling", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["LSTM L=1 B=1 I=256 H=256 T=100: service, scaling"]
    res = bench_cli("--list", "--sections", "neighbours", "--batch", "64", cwd=tmp_path)
    assert res.stdout.splitlines() == ["LSTM L=1 B=64 I=256 H=256 T=100: neighbours"]
    # the streaming point is a service row only
    res = bench_cli("--list", "--sections", "service", "shared", "--hidden", "64", cwd=tmp_path)
    assert res.stdout.splitlines() == ["LSTM stream B=1 I=64 H=64 (1 step/call): service"]
    res = bench_cli("--sections", "shared", "--hidden", "64", "--no-json", cwd=tmp_path)
    assert res.returncode == 2 and "no configuration matches" in res.stderr


def test_the_recorded_run_prints_and_plots(tmp_path):
    """README's service-condition run: every section in its tables and its plot."""
    from pathlib import Path

    from pylstm.bench.report import load_record

    path = Path(__file__).parent.parent / "bench" / "results" / "cpu-20261130-service.json"
    if not path.exists():
        pytest.skip("the recorded run is not in this checkout")
    record = load_record(str(path))
    assert {r["kind"] for r in record["results"]} == set(CONDITION_SECTIONS)
    assert record["machine"]["pylstm_backend"] and record["machine"]["isa"]
    text = "\n".join(markdown_lines(record))
    for title in ("**Service:", "**Shared:", "**Neighbours:", "**Scaling:"):
        assert title in text
    pytest.importorskip("matplotlib")
    from pylstm.bench.plot import plot_record

    assert plot_record(record, str(tmp_path / "run.png")) == list(CONDITION_SECTIONS)


def test_alone_runs_in_rounds_and_pools_their_samples(tmp_path, monkeypatch):
    """Each engine's process runs once per round, in alternating engine order, and the samples
    of all rounds are pooled per point and gap."""
    pytest.importorskip("torch")
    from pylstm.bench import conditions

    points = conditions.write_point_files(TINY[:1], str(tmp_path))
    spec = {"threads": 1, "budget_s": 0.01, "min_calls": 5, "max_calls": 7, "points": points}
    spec.update(shared=False, gaps_ms=[0, 2])
    ran = []
    real = conditions.run_child

    def run_child(spec, folder, tag):
        ran.append((tag, spec["min_calls"], spec["max_calls"]))
        return real(spec, folder, tag)

    monkeypatch.setattr(conditions, "run_child", run_child)
    alone, backend = conditions.measure_alone(spec, ["pylstm", "torch"], str(tmp_path), 3)
    assert [t for t, _, _ in ran] == [
        "pylstm-0",
        "torch-0",
        "torch-1",
        "pylstm-1",
        "pylstm-2",
        "torch-2",
    ]
    assert all((lo, hi) == (2, 2) for _, lo, hi in ran)  # ceil(5 / 3), 7 // 3 per round
    assert backend.startswith("cpu/")
    for name in ("pylstm", "torch"):
        (point,) = alone[name]
        assert set(point) == {"0", "2"}
        assert all(len(samples) == 3 * 2 for samples in point.values())  # 2 calls x 3 rounds


def test_streaming_point_is_a_service_row_only():
    """A StreamConfig among the condition points (``stream.step``, one step per call, state
    carried) gives service rows, which the three engines' children agree on, and no other."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from pylstm.bench.configs import StreamConfig

    assert StreamConfig("lstm", 64, 64) in bench_configs.condition_configs()
    assert not any(  # --quick stays short
        isinstance(c, StreamConfig) for c in bench_configs.condition_configs(quick=True)
    )
    stream = StreamConfig("lstm", 8, 8)
    rec = new_record(2, "pylstm bench (test)")
    points = [TINY[0], stream]
    run_condition_sections(rec, points, ["service", "shared"], threads=2, budget_s=0.01)
    service = _kind(rec, "service")
    assert [(r["config"], r["gap_ms"]) for r in service] == [
        (c.as_dict(), gap) for c in points for gap in (2, 20)
    ]
    for r in service[2:]:
        assert r["name"].startswith("LSTM stream B=1 I=8 H=8")
        assert all(r[f"{e}_median_ms"] > 0 for e in ENGINES)
        assert r["max_abs_diff"] < 1e-5  # the first step from zeros, every engine (fp32)
    assert [r["config"] for r in _kind(rec, "shared")] == [TINY[0].as_dict()]
