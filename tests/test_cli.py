"""The pylstm command: --version, plain-text help, info, run (batch inference from files, the
progress bar only on a terminal) and bench (quick, filtered; where it writes its files)."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from child_process import child_env

import pylstm

torch = pytest.importorskip("torch")

ATOL = 3e-5  # fp32 agreement with torch, unit-scale outputs


def cli(*args, check=True, cwd=None, env=None):
    # cwd away from the source tree, so the installed package is the one imported
    return subprocess.run(
        [sys.executable, "-m", "pylstm.cli", *args],
        capture_output=True,
        text=True,
        check=check,
        cwd=cwd or Path(__file__).parent,
        env=child_env(env),
    )


def test_version():
    res = cli("--version")
    assert res.stdout.strip() == f"pylstm {pylstm.__version__}"


@pytest.mark.parametrize("command", [[], ["info"], ["run"], ["bench"]])
def test_help_is_plain_text(command):
    text = cli(*command, "--help").stdout
    assert "usage: pylstm" in text
    for markup in ("``", ":func:", ":class:", ":data:", ".. "):
        assert markup not in text, (markup, text)
    if command == ["bench"]:  # says where its files go
        assert "~/.local/share/pylstm/bench" in text and "--output-dir" in text


def test_info_says_why_there_is_no_cuda_device():
    info = pylstm.info()
    text = cli("info").stdout
    if info["cuda_devices"]:
        assert f"CUDA devices   {', '.join(info['cuda_devices'])}" in text
    else:
        assert info["cuda_status"]  # the reason is known...
        assert f"CUDA devices   none ({info['cuda_status']})" in text  # ...and printed


def test_info_json():
    res = cli("info", "--json")
    info = json.loads(res.stdout)
    assert info["version"] == pylstm.__version__
    assert info["simd"] in info["simd_available"]
    assert isinstance(info["cuda_compiled"], bool) and isinstance(info["cuda_devices"], list)
    assert "SIMD level" in cli("info").stdout


@pytest.mark.parametrize("time_major", [False, True])
def test_run_matches_torch_with_lengths_and_batches(tmp_path, time_major):
    torch.manual_seed(0)
    module = torch.nn.GRU(5, 7, num_layers=2).eval()
    torch.save(module.state_dict(), tmp_path / "gru.pt")
    rng = np.random.default_rng(0)
    n, T = 23, 11
    x = rng.normal(size=(n, T, 5)).astype(np.float32)
    lengths = rng.integers(1, T + 1, size=n)
    np.save(tmp_path / "x.npy", x.transpose(1, 0, 2) if time_major else x)
    np.save(tmp_path / "len.npy", lengths)
    extra = ["--time-major"] if time_major else []
    res = cli(
        "run",
        str(tmp_path / "gru.pt"),
        str(tmp_path / "x.npy"),
        "-o",
        str(tmp_path / "y.npy"),
        "--batch-size",
        "5",
        "--lengths",
        str(tmp_path / "len.npy"),
        *extra,
    )
    # stderr is a pipe, not a terminal: no bar redrawn with \r, one summary line at the end
    assert "\r" not in res.stderr
    (summary,) = [line for line in res.stderr.splitlines() if "23/23" in line]
    assert summary.startswith("ran 23/23 seq in ")
    y = np.load(tmp_path / "y.npy")
    if time_major:
        y = y.transpose(1, 0, 2)
    with torch.no_grad():
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            torch.from_numpy(x), torch.from_numpy(lengths), batch_first=True, enforce_sorted=False
        )
        ref = torch.nn.utils.rnn.pad_packed_sequence(
            module(packed)[0], batch_first=True, total_length=T
        )[0].numpy()
    assert y.shape == (n, T, 7)
    np.testing.assert_allclose(y, ref, atol=ATOL, rtol=0)


def test_run_reports_bad_input(tmp_path):
    torch.save(torch.nn.LSTM(5, 7).state_dict(), tmp_path / "m.pt")
    np.save(tmp_path / "x.npy", np.zeros((3, 4, 6), np.float32))
    res = cli(
        "run",
        str(tmp_path / "m.pt"),
        str(tmp_path / "x.npy"),
        "-o",
        str(tmp_path / "y.npy"),
        check=False,
    )
    assert res.returncode == 1
    assert "expected 5 input features" in res.stderr
    res = cli(
        "run",
        str(tmp_path / "missing.pt"),
        str(tmp_path / "x.npy"),
        "-o",
        str(tmp_path / "y.npy"),
        check=False,
    )
    assert res.returncode == 1 and "missing.pt" in res.stderr


def test_progress_bar_redraws_only_on_a_terminal():
    from pylstm.cli import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, live in ((Terminal(), True), (io.StringIO(), False)):
        bar = ProgressBar(10, "seq", enabled=True, stream=stream)
        for done in (4, 8, 10):
            bar.update(done)
        bar.close()
        text = stream.getvalue()
        assert ("\r" in text) == live, text
        assert text.count("\n") == 1 and "10/10 seq" in text
    quiet = io.StringIO()
    bar = ProgressBar(10, "seq", enabled=False, stream=quiet)
    bar.update(10)
    bar.close()
    assert quiet.getvalue() == ""


def test_bench_quick_filtered_writes_json_to_the_data_folder(tmp_path):
    """Without --json or --output-dir, the record and the plot go to $XDG_DATA_HOME/pylstm/bench,
    not into the current directory, and both paths are printed."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("matplotlib")
    cwd, data = tmp_path / "cwd", tmp_path / "data"
    cwd.mkdir()
    res = cli(
        "bench",
        "--quick",
        "--cell",
        "gru",
        "--threads",
        "1",
        "--budget",
        "0.05",
        "--plot",
        cwd=cwd,
        env={"XDG_DATA_HOME": str(data)},
    )
    assert "GRU" in res.stdout
    assert list(cwd.iterdir()) == []  # nothing written where it ran
    (out,) = (data / "pylstm" / "bench").glob("cpu-*.json")
    assert f"wrote {out}" in res.stdout
    assert f"wrote {out.with_suffix('.png')}" in res.stdout
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    record = json.loads(out.read_text())
    assert record["threads"] == 1 and record["machine"]["cpu"]
    (row,) = record["results"]
    assert row["pylstm_ms"] > 0 and row["torch_ms"] > 0 and row["onnxruntime_ms"] > 0
    assert row["max_abs_diff"] < 1e-4  # the engines agree before their times are compared


def test_bench_output_paths(monkeypatch, tmp_path):
    """Where a run writes: --json FILE exactly; --output-dir DIR; else the XDG data folder
    (~/.local/share when XDG_DATA_HOME is unset or relative); --plot alone next to the record."""
    from pylstm.bench.runner import results_dir
    from pylstm.cli import _output_paths, build_parser

    def paths(*argv):
        return _output_paths(build_parser().parse_args(["bench", *argv]), "cpu")

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert results_dir() == str(tmp_path / "xdg" / "pylstm" / "bench")
    record, png = paths("--plot")
    assert os.path.dirname(record) == results_dir() and png == record[: -len(".json")] + ".png"
    assert os.path.basename(record).startswith("cpu-") and record.endswith(".json")
    record, png = paths("--output-dir", str(tmp_path / "out"), "--plot", "p.png")
    assert os.path.dirname(record) == str(tmp_path / "out") and png == "p.png"
    assert paths("--json", "r.json", "--plot") == ("r.json", "r.png")
    assert paths("--json", "r.json") == ("r.json", None)
    record, png = paths("--no-json", "--plot")
    assert record is None and os.path.dirname(png) == results_dir()
    for unset in ("", "relative/path"):
        monkeypatch.setenv("XDG_DATA_HOME", unset)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert results_dir() == str(tmp_path / "home" / ".local" / "share" / "pylstm" / "bench")


def test_bench_replot_into_output_dir(tmp_path):
    pytest.importorskip("matplotlib")
    recorded = Path(__file__).parent.parent / "bench" / "results" / "cpu-20261123.json"
    if not recorded.exists():
        pytest.skip("the recorded run is not in this checkout")
    res = cli("bench", "--from-json", str(recorded), "--plot", "--output-dir", str(tmp_path))
    png = tmp_path / "cpu-20261123.png"
    assert f"wrote {png}" in res.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_run_keras_file_with_token_ids(tmp_path):
    """pylstm run on a Keras 3 .keras file whose model starts with Embedding(mask_zero=True):
    integer token ids in, Keras' outputs out (masks applied)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(20, 6, mask_zero=True),
            keras.layers.LSTM(5, return_sequences=True),
        ]
    )
    model.save(tmp_path / "m.keras")
    ids = np.random.default_rng(0).integers(0, 20, size=(9, 7)).astype(np.int64)
    ids[:, 5:] = 0  # padding
    np.save(tmp_path / "ids.npy", ids)
    cli(
        "run",
        str(tmp_path / "m.keras"),
        str(tmp_path / "ids.npy"),
        "-o",
        str(tmp_path / "y.npy"),
        "--batch-size",
        "4",
    )
    ref = np.asarray(model.predict(ids, verbose=0))
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ref, atol=3e-5, rtol=0)  # fp32
