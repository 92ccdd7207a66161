"""The pylstm command: info, run (batch inference from files) and bench (quick, filtered)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pylstm

torch = pytest.importorskip("torch")

ATOL = 3e-5  # fp32 agreement with torch, unit-scale outputs


def cli(*args, check=True, cwd=None):
    # cwd away from the source tree, so the installed package is the one imported
    return subprocess.run(
        [sys.executable, "-m", "pylstm.cli", *args],
        capture_output=True,
        text=True,
        check=check,
        cwd=cwd or Path(__file__).parent,
    )


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
    assert "23/23" in res.stderr  # the progress bar reached the end
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


def test_bench_quick_filtered_writes_json(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "bench.json"
    res = cli("bench", "--quick", "--cell", "gru", "--threads", "1", "--json", str(out))
    assert "GRU" in res.stdout
    record = json.loads(out.read_text())
    assert record["threads"] == 1 and record["machine"]["cpu"]
    (row,) = record["results"]
    assert row["pylstm_ms"] > 0 and row["torch_ms"] > 0 and row["onnxruntime_ms"] > 0
    assert row["max_abs_diff"] < 1e-4  # the engines agree before their times are compared


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
