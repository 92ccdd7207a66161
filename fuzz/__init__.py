"""Fuzzing pylstm's readers and call path (atheris, or a small pure-Python mutation driver).

Harnesses, one per loader plus one for calls (each module defines ``test_one_input(data)``):

=====================  ===============================================================
``torch_zip``          ``pylstm.load`` of a ``torch.save`` zip archive
``torch_legacy``       ``pylstm.load`` of a legacy ``torch.save`` stream
``safetensors``        ``pylstm.load`` of a ``.safetensors`` file
``h5``                 ``pylstm.load`` of a Keras ``.h5`` (HDF5 read in a child process first)
``keras``              ``pylstm.load`` of a Keras 3 ``.keras`` archive
``onnx``               ``pylstm.load`` of an ``.onnx`` model, then one ``run()``
``call``               random shapes, dtypes, lengths, states and streams on built models
=====================  ===============================================================

A harness fails (the fuzzer records the input) when pylstm raises anything but the documented
errors (``ValueError`` and its ``FormatError``, ``NotImplementedError`` and its
``UnsupportedError``; ``TypeError`` for the call path), or when the process crashes, hangs or
grows past the memory limit.

Commands (from the repository root)::

    python -m fuzz seeds                      # write the seed corpus to fuzz/corpus/<harness>/
    python -m fuzz run --runs 100000          # every harness, atheris if installed
    python -m fuzz run --harness onnx --runs 2000 --driver random
    python -m fuzz list
"""

import glob as _glob
import os as _os
import sys as _sys

# ``python -m fuzz`` runs from the repository root, whose pylstm/ is the source folder: without a
# compiled engine there (a non-editable install) it would shadow the installed pylstm, so the
# root leaves sys.path (this package is already imported). As tests/conftest.py does.
_ROOT = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _glob.glob(_os.path.join(_ROOT, "pylstm", "_core*")):
    _sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or _os.curdir) != _ROOT]
