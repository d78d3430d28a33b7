"""How each flavour of each layer serves: sessions, errors and reply latency.

A server rolling a layer out to a fraction of its connections counts, for the threaded
and the asyncio flavour of each server-side layer, the sessions it served, the errors
it answered (`ERROR` replies and sessions that failed), and the time from a line
received to its reply sent. `table()` puts the two flavours side by side; `guessgame
serve` prints it on SIGUSR2.

Memory is bounded whatever the traffic: latencies go into a fixed histogram of
logarithmic buckets, eight to an octave (each about 9% wide), from 1 us to over two
minutes, so a percentile is exact to within one bucket.

The event loop never waits for the lock: a record made on the loop takes the lock only
if it is free, and otherwise joins `_pending`, which the next holder of the lock adds
up. Past `PENDING_BOUND` records waiting, a record is dropped and counted in `dropped`.
Session threads wait for the lock, which is held for a few additions only; queueing
their records instead makes every thread contend for the GIL (docs/performance.md).

Every reply pays for the meter, so a reply costs two clock reads, one bucket computed
outside the lock, and one uncontended lock with an increment per layer inside it.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from typing import Final

from guessgame import crossing, protocol
from guessgame.config import SERVER_LAYERS, Layers

BUCKETS_PER_OCTAVE: Final = 8
SMALLEST: Final = 1e-6
BUCKETS: Final = 27 * BUCKETS_PER_OCTAVE  # 2**27 us is over two minutes
ERROR_PREFIX: Final = protocol.error_line(protocol.GameError(""))
FLAVOURS: Final = ("threads", "asyncio")
PENDING_BOUND: Final = 65_536

_SESSION, _ERROR, _REPLY = range(3)
_Record = tuple[list["Tally"], int, int]
"""The tallies, the kind of record, and for a reply its latency's bucket."""


def bucket(seconds: float) -> int:
    """The histogram bucket a latency falls in."""
    if seconds <= SMALLEST:
        return 0
    return min(int(math.log2(seconds / SMALLEST) * BUCKETS_PER_OCTAVE), BUCKETS - 1)


class Histogram:
    """Counts of latencies in logarithmic buckets; a fixed-size list, never a sample list."""

    def __init__(self) -> None:
        self.counts = [0] * BUCKETS
        self.total = 0

    def add(self, seconds: float) -> None:
        self.counts[bucket(seconds)] += 1
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
        self._record((tallies, _SESSION, 0))
        return Meter(self, tallies, on_loop=layers.session)

    def _record(self, record: _Record, on_loop: bool | None = None) -> None:
        """`on_loop`: whether the caller runs on the event loop, if it knows."""
        if on_loop is None:
            # A getpid() system call on 3.11 and 3.12, so meters say instead.
            on_loop = crossing.running_loop() is not None
        lock = self._lock
        if lock.acquire(blocking=not on_loop):
            try:
                if self._pending:
                    self._add_pending()
                self._add_one(record)
            finally:
                lock.release()
        elif len(self._pending) < PENDING_BOUND:
            self._pending.append(record)
        else:
            self.dropped += 1

    def _add_pending(self) -> None:
        """With the lock held: add up the records the loop left waiting."""
        while self._pending:
            self._add_one(self._pending.popleft())

    def _add_one(self, record: _Record) -> None:
        tallies, kind, index = record
        for tally in tallies:
            if kind == _REPLY:
                latency = tally.latency
                latency.counts[index] += 1
                latency.total += 1
            elif kind == _SESSION:
                tally.sessions += 1
            else:
                tally.errors += 1

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
    """One session's recorder: times each reply from the line that asked for it.

    The session calls `replied` after each reply it sent (its `timed` hook), so a line
    passes through no wrapper of the meter's on its way from the socket to the core.
    """

    __slots__ = ("_on_loop", "_stats", "_tallies")

    def __init__(self, stats: FlavourStats, tallies: list[Tally], on_loop: bool) -> None:
        self._stats = stats
        self._tallies = tallies
        self._on_loop = on_loop  # an asyncio session runs on the loop's thread, always

    def replied(self, asked: float, line: str) -> None:
        """A reply was sent to the line received at perf_counter() `asked` (0.0: none)."""
        if asked:
            index = bucket(time.perf_counter() - asked)
            self._stats._record((self._tallies, _REPLY, index), self._on_loop)
        if line.startswith(ERROR_PREFIX):
            self._stats._record((self._tallies, _ERROR, 0), self._on_loop)

    def failed(self) -> None:
        """The session failed; called from wherever the failure surfaced."""
        self._stats._record((self._tallies, _ERROR, 0))
