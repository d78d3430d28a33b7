"""Every finished game as one row of a SQLite database: blocking code, with no event loop.

This is the dependency with no async driver. Threaded sessions call `Store.record()`
directly; async sessions reach the same store through the bridge's `run_in_thread` on
a worker pool of its own ("results"), never from the loop's thread, a batch of games
per crossing with `Store.record_all()` (live/recording.py).

sqlite3 binds a connection to the thread that made it, so one writer thread owns the
only connection that writes. `record()` puts the game in a bounded buffer and returns;
the writer takes what the buffer holds every FLUSH_INTERVAL and writes it in one
transaction. One writer rather than a connection per caller: a session thread never
waits on the database, a worker of the async sessions' pool never holds a connection
it would have to close before it retires, and a batch costs one commit, not one per
game. The writer exits once it has been idle for `idle_timeout` seconds and is started
again by the next `record()`.

The file is in WAL mode with `synchronous=NORMAL`: a process killed with SIGKILL loses
at most the games still in the buffer, those ended within the last FLUSH_INTERVAL (and
the write in progress; migration_plan.md has the measured figure); a committed batch
survives. The busy timeout (BUSY_TIMEOUT)
lets two processes write one file by turns.

Policies:

- Buffer full (the database is locked or the disk full for long): `record()` waits
  for room until RECORD_WAIT after the buffer filled, then drops the game and counts
  it (`dropped`); a warning says how many, at most once every DROPS_LOGGED_EVERY
  seconds. So no caller waits longer than RECORD_WAIT, however many queue.
- A failed write (locked past the busy timeout, disk full, I/O error) keeps its games
  in the buffer and is tried again after RETRY_DELAY on a fresh connection; a warning
  says why, at most once every DROPS_LOGGED_EVERY seconds.
- A writer that fails otherwise (a defect) or cannot start says so in one line and
  leaves the games in the buffer; the next `record()` or `flush()` starts another.
- `flush()` waits, up to a bound, until every game recorded so far is written;
  `close()` does the same, then counts what is left as dropped and says so, with the
  drops the warning's throttle held back. A `record()` after `close()` drops the game
  and says the store is closed.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from guessgame.outcomes import Played

log = logging.getLogger("guessgame")

DEFAULT_PATH: Final = "guessgame-results.sqlite3"
"""Where `serve` records, relative to its working directory, unless told otherwise."""
OFF: Final = "none"
"""`--results none`: record nothing."""

SCHEMA_VERSION: Final = 1
COLUMNS: Final = ("peer", "stage", "lower", "upper", "guesses", "outcome", "started_at",
                  "ended_at")
SCHEMA: Final = """
CREATE TABLE games (
    id INTEGER PRIMARY KEY,
    peer TEXT NOT NULL,
    stage TEXT NOT NULL,
    lower INTEGER NOT NULL,
    upper INTEGER NOT NULL,
    guesses INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT NOT NULL
)"""
ROWS_PER_INSERT: Final = 999 // len(COLUMNS)
"""Rows one INSERT statement writes. sqlite3 lets go of the GIL around every statement
it steps, and each time the writer takes it back, a session thread or the event loop
must hand it over and then wait to get it back. So a batch goes in a few multi-row
statements, not a statement per row; 999 is the smallest bound on host parameters any
SQLite has had, so this works with whichever one Python was built against."""
_ROW: Final = f"({', '.join('?' * len(COLUMNS))})"
_values = operator.attrgetter(*COLUMNS)


def insert_statement(rows: int) -> str:
    """The INSERT of `rows` games, with their values as host parameters."""
    return f"INSERT INTO games ({', '.join(COLUMNS)}) VALUES {', '.join([_ROW] * rows)}"


FLUSH_INTERVAL: Final = 0.2
"""Seconds the writer gathers games before it writes them in one transaction."""
BUFFER_BOUND: Final = 10_000
"""Games waiting to be written, at most. When it is full, `record()` waits RECORD_WAIT
for room, then drops the game and counts it."""
RECORD_WAIT: Final = 0.05
"""Seconds `record()` waits for room in a full buffer before it drops the game."""
BUSY_TIMEOUT: Final = 1.0
"""Seconds a write waits for another connection's lock before it fails and is retried."""
RETRY_DELAY: Final = 0.2
"""Seconds between a failed write and the next try."""
STOP_FLUSH: Final = 5.0
"""Seconds `close()` and a reload wait for the buffer to be written."""
DROPS_LOGGED_EVERY: Final = 5.0
WORKERS: Final = 2
"""Workers async sessions reach the store through. A call holds its worker only to
append under the store's lock, or RECORD_WAIT at most while the buffer is full, so a
fixed few serve any number of sessions: a worker per session would start a thread per
session only to wait for that one lock. Two rather than one: while one worker waits
for the lock, the other takes the next call."""
IDLE_TIMEOUT: Final = 10.0
WRITER_NAME: Final = "results writer"


class ResultsError(Exception):
    """A path that cannot hold the results: the CLI prints it in one line and exits 2."""


def utc_now() -> str:
    """The time as the store writes it: ISO 8601, UTC, to the millisecond."""
    return utc_iso(time.time())


def utc_iso(seconds: float) -> str:
    """`seconds` since the epoch as `datetime.isoformat(timespec="milliseconds")` gives
    it in UTC. Two for every game, on the loop's thread at async sessions: the seconds
    are formatted once per second, and only the milliseconds each time."""
    fraction, whole = math.modf(seconds)
    micro = round(fraction * 1_000_000)  # as datetime rounds a float's fraction
    return f"{_utc_second(int(whole) + micro // 1_000_000)}.{micro % 1_000_000 // 1000:03d}+00:00"


@functools.lru_cache(maxsize=1)  # thread-safe: any thread may ask
def _utc_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _connect(path: str, timeout: float = BUSY_TIMEOUT) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        connection.close()
        raise
    return connection


def prepare(path: str) -> None:
    """Make `path` a results database, or say in one line why it cannot be one.

    A missing or empty file gets the schema; an existing database must have it already.
    """
    target = Path(path)
    if target.is_dir():
        raise ResultsError(f"results {path}: is a directory")
    folder = target.parent
    if not folder.is_dir():
        raise ResultsError(f"results {path}: no such directory {str(folder)!r}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ResultsError(f"results {path}: cannot write in {str(folder)!r}")
    if target.exists() and not os.access(target, os.R_OK | os.W_OK):
        raise ResultsError(f"results {path}: cannot read and write the file")
    try:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    except sqlite3.Error as error:
        raise ResultsError(f"results {path}: cannot open or create: {error}") from None
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        _ensure_schema(connection, path)
    except sqlite3.OperationalError as error:  # locked past the busy timeout, read-only...
        raise ResultsError(f"results {path}: cannot use: {error}") from None
    except sqlite3.DatabaseError as error:
        raise ResultsError(f"results {path}: not a results database: {error}") from None
    finally:
        connection.close()


def _ensure_schema(connection: sqlite3.Connection, path: str) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        tables = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if not tables and version == 0:
            connection.execute(SCHEMA)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION or "games" not in tables or _columns(connection) != (
                "id", *COLUMNS):
            raise ResultsError(f"results {path}: the database has another schema "
                               f"(expected table games, version {SCHEMA_VERSION})")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _columns(connection: sqlite3.Connection) -> tuple[str, ...]:
    return tuple(row[1] for row in connection.execute("PRAGMA table_info(games)"))


class Store:
    """The results database of one process: `record()` from any thread, never blocking
    past RECORD_WAIT; one writer thread, started on demand, owns the connection."""

    def __init__(self, path: str, idle_timeout: float = IDLE_TIMEOUT,
                 bound: int = BUFFER_BOUND, flush_interval: float = FLUSH_INTERVAL) -> None:
        """`path` must have passed `prepare()`."""
        self.path = path
        self._idle_timeout = idle_timeout
        self._bound = bound
        self._flush_interval = flush_interval
        self._lock = threading.Condition(threading.Lock())
        self._buffer: collections.deque[Played] = collections.deque()
        self._writer: threading.Thread | None = None
        self._starting = 0  # writers made under the lock, being started outside it
        self._retired: threading.Thread | None = None  # the last writer that exited
        self._hurry = False  # a flush or close waits: write without gathering
        self._full_since: float | None = None  # when the buffer last filled up
        self._closed = False
        self.written = 0
        self.dropped = 0
        self._told_dropped = 0
        self._told_at = -math.inf
        self._failure_told_at = -math.inf

    @classmethod
    def open(cls, path: str, idle_timeout: float = IDLE_TIMEOUT) -> Store:
        prepare(path)
        return cls(path, idle_timeout)

    # --- callers: any thread but the event loop's ------------------------------------

    def record(self, game: Played) -> None:
        """Buffer `game` for the writer; past RECORD_WAIT without room, drop it."""
        self.record_all((game,))

    def record_all(self, games: Sequence[Played]) -> None:
        """Buffer `games`, in order, as `record()` would one by one, in one hold of the
        lock: the batch the loop's sessions hand over in one crossing (live/recording.py)."""
        writer = None
        dropped = 0
        with self._lock:
            for game in games:
                if not self._wait_for_room():
                    dropped += 1
                    continue
                if not self._buffer:  # an idle writer waits for the first game
                    self._lock.notify_all()
                self._buffer.append(game)
            told = 0
            why = "is closed" if self._closed else "is not keeping up"
            if dropped:
                self.dropped += dropped
                told = self._drops_to_tell()
            if len(games) > dropped:
                writer = self._new_writer()
        if writer is not None:
            self._start(writer)
        if told:  # logged outside the lock: a write to stderr may block
            log.warning("results: %d games not recorded: %s %s", told, self.path, why)

    def _wait_for_room(self) -> bool:
        """With the lock held: whether the buffer has room for a game, after waiting
        until RECORD_WAIT past the moment it filled up; False once closed."""
        if len(self._buffer) >= self._bound and self._full_since is None:
            self._full_since = time.monotonic()
        # Measured from when the buffer filled, not from this call: callers queued
        # behind each other (async sessions on the store's two workers) then wait
        # RECORD_WAIT in all, not RECORD_WAIT each.
        deadline = (self._full_since or 0.0) + RECORD_WAIT
        while len(self._buffer) >= self._bound and not self._closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._lock.wait(left)
        return not self._closed and len(self._buffer) < self._bound

    def flush(self, timeout: float = STOP_FLUSH) -> bool:
        """Wait until every game recorded so far is written; False if `timeout` passed
        or the writer stopped first. Games left by a writer that failed get a new one."""
        with self._lock:
            writer = self._new_writer() if self._buffer else None
        if writer is not None:
            self._start(writer)
        with self._lock:
            self._hurry = True
            self._lock.notify_all()
            try:
                self._lock.wait_for(lambda: not self._buffer or self._writer is None, timeout)
                return not self._buffer
            finally:
                self._hurry = False

    def close(self, timeout: float = STOP_FLUSH) -> None:
        """Write what is buffered, for `timeout` seconds at most; count the rest as
        dropped; join the writer; tell the drops not told yet. `record()` drops from
        now on."""
        self.flush(timeout)
        with self._lock:
            # The drops the log's throttle held back: the process may end before it
            # would have told them.
            untold = 0 if self._closed else self.dropped - self._told_dropped
            self._told_dropped += untold
            self._closed = True
            self._lock.notify_all()
            self._lock.wait_for(lambda: not self._starting)  # start() returns promptly
            writers = [self._writer, self._retired]
        if untold:
            log.warning("results: %d games not recorded: %s is not keeping up", untold,
                        self.path)
        for writer in writers:  # one in a write ends it first, within BUSY_TIMEOUT
            if writer is not None:
                writer.join()
        with self._lock:
            lost = len(self._buffer)
            self.dropped += lost
            self._told_dropped += lost
            self._told_at = -math.inf  # the first record() from now on is told at once
            self._buffer.clear()
        if lost:
            log.warning("results: %d games not recorded: %s could not be written in %g s",
                        lost, self.path, timeout)

    def status(self) -> str:
        """One line for SIGUSR2: what was written, what waits, what was dropped."""
        with self._lock:
            waiting = len(self._buffer)
        return (f"results {self.path}: {self.written} games written, {waiting} waiting, "
                f"{self.dropped} dropped")

    def _drops_to_tell(self) -> int:
        """With the lock held: the drops not told yet, if it is time to tell them."""
        if time.monotonic() - self._told_at < DROPS_LOGGED_EVERY:
            return 0
        told, self._told_dropped = self.dropped - self._told_dropped, self.dropped
        self._told_at = time.monotonic()
        return told

    def _new_writer(self) -> threading.Thread | None:
        """With the lock held: a writer for the caller to start once it has released the
        lock (Thread.start() waits for the new thread to run), if none runs."""
        if self._writer is not None or self._closed:
            return None
        self._writer = threading.Thread(target=self._write_loop, name=WRITER_NAME)
        self._starting += 1
        return self._writer

    def _start(self, writer: threading.Thread) -> None:
        """Start the writer `_new_writer()` made. If no thread can start, the games wait
        in the buffer for the next `record()` or `flush()` to try again."""
        started = False
        try:
            writer.start()
            started = True
        except RuntimeError as error:  # "can't start new thread"
            failure = error
        finally:
            with self._lock:
                self._starting -= 1
                if not started and self._writer is writer:
                    self._writer = None
                waiting = len(self._buffer)
                self._lock.notify_all()
        if not started:
            log.warning("results: cannot start the writer of %s: %s; %d games wait",
                        self.path, failure, waiting)

    # --- the writer thread -----------------------------------------------------------

    def _write_loop(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while (batch := self._next_batch()) is not None:
                if connection is None:
                    connection = self._open_for_writing()
                if connection is not None and self._write(connection, batch):
                    continue
                if connection is not None:  # start afresh after a failure
                    connection.close()
                    connection = None
                self._pause(RETRY_DELAY)
        except Exception as error:  # a defect, not the database: the games stay buffered
            self._tell_failure(f"unexpected {type(error).__name__}: {error}")
        finally:
            if connection is not None:
                connection.close()
            with self._lock:
                if self._writer is threading.current_thread():  # an exception's way out
                    self._retire()

    def _next_batch(self) -> list[Played] | None:
        """The games to write next, after gathering for the flush interval; None when
        the writer should exit (closed, or idle for idle_timeout)."""
        with self._lock:
            if self._lock.wait_for(lambda: self._buffer or self._closed, self._idle_timeout):
                if not self._hurry:
                    self._lock.wait_for(lambda: self._hurry or self._closed,
                                        self._flush_interval)
                if not self._closed:
                    return list(self._buffer)
            self._retire()  # in the same hold of the lock as the decision to exit
            return None

    def _retire(self) -> None:
        """With the lock held: a `record()` or `flush()` from now on starts another
        writer; `close()` joins this one; a `flush()` waiting for it stops waiting."""
        self._writer, self._retired = None, threading.current_thread()
        self._lock.notify_all()

    def _pause(self, seconds: float) -> None:
        with self._lock:
            self._lock.wait_for(lambda: self._closed, seconds)

    def _open_for_writing(self) -> sqlite3.Connection | None:
        try:
            return self._connect()
        except sqlite3.Error as error:
            self._tell_failure(str(error))
            return None

    def _connect(self) -> sqlite3.Connection:
        """The writer's connection, made in the writer's thread, the only one to use it."""
        return _connect(self.path)

    def _write(self, connection: sqlite3.Connection, batch: list[Played]) -> bool:
        """Write `batch` in one transaction, then take it off the buffer; False if the
        write failed, leaving the batch buffered."""
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(batch), ROWS_PER_INSERT):
                    chunk = batch[start:start + ROWS_PER_INSERT]
                    connection.execute(insert_statement(len(chunk)),
                                       [value for game in chunk for value in _values(game)])
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            self._tell_failure(str(error))
            return False
        with self._lock:
            for _ in batch:  # record() appends on the right only; these are the oldest
                self._buffer.popleft()
            self.written += len(batch)
            self._full_since = None
            self._lock.notify_all()
        return True

    def _tell_failure(self, why: str) -> None:
        now = time.monotonic()
        if now - self._failure_told_at >= DROPS_LOGGED_EVERY:
            self._failure_told_at = now
            with self._lock:
                waiting = len(self._buffer)
            log.warning("results: cannot write to %s: %s; %d games wait", self.path, why,
                        waiting)


# --- reading: `guessgame results` ------------------------------------------------------


@dataclass(frozen=True)
class StageSummary:
    stage: str
    games: int
    correct: int
    mean_guesses: float


def read(path: str, last: int = 10) -> tuple[list[StageSummary], list[Played]]:
    """Per stage, the games, how many CORRECT and the mean guesses; then the last games,
    newest first. A missing or unreadable database raises ResultsError."""
    if not Path(path).is_file():
        raise ResultsError(f"results {path}: no such file")
    try:  # the file exists, so connecting creates nothing
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT)
    except sqlite3.Error as error:
        raise ResultsError(f"results {path}: cannot open: {error}") from None
    try:
        if _columns(connection) != ("id", *COLUMNS):
            raise ResultsError(f"results {path}: not a results database (no games table)")
        stages = [StageSummary(*row) for row in connection.execute(
            "SELECT stage, COUNT(*), SUM(outcome = 'CORRECT'), AVG(guesses) FROM games "
            "GROUP BY stage ORDER BY MIN(id)")]
        rows: list[Any] = connection.execute(
            f"SELECT {', '.join(COLUMNS)} FROM games ORDER BY id DESC LIMIT ?", (last,)
        ).fetchall()
        return stages, [Played(*row) for row in rows]
    except sqlite3.DatabaseError as error:
        raise ResultsError(f"results {path}: not a results database: {error}") from None
    finally:
        connection.close()
