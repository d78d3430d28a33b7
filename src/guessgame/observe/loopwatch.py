"""Under --debug: a loop held by a blocking call is named while it blocks.

asyncio's debug mode names a slow callback once it has returned; a loop held for good
never returns. `LoopWatch` learns every loop at the seam (guessgame.crossing's
`loop_started` and `loop_stopped`) and gives each a heartbeat: a callback that notes
the time and schedules itself again `threshold / 4` seconds later. One `loop-watch`
thread looks every `threshold / 4` seconds. Once a beat has been due for `threshold`
seconds (`loop_block_report`) and the loop still runs, the loop has not turned: the
watch writes the loop thread's stack at that moment to stderr, the blocking line
first, once per stall; once the beat runs again, one line says how long the loop was
held.

The rules:
- The loop pays one short timer callback per beat, and nothing else: it never writes,
  and never takes a lock. All writes are the watch thread's.
- A loop that is not running (before `run_forever`, between two `run_until_complete`)
  is not held.
- A thread stopped at a debugger's prompt is paused by its user, not blocked: that
  stall is not reported.
"""

from __future__ import annotations

import asyncio
import linecache
import sys
import threading
import time
from types import FrameType, TracebackType
from typing import Final

from guessgame import crossing, outputs
from guessgame.observe import waitgraph, waits
from guessgame.observe.waitgraph import where

BEATS_PER_THRESHOLD: Final = 4
"""Beats, and looks, per `loop_block_report`: a hold is seen at most a quarter of it
late, and an idle loop wakes four times per threshold."""

DEBUGGER_MODULES: Final = ("bdb", "pdb", "pydevd", "_pydevd_bundle", "_pydev_bundle",
                           "debugpy", "guessgame.observe.threadpdb",
                           "guessgame.observe.stepping", "guessgame.observe.debugpy_stepping")
"""A frame of one of these on the loop thread's stack: the thread is at a prompt."""


class Heartbeat:
    """One loop's beat. `last` and `ident` are written on the loop thread only, `stall`,
    `told` and `thread_name` by the watch thread only, and `stopped` only ever becomes
    True; each is one attribute store, so neither side takes a lock."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.interval = interval
        self.last: float | None = None  # monotonic time of the latest beat
        self.ident: int | None = None  # the thread the loop last beat in
        self.stopped = False
        self.stall: float | None = None  # `last` as it was when a stall was seen
        self.told = False  # whether that stall was reported (not while paused)
        self.thread_name = ""  # the loop thread's, as it was when the stall was told

    def beat(self) -> None:
        if self.stopped:
            return
        self.ident = threading.get_ident()
        self.last = time.monotonic()
        self.loop.call_later(self.interval, self.beat)

    def start(self) -> None:
        """From any thread: the first beat runs once the loop does."""
        try:
            self.loop.call_soon_threadsafe(self.beat)
        except RuntimeError:  # closed already: nothing to watch
            self.stopped = True


class LoopWatch(crossing.Observer):
    """Under --debug: a thread that names the line holding an event loop, while it holds.

    A context manager, as `waitgraph.StallWatch` is: entering attaches it at the seam
    and starts the `loop-watch` thread; leaving detaches it and joins the thread."""

    items = False

    def __init__(self, threshold: float, write: outputs.Write) -> None:
        self.threshold = threshold
        self._write = write
        self._beats: dict[asyncio.AbstractEventLoop, Heartbeat] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="loop-watch")

    # --- the seam --------------------------------------------------------------------

    def loop_started(self, loop: asyncio.AbstractEventLoop, own: bool) -> None:
        known = self._beats.get(loop)
        if (known is not None and not known.stopped) or self._stop.is_set():
            return
        heart = Heartbeat(loop, self.threshold / BEATS_PER_THRESHOLD)
        self._beats[loop] = heart  # a dict store is atomic; the watch copies the dict
        heart.start()

    def loop_stopped(self, loop: asyncio.AbstractEventLoop) -> None:
        heart = self._beats.get(loop)
        if heart is not None:
            heart.stopped = True  # the watch reports a stall it showed, then forgets it

    # --- the watch thread ------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(self.threshold / BEATS_PER_THRESHOLD):
            for heart in list(self._beats.values()):
                self.check(heart, time.monotonic())
        for heart in list(self._beats.values()):  # a stall shown gets its last line
            heart.stopped = True
            self.check(heart, time.monotonic())

    def check(self, heart: Heartbeat, now: float) -> None:
        """Report a new stall, or the end of one reported; forget a stopped loop."""
        last = heart.last
        if heart.stall is not None:
            running = heart.loop.is_running() and not heart.stopped
            if last == heart.stall and running:
                return  # still held
            if heart.told:
                self._write(self.held(heart, now))
            heart.stall, heart.told = None, False
        if heart.stopped or heart.loop.is_closed():  # closed unannounced: gone all the same
            if self._beats.get(heart.loop) is heart:  # not the heartbeat of a run since
                self._beats.pop(heart.loop, None)
            return
        if last is None or heart.ident is None or not heart.loop.is_running():
            return
        if now - last - heart.interval < self.threshold:
            return
        frames = waitgraph.thread_frames(sys._current_frames().get(heart.ident))
        if last != heart.last:  # it turned while we looked
            return
        heart.stall = last
        if frames and not paused(frames):
            heart.told = True
            heart.thread_name = _thread_name(heart.ident)
            self._write(self.report(heart, frames, now - last - heart.interval))

    def report(self, heart: Heartbeat, frames: list[FrameType], held: float) -> str:
        try:
            task = asyncio.current_task(heart.loop)
        except RuntimeError:
            task = None
        running = f", running task {task.get_name()}," if task is not None else ""
        lines = [f"guessgame: the event loop in thread {heart.thread_name}{running} "
                 f"has not turned for {held:.2f} s "
                 f"(loop_block_report {self.threshold:g} s); held at {where(frames)}",
                 "  innermost frame first:"]
        for frame in reversed(frames):
            code = frame.f_code
            lines.append(f"  {waitgraph.short_path(code.co_filename)}:{frame.f_lineno} "
                         f"in {code.co_name}")
            source = linecache.getline(code.co_filename, frame.f_lineno).strip()
            if source:
                lines.append(f"      {source}")
        return "\n".join(lines) + "\n"

    def held(self, heart: Heartbeat, now: float) -> str:
        """The hold began between the last beat before it and the next beat's due
        time, and ended when a beat ran again (or the loop stopped)."""
        assert heart.stall is not None
        turned = heart.last if heart.last != heart.stall and heart.last is not None else None
        end = now if turned is None else turned
        how = ("" if turned is not None else " until it stopped" if not heart.loop.is_running()
               else " until the watch ended")
        return (f"guessgame: the event loop in thread {heart.thread_name} was held{how} for "
                f"{end - heart.stall - heart.interval:.2f} to {end - heart.stall:.2f} s\n")

    # --- the context manager ---------------------------------------------------------

    def __enter__(self) -> LoopWatch:
        crossing.attach(self)
        for loop in waits.loops().values():  # loops that joined before the watch did
            if not loop.is_closed():
                self.loop_started(loop, own=False)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        crossing.detach(self)
        self._stop.set()
        self._thread.join()
        for heart in self._beats.values():
            heart.stopped = True


def _thread_name(ident: int) -> str:
    for thread in threading.enumerate():
        if thread.ident == ident:
            return thread.name
    return f"{ident} (not started through threading)"


def paused(frames: list[FrameType]) -> bool:
    """Whether a debugger's own code is on the stack: the thread is at its prompt."""
    for frame in frames:
        module = frame.f_globals.get("__name__", "")
        if any(module == name or module.startswith(name + ".") for name in DEBUGGER_MODULES):
            return True
    return False

