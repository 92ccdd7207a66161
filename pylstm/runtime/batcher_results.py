"""The stream batcher's results going back to their callers: a blocking caller is woken where it
waits; an asyncio caller's result goes to its event loop's inbox, drained in the loop's thread."""

from __future__ import annotations

import threading
import weakref
from collections import deque


def settle(done) -> None:
    """Hand results to their callers: blocking callers are woken; asyncio callers' results go
    to their event loop's inbox (see :func:`post_to_loops`)."""
    to_loops = []
    for req, result, error in done:
        if req.loop is None:
            req.done[0], req.done[1] = result, error
            req.done[2].release()
        else:
            req.stream._busy.release()
            to_loops.append((req.loop, req.future, result, error))
    post_to_loops(to_loops)


def post_to_loops(results) -> None:
    """``results``: ``(loop, future, result, error)``; each loop's go to its inbox, with at most
    one ``call_soon_threadsafe`` per loop and call."""
    by_loop = {}
    for loop, future, result, error in results:
        by_loop.setdefault(loop, []).append((future, result, error))
    for loop, items in by_loop.items():
        _inbox(loop).post(items)


class _LoopInbox:
    """Results waiting for one event loop. The worker wakes the loop (``call_soon_threadsafe``,
    a write to the loop's socket that also gives up the GIL) only when no drain is scheduled
    yet: a busy loop collects the results of several rounds in one drain."""

    def __init__(self, loop):
        self.loop = weakref.ref(loop)  # (the inboxes are keyed weakly by their loop)
        self.items = deque()
        self.lock = threading.Lock()
        self.scheduled = False

    def post(self, items) -> None:
        self.items.extend(items)
        with self.lock:
            if self.scheduled:
                return
            self.scheduled = True
        loop = self.loop()
        try:
            if loop is None:
                raise RuntimeError("the event loop is gone")
            loop.call_soon_threadsafe(self.drain)
        except RuntimeError:  # the loop was closed: nobody is waiting any more
            self.items.clear()

    def drain(self) -> None:
        with self.lock:
            self.scheduled = False
        items = self.items
        while items:
            future, result, error = items.popleft()
            if future.done():  # cancelled
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)


_INBOXES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_INBOXES_LOCK = threading.Lock()


def _inbox(loop) -> _LoopInbox:
    inbox = _INBOXES.get(loop)
    if inbox is None:
        with _INBOXES_LOCK:
            inbox = _INBOXES.get(loop)
            if inbox is None:
                inbox = _INBOXES[loop] = _LoopInbox(loop)
    return inbox
