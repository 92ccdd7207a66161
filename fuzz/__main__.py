"""``python -m fuzz seeds|list|run``: see ``fuzz/__init__.py``."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time

from fuzz.common import CORPUS, FINDINGS, HERE

HARNESSES = ("torch_zip", "torch_legacy", "safetensors", "h5", "keras", "onnx", "call")


def _has_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def _child(args) -> int:
    """Run one harness in this process (``run`` starts one child per harness)."""
    module = importlib.import_module(f"fuzz.fuzz_{args.harness}")
    corpus = os.path.join(CORPUS, args.harness)
    findings = os.path.join(FINDINGS, args.harness)
    os.makedirs(findings, exist_ok=True)
    if args.driver == "atheris":
        import atheris

        with atheris.instrument_imports(include=["pylstm"]):
            import pylstm
            import pylstm.convert.keras
            import pylstm.convert.onnx
            import pylstm.read.safetensors_file
            import pylstm.read.torch_pickle  # noqa: F401
        argv = [
            sys.argv[0],
            f"-runs={args.runs}",
            f"-timeout={args.timeout}",
            f"-rss_limit_mb={args.rss_limit_mb}",
            f"-artifact_prefix={findings}/",
            "-print_final_stats=1",
            corpus,
        ]
        if args.max_total_time:
            argv.insert(1, f"-max_total_time={args.max_total_time}")
        atheris.Setup(argv, module.test_one_input)
        atheris.Fuzz()
        return 0
    from fuzz.driver import run

    result = run(module.test_one_input, corpus, findings, args.runs, seed=args.seed)
    print(json.dumps({"harness": args.harness, **result}))
    return 1 if result["findings"] else 0


def _run(args) -> int:
    driver = args.driver or ("atheris" if _has_atheris() else "random")
    if not os.path.isdir(CORPUS):
        subprocess.run(
            [sys.executable, "-m", "fuzz", "seeds"], check=True, cwd=os.path.dirname(HERE)
        )
    failed = []
    for harness in args.harness or HARNESSES:
        cmd = [
            sys.executable, "-m", "fuzz", "_child", harness, "--runs", str(args.runs),
            "--driver", driver, "--timeout", str(args.timeout),
            "--rss-limit-mb", str(args.rss_limit_mb), "--seed", str(args.seed),
            "--max-total-time", str(args.max_total_time),
        ]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=os.path.dirname(HERE), capture_output=True, text=True)
        seconds = time.perf_counter() - start
        tail = (done.stdout + done.stderr).strip().splitlines()
        execs = next((ln for ln in reversed(tail) if "number_of_executed_units" in ln), "")
        count = execs.split(":")[-1].strip() if execs else ""
        record = next((ln for ln in reversed(tail) if ln.startswith('{"harness"')), "")
        if record:
            result = json.loads(record)
            count = str(result["executions"])
            if result["findings"]:
                count += f" ({result['findings']} findings in fuzz/findings/{harness}/)"
        print(
            f"{harness}: {driver}, exit {done.returncode}, {seconds:.1f} s"
            + (f", {count} executions" if count else "")
        )
        if done.returncode != 0:
            failed.append(harness)
            print("\n".join(tail[-40:]))
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("seeds", help="write the seed corpus to fuzz/corpus/")
    sub.add_parser("list", help="list the harnesses")
    for name in ("run", "_child"):
        p = sub.add_parser(name, help="run harnesses" if name == "run" else argparse.SUPPRESS)
        if name == "run":
            p.add_argument("--harness", action="append", choices=HARNESSES)
        else:
            p.add_argument("harness", choices=HARNESSES)
        p.add_argument("--runs", type=int, default=10_000, help="executions per harness")
        p.add_argument(
            "--driver", choices=("atheris", "random"), default=None if name == "run" else "random"
        )
        p.add_argument("--timeout", type=int, default=30, help="seconds one input may take")
        p.add_argument("--rss-limit-mb", type=int, default=4096)
        p.add_argument("--seed", type=int, default=0, help="seed of the random driver")
        p.add_argument(
            "--max-total-time", type=int, default=0, help="seconds per harness (atheris)"
        )
    args = parser.parse_args(argv)
    if args.command == "seeds":
        from fuzz.seeds import main as seeds

        seeds()
        return 0
    if args.command == "list":
        print("\n".join(HARNESSES))
        return 0
    if args.command == "_child":
        return _child(args)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
