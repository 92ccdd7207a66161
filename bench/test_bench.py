"""pytest-benchmark cases: ``pytest bench/ --benchmark-only`` (needs the ``bench`` extra).

Each case times one engine on one point of the quick grid, or one streaming step; compare
engines with ``--benchmark-group-by=param:config``. The ``pylstm bench`` runner is the main tool
(interleaved calls, ratios in one run, the machine recorded); these cases exist for
pytest-benchmark's statistics and history (``--benchmark-autosave``, ``--benchmark-compare``).
"""

import pytest

pytest.importorskip("pytest_benchmark")
pytest.importorskip("torch")

from pylstm.bench import quick_configs, stream_configs
from pylstm.bench.peers import make_peers
from pylstm.bench.streaming import make_stream_peers

ENGINES = ["pylstm", "torch", "onnxruntime"]
CONFIGS = quick_configs()
STREAMS = stream_configs(quick=True)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
@pytest.mark.parametrize("engine", ENGINES)
def test_forward(benchmark, config, engine):
    peers = {p.name: p for p in make_peers(config, threads=2)}
    if engine not in peers:
        pytest.skip(f"{engine} is not installed")
    benchmark.group = config.name
    out = benchmark(peers[engine].run)
    assert out.shape[:2] == (config.steps, config.batch)


@pytest.mark.parametrize("config", STREAMS, ids=[c.name for c in STREAMS])
@pytest.mark.parametrize("engine", ENGINES)
def test_stream_step(benchmark, config, engine):
    peers = {p.name: p for p in make_stream_peers(config, threads=2)[0]}
    if engine not in peers:
        pytest.skip(f"{engine} is not installed")
    benchmark.group = config.name
    out = benchmark(peers[engine].run)  # one time step, the state carried
    assert out.shape == (config.batch, config.hidden_size)
