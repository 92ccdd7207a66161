"""A small pure-Python mutation fuzzer, used when atheris is not installed (``--driver random``).

It is not coverage-guided: each execution takes a corpus entry, applies 1 to 8 random mutations
(bit flips, interesting bytes and integers, erased, duplicated or spliced ranges, truncation) and
runs the harness on the result. An input that makes the harness raise is saved under
``fuzz/findings/<harness>/`` with the traceback next to it; the run goes on.
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
import time
import traceback

_INTERESTING = [
    0,
    1,
    0x7F,
    0x80,
    0xFF,
    0x7FFF,
    0xFFFF,
    0x7FFFFFFF,
    0xFFFFFFFF,
    2**63 - 1,
    2**64 - 1,
]


def mutate(data: bytes, rnd: random.Random, corpus: list) -> bytes:
    """1 to 8 random mutations of ``data``."""
    b = bytearray(data or b"\0")
    for _ in range(rnd.randint(1, 8)):
        kind = rnd.randrange(8)
        i = rnd.randrange(len(b)) if b else 0
        if kind == 0 and b:
            b[i] ^= 1 << rnd.randrange(8)
        elif kind == 1 and b:
            b[i] = rnd.choice([0, 0xFF, 0x7F, 0x80, rnd.randrange(256)])
        elif kind == 2 and len(b) >= i + 8:
            value = rnd.choice(_INTERESTING) + rnd.choice([-1, 0, 0, 1])
            fmt = rnd.choice(["<Q", "<I", "<H", ">I", ">Q"])
            size = struct.calcsize(fmt)
            b[i : i + size] = (value % (1 << (8 * size))).to_bytes(
                size, "little" if "<" in fmt else "big"
            )
        elif kind == 3 and b:
            del b[i : i + rnd.randint(1, 64)]
        elif kind == 4 and b:
            j = rnd.randrange(len(b))
            b[i:i] = b[j : j + rnd.randint(1, 64)]
        elif kind == 5 and corpus:
            other = rnd.choice(corpus)
            if other:
                j = rnd.randrange(len(other))
                b[i : i + rnd.randint(1, 256)] = other[j : j + rnd.randint(1, 256)]
        elif kind == 6 and len(b) > 1:
            del b[rnd.randrange(1, len(b)) :]
        elif kind == 7:
            b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 16)))
    return bytes(b)


def run(test_one_input, corpus_dir: str, findings_dir: str, runs: int, seed: int = 0) -> dict:
    """Run ``test_one_input`` on ``runs`` mutated inputs (the seeds themselves first).

    Returns
    -------
    dict
        ``executions``, ``seconds``, ``findings`` (count of inputs saved).
    """
    rnd = random.Random(seed)
    corpus = []
    if os.path.isdir(corpus_dir):
        for name in sorted(os.listdir(corpus_dir)):
            with open(os.path.join(corpus_dir, name), "rb") as fh:
                corpus.append(fh.read())
    if not corpus:
        corpus = [b""]
    findings = 0
    start = time.perf_counter()
    for k in range(runs):
        data = corpus[k] if k < len(corpus) else mutate(rnd.choice(corpus), rnd, corpus)
        try:
            test_one_input(data)
        except Exception:
            findings += 1
            os.makedirs(findings_dir, exist_ok=True)
            digest = hashlib.sha1(data).hexdigest()[:16]
            with open(os.path.join(findings_dir, f"crash-{digest}"), "wb") as fh:
                fh.write(data)
            with open(os.path.join(findings_dir, f"crash-{digest}.txt"), "w") as fh:
                fh.write(traceback.format_exc())
    return {"executions": runs, "seconds": time.perf_counter() - start, "findings": findings}
