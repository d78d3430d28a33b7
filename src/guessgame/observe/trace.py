"""An optional trace of what runs where: one record per layer call and bridge crossing.

Each record holds a monotonic timestamp, the thread name, the task name (or `-`), the
session id (or `-`), the layer and the event. Call sites check `trace.enabled` first,
so with tracing off nothing is formatted or collected on the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Final, NamedTuple, TextIO

from guessgame import crossing, outputs

enabled = False

SESSION_ID: ContextVar[str] = ContextVar("session_id", default="-")
"""The id of the session the current code works for, carried across every bridge.

Server sessions are `s1`, `s2`...; a client's side of its game is `client`; code that
works for no session (the acceptor, starting and stopping the server) shows `-`.
"""

CLIENT_ID: Final = "client"


@contextlib.contextmanager
def session(session_id: str) -> Iterator[None]:
    """Run a block, in a thread or a task, on behalf of `session_id`."""
    token = SESSION_ID.set(session_id)
    try:
        yield
    finally:
        SESSION_ID.reset(token)


class Record(NamedTuple):
    time: float
    thread: str
    task: str
    session: str
    layer: str
    event: str
    flow: int = 0  # a crossing's number, shared by the records that send and take it
    arrives: bool = False  # this record takes the crossing `flow` (else it sends it)

    def line(self) -> str:
        return "\t".join((f"{self.time:.6f}", self.thread, self.task, self.session,
                          self.layer, self.event))


Sink = Callable[[Record], None]
_sinks: list[Sink] = []
_flow_sinks: list[Sink] = []
_flushes: list[Callable[[], None]] = []
_lock = threading.Lock()


def _task_name() -> str:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no loop runs in this thread
        return "-"
    return task.get_name() if task is not None else "-"


class Here(NamedTuple):
    thread: str
    task: str
    session: str


def here() -> Here:
    """Which thread, task and session the calling code runs in: at a breakpoint, try
    `p __import__("guessgame.observe.trace").observe.trace.here()` (or a debugger's watch on it)."""
    return Here(threading.current_thread().name, _task_name(), SESSION_ID.get())


def event(layer: str, what: str, flow: int = 0) -> None:
    _send(_sinks, layer, what, flow, arrives=False)
    for flush in _flushes:  # never a write with the lock held: see StreamSink
        flush()


def _send(sinks: list[Sink], layer: str, what: str, flow: int, *, arrives: bool) -> None:
    where = here()
    with _lock:  # stamped under the lock, so that every sink sees times in order
        record = Record(time.monotonic(), *where, layer, what, flow, arrives)
        for sink in sinks:
            sink(record)


class _Crossings(crossing.Observer):
    """While a sink is attached: a line where each crossing is sent, and, for sinks that
    draw arrows (the timeline), a record where it is taken, bound to it by `flow`."""

    def sent(self, seen: crossing.Crossing) -> None:
        event("bridge", _described(seen), seen.number)

    def taken(self, seen: crossing.Crossing) -> None:
        _send(_flow_sinks, "bridge", _described(seen), seen.number, arrives=True)


def _described(seen: crossing.Crossing) -> str:
    return f"{seen.bridge} {seen.direction} {seen.what}"


_CROSSINGS = _Crossings()


def add_sink(sink: Sink, flows: bool = False) -> None:
    """Send every record to `sink`; with `flows`, also the records that only draw arrows."""
    global enabled
    with _lock:
        _sinks.append(sink)
        if flows:
            _flow_sinks.append(sink)
        if isinstance(sink, StreamSink):
            _flushes.append(sink.flush)
        enabled = True
    crossing.attach(_CROSSINGS)


def remove_sink(sink: Sink) -> None:
    global enabled
    with _lock:
        _sinks.remove(sink)
        if sink in _flow_sinks:
            _flow_sinks.remove(sink)
        if isinstance(sink, StreamSink):
            _flushes.remove(sink.flush)
        enabled = bool(_sinks)
    if not enabled:
        crossing.detach(_CROSSINGS)


class StreamSink:
    """Trace lines on stderr, or on `stream` if given.

    The process's own stderr takes them through its spool (outputs.py): a sink runs
    under the trace's lock, from the loop and from every thread, so it only adds the
    line, and `event()` flushes the spool once the lock is released. A stderr nobody
    reads then costs trace lines, counted, never a wait. Any other stream (a test's
    capture, a redirection) is written as is.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def __call__(self, record: Record) -> None:
        if self._stream is None and outputs.stderr_is_ours():
            outputs.stderr().add((record.line() + "\n").encode(errors="replace"))
            return
        out = self._stream or sys.stderr  # looked up late so that redirections apply
        out.write(record.line() + "\n")
        out.flush()

    def flush(self) -> None:
        if self._stream is None and outputs.stderr_is_ours():
            outputs.stderr().flush()


def stream_sink(stream: TextIO | None = None) -> StreamSink:
    return StreamSink(stream)
