"""The package's layout shows the flow (ARCHITECTURE.md): each step imports only the steps below
it, and no file grows past what a reader can hold (about 500 lines).

    read/     bytes -> plain data             may import: errors, _core
    convert/  plain data -> canonical model   may import: read/
    runtime/  engine, graph, ops, streams     may import: convert/, read/
    faces/    framework-shaped adapters       may import: runtime/, convert/, read/
    the top   entry points (assemble, loading, cli, ...)  may import anything

Imports inside functions count: they are dependencies all the same.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "pylstm"
ROOT = PACKAGE.parent
# The steps, bottom first; modules outside them (the top) may import any of them.
STEPS = ["read", "convert", "runtime", "faces"]
# Imported from every step.
BASE = {"pylstm.errors", "pylstm._core", "pylstm._cuda", "pylstm._cuda_emu"}
MAX_LINES = 500


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: pathlib.Path) -> set:
    """Every ``pylstm...`` module ``path`` imports, relative imports resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pylstm"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("pylstm"):
                continue
            if node.module is None or target in ("pylstm",) or target.endswith(tuple(STEPS)):
                # `from . import x`: x may itself be a module
                found.update(f"{target}.{a.name}" for a in node.names)
            else:
                found.add(target)
    return found


def step_of(module: str):
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in STEPS:
        return STEPS.index(parts[1])
    return None


def python_files():
    return sorted(p for p in PACKAGE.rglob("*.py") if "bench" not in p.relative_to(PACKAGE).parts)


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_step_imports_only_the_steps_below(path):
    step = step_of(module_name(path))
    if step is None:
        return  # the top: entry points may import anything
    wrong = []
    for target in sorted(imported_modules(path)):
        if target in BASE or target.startswith("pylstm._core"):
            continue
        target_step = step_of(target)
        if target_step is None or target_step > step:
            wrong.append(target)
    assert not wrong, f"{path.relative_to(ROOT)} ({STEPS[step]}/) imports {wrong}"


def source_files():
    files = [p for p in PACKAGE.rglob("*.py")]
    for folder in ("tests", "fuzz", "tools", "bench", "build_backend"):
        files += [p for p in (ROOT / folder).glob("*.py")]
    for folder in ("cpp", "cuda"):
        files += [
            p
            for p in (ROOT / folder).rglob("*")
            if p.suffix in {".cpp", ".hpp", ".cu", ".cuh", ".h"}
        ]
    return sorted(files)


def test_no_file_is_over_500_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in source_files()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines: {long}"
