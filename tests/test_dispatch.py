"""Runtime dispatch: the instruction set chosen for a CPU's features, the portable fallback,
and the PYLSTM_SIMD override (numerical parity on every set is in test_torch_parity.py)."""

import numpy as np
import pytest

import pylstm

torch = pytest.importorskip("torch")


def test_choice_for_cpu_features():
    assert pylstm._core.isa_for_features(avx512=False, avx2=False) == "generic"
    assert pylstm._core.isa_for_features(avx512=False, avx2=True) == "avx2"
    assert pylstm._core.isa_for_features(avx512=True, avx2=True) == "avx512"


def test_portable_code_is_always_available_and_auto_is_the_best():
    available = pylstm._core.supported_isas()
    assert available[-1] == "generic"
    assert pylstm.info()["simd"] == available[0]


@pytest.mark.parametrize("isa", pylstm._core.supported_isas())
def test_forced_instruction_set_runs_and_is_reported(isa, monkeypatch):
    monkeypatch.setenv("PYLSTM_SIMD", isa)
    module = torch.nn.GRU(7, 19).eval()
    model = pylstm.from_torch(module)
    assert model.engine.backend == f"cpu/{isa}"
    x = np.random.default_rng(0).normal(size=(6, 2, 7)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(model(x)[0], ref, atol=3e-5, rtol=0)  # fp32 tolerance


def test_unknown_or_unavailable_instruction_set(monkeypatch):
    monkeypatch.setenv("PYLSTM_SIMD", "sse9")
    with pytest.raises(pylstm.DeviceError, match="PYLSTM_SIMD='sse9'"):
        pylstm.from_torch(torch.nn.LSTM(3, 4))
