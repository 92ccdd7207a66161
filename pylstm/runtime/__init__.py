"""Step 3 of the flow (ARCHITECTURE.md): running the canonical model: the engine (weights packed
once by the C++ backend), the one graph executor and its operators, masks, the stream protocol,
the stream batcher, pickling. Imports only :mod:`pylstm.convert` and :mod:`pylstm.read`."""
