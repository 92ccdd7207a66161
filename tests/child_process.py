"""Running a child Python in tests (import blocking, crash isolation, the CLI)."""

import os

import pylstm


def child_env(extra=None) -> dict:
    """Environment for a child Python that imports the same pylstm as this process: the
    installed package in CI, the source tree with its built extension in development. Run the
    child with ``cwd`` outside the source tree, or it would import the unbuilt sources."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(pylstm.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env
