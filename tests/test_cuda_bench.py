"""The CUDA benchmark's grid, its cuDNN-algorithm note and its target summary (no GPU needed;
the measurements themselves run in bench/run_cuda_checks.sh on a GPU)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pylstm.bench import cuda as bench_cuda


def test_grid_is_the_issues():
    cfgs = bench_cuda.configs()
    assert len(cfgs) == 2 * 4 * 4 * 2
    assert {c.batch for c in cfgs} == {1, 8, 64, 256}
    assert {c.hidden_size for c in cfgs} == {256, 512, 1024, 2048}
    assert {c.precision for c in cfgs} == {"fp32", "fp16"}
    assert all(c.steps == 100 and c.input_size == c.hidden_size for c in cfgs)
    quick = bench_cuda.configs(quick=True, cells=["lstm"], precisions=["fp16"])
    assert [(c.batch, c.hidden_size) for c in quick] == [(1, 256), (64, 256), (1, 1024), (64, 1024)]


def fake_torch(major, minor, sms):
    prop = SimpleNamespace(major=major, minor=minor, multi_processor_count=sms)
    cuda = SimpleNamespace(get_device_properties=lambda d: prop, current_device=lambda: 0)
    return SimpleNamespace(cuda=cuda)


@pytest.mark.parametrize(
    ("batch", "hidden", "precision", "gpu", "expected"),
    [
        (1, 1024, "fp16", (9, 0, 132), "standard"),
        (8, 1024, "fp16", (9, 0, 132), "persist_static (likely)"),
        (64, 512, "fp16", (8, 0, 108), "persist_static (likely)"),
        (64, 2048, "fp16", (9, 0, 132), "standard"),
        (64, 512, "fp32", (9, 0, 132), "standard"),
        (64, 512, "fp16", (8, 6, 84), "standard"),
    ],
)
def test_cudnn_algorithm_note(batch, hidden, precision, gpu, expected):
    cfg = bench_cuda.CudaConfig("lstm", batch, hidden, precision)
    assert bench_cuda.likely_cudnn_algo(fake_torch(*gpu), cfg) == expected


def test_summary_targets():
    def row(batch, hidden, precision, speedup, us, algo="standard"):
        cfg = bench_cuda.CudaConfig("lstm", batch, hidden, precision)
        return {
            "name": cfg.name,
            "config": {"batch": batch, "hidden_size": hidden, "precision": precision},
            "speedup_vs_torch": speedup,
            "pylstm_us_per_step": us,
            "torch_cudnn_algo": algo,
        }

    s = bench_cuda.summarize(
        [
            row(1, 1024, "fp16", 4.0, 1.8),
            row(8, 512, "fp32", 2.0, 3.0),
            row(8, 512, "fp16", 1.5, 3.0, algo="persist_static (likely)"),
            row(256, 512, "fp32", 1.1, 9.0),
        ]
    )
    assert s["target_3x_small_batch_standard_algo"]["points"] == 2
    assert s["target_3x_small_batch_standard_algo"]["met"] == 1
    assert s["target_parity_b256"] == {"points": 1, "met": 1, "missed": []}
    assert list(s["target_2us_per_step_b1_h1024_fp16"].values()) == [1.8]
