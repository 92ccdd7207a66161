"""pylstm.load on Keras files: .keras, whole-model .h5 and .weights.h5 + config written by
Keras 3, and the committed tf.keras 2 fixtures, all loaded in a child process where keras,
tensorflow, tf_keras and torch cannot be imported, and compared with what Keras returned."""

import json
import os
import subprocess
import sys

import numpy as np
from child_process import child_env
from test_keras_common import (
    ATOL,
    FIXTURES,
    holey_mask,
    import_keras,
    masked_input,
    saturate,
    save_h5,
    to_list,
    token_ids,
    unpack_fixture,
)

keras = import_keras()
L = keras.layers

CHILD = r"""
import json, sys
import numpy as np

BLOCKED = {"keras", "tensorflow", "tf_keras", "torch", "jax"}


class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this process")
        return None


sys.meta_path.insert(0, Block())
import pylstm

ATOL = float(sys.argv[2])


def as_list(out):
    return list(out) if isinstance(out, list) else [out]


def max_error(got, npz, prefix):
    refs = [npz[f"{prefix}{i}"] for i in range(sum(k.startswith(prefix) for k in npz.files))]
    got = as_list(got)
    if len(got) != len(refs):
        return f"{len(got)} outputs, expected {len(refs)}"
    worst = 0.0
    for g, r in zip(got, refs):
        if g.shape != r.shape:
            return f"shape {g.shape} != {r.shape}"
        bound = ATOL * np.maximum(1.0, np.abs(r).max(axis=-1, keepdims=True))
        worst = max(worst, float((np.abs(g.astype(np.float64) - r) / bound).max()))
    return worst


report = {}
for case in json.load(open(sys.argv[1])):
    npz = np.load(case["npz"])
    model = pylstm.load(case["file"], **case["options"])
    errors = [max_error(model(npz["x"]), npz, "out")]
    if "x2" in npz.files:
        errors.append(max_error(model(npz["x2"]), npz, "second"))
    report[case["name"]] = errors
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"report": report, "leaked": leaked}))
"""


def save_npz(path, x, outs, **extra):
    arrays = {"x": x, **{f"out{i}": o for i, o in enumerate(to_list(outs))}, **extra}
    np.savez(path, **arrays)


def sequential_model(rng):
    model = keras.Sequential(
        [
            keras.Input((None, 4)),
            L.Masking(0.0),
            L.LSTM(5, return_sequences=True, recurrent_activation="hard_sigmoid"),
            L.GRU(4, return_sequences=True, go_backwards=True, reset_after=False),
            L.Bidirectional(L.SimpleRNN(3, return_sequences=True), merge_mode="sum"),
            L.TimeDistributed(L.Dense(3, activation="softmax")),
            L.Dropout(0.2),
            L.LSTM(3, activation="hard_sigmoid"),
        ]
    )
    saturate(model.layers, rng)
    mask = holey_mask(6, 9, rng)
    return model, masked_input(6, 9, 4, rng, mask)


def functional_model(rng):
    inp = keras.Input((None,), dtype="int32")
    h = L.Embedding(25, 5, mask_zero=True)(inp)
    try:
        fwd, bwd, *states = L.Bidirectional(
            L.LSTM(4, return_sequences=True, return_state=True), merge_mode=None
        )(h)
    except TypeError:  # Keras 3.0 cannot build Bidirectional(return_state=True): no states
        fwd, bwd = L.Bidirectional(L.LSTM(4, return_sequences=True), merge_mode=None)(h)
        states = []
    top = L.Dense(3, activation="relu")(fwd)
    top = L.Activation("hard_sigmoid")(top)  # Keras 3 definition in numpy as well
    last = L.GRU(3)(top)
    model = keras.Model(inp, [last, bwd, *states])
    saturate(model.layers, rng)
    return model, token_ids(7, 10, 25, rng)


def stateful_model(rng):
    model = keras.Sequential(
        [
            keras.Input(batch_shape=(4, None, 3)),
            L.Masking(0.0),
            L.LSTM(4, stateful=True, return_sequences=True),
            L.GRU(3, stateful=True),
        ]
    )
    saturate(model.layers, rng)
    return model, masked_input(4, 6, 3, rng, holey_mask(4, 6, rng))


def write_keras3_cases(tmp_path, rng):
    cases = []
    for name, make in (
        ("seq", sequential_model),
        ("func", functional_model),
        ("stateful", stateful_model),
    ):
        model, x = make(rng)
        first = model(x)
        extra = {}
        if name == "stateful":
            x2 = masked_input(4, 5, 3, rng, holey_mask(4, 5, rng))
            extra = {"x2": x2, **{f"second{i}": o for i, o in enumerate(to_list(model(x2)))}}
        npz = str(tmp_path / f"{name}.npz")
        save_npz(npz, x, first, **extra)
        base = str(tmp_path / name)
        model.save(base + ".keras")
        h5 = save_h5(model, base + ".h5")  # False: Keras 3.0 cannot write it (Bidirectional)
        model.save_weights(base + ".weights.h5")
        with open(base + ".json", "w") as fh:
            fh.write(model.to_json())
        cases += [
            {"name": f"{name}.keras", "file": base + ".keras", "options": {}, "npz": npz},
            *([{"name": f"{name}.h5", "file": base + ".h5", "options": {}, "npz": npz}] * h5),
            {
                "name": f"{name}.weights.h5",
                "file": base + ".weights.h5",
                "options": {"config": base + ".json"},
                "npz": npz,
            },
        ]
    return cases


def fixture_cases(tmp_path):
    cases = []
    for npz in sorted(f for f in os.listdir(FIXTURES) if f.endswith(".npz")):
        name = npz[:-4]
        options = {}
        if os.path.exists(os.path.join(FIXTURES, name + ".json")):
            options["config"] = os.path.join(FIXTURES, name + ".json")
        cases.append(
            {
                "name": "tf2:" + name,
                "file": unpack_fixture(name, str(tmp_path / "tf2")),
                "options": options,
                "npz": os.path.join(FIXTURES, npz),
            }
        )
    return cases


def test_files_load_with_frameworks_blocked(tmp_path):
    rng = np.random.default_rng(41)
    cases = write_keras3_cases(tmp_path, rng) + fixture_cases(tmp_path)
    manifest = tmp_path / "cases.json"
    manifest.write_text(json.dumps(cases))
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    run = subprocess.run(
        [sys.executable, str(script), str(manifest), str(ATOL)],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=str(tmp_path),
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["leaked"] == []
    assert sorted(result["report"]) == sorted(c["name"] for c in cases)
    for name, errors in result["report"].items():
        for err in errors:
            # errors are in units of the bound 3e-5 * max(1, |row|): at most 1
            assert isinstance(err, float) and err <= 1.0, f"{name}: {err}"
