"""Batch inference on a real local Ray (``ray.init(num_cpus=2)``) and a real Dask
``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` with
:class:`pylstm.distributed.Predictor`: results equal the single-process run exactly (the same
engine on the same machine; batching does not change a sequence's arithmetic), one engine per
worker process built once, and no more threads per worker than the worker was given.

Each framework starts once per module (Ray takes seconds to start); the tests skip, saying why,
where ray or dask is not installed.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import pylstm
from pylstm.distributed import Predictor, worker_threads

N, T, I, H = 10_000, 20, 8, 16
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def make_model():
    rng = np.random.default_rng(0)
    k = 3.0 / np.sqrt(H)
    d = pylstm.Direction(
        w=rng.uniform(-k, k, (4 * H, I)),
        r=rng.uniform(-k, k, (4 * H, H)),
        bias_w=rng.uniform(-k, k, 4 * H),
        bias_r=rng.uniform(-k, k, 4 * H),
    )
    return pylstm.from_arrays([pylstm.Layer("lstm", [d])], batch_first=True)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N, T, I)).astype(np.float32)
    model = make_model()
    return model, x, model(x)[0]


class ReportingPredictor(Predictor):
    """A Predictor that also reports, per row, the process, the model object and the threads
    that served it (importable by the workers: this folder is on their PYTHONPATH)."""

    def __call__(self, batch):
        out = super().__call__(batch)
        n = len(out[self.output_column])
        out["pid"] = np.full(n, os.getpid())
        out["model_id"] = np.full(n, id(self.model))
        out["threads"] = np.full(n, pylstm.get_num_threads())
        return out


# -- without a cluster ----------------------------------------------------------------------------
def test_predictor_in_process(data, tmp_path):
    model, x, expected = data
    predict = Predictor(model, input_column="seq", output_column="out")
    got = predict({"seq": x[:100], "id": np.arange(100)})
    assert np.array_equal(got["out"], expected[:100])
    assert np.array_equal(got["id"], np.arange(100))
    assert np.array_equal(predict(x[:7]), expected[:7])
    last = Predictor(model, output="last")(x[:5])
    assert np.array_equal(last, expected[:5, -1])


def test_predictor_variable_lengths_and_pandas(data):
    pd = pytest.importorskip("pandas")
    model, x, _ = data
    lengths = [20, 5, 13, 1]
    rows = [x[i, :n] for i, n in enumerate(lengths)]
    frame = pd.DataFrame({"x": pd.Series(rows, dtype=object), "k": range(4)})
    got = Predictor(model)(frame)
    for i, n in enumerate(lengths):
        reference = model(x[i : i + 1, :n])[0][0]
        assert np.array_equal(got["y"].iloc[i], reference)
    last = Predictor(model, output="last")(frame)
    assert np.array_equal(last["y"].iloc[1], model(x[1:2, :5])[0][0, -1])


def test_predictor_pickles_small_and_builds_once_per_process(data, tmp_path):
    torch = pytest.importorskip("torch")
    model, x, _ = data
    module = torch.nn.GRU(I, 12, batch_first=True)
    path = tmp_path / "gru.pt"
    torch.save(module.state_dict(), path)
    by_path = Predictor(path, batch_first=True)
    assert len(pickle.dumps(by_path)) < 1000  # the path, not the weights
    expected = pylstm.load(path, batch_first=True)(x[:50])[0]
    a, b = pickle.loads(pickle.dumps(by_path)), pickle.loads(pickle.dumps(by_path))
    assert np.array_equal(a(x[:50]), expected)
    assert np.array_equal(b(x[:50]), expected)
    assert a.model is b.model  # one engine per process and Predictor
    with pytest.raises(TypeError, match="apply to a path"):
        Predictor(model, device="cpu")
    with pytest.raises(TypeError, match="model_or_path"):
        Predictor(42)


def test_predictor_keras_and_onnx_models():
    """Keras models take the batch as model(x); ONNX models get it as their first input."""
    pytest.importorskip("onnx")
    from test_keras_common import import_keras, saturate
    from test_pickle import _onnx_model

    keras = import_keras()
    rng = np.random.default_rng(6)
    layer = keras.layers.GRU(5, return_sequences=True)
    x = rng.normal(size=(6, 9, 3)).astype(np.float32)
    layer(x)
    saturate([layer], rng)
    model = pylstm.from_keras(layer)
    got = pickle.loads(pickle.dumps(Predictor(model)))({"x": x})
    assert np.array_equal(got["y"], model(x))
    last = Predictor(model, output="last")(x)
    assert np.array_equal(last, model(x)[:, -1])

    onnx_model = pylstm.from_onnx(_onnx_model().SerializeToString())
    xt = rng.normal(size=(7, 2, 4)).astype(np.float32)  # the graph's own layout [T, B, I]
    got = Predictor(onnx_model, onnx_output="Y_h")(xt)
    assert np.array_equal(got, onnx_model.run(["Y_h"], {"X": xt})[0])
    with pytest.raises(ValueError, match="PyTorch-style"):
        Predictor(model)([x[0], x[1, :4]])


def test_worker_threads_reads_the_environment(monkeypatch):
    monkeypatch.delenv("PYLSTM_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert worker_threads() == 3
    monkeypatch.setenv("PYLSTM_NUM_THREADS", "2")
    assert worker_threads() == 2
    monkeypatch.delenv("PYLSTM_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert worker_threads() == len(os.sched_getaffinity(0))


# -- Ray Data ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'pylstm[ray]')")
    pytest.importorskip("ray.data", reason="ray[data] is not installed")
    path = os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # Ray's workers put the driver's working folder on their sys.path; from the repository root
    # that is pylstm's source folder, which shadows the installed pylstm (tests/conftest.py).
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("ray-driver"))
    try:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": {"PYTHONPATH": path}},
        )
    finally:
        os.chdir(cwd)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True  # rows come back in the input's order
    yield ray
    ray.shutdown()


def _ray_rows(ray, x, source, **kwargs):
    ds = ray.data.from_numpy(list(np.array_split(x, 8)))  # 8 blocks
    out = ds.map_batches(
        ReportingPredictor,
        fn_constructor_kwargs={"model_or_path": source, "input_column": "data", **kwargs},
        compute=ray.data.ActorPoolStrategy(size=2),
        batch_size=512,
    )
    return out.take_all()


def test_ray_data_model_object(ray_session, data):
    model, x, expected = data
    rows = _ray_rows(ray_session, x, model)
    assert len(rows) == N
    y = np.stack([r["y"] for r in rows])
    assert np.array_equal(y, expected)
    pids = {r["pid"] for r in rows}
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids
    for pid in pids:  # each actor built one engine, once
        assert len({r["model_id"] for r in rows if r["pid"] == pid}) == 1
    # Ray gives each actor 1 CPU (OMP_NUM_THREADS=1): 2 workers x 1 thread on 2 CPUs
    assert {r["threads"] for r in rows} == {1}


def test_ray_data_model_path(ray_session, data, tmp_path):
    torch = pytest.importorskip("torch")
    _, x, _ = data
    module = torch.nn.LSTM(I, 10, num_layers=2, batch_first=True)
    path = tmp_path / "lstm.pt"
    torch.save(module.state_dict(), path)
    expected = pylstm.load(path, batch_first=True)(x)[0]
    rows = _ray_rows(ray_session, x, str(path), batch_first=True, num_threads=1)
    assert np.array_equal(np.stack([r["y"] for r in rows]), expected)
    for pid in {r["pid"] for r in rows}:  # each actor loaded the file once
        assert len({r["model_id"] for r in rows if r["pid"] == pid}) == 1


# -- Dask ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dask_client():
    pytest.importorskip("dask", reason="dask is not installed (pip install 'pylstm[dask]')")
    distributed = pytest.importorskip("dask.distributed", reason="dask[distributed] is missing")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        worker_dashboard_address=None,
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_map_blocks(dask_client, data):
    da = pytest.importorskip("dask.array")
    model, x, expected = data
    xs = da.from_array(x, chunks=(1250, T, I))
    predict = Predictor(model)
    ys = xs.map_blocks(predict, dtype=np.float32, chunks=(xs.chunks[0], (T,), (H,)))
    assert np.array_equal(ys.compute(), expected)
    # each worker built the engine once (the callable travels with every task) and runs the
    # one thread its nanny gives it (OMP_NUM_THREADS=1)
    built = dask_client.run(lambda: __import__("pylstm.distributed").distributed._MODELS.copy())
    for models in built.values():
        assert len(models) <= 1
    threads = dask_client.run(lambda: __import__("pylstm").get_num_threads())
    assert set(threads.values()) == {1}


def test_dask_map_partitions(dask_client, data):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    model, x, expected = data
    n = 2000
    import dask

    frame = pd.DataFrame({"id": np.arange(n), "x": pd.Series(list(x[:n]), dtype=object)})
    with dask.config.set({"dataframe.convert-string": False}):  # keep the arrays as objects
        ddf = dd.from_pandas(frame, npartitions=4)
    meta = frame.iloc[:0].assign(y=pd.Series([], dtype=object))
    predict = dask_client.scatter(Predictor(model), broadcast=True)  # shipped once per worker
    out = ddf.map_partitions(lambda part, p: p(part), predict, meta=meta).compute()
    out = out.sort_values("id")
    assert np.array_equal(np.stack(out["y"].to_list()), expected[:n])


# -- pylstm run over a folder of shards -----------------------------------------------------------
def test_cli_run_over_a_folder_of_shards(tmp_path, capsys):
    """Inputs larger than memory: a folder of .npy shards, memory-mapped, run batch by batch into
    one output shard per input shard. Batches of 7 against whole-shard calls: the input GEMM may
    block rows differently, so 1e-6 absolute (unit-scale outputs), not bit equality."""
    torch = pytest.importorskip("torch")
    from pylstm.cli import main

    module = torch.nn.GRU(I, 12, batch_first=True)
    model_path = tmp_path / "gru.pt"
    torch.save(module.state_dict(), model_path)
    model = pylstm.load(model_path, batch_first=True)
    shards = tmp_path / "in"
    shards.mkdir()
    rng = np.random.default_rng(5)
    inputs = {}
    for name, n in (("a.npy", 20), ("b.npy", 3), ("c.npy", 15)):
        inputs[name] = rng.normal(size=(n, T, I)).astype(np.float32)
        np.save(shards / name, inputs[name])
    (shards / "notes.txt").write_text("not a shard")
    out = tmp_path / "out"
    assert main(["run", str(model_path), str(shards), "-o", str(out), "--batch-size", "7"]) == 0
    assert sorted(os.listdir(out)) == ["a.npy", "b.npy", "c.npy"]
    for name, x in inputs.items():
        got = np.load(out / name)
        np.testing.assert_allclose(got, model(x)[0], atol=1e-6, rtol=0)
    assert "38/38 seq" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", str(model_path), str(empty), "-o", str(tmp_path / "o2")]) != 0
    assert "no .npy shards" in capsys.readouterr().err
