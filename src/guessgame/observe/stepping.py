"""Step Into on a crossing lands on the other side: the seam's observer for debuggers.

A debugger's `Backend` (the thread-aware pdb's in threadpdb.py, debugpy's in
debugpy_stepping.py) says whether the calling thread is being stepped into, and can make
the calling thread stop. `StepAcross` drives it from the seam (guessgame.crossing):

- `sent`: the sender is being stepped into, so the crossing carries a `Follow`, and the
  sender will next stop on its own side only after the crossing (`hold`);
- `taken`: a call's taker steps into the work, to stop on its first line; an item's
  taker stops at once, where it took the item, and waits for the user;
- `finished`: the call's work is done; the taker stops stepping, so the next stop is the
  sender's, on the line after the crossing;
- `returned`: an item's sender waits until the user has left the taker's stop.

`next` on a crossing line is not a step into, so nothing follows and the other side runs.
"""

from __future__ import annotations

import fnmatch
import logging
import sys
import threading
from types import FrameType

from guessgame import crossing
from guessgame.observe import trace

log = logging.getLogger("guessgame")

PLUMBING = (
    "guessgame.bridge", "guessgame.workers", "guessgame.crossing", "guessgame.observe",
    "guessgame.observe.*", "asyncio", "asyncio.*", "concurrent", "concurrent.*", "threading",
    "janus", "janus.*", "selectors", "queue", "contextlib", "contextvars", "weakref",
    "_weakrefset", "functools", "logging", "logging.*", "uvloop", "uvloop.*",
    "namedtuple_*", "bdb", "pdb", "cmd", "traceback", "linecache", "tokenize", "runpy",
    "socket",
)
"""Modules a step never stops in (pdb's `skip=`): what carries the work, not the work."""

HOLD_LIMIT = 10.0
"""Seconds an item's sender waits for the other side to take it and the user to move on."""

_skipped: dict[str, bool] = {}


def is_plumbing(module: str | None) -> bool:
    if module is None:
        return False
    known = _skipped.get(module)
    if known is None:
        known = _skipped[module] = any(fnmatch.fnmatch(module, p) for p in PLUMBING)
    return known


class Follow:
    """A crossing being stepped into, from the sender's step to the taker's stop."""

    __slots__ = ("crossing", "handle", "left", "on_loop", "origin", "resume", "sender",
                 "stack", "task")

    def __init__(self, seen: crossing.Crossing, origin: FrameType) -> None:
        self.crossing = seen
        self.origin = origin  # the frame of the crossing line; the sender's to touch only
        stack = stack_lines(origin)
        self.stack = stack  # the sender's frames, outermost first, ending at the crossing
        self.sender = trace.here()
        self.left = threading.Event()  # the user has moved on from the taker's stop
        self.resume = "step"  # how: "step" (the sender stops next) or "continue"
        # A sender on the loop is never held: the taker may need the loop to take it.
        kind, party = crossing.me()
        self.on_loop = kind == "task"
        self.task = party if self.on_loop else None
        self.handle: object = None  # the sender's debugger, for the backend

    def title(self) -> str:
        seen = self.crossing
        return (f"{seen.bridge} {seen.direction} {seen.what}, from thread "
                f"{self.sender.thread!r} (task {self.sender.task!r}, "
                f"session {self.sender.session!r})")


class Backend:
    """What a debugger does at the seam; every method runs in the thread it names."""

    def stepping_into(self) -> bool:
        """In the sender: is this thread being stepped into?"""
        raise NotImplementedError

    def hold(self, follow: Follow) -> None:
        """In the sender: stop nowhere until the crossing is over (`release`)."""

    def step_into_call(self, follow: Follow, arrival: FrameType) -> None:
        """In the taker: stop on the first line of the work `arrival` is about to run."""

    def stop_at_take(self, follow: Follow, frame: FrameType) -> str:
        """In the taker: stop in `frame`, now; return "step" or "continue"."""
        raise NotImplementedError

    def end_call(self, follow: Follow) -> None:
        """In the taker: the work is done; stop stepping in this thread."""

    def release(self, follow: Follow) -> None:
        """In the sender, going on: stop next in `follow.origin`, on the line after the
        crossing; after a "continue" on the other side, do not stop here either."""


    def release_from_afar(self, follow: Follow) -> None:
        """In the taker of an item a loop sent: as `release`, for the sender."""


class StepAcross(crossing.Observer):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def sent(self, seen: crossing.Crossing) -> None:
        if not self.backend.stepping_into():
            return
        origin = outside_plumbing(sys._getframe(1))
        if origin is None:
            return
        follow = Follow(seen, origin)
        seen.marks["step"] = follow
        self.backend.hold(follow)

    def taken(self, seen: crossing.Crossing) -> None:
        follow = seen.marks.get("step")
        if follow is None:
            return
        if seen.is_call:
            arrival = sys._getframe(1)
            while arrival.f_code not in _ARRIVALS and arrival.f_back is not None:
                arrival = arrival.f_back
            self.backend.step_into_call(follow, arrival)
            return
        frame = outside_plumbing(sys._getframe(1))
        try:
            if frame is not None:
                follow.resume = self.backend.stop_at_take(follow, frame)
        finally:
            follow.left.set()
            if follow.on_loop:
                self.backend.release_from_afar(follow)

    def finished(self, seen: crossing.Crossing) -> None:
        follow = seen.marks.get("step")
        if follow is not None:
            self.backend.end_call(follow)
            follow.left.set()

    def returned(self, seen: crossing.Crossing) -> None:
        follow = seen.marks.get("step")
        if follow is None:
            return
        if not seen.is_call and follow.on_loop:
            return  # released by the taker
        if not seen.is_call and not follow.left.wait(HOLD_LIMIT):
            log.warning("stepped into %s, but the other side did not take it in %g s; "
                        "going on here", follow.title(), HOLD_LIMIT)
        self.backend.release(follow)


_ARRIVALS = frozenset({crossing.arrive.__code__, crossing.Arriving.__call__.__code__})


def outside_plumbing(frame: FrameType | None) -> FrameType | None:
    """The innermost frame at or above `frame` that is the program's own work."""
    while frame is not None and is_plumbing(frame.f_globals.get("__name__")):
        frame = frame.f_back
    return frame


def stack_lines(frame: FrameType | None) -> list[str]:
    """`frame` and its callers, outermost first, as pdb's `where` writes them."""
    lines = []
    while frame is not None:
        lines.append(f"  {frame.f_code.co_filename}({frame.f_lineno}){frame.f_code.co_name}()")
        frame = frame.f_back
    return lines[::-1]
