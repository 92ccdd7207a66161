"""Read an HDF5 file in a child process before reading it here.

The HDF5 library is native code that trusts the file's metadata: a corrupt file can keep it busy
for minutes (a variable-length attribute whose heap reference is damaged), make it allocate
gigabytes (a string length of 2^31 - 1) or crash the process (found by ``fuzz/``). None of that may
happen to the caller of ``pylstm.load``. So before the loader opens a Keras ``.h5`` (or the
``model.weights.h5`` inside a ``.keras``), :func:`probe` runs this file as a script in a child
process, with the same h5py and the same bytes, under a time limit and a memory limit
(``max_bytes`` + the interpreter's own). The child walks everything the loader could read:

* every group, dataset and attribute reachable from the root, each attribute read in full;
* every numeric dataset read in full (after the same size checks the loader makes);
* links: external links (to another file) and soft links are refused by name, never followed;
  datasets with external raw storage (``dset.external``) or virtual datasets (``dset.is_virtual``,
  sourced from other files) are refused before any of their data is read.

Only when the child finishes cleanly does the loader read the file itself: the reads it makes are
a subset of the child's, on the same bytes, so they behave as they did there. A child that crashes,
runs out of time or memory, or refuses the file, becomes a ``FormatError`` naming the file. The
child imports only h5py and numpy (not pylstm). It is a fork server: started once per process,
it forks a fresh grandchild for each file, so a probe costs milliseconds, not an interpreter's
start-up; where it cannot run, each probe starts a child of its own.
"""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys
import threading

# Wall-clock time the child may take (its start-up plus its walk): this much, plus a second for
# every 32 MiB of file.
PROBE_TIMEOUT_S = 5.0
_PROBE_S_PER_BYTE = 1.0 / (32 << 20)
# Memory the child may use beyond max_bytes (the interpreter, numpy and h5py themselves).
_CHILD_OVERHEAD = 768 << 20
_REFUSED = 3
_FAILED = 4
_MAX_OBJECTS = 100_000
_MAX_ATTRIBUTE_ELEMENTS = 1 << 20


def probe(source, name: str, max_bytes: int) -> None:
    """Check an HDF5 file (a path, or bytes of an in-memory file) in a child process.

    Parameters
    ----------
    source : str or bytes
        The file's path, or its content.
    name : str
        Named in messages.
    max_bytes : int
        What the walk may read (attributes and datasets together).

    Raises
    ------
    FormatError
        The child refused the file (links, external storage, virtual datasets, sizes), the HDF5
        library failed on it, or the child crashed, ran out of memory or time.
    """
    from ..errors import FormatError

    outcome = _SERVER.probe(source, int(max_bytes))
    if outcome is not None:
        returncode, message, timed_out, timeout = outcome
        if timed_out:
            raise FormatError(
                f"{name}: the HDF5 library did not finish reading the file's metadata within "
                f"{timeout:.0f} s: corrupt or hostile file"
            )
        _raise_for(returncode, message, "", name, max_bytes)
        return
    _probe_once(source, name, max_bytes)


def _probe_once(source, name: str, max_bytes: int) -> None:
    """:func:`probe` in a child process of its own (when the fork server cannot start)."""
    from ..errors import FormatError

    if isinstance(source, (bytes, bytearray, memoryview)):
        args, stdin = ["-"], bytes(source)
        size = len(stdin)
    else:
        args, stdin = [os.fspath(source)], None
        size = os.path.getsize(args[0])
    timeout = PROBE_TIMEOUT_S + size * _PROBE_S_PER_BYTE
    cmd = [sys.executable, "-I", os.path.abspath(__file__), str(int(max_bytes)), *args]
    try:
        done = subprocess.run(
            cmd,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            timeout=timeout,
            env=_child_env(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FormatError(
            f"{name}: the HDF5 library did not finish reading the file's metadata within "
            f"{timeout:.0f} s: corrupt or hostile file"
        ) from None
    message = done.stdout.decode("utf-8", "replace").strip()[-2000:]
    stderr = done.stderr.decode("utf-8", "replace")
    _raise_for(done.returncode, message, stderr, name, max_bytes)


def _raise_for(returncode: int, message: str, stderr: str, name: str, max_bytes: int) -> None:
    """FormatError for a child's outcome (nothing for a clean exit)."""
    from ..errors import FormatError

    if returncode == 0:
        return
    if returncode in (_REFUSED, _FAILED):
        raise FormatError(f"{name}: {message}")
    if returncode < 0:
        what = f"crashed (signal {-returncode})"
    else:
        tail = stderr.strip().splitlines()[-1:]
        what = f"failed ({tail[0][:200] if tail else 'exit status ' + str(returncode)})"
        if "MemoryError" in "".join(tail):
            what = f"needed more than max_bytes={max_bytes} bytes of memory"
    raise FormatError(f"{name}: the HDF5 library {what} reading this file: corrupt or hostile file")


class _ForkServer:
    """One long-lived child per process, with h5py already imported, that forks a fresh
    grandchild for each probe (a fork of a single-threaded process costs milliseconds; starting
    an interpreter and importing h5py costs a few hundred). The grandchild does the walk under
    the limits; the server waits for it with the time limit and reports how it ended. A server
    that dies or stops answering is replaced on the next probe; a process forked from this one
    starts its own."""

    def __init__(self):
        self._lock = threading.Lock()
        self._proc = None
        self._pid = None
        self._broken = False

    def _start(self):
        if self._proc is not None:
            self._stop()
        self._proc = subprocess.Popen(
            [sys.executable, "-I", os.path.abspath(__file__), "--server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_child_env(),
        )
        self._pid = os.getpid()

    def _stop(self):
        proc, self._proc = self._proc, None
        if proc is not None and self._pid == os.getpid():
            try:
                proc.kill()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass

    def probe(self, source, max_bytes: int):
        """``(returncode, message, timed_out, timeout)``, or None when no server can run."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            request = {"max_bytes": max_bytes, "path": None, "size": len(data)}
        else:
            data = b""
            path = os.path.abspath(os.fspath(source))
            request = {"max_bytes": max_bytes, "path": path, "size": 0}
            request["file_size"] = os.path.getsize(path)
        size = request["size"] or request.get("file_size", 0)
        timeout = PROBE_TIMEOUT_S + size * _PROBE_S_PER_BYTE
        request["timeout"] = timeout
        with self._lock:
            if self._broken:
                return None
            for _attempt in range(2):
                try:
                    if (
                        self._proc is None
                        or self._pid != os.getpid()
                        or self._proc.poll() is not None
                    ):
                        self._proc = None
                        self._start()
                    line = (json.dumps(request) + "\n").encode()
                    self._proc.stdin.write(line + data)
                    self._proc.stdin.flush()
                    reply = self._read_line(timeout + 30)
                except (OSError, ValueError):
                    reply = None
                if reply is not None:
                    return reply["rc"], reply["message"], reply["timed_out"], timeout
                self._stop()
            self._broken = True  # cannot run a server here: one-shot children from now on
            return None

    def _read_line(self, timeout: float):
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self._proc.stdout.readline()
        return json.loads(line) if line else None

    def after_fork_in_child(self) -> None:
        """A forked process starts without the parent's server (and with a free lock)."""
        self._lock = threading.Lock()
        self._proc = None
        self._pid = None


_SERVER = _ForkServer()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_SERVER.after_fork_in_child)


def _child_env() -> dict:
    """The child's environment: one BLAS thread (its buffers count against the memory limit)."""
    env = dict(os.environ)
    for key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[key] = "1"
    return env


# --------------------------------------------------------------------------------------------------
# the child


class _Refused(Exception):
    pass


def _walk(f, max_bytes: int) -> None:
    import h5py
    import numpy as np

    used = [0]
    seen = set()

    def charge(nbytes: int, what: str) -> None:
        used[0] += int(nbytes)
        if used[0] > max_bytes:
            raise _Refused(
                f"{what}: reading the file would take more than max_bytes={max_bytes} bytes; "
                "if you trust the file, pass pylstm.load(path, max_bytes=N)"
            )

    def attributes(obj, where: str) -> None:
        for key in list(obj.attrs):
            aid = obj.attrs.get_id(key)
            shape = aid.shape or ()
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if count > _MAX_ATTRIBUTE_ELEMENTS:
                raise _Refused(f"{where}: attribute {key!r} claims {count} elements")
            charge(count * aid.dtype.itemsize, f"{where}: attribute {key!r}")
            value = obj.attrs[key]
            flat = np.asarray(value, dtype=object if np.asarray(value).dtype.kind == "O" else None)
            if flat.dtype.kind == "O":
                charge(sum(len(v) for v in flat.reshape(-1) if isinstance(v, (bytes, str))), key)

    def dataset(ds, where: str) -> None:
        if ds.is_virtual:
            raise _Refused(
                f"{where}: a virtual dataset (its data comes from other files); pylstm reads "
                "nothing outside the model's file"
            )
        if ds.external:
            raise _Refused(
                f"{where}: its data is stored in external files ({ds.external[0][0]!r}...); "
                "pylstm reads nothing outside the model's file"
            )
        attributes(ds, where)
        if ds.dtype.kind not in "fiub":
            return
        stored = ds.id.get_storage_size()
        if ds.nbytes > max(stored, 64) * 8:
            raise _Refused(
                f"{where}: claims {ds.shape} {ds.dtype} ({ds.nbytes} bytes) but the file stores "
                f"{stored} bytes: corrupt"
            )
        charge(ds.nbytes, where)
        np.asarray(ds)

    def group(g, where: str, depth: int) -> None:
        if depth > 64:
            raise _Refused(f"{where}: groups nested deeper than 64")
        attributes(g, where)
        for key in list(g):
            path = f"{where.rstrip('/')}/{key}"
            link = g.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise _Refused(
                    f"{path}: an external link to {link.filename!r}; pylstm reads nothing "
                    "outside the model's file"
                )
            if isinstance(link, h5py.SoftLink):
                raise _Refused(
                    f"{path}: a soft link to {link.path!r}; Keras files have none and pylstm "
                    "does not follow them"
                )
            obj = g.get(key)
            if obj is None:
                continue
            address = h5py.h5o.get_info(obj.id).addr
            if address in seen:
                continue
            seen.add(address)
            if len(seen) > _MAX_OBJECTS:
                raise _Refused(f"more than {_MAX_OBJECTS} objects")
            if isinstance(obj, h5py.Group):
                group(obj, path, depth + 1)
            elif isinstance(obj, h5py.Dataset):
                dataset(obj, path)

    group(f, "/", 0)


def _set_limits(max_bytes: int, seconds: float) -> None:
    """Memory (``max_bytes`` + the interpreter's own) and CPU time of this process."""
    try:
        import resource

        limit = max_bytes + _CHILD_OVERHEAD
        # Under AddressSanitizer or ThreadSanitizer (tools/sanitize.sh) the runtime maps terabytes
        # of shadow memory: no address-space limit can hold; the time limit still does.
        sanitized = any(k in os.environ.get("LD_PRELOAD", "") for k in ("libasan", "libtsan"))
        for which in () if sanitized else (resource.RLIMIT_AS, resource.RLIMIT_DATA):
            _soft, hard = resource.getrlimit(which)
            if hard == resource.RLIM_INFINITY or hard > limit:
                resource.setrlimit(which, (limit, hard))
        cpu = int(seconds) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    except (ImportError, ValueError, OSError):
        pass


def _server_main() -> int:
    """``--server``: read requests on stdin, fork one grandchild per request, answer on stdout."""
    import signal
    import time

    import h5py  # noqa: F401  (imported once, inherited by every grandchild)
    import numpy  # noqa: F401

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        line = stdin.readline()
        if not line:
            return 0
        request = json.loads(line)
        data = stdin.read(request["size"]) if request["size"] else None
        source = request["path"] if request["path"] else "-"
        timeout = float(request["timeout"])
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the grandchild: walk, report, exit without cleanup
            os.close(read_end)
            _set_limits(request["max_bytes"], timeout)
            out = io.StringIO()
            saved, sys.stdout = sys.stdout, out
            try:
                code = _walk_source(source, data, request["max_bytes"])
            except BaseException:
                code = _FAILED
            sys.stdout = saved
            os.write(write_end, out.getvalue().encode("utf-8", "replace")[:4000])
            os._exit(code)
        os.close(write_end)
        deadline = time.monotonic() + timeout
        timed_out, status = False, 0
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                timed_out = True
                break
            time.sleep(0.002)
        chunks = []
        while True:
            piece = os.read(read_end, 65536)
            if not piece:
                break
            chunks.append(piece)
        os.close(read_end)
        if timed_out:
            rc = -9
        elif os.WIFSIGNALED(status):
            rc = -os.WTERMSIG(status)
        else:
            rc = os.WEXITSTATUS(status)
        message = b"".join(chunks).decode("utf-8", "replace").strip()
        reply = {"rc": rc, "message": message, "timed_out": timed_out}
        stdout.write((json.dumps(reply) + "\n").encode())
        stdout.flush()


def _walk_source(source, data, max_bytes: int) -> int:
    """Open and walk one file; print the reason and return the exit code."""
    import h5py

    data = io.BytesIO(data) if source == "-" else source
    try:
        with h5py.File(data, "r") as f:
            _walk(f, max_bytes)
    except _Refused as exc:
        print(str(exc))
        return _REFUSED
    except MemoryError:
        print(f"reading it needs more than max_bytes={max_bytes} bytes of memory")
        return _REFUSED
    except Exception as exc:  # the HDF5 library's errors on a corrupt file
        print(f"not a readable HDF5 file ({type(exc).__name__}: {str(exc)[:300]})")
        return _FAILED
    return 0


def _child_main(argv) -> int:
    """One probe in this process: ``max_bytes`` and a path, or ``-`` for the file on stdin."""
    max_bytes, source = int(argv[0]), argv[1]
    size = os.path.getsize(source) if source != "-" else 0
    _set_limits(max_bytes, PROBE_TIMEOUT_S + size * _PROBE_S_PER_BYTE)
    data = sys.stdin.buffer.read() if source == "-" else None
    return _walk_source(source, data, max_bytes)


if __name__ == "__main__":
    if sys.argv[1:] == ["--server"]:
        sys.exit(_server_main())
    sys.exit(_child_main(sys.argv[1:]))
