"""The server's transcript: events flow from sessions to whatever prints them.

Sessions put events from their own world (a thread or a task) without ever blocking;
one printer, in the server's world, writes them in order through an `Output` that
never blocks either (outputs.py). The stream between them is a `queue.SimpleQueue`:
its put() takes no lock another thread could hold, so the loop never waits for a thread.

The stream is bounded. When the output cannot keep up, the games go on at full speed:
past REPORTS_BOUND waiting events, new ones are dropped and counted, and every
DROPS_LOGGED_EVERY seconds a warning says how many (`guessgame: 1234 reports
dropped: stdout is not keeping up`). Stopping is bounded too: the printer writes what
it can for STOP_FLUSH seconds, then counts the rest as dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import queue
import select
import threading
import time

from guessgame import crossing, protocol
from guessgame.crossing import LOOP_TO_THREAD, THREAD_TO_LOOP, Carried, Party
from guessgame.outputs import DROPS_TOLD_EVERY, LinesOutput, Output, Write
from guessgame.protocol import Event

log = logging.getLogger("guessgame")

REPORTS_BOUND = 4096
"""Events waiting to be printed: about 120 kB of transcript, twice what a pipe holds,
so a reader that keeps up in bursts loses nothing. Sessions race the check, so at most
one more per session may slip in; the bound holds within that."""

BATCH_EVENTS = 256
"""Events joined into one write."""

DROPS_LOGGED_EVERY = DROPS_TOLD_EVERY
"""Seconds between two warnings about dropped reports, as for every output; the first
drop is told at once."""

STOP_FLUSH = 0.5
"""On stop, seconds the printer keeps writing what is queued; then it gives up."""

POLL = 0.1
"""While waiting for room in the output: how often to look at the clock."""

_END = None  # put once every session has ended; the printer stops at it
_BRIDGE = "queue (reports)"
_PRODUCERS: Party = ("any", "the sessions' next report")


class Reports:
    def __init__(self, out: Write | Output) -> None:
        self._out: Output = LinesOutput(out) if callable(out) else out
        self._events: queue.SimpleQueue[Event | Carried | None] = queue.SimpleQueue()
        self._printer: threading.Thread | asyncio.Task[None] | None = None
        self._drops = itertools.count(1)
        self._dropped = 0  # by producers, as counted by _drops
        self._abandoned = 0  # by the printer, when it stopped before printing them
        self._logged = 0
        self._logged_at = -math.inf  # the first drop is told at once
        self._unsent = b""
        self._ending = False
        self._deadline = math.inf
        # Only a printer task sleeps on these; a printer thread waits on the queue.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._asleep = False

    @property
    def dropped(self) -> int:
        return self._dropped + self._abandoned

    # --- producers -----------------------------------------------------------------

    # Only a put into the other world is a crossing: a thread feeding a printer task,
    # or a task feeding a printer thread. Observed, the report carries its crossing
    # through the queue, so a dropped report takes its crossing with it.

    def put_from_thread(self, event: Event) -> None:
        item: Event | Carried = event
        if crossing.items_observed and isinstance(self._printer, asyncio.Task):
            item = crossing.carry(event, "SimpleQueue", THREAD_TO_LOOP, _described)
        if self._put(item) and self._asleep and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody to wake
                self._loop.call_soon_threadsafe(self._wake.set)
        if type(item) is Carried:  # told once the printer can take it
            crossing.returned(item.crossing)

    def put_from_loop(self, event: Event) -> None:
        item: Event | Carried = event
        if crossing.items_observed and isinstance(self._printer, threading.Thread):
            item = crossing.carry(event, "SimpleQueue", LOOP_TO_THREAD, _described)
        if self._put(item) and self._asleep:
            self._wake.set()
        if type(item) is Carried:
            crossing.returned(item.crossing)

    def _put(self, event: Event | Carried) -> bool:
        if self._events.qsize() >= REPORTS_BOUND:
            # next() on a count is atomic, where `+= 1` from many threads loses counts.
            self._dropped = next(self._drops)
            return False
        self._events.put(event)
        return True

    # --- the printer, in the server's world ----------------------------------------

    def start_thread(self) -> None:
        self._printer = threading.Thread(target=self._print_from_thread, name="reports")
        self._printer.start()

    def stop_thread(self) -> None:
        """After every session has ended: print what it can in STOP_FLUSH seconds, then
        join the printer."""
        self._deadline = time.monotonic() + STOP_FLUSH
        self._events.put(_END)
        assert isinstance(self._printer, threading.Thread)
        self._printer.join()

    def _print_from_thread(self) -> None:
        while not (self._ending and not self._unsent):
            if not self._unsent:
                try:
                    first = self._waited()
                except queue.Empty:
                    self._log_drops()
                    continue
                self._take(first)
            self._write_some()
            if self._unsent and not self._wait_for_room_in_thread():
                break
        self._give_up()

    def _waited(self) -> Event | Carried | None:
        """The next report; observed, the wait for it is an idle one at the seam."""
        block = crossing.blocked(_BRIDGE, _PRODUCERS, idle=True) if crossing.observed else None
        try:
            return self._events.get(timeout=DROPS_LOGGED_EVERY)
        finally:
            if block is not None:
                crossing.unblocked(block)

    def _wait_for_room_in_thread(self) -> bool:
        """Wait a little for room in the output; False once the stop deadline passed."""
        timeout = min(self._deadline - time.monotonic(), POLL)
        if timeout <= 0:
            return False
        fd = self._out.fileno()
        if fd is not None:  # poll(), not select(): the descriptor may be past 1023
            waiting = select.poll()
            waiting.register(fd, select.POLLOUT)
            waiting.poll(timeout * 1000)
        return True

    async def start_task(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._printer = asyncio.create_task(self._print_in_task(), name="reports")

    async def stop_task(self) -> None:
        assert isinstance(self._printer, asyncio.Task)
        self._deadline = time.monotonic() + STOP_FLUSH
        self._events.put(_END)
        self._wake.set()
        await self._printer

    async def _print_in_task(self) -> None:
        while not (self._ending and not self._unsent):
            if not self._unsent:
                try:
                    first = self._events.get_nowait()
                except queue.Empty:
                    await self._sleep_until_put()
                    continue
                self._take(first)
            self._write_some()
            if self._unsent and not await self._wait_for_room_on_loop():
                break
            await asyncio.sleep(0)  # a long backlog must not keep the sessions waiting
        self._give_up()

    async def _sleep_until_put(self) -> None:
        # Say we sleep before looking again: a producer putting meanwhile either sees
        # the flag and wakes us, or left an event this look finds.
        self._wake.clear()
        self._asleep = True
        try:
            if self._events.empty():
                block = crossing.blocked(_BRIDGE, _PRODUCERS, True) if crossing.observed else None
                try:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(DROPS_LOGGED_EVERY):
                            await self._wake.wait()
                finally:
                    if block is not None:
                        crossing.unblocked(block)
        finally:
            self._asleep = False
        self._log_drops()

    async def _wait_for_room_on_loop(self) -> bool:
        timeout = min(self._deadline - time.monotonic(), POLL)
        if timeout <= 0:
            return False
        fd = self._out.fileno()
        if fd is None:
            return True
        loop = asyncio.get_running_loop()
        room = loop.create_future()

        def ready() -> None:
            if not room.done():
                room.set_result(None)

        loop.add_writer(fd, ready)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await room
        finally:
            loop.remove_writer(fd)
        return True

    # --- shared by both printers ---------------------------------------------------

    def _take(self, first: Event | Carried | None) -> None:
        """Encode `first` and what follows it, up to BATCH_EVENTS, into the unsent bytes."""
        lines = []
        event = first
        for _ in range(BATCH_EVENTS):
            if event is _END:
                self._ending = True
                break
            lines.append(protocol.describe(crossing.unwrap(event)) + "\n")
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
        self._unsent = "".join(lines).encode()

    def _write_some(self) -> None:
        taken = self._out.write_some(self._unsent)
        self._unsent = self._unsent[taken:]
        if time.monotonic() - self._logged_at >= DROPS_LOGGED_EVERY:
            self._log_drops()

    def _log_drops(self) -> None:
        dropped = self.dropped
        if dropped > self._logged:
            log.warning("%d reports dropped: stdout is not keeping up", dropped - self._logged)
            self._logged, self._logged_at = dropped, time.monotonic()

    def _give_up(self) -> None:
        """Count what is still queued or unsent as dropped, and say so."""
        self._abandoned += self._unsent.count(b"\n")
        self._unsent = b""
        while not self._ending:
            event = self._events.get_nowait() if not self._events.empty() else _END
            if event is _END:
                self._ending = True
            else:
                self._abandoned += 1
        while not self._events.empty():  # events put as the last session ended
            if self._events.get_nowait() is not _END:
                self._abandoned += 1
        self._log_drops()


def _described(event: Event) -> str:
    return f"report {protocol.describe(event)}"
