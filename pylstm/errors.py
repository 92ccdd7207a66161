"""Exceptions raised by pylstm.

The public error contract (README "Errors") is expressed with Python's built-in exception types; the classes
here subclass them so that callers can catch either the specific pylstm class or the built-in.
"""


class FormatError(ValueError):
    """A file could not be read: truncated, corrupt, hostile or not the format it claims to be.

    The message names the file and, where known, the tensor or layer it failed on.
    """


class UnsupportedError(NotImplementedError):
    """A layer, operator, attribute or option that pylstm does not run. The message names it."""


class DeviceError(RuntimeError):
    """A device was asked for that this build or this machine cannot provide (e.g. ``device="cuda"``
    without the CUDA backend compiled, or without a GPU). The message says why."""


class BatcherClosed(RuntimeError):
    """A :class:`pylstm.StreamBatcher` was closed: raised by calls that were pending at
    ``close()`` and by calls made after it."""
