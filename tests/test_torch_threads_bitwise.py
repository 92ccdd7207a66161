"""The thread count never changes pylstm's results (bitwise), checked in child processes against
the same models as test_torch_parity.py."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from child_process import child_env

torch = pytest.importorskip("torch")

from helpers import assert_close, make_module
from torch_parity_common import (
    Case,
    reference,
    tolerance,
)

# -- thread count does not change results -----------------------------------------------------
#
# These run pylstm in a child process: changing the thread count of the process-wide pool has
# crashed the interpreter (segfault), and a crash must show up as a failing test, not end the
# whole test session. The child needs no torch: it rebuilds the model from the module's state
# dict with the same converter from_torch uses.

CHILD = r"""
import sys
import numpy as np
import pylstm
from pylstm.convert.torch import layers_from_state_dict

data = np.load(sys.argv[1])
threads = [int(v) for v in sys.argv[3].split(",")]
state = {k[len("w:"):]: data[k] for k in data.files if k.startswith("w:")}
layers = layers_from_state_dict(state, nonlinearity=str(data["nonlinearity"]))
x = data["x"]
hx = None
if "h0" in data.files:
    hx = (data["h0"], data["c0"]) if "c0" in data.files else data["h0"]
lengths = data["lengths"] if "lengths" in data.files else None
results = {}
for k, n in enumerate(threads):
    pylstm.set_num_threads(n)
    assert pylstm.get_num_threads() == n, pylstm.get_num_threads()
    model = pylstm.from_arrays(layers, batch_first=bool(data["batch_first"]))
    y, st = model(x, hx, lengths=lengths)
    h, c = st if isinstance(st, tuple) else (st, None)
    results[f"y{k}"] = y
    results[f"h{k}"] = h
    if c is not None:
        results[f"c{k}"] = c
np.savez(sys.argv[2], **results)
"""


def run_in_child(tmp_path, module, x, hx, threads, *, lengths=None, env=None):
    """Run the model (rebuilt from ``module``'s weights) in a fresh Python process once per entry
    of ``threads`` (``set_num_threads`` before each build+call); returns a list of
    ``(output, h_n, c_n)``. Fails the test if the child dies."""
    arrays = {f"w:{k}": v.detach().numpy() for k, v in module.state_dict().items()}
    arrays["x"] = x
    arrays["batch_first"] = np.array(module.batch_first)
    arrays["nonlinearity"] = np.array("relu" if module.mode == "RNN_RELU" else "tanh")
    if hx is not None:
        if isinstance(hx, tuple):
            arrays["h0"], arrays["c0"] = hx
        else:
            arrays["h0"] = hx
    if lengths is not None:
        arrays["lengths"] = np.asarray(lengths, np.int64)
    inp, out = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(inp, **arrays)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(inp), str(out), ",".join(map(str, threads))],
        # eager teams: every thread count runs as a team even on these small inputs
        env=child_env({"PYLSTM_TEAM_POLICY": "eager", **(env or {})}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, (
        f"child running thread counts {threads} exited with {proc.returncode} "
        f"(negative: killed by that signal, -11 = segfault):\n{proc.stderr[-3000:]}"
    )
    res = np.load(out)
    return [
        (res[f"y{k}"], res[f"h{k}"], res[f"c{k}"] if f"c{k}" in res.files else None)
        for k in range(len(threads))
    ]


def assert_bitwise_equal(results, labels):
    """All (output, h_n, c_n) triples identical to the first, bit for bit (tolerance 0)."""
    first = results[0]
    for label, res in zip(labels[1:], results[1:]):
        for a, b, name in zip(res, first, ("output", "h_n", "c_n")):
            if b is None:
                continue
            np.testing.assert_array_equal(a, b, err_msg=f"{name}: {label} vs {labels[0]}")


THREAD_CASES = [
    Case(
        "lstm",
        33,
        130,
        num_layers=2,
        bidirectional=True,
        steps=20,
        batch=17,
        with_hx=True,
        seed=501,
    ),
    Case("lstm", 7, 65, proj_size=33, num_layers=2, steps=20, batch=1, seed=502),
    Case("gru", 13, 130, num_layers=2, bidirectional=True, steps=20, batch=5, seed=503),
    Case("rnn_tanh", 13, 257, num_layers=2, steps=20, batch=3, seed=504),
    Case("rnn_relu", 13, 65, num_layers=2, steps=20, batch=33, seed=505),
]


@pytest.mark.parametrize("case", THREAD_CASES, ids=[c.id for c in THREAD_CASES])
def test_thread_count_does_not_change_results(case, isa, tmp_path):
    """A model built and run with 1 thread and with 2 threads (``set_num_threads``) gives
    bitwise-identical output, h_n and c_n (the engine splits work so that each value's
    arithmetic does not depend on the thread count), and the result matches torch."""
    module, x, hx, out, _h_n, _c_n = reference(case)
    results = run_in_child(tmp_path, module, x, hx, [1, 2])
    assert_bitwise_equal(results, ["1 thread", "2 threads"])  # tolerance 0
    # see the module docstring for the bound
    assert_close(results[1][0], out, atol=tolerance(case.cell), scaled=True, what="output")


def test_thread_count_bitwise_with_lengths(tmp_path):
    """Bitwise identity across thread counts also with lengths (masked steps)."""
    rng = np.random.default_rng(77)
    module = make_module("lstm", 9, 130, num_layers=2, bidirectional=True, rng=rng)
    x = rng.normal(size=(15, 6, 9)).astype(np.float32)
    lengths = [15, 3, 9, 1, 14, 7]
    results = run_in_child(tmp_path, module, x, None, [1, 2], lengths=lengths)
    assert_bitwise_equal(results, ["1 thread", "2 threads"])  # tolerance 0


def test_changing_thread_count_repeatedly(tmp_path):
    """set_num_threads up and down between calls (2, 1, 2, 3, 1, 3) in one process neither
    crashes nor changes the results (bitwise)."""
    rng = np.random.default_rng(78)
    module = make_module("lstm", 33, 130, num_layers=2, rng=rng)
    x = rng.normal(size=(20, 17, 33)).astype(np.float32)
    counts = [2, 1, 2, 3, 1, 3]
    results = run_in_child(tmp_path, module, x, None, counts)
    assert_bitwise_equal(results, [f"{n} threads (call {k})" for k, n in enumerate(counts)])
