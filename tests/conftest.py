"""Test-session set-up shared by every test file.

``python -m pytest`` puts the current folder first on ``sys.path``; from the repository root that
is pylstm's source folder, which has no compiled engine unless it was built in place
(``pip install -e .``). Then the installed pylstm is the one to test: the root is taken off
``sys.path`` before any test imports pylstm.
"""

import glob
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if not glob.glob(os.path.join(_ROOT, "pylstm", "_core*")):
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _ROOT]

# The multi-thread code paths are what the tests check, on small inputs too: a team whenever the
# work splits, without the adaptive policy's wake-up and contention rules, which only choose
# among paths that give the same results (tests/test_team_policy.py checks the policy itself).
os.environ.setdefault("PYLSTM_TEAM_POLICY", "eager")

import pytest

import pylstm


@pytest.fixture(params=list(pylstm._core.supported_isas()))
def isa(request, monkeypatch):
    """Build models for one instruction set the engine offers here (it reads PYLSTM_SIMD when a
    model is built): a test taking ``isa`` runs once per ISA, since each has its own kernels."""
    monkeypatch.setenv("PYLSTM_SIMD", request.param)
    return request.param
