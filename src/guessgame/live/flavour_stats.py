"""How each flavour of each layer serves: sessions, errors and reply latency.

A server rolling a layer out to a fraction of its connections counts, for the threaded
and the asyncio flavour of each server-side layer, the sessions it served, the errors
it answered (`ERROR` replies and sessions that failed), and the time from a line
received to its reply sent. `table()` puts the two flavours side by side; `guessgame
serve` prints it on SIGUSR2.

Memory is bounded whatever the traffic: latencies go into a fixed histogram of
logarithmic buckets, eight to an octave (each about 9% wide), from 1 us to over two
minutes, so a percentile is exact to within one bucket.

The event loop never waits for the lock. A thousand session threads recording their
replies through it kept the loop waiting each time it admitted a session, so a record
made on the loop takes the lock only if it is free, and otherwise joins `_pending`,
which the next holder of the lock adds up. Past `PENDING_BOUND` records waiting, a
record is dropped and counted in `dropped`. Threads still wait for the lock: adding up
without it, from a queue, measured five times the CPU per round under a burst, with
every session thread contending for the GIL instead of queueing on the lock.
"""

from __future__ import annotations

import asyncio
import collections
import math
import threading
import time
from typing import Final

from guessgame import protocol
from guessgame.aio import connection as aio_connection
from guessgame.config import SERVER_LAYERS, Layers
from guessgame.threaded import connection as threaded_connection

BUCKETS_PER_OCTAVE: Final = 8
SMALLEST: Final = 1e-6
BUCKETS: Final = 27 * BUCKETS_PER_OCTAVE  # 2**27 us is over two minutes
ERROR_PREFIX: Final = protocol.error_line(protocol.GameError(""))
FLAVOURS: Final = ("threads", "asyncio")
PENDING_BOUND: Final = 65_536

_SESSION, _ERROR, _REPLY = range(3)
_Record = tuple[list["Tally"], int, float]


class Histogram:
    """Counts of latencies in logarithmic buckets; a fixed-size list, never a sample list."""

    def __init__(self) -> None:
        self.counts = [0] * BUCKETS
        self.total = 0

    def add(self, seconds: float) -> None:
        index = 0
        if seconds > SMALLEST:
            index = min(int(math.log2(seconds / SMALLEST) * BUCKETS_PER_OCTAVE), BUCKETS - 1)
        self.counts[index] += 1
        self.total += 1

    def percentile(self, fraction: float) -> float | None:
        """The upper edge of the bucket holding that fraction of samples, in seconds."""
        if not self.total:
            return None
        rank = max(1, math.ceil(fraction * self.total))
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return SMALLEST * 2 ** ((index + 1) / BUCKETS_PER_OCTAVE)
        raise AssertionError("the counts add up to the total")


class Tally:
    """One flavour of one layer."""

    def __init__(self) -> None:
        self.sessions = 0
        self.errors = 0
        self.latency = Histogram()


class FlavourStats:
    """Tallies for both flavours of the connection, session and server layers.

    Sessions record from their own thread or task; one lock, held for a few additions,
    keeps the counts whole. Nothing here blocks or allocates per sample.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tallies = {(layer, flavour): Tally() for layer in SERVER_LAYERS
                         for flavour in FLAVOURS}
        self._pending: collections.deque[_Record] = collections.deque()
        self.dropped = 0
        """Records from the loop dropped because PENDING_BOUND were waiting."""

    def _of(self, layers: Layers) -> list[Tally]:
        return [self._tallies[layer, FLAVOURS[getattr(layers, layer)]]
                for layer in SERVER_LAYERS]

    def session_started(self, layers: Layers) -> Meter:
        tallies = self._of(layers)
        self._record((tallies, _SESSION, 0.0))
        return Meter(self, tallies)

    def _record(self, record: _Record, on_loop: bool | None = None) -> None:
        """`on_loop`: whether the caller runs on the event loop, if it knows."""
        if on_loop is None:
            # asyncio's own test for "am I on a loop's thread": public for loop authors.
            # It costs a getpid() system call on 3.11 and 3.12, so meters say instead.
            on_loop = asyncio._get_running_loop() is not None
        if not on_loop:
            with self._lock:
                self._add(record)
        elif self._lock.acquire(blocking=False):
            try:
                self._add(record)
            finally:
                self._lock.release()
        elif len(self._pending) < PENDING_BOUND:
            self._pending.append(record)
        else:
            self.dropped += 1

    def _add(self, record: _Record) -> None:
        """With the lock held: add up the record, and any the loop left waiting."""
        self._add_pending()
        self._add_one(record)

    def _add_pending(self) -> None:
        """With the lock held: add up the records the loop left waiting."""
        while self._pending:
            self._add_one(self._pending.popleft())

    def _add_one(self, record: _Record) -> None:
        tallies, kind, seconds = record
        for tally in tallies:
            if kind == _SESSION:
                tally.sessions += 1
            elif kind == _ERROR:
                tally.errors += 1
            else:
                tally.latency.add(seconds)

    def table(self) -> list[str]:
        """The two flavours of each layer side by side, one line per layer."""
        with self._lock:
            self._add_pending()
            rows = {key: (tally.sessions, tally.errors, tally.latency.percentile(0.5),
                          tally.latency.percentile(0.99), tally.latency.total)
                    for key, tally in self._tallies.items()}
        head = "".join(f" | {flavour:<7} {'sessions':>8} {'errors':>6} {'replies':>8}"
                       f" {'p50 ms':>7} {'p99 ms':>7}" for flavour in FLAVOURS)
        lines = [f"{'layer':<10}{head}"]
        for layer in SERVER_LAYERS:
            cells = ""
            for flavour in FLAVOURS:
                sessions, errors, p50, p99, replies = rows[layer, flavour]
                cells += (f" | {'':<7} {sessions:>8} {errors:>6} {replies:>8}"
                          f" {_ms(p50):>7} {_ms(p99):>7}")
            lines.append(f"{layer:<10}{cells}")
        return lines


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.3f}"


class Meter:
    """One session's recorder: times each reply from the line that asked for it."""

    __slots__ = ("_asked", "_on_loop", "_stats", "_tallies")

    def __init__(self, stats: FlavourStats, tallies: list[Tally]) -> None:
        self._stats = stats
        self._tallies = tallies
        self._asked: float | None = None
        self._on_loop: bool | None = None  # known once it watches a connection

    def received(self) -> None:
        self._asked = time.perf_counter()

    def sent(self, line: str) -> None:
        if self._asked is not None:
            seconds = time.perf_counter() - self._asked
            self._stats._record((self._tallies, _REPLY, seconds), self._on_loop)
            self._asked = None
        if line.startswith(ERROR_PREFIX):
            self.failed()

    def failed(self) -> None:
        self._stats._record((self._tallies, _ERROR, 0.0))

    def blocking(self, connection: threaded_connection.Lines) -> threaded_connection.Lines:
        self._on_loop = False  # a blocking session never runs on the loop's thread
        return TimedLines(connection, self)

    def awaitable(self, connection: aio_connection.Lines) -> aio_connection.Lines:
        self._on_loop = True
        return AsyncTimedLines(connection, self)


class TimedLines:
    """A blocking connection whose lines a Meter watches."""

    def __init__(self, inner: threaded_connection.Lines, meter: Meter) -> None:
        self._inner, self._meter, self.peer = inner, meter, inner.peer

    def send(self, line: str) -> None:
        self._inner.send(line)
        self._meter.sent(line)

    def receive(self) -> str:
        line = self._inner.receive()
        self._meter.received()
        return line

    def close(self) -> None:
        self._inner.close()


class AsyncTimedLines:
    """An asyncio connection whose lines a Meter watches."""

    def __init__(self, inner: aio_connection.Lines, meter: Meter) -> None:
        self._inner, self._meter, self.peer = inner, meter, inner.peer

    async def send(self, line: str) -> None:
        await self._inner.send(line)
        self._meter.sent(line)

    async def receive(self) -> str:
        line = await self._inner.receive()
        self._meter.received()
        return line

    async def close(self) -> None:
        await self._inner.close()
