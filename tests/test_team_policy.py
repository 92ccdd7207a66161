"""The thread pool's per-call team policy (cpp/src/thread_pool.cpp): when a call runs on its
caller alone and when on a team, and when a team call counts as contended.

The policy only chooses among code paths that give bit-identical results (the parity tests run
every path with ``PYLSTM_TEAM_POLICY=eager``); here the decisions themselves, and the default
(adaptive) policy's results in a fresh process against the eager policy's.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from child_process import child_env

import pylstm

choose_team = pylstm._core._choose_team
updated = pylstm._core._updated_contention
is_contended = pylstm._core._is_contended
MS = 1_000_000

SMALL = 512 * 1024  # multiply-adds of a one-step LSTM call, B=1, I=H=256
LARGE = 52 * 1024 * 1024  # the same layer over 100 steps


def test_a_call_that_cannot_split_runs_alone():
    assert choose_team(1, LARGE, workers_asleep=False, backing_off=False) == 1


def test_small_calls_do_not_wake_sleeping_workers():
    assert choose_team(2, SMALL, workers_asleep=True, backing_off=False) == 1
    assert choose_team(2, LARGE, workers_asleep=True, backing_off=False) == 2


def test_small_calls_use_spinning_workers():
    assert choose_team(2, SMALL, workers_asleep=False, backing_off=False) == 2


def test_backing_off_runs_alone():
    assert choose_team(4, LARGE, workers_asleep=False, backing_off=True) == 1


def test_calls_too_short_to_judge_leave_the_average():
    assert updated(0.2, 100_000, 90_000) == 0.2  # 0.1 ms


def test_one_stall_is_not_contention_but_stalls_on_every_call_are():
    average = 0.0
    average = updated(average, 12 * MS, 11 * MS)  # one lost time slice
    assert not is_contended(average)
    average = updated(average, 12 * MS, 11 * MS)  # and again
    assert is_contended(average)


def test_a_balanced_team_stays_uncontended():
    average = 0.0
    for _ in range(100):
        average = updated(average, 2 * MS, int(0.1 * MS))
    assert not is_contended(average)


def test_the_probe_after_a_back_off_decides():
    line = 0.3  # the pool sets the average here after backing off
    assert is_contended(updated(line, 2 * MS, int(1.5 * MS)))  # contended again
    assert not is_contended(updated(line, 2 * MS, 0))  # clean: teams resume


CHILD = """
import sys, time
import numpy as np
import pylstm
from pylstm.convert.builder import Direction, Layer

rng = np.random.default_rng(3)
H = I = 64
d = Direction(w=rng.uniform(-0.5, 0.5, (4 * H, I)), r=rng.uniform(-0.5, 0.5, (4 * H, H)),
              bias_w=rng.uniform(-0.5, 0.5, 4 * H), bias_r=rng.uniform(-0.5, 0.5, 4 * H))
model = pylstm.from_arrays([Layer("lstm", [d])])
pylstm.set_num_threads(2)
outs = []
for t, gap in [(1, 0.02), (100, 0.0), (1, 0.0), (200, 0.03), (1, 0.003), (50, 0.0)]:
    time.sleep(gap)
    x = rng.standard_normal((t, 8, I)).astype(np.float32) * 3
    y, (h, c) = model(x)
    outs += [y, h, c]
np.savez(sys.argv[1], *outs)
"""


def run_python(code, tmp_path, env, *args) -> str:
    """Runs ``code`` in a fresh interpreter with ``env`` added; its stdout. The child runs in
    ``tmp_path``: in the repository root, the source folder would shadow the installed pylstm."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=child_env(env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def lstm_child(hidden: int, body: str) -> str:
    """A child script: a one-layer LSTM with I = H = ``hidden`` from random arrays, 2 threads,
    ``last`` = ``_core._last_team_call``; then ``body``."""
    prelude = f"""
import threading, time
import numpy as np, pylstm
from pylstm.convert.builder import Direction, Layer
rng = np.random.default_rng(0)
H = I = {hidden}
d = Direction(w=rng.uniform(-0.5, 0.5, (4 * H, I)), r=rng.uniform(-0.5, 0.5, (4 * H, H)))
model = pylstm.from_arrays([Layer("lstm", [d])])
pylstm.set_num_threads(2)
last = pylstm._core._last_team_call
"""
    return prelude + body


def run_child(tmp_path, policy, **extra_env):
    out = tmp_path / f"{policy}-{'-'.join(extra_env.values())}.npz"
    run_python(CHILD, tmp_path, {"PYLSTM_TEAM_POLICY": policy, **extra_env}, str(out))
    data = np.load(out)
    return [data[k] for k in sorted(data.files, key=lambda k: int(k.split("_")[1]))]


@pytest.mark.skipif(pylstm._core.available_cpus() < 2, reason="needs 2 CPUs for a team")
def test_adaptive_policy_gives_the_eager_policys_results(tmp_path):
    """Calls after idle gaps and back to back, small and large: whatever team each call got,
    the results are bit-identical to a team on every call."""
    adaptive = run_child(tmp_path, "adaptive")
    eager = run_child(tmp_path, "eager")
    for a, e in zip(adaptive, eager):
        np.testing.assert_array_equal(a, e)  # bit-identical: a sum's order never changes


KINDS_CHILD = """
import sys, time
import numpy as np, torch
import pylstm

torch.manual_seed(0)
rng = np.random.default_rng(5)
modules = [
    torch.nn.LSTM(48, 64, num_layers=2, bidirectional=True),
    torch.nn.GRU(48, 64, num_layers=2),
    torch.nn.LSTM(48, 64, proj_size=24),
    torch.nn.RNN(48, 64, bidirectional=True),
]
pylstm.set_num_threads(2)
outs, joined = [], 0
for module in modules:
    for p in module.parameters():
        torch.nn.init.uniform_(p, -0.6, 0.6)
    model = pylstm.from_torch(module)
    for t, b in [(40, 4), (3, 16), (60, 1)]:
        time.sleep(0.005)  # asleep: with PYLSTM_TEAM_JOIN=late the call starts alone
        x = rng.standard_normal((t, b, 48)).astype(np.float32) * 3
        lengths = rng.integers(1, t + 1, b)
        y, state = model(x, lengths=lengths)
        outs += [y, *(state if isinstance(state, tuple) else (state,))]
        last = pylstm._core._last_team_call()
        joined += last["started_alone"] and last["members"] > 1
np.savez(sys.argv[1], *outs)
print(joined)
"""


def run_kinds(tmp_path, **env):
    """KINDS_CHILD with eager teams and ``env``: its outputs, and how many calls a worker joined
    after they started."""
    out = tmp_path / f"{'-'.join(env.values())}.npz"
    joined = int(
        run_python(KINDS_CHILD, tmp_path, {"PYLSTM_TEAM_POLICY": "eager", **env}, str(out))
    )
    data = np.load(out)
    return [data[k] for k in sorted(data.files, key=lambda k: int(k.split("_")[1]))], joined


@pytest.mark.skipif(pylstm._core.available_cpus() < 2, reason="needs 2 CPUs for a team")
def test_workers_that_join_a_call_late_give_the_same_results(tmp_path):
    """PYLSTM_TEAM_JOIN=late: every team call starts on its caller alone and the worker joins
    at whichever barrier it reaches first (what a call that finds the workers asleep does;
    cpp/src/team_join.cpp): stacked, bidirectional, projected and masked layers of every cell
    give bit-identical results to a team that starts together."""
    pytest.importorskip("torch")
    late, joined = run_kinds(tmp_path, PYLSTM_TEAM_JOIN="late")
    assert joined > 0  # the late path ran: a worker joined a call under way
    together, joined = run_kinds(tmp_path, PYLSTM_TEAM_JOIN="wait")
    assert joined == 0
    for a, b in zip(late, together):
        np.testing.assert_array_equal(a, b)  # bit-identical: a sum's order never changes


LATE_THREADS_CHILD = """
import os, random, threading, time
import numpy as np
import pylstm
from pylstm.convert.builder import Direction, Layer

rng = np.random.default_rng(2)
def layer(cell, i, h, dirs=1):
    g = 4 if cell == "lstm" else 3
    return Layer(cell, [Direction(w=rng.uniform(-0.5, 0.5, (g * h, i)),
                                  r=rng.uniform(-0.5, 0.5, (g * h, h)),
                                  reverse=d == 1) for d in range(dirs)])
models = [pylstm.from_arrays([layer("lstm", 32, 64, 2), layer("lstm", 128, 64, 2)]),
          pylstm.from_arrays([layer("gru", 48, 96)])]
inputs = [rng.standard_normal((40, 3, 32)).astype(np.float32),
          rng.standard_normal((60, 2, 48)).astype(np.float32)]
pylstm.set_num_threads(1)
refs = [m(x)[0] for m, x in zip(models, inputs)]
pylstm.set_num_threads(2)
bad = []
def client(k):
    r = random.Random(k)
    for _ in range(150):
        time.sleep(r.choice([0, 0, 0.0005, 0.003]))
        i = r.randrange(2)
        if not np.array_equal(models[i](inputs[i])[0], refs[i]):
            bad.append(i)
threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
for t in threads:
    t.start()
for _ in range(5):  # forks while other threads' calls run: the child's calls start alone too
    time.sleep(0.01)
    pid = os.fork()
    if pid == 0:
        ok = all(np.array_equal(models[i](inputs[i])[0], refs[i]) for i in (0, 1, 0))
        os._exit(0 if ok else 1)
    bad += [] if os.waitpid(pid, 0)[1] == 0 else ["child"]
for t in threads:
    t.join()
print(len(bad))
"""


@pytest.mark.skipif(pylstm._core.available_cpus() < 2, reason="needs 2 CPUs for a team")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_late_joiners_with_calls_from_threads_and_forks(tmp_path):
    """PYLSTM_TEAM_JOIN=late while three threads call two models (one holds the pool, the
    others run alone) and the process forks mid-call: every result is bit-identical to one
    thread's, in the parent and in the children."""
    env = {"PYLSTM_TEAM_POLICY": "eager", "PYLSTM_TEAM_JOIN": "late"}
    assert run_python(LATE_THREADS_CHILD, tmp_path, env).strip() == "0"


@pytest.mark.skipif(pylstm._core.available_cpus() < 2, reason="needs 2 CPUs for a team")
@pytest.mark.parametrize("mode", ["force", "force-worker"])
def test_a_team_that_gives_up_on_a_member_gives_the_same_results(tmp_path, mode):
    """PYLSTM_TEAM_GIVE_UP=force / force-worker: in every team call, member 0 / member 1 gives
    up on the others at its second barrier (the path a call takes when a member is not
    running, team_sync.hpp) and finishes alone, the states in and out of every later layer
    included: bit-identical for every kind of layer."""
    pytest.importorskip("torch")
    shrunk, _ = run_kinds(tmp_path, PYLSTM_TEAM_GIVE_UP=mode, PYLSTM_TEAM_JOIN="wait")
    whole, _ = run_kinds(tmp_path, PYLSTM_TEAM_GIVE_UP="0", PYLSTM_TEAM_JOIN="wait")
    for a, b in zip(shrunk, whole):
        np.testing.assert_array_equal(a, b)  # bit-identical


@pytest.mark.skipif(pylstm._core.available_cpus() < 2, reason="needs 2 CPUs for a team")
def test_forced_give_up_shrinks_the_team(tmp_path):
    code = lstm_child(
        64,
        """
model(rng.standard_normal((20, 8, I)).astype(np.float32))
print(last()["shrunk"], last()["survivor"])
""",
    )
    for mode, expected in (("force", "True 0"), ("force-worker", "True 1"), ("0", "False 0")):
        env = {"PYLSTM_TEAM_POLICY": "eager", "PYLSTM_TEAM_GIVE_UP": mode}
        out = run_python(code, tmp_path, env)
        assert out.strip() == expected, (mode, out)


@pytest.mark.skipif(pylstm._core.available_cpus() < 2, reason="needs 2 CPUs for a team")
def test_back_to_back_small_calls_wake_the_team_and_calls_after_a_gap_do_not(tmp_path):
    """A one-step call (B=1, H=256) after an idle gap runs on its caller alone (waking the
    workers would cost more than it saves), and so do a few such calls in a row (two models
    per request); a run of them counts as warm, wakes the workers once and runs as a team
    (cpp/src/thread_pool.cpp, team_for)."""
    code = lstm_child(
        256,
        """
x = rng.standard_normal((1, 1, I)).astype(np.float32)
cold = []
for _ in range(3):
    time.sleep(0.05)
    before = last()
    for _ in range(3):
        model(x)
    cold.append(last() != before)
before = last()
for _ in range(20):
    model(x)
print(any(cold), last() != before)
""",
    )
    out = run_python(code, tmp_path, {"PYLSTM_TEAM_POLICY": "adaptive"})
    assert out.split() == ["False", "True"], out


@pytest.mark.skipif(pylstm._core.available_cpus() < 2, reason="needs 2 CPUs for a team")
def test_a_thread_can_leave_cpus_to_other_work(tmp_path):
    """_leave_cpus_in_this_thread(1) (the stream batcher's worker): that thread's calls run
    with one member fewer (here: alone); other threads are not affected."""
    code = lstm_child(
        64,
        """
x = rng.standard_normal((20, 8, I)).astype(np.float32)
def team_ran(leave):
    before = last()
    pylstm._core._leave_cpus_in_this_thread(leave)
    model(x)
    return last() != before
seen = []
t = threading.Thread(target=lambda: seen.append(team_ran(1)))
t.start(); t.join()
print(seen[0], team_ran(0))
""",
    )
    out = run_python(code, tmp_path, {"PYLSTM_TEAM_POLICY": "eager"})
    assert out.split() == ["False", "True"], out
