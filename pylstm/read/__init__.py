"""Step 1 of the flow (ARCHITECTURE.md): files and live objects' bytes -> plain data (numpy
arrays, dicts, plain graph nodes), with the guards on untrusted files. Imports nothing of the
later steps."""
