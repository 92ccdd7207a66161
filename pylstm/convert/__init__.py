"""Step 2 of the flow (ARCHITECTURE.md): plain data -> the canonical model (frozen
:class:`~pylstm.convert.canonical.CanonicalLayer` s and plain operator specs), by pure
functions. Imports only :mod:`pylstm.read`."""
