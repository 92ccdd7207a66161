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
