"""pytest-benchmark cases: ``pytest bench/ --benchmark-only`` (needs the ``bench`` extra).

Each case times one engine on one configuration of the quick grid; compare engines with
``--benchmark-group-by=param:config``. The ``pylstm bench`` runner is the main tool (interleaved
calls, ratios in one run); these cases exist for pytest-benchmark's statistics and history.
"""

import pytest

from pylstm.bench import quick_configs
from pylstm.bench.peers import make_peers

pytest.importorskip("pytest_benchmark")
pytest.importorskip("torch")

CONFIGS = quick_configs()


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
@pytest.mark.parametrize("engine", ["pylstm", "torch", "onnxruntime"])
def test_forward(benchmark, config, engine):
    peers = {p.name: p for p in make_peers(config, threads=2)}
    if engine not in peers:
        pytest.skip(f"{engine} is not installed")
    benchmark.group = config.name
    out = benchmark(peers[engine].run)
    assert out.shape[:2] == (config.steps, config.batch)
