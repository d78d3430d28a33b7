"""The server's transcript: events flow from sessions to whatever prints them.

Sessions put events from their own world (a thread or a task) without blocking; one
printer, in the server's world, writes them in order. When the process has an event
loop the stream is a janus queue, so either side may be a thread or a coroutine;
without a loop (all threads) it is a plain queue.Queue.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
from collections.abc import Callable
from typing import Any

import janus

from guessgame import protocol, trace, waits
from guessgame.protocol import Event

Write = Callable[[str], None]
_END = None  # put once every session has ended; the printer stops at it
_BRIDGE = "janus (reports)"
_PRODUCERS: waits.Party = ("any", "the sessions' next report")


class Reports:
    def __init__(self, write: Write, channel: janus.Queue[Event | None] | None) -> None:
        self._write = write
        self._janus = channel
        self._sync_q: Any = channel.sync_q if channel is not None else queue.Queue()
        self._printer: threading.Thread | asyncio.Task[None] | None = None
        # Tracing on: the flow id of each report that crossed, for the timeline's arrows.
        self._flows: collections.deque[int] = collections.deque()

    @classmethod
    def without_loop(cls, write: Write) -> Reports:
        return cls(write, None)

    @classmethod
    async def on_loop(cls, write: Write) -> Reports:
        """janus binds its async side to the running loop, so create it there."""
        return cls(write, janus.Queue())

    # --- producers -----------------------------------------------------------------

    # Only a put into the other world is a crossing: a thread feeding a printer task,
    # or a task feeding a printer thread. Within one world janus is just a queue.

    def put_from_thread(self, event: Event) -> None:
        if trace.enabled and isinstance(self._printer, asyncio.Task):
            self._flows.append(flow := trace.new_flow())
            trace.crossing("janus", "thread->loop", f"report {protocol.describe(event)}", flow)
        self._sync_q.put_nowait(event)

    def put_from_loop(self, event: Event) -> None:
        assert self._janus is not None, "a coroutine put implies a loop, hence janus"
        if trace.enabled and isinstance(self._printer, threading.Thread):
            self._flows.append(flow := trace.new_flow())
            trace.crossing("janus", "loop->thread", f"report {protocol.describe(event)}", flow)
        self._janus.async_q.put_nowait(event)

    # --- the printer, in the server's world ----------------------------------------

    def _took(self, event: Event) -> None:
        if trace.enabled and self._flows:  # the report crossed: end the timeline's arrow
            direction = "loop->thread" if self._janus and isinstance(
                self._printer, threading.Thread) else "thread->loop"
            trace.flow_end("janus", direction, f"report {protocol.describe(event)}",
                           self._flows.popleft())

    def start_thread(self) -> None:
        self._printer = threading.Thread(target=self._print_from_thread, name="reports")
        self._printer.start()

    def stop_thread(self) -> None:
        """After every session has ended: print what is left, then join the printer."""
        self._sync_q.put_nowait(_END)
        assert isinstance(self._printer, threading.Thread)
        self._printer.join()

    def _print_from_thread(self) -> None:
        while (event := self._waited(self._sync_q.get)) is not _END:
            self._write(protocol.describe(event))

    def _waited(self, get: Callable[[], Event | None]) -> Event | None:
        """The next report, with the wait for it in the wait graph (an idle wait)."""
        wait = waits.begin_thread(_BRIDGE if self._janus else "queue (reports)", _PRODUCERS,
                                  idle=True)
        try:
            event = get()
        finally:
            waits.end(wait)
        if event is not _END:
            self._took(event)
        return event

    async def start_task(self) -> None:
        self._printer = asyncio.create_task(self._print_in_task(), name="reports")

    async def stop_task(self) -> None:
        assert self._janus is not None and isinstance(self._printer, asyncio.Task)
        self._janus.async_q.put_nowait(_END)
        await self._printer

    async def _print_in_task(self) -> None:
        assert self._janus is not None
        while (event := await self._awaited(self._janus.async_q)) is not _END:
            self._write(protocol.describe(event))

    async def _awaited(self, channel: janus.AsyncQueue[Event | None]) -> Event | None:
        wait = waits.begin(_BRIDGE, _PRODUCERS, idle=True)
        try:
            event = await channel.get()
        finally:
            waits.end(wait)
        if event is not _END:
            self._took(event)
        return event

    async def aclose(self) -> None:
        """Release janus's notifier tasks; it must run on the loop, after the printer stops."""
        if self._janus is not None:
            await self._janus.aclose()
