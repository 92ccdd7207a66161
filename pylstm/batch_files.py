"""``pylstm run`` over a folder of ``.npy`` shards: inputs too large for memory, streamed
through in batches, one output shard per input shard.

Each input shard is memory-mapped (only its header is read up front); each batch is read, run and
written into a memory-mapped output file, so memory holds one batch of inputs and outputs at a
time whatever the size of the data set.
"""

from __future__ import annotations

import os
import sys

import numpy as np


def input_shards(folder: str) -> list:
    """The ``.npy`` files of ``folder``, sorted by name.

    Raises
    ------
    ValueError
        The folder has no ``.npy`` file.
    """
    names = sorted(n for n in os.listdir(folder) if n.endswith(".npy"))
    if not names:
        raise ValueError(f"{folder}: no .npy shards in this folder")
    return [os.path.join(folder, n) for n in names]


def run_folder(model, args, progress_bar, outputs) -> int:
    """Run ``model`` on every shard of the folder ``args.input`` and write the outputs, shard for
    shard under the same names, to the folder ``args.output`` (created if missing).

    Parameters
    ----------
    model : a pylstm model called as ``model(x)``
    args : argparse.Namespace
        ``pylstm run``'s arguments (``input``, ``output``, ``batch_size``, ``time_major``,
        ``lengths``, ``quiet``).
    progress_bar : class
        ``progress_bar(total, unit, enabled)`` with ``update(done)`` and ``close()``.
    outputs : callable
        ``outputs(model, chunk, lengths)``: the model's output for a batch-first chunk.

    Returns
    -------
    int
        0 (the exit status).
    """
    if args.lengths:
        raise ValueError("--lengths takes one file; with a folder of shards, pad the sequences")
    shards = input_shards(args.input)
    arrays = [np.load(p, mmap_mode="r", allow_pickle=False) for p in shards]
    for path, x in zip(shards, arrays):
        if x.ndim not in (2, 3):
            raise ValueError(f"{path}: expected [N, T, I] (or [N, T] token ids), got {x.shape}")
    if os.path.abspath(args.output) == os.path.abspath(args.input):
        raise ValueError("-o must be another folder than the input shards' folder")
    os.makedirs(args.output, exist_ok=True)
    total = sum(x.shape[1] if args.time_major else x.shape[0] for x in arrays)
    bar = progress_bar(total, "seq", enabled=not args.quiet)
    done = 0
    for path, x in zip(shards, arrays):
        if args.time_major:
            x = x.swapaxes(0, 1)
        target = os.path.join(args.output, os.path.basename(path))
        n = x.shape[0]
        y_file = y = None
        for start in range(0, n, args.batch_size):
            stop = min(n, start + args.batch_size)
            out = outputs(model, np.asarray(x[start:stop]), None)
            if y_file is None:
                shape = (n, *out.shape[1:])
                if args.time_major and out.ndim == 3:
                    shape = (shape[1], n, shape[2])
                y_file = np.lib.format.open_memmap(target, "w+", dtype=np.float32, shape=shape)
                y = y_file.swapaxes(0, 1) if args.time_major and out.ndim == 3 else y_file
            y[start:stop] = out
            done += stop - start
            bar.update(done)
        if y_file is not None:
            y_file.flush()
            del y, y_file
    bar.close()
    if not args.quiet:
        print(f"wrote {len(shards)} shards ({done} sequences) to {args.output}", file=sys.stderr)
    return 0
