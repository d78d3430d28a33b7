"""Where the transcript goes: an output that takes what it can now and never blocks.

A reader that stops reading (a pager, a stalled log shipper, a terminal on Ctrl-S)
must not stop the games, so the report printer writes through an `Output`:
`write_some()` takes as many bytes as fit without waiting, and `fileno()` tells what to
wait on for room, if anything.

- A pipe or a terminal is reopened through /proc/self/fd with O_NONBLOCK. Setting
  O_NONBLOCK on stdout itself would change the open file description it shares with
  stderr, the shell and anything else printing to it, whose blocking writes would then
  fail; a description of our own changes nobody else's. Without /proc (macOS, some
  containers) poll() is asked for room before each write of at most 512 bytes.
- A socket is written with MSG_DONTWAIT, which asks for a non-blocking send per call.
- A regular file is written as is: a file never waits for a reader.
- Anything without a descriptor (a test's list, a StringIO) gets each line as a str.

stderr is shared by the log and the trace, from the loop and from every thread, so its
lines go through one `Spool`: a bounded buffer that whoever adds a line also flushes,
with a lock held only to add or take bytes, never across a write. When the reader is
stuck, lines past SPOOL_BOUND are dropped and counted, and at most once every
DROPS_TOLD_EVERY seconds a line says how many. Bytes a stuck reader left waiting go
out with the next line written, or at exit. The transcript on stdout follows the same
policy with its own bounded queue and printer (reports.py).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import select
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol, TextIO

Write = Callable[[str], None]


class Output(Protocol):
    def fileno(self) -> int | None:
        """What to wait on until write_some() can take more; None if it always can."""

    def write_some(self, data: bytes) -> int:
        """Write what fits now, without blocking; the number of bytes taken."""

    def close(self) -> None: ...


class LinesOutput:
    """Hands each line to a function: for tests and the demo, which keep the lines."""

    def __init__(self, write: Write) -> None:
        self._write = write

    def fileno(self) -> int | None:
        return None

    def write_some(self, data: bytes) -> int:
        for line in data.decode().splitlines():
            self._write(line)
        return len(data)

    def close(self) -> None:
        pass


class FileOutput:
    """A regular file, written as is: a file never waits for a reader."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int | None:
        return None

    def write_some(self, data: bytes) -> int:
        try:
            return os.write(self._fd, data)
        except BrokenPipeError:  # nobody will ever read it: as good as written
            return len(data)

    def close(self) -> None:
        pass


class NonBlockingOutput:
    """Our own non-blocking descriptor on the pipe or terminal behind `fd`."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def reopen(cls, fd: int) -> NonBlockingOutput:
        flags = os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        return cls(os.open(f"/proc/self/fd/{fd}", flags))

    def fileno(self) -> int | None:
        return self._fd

    def write_some(self, data: bytes) -> int:
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except BrokenPipeError:  # the reader is gone for good: drop, as `head` expects
            return len(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


class PolledOutput:
    """A pipe or terminal that cannot be reopened non-blocking: poll() says whether it
    has room, and then at most POLLED_CHUNK bytes go. A pipe with room takes a write of
    up to PIPE_BUF bytes (512 at least, by POSIX) whole and at once, and a terminal that
    says it has room has that much, so the write never waits for the reader."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._room = select.poll()  # poll(), not select(): the descriptor may be past 1023
        self._room.register(fd, select.POLLOUT)

    def fileno(self) -> int | None:
        return self._fd

    def write_some(self, data: bytes) -> int:
        if not self._room.poll(0):
            return 0
        try:
            return os.write(self._fd, data[:POLLED_CHUNK])
        except BrokenPipeError:  # the reader is gone for good: drop, as `head` expects
            return len(data)

    def close(self) -> None:
        pass


POLLED_CHUNK = 512
"""Bytes a PolledOutput writes at once: POSIX's least PIPE_BUF."""


class SocketOutput:
    """A socket written with MSG_DONTWAIT, which leaves its flags alone."""

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=os.dup(fd))

    def fileno(self) -> int | None:
        return self._sock.fileno()

    def write_some(self, data: bytes) -> int:
        try:
            return self._sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return 0
        except OSError:  # the reader is gone for good
            return len(data)

    def close(self) -> None:
        self._sock.close()


def for_stream(stream: TextIO) -> Output:
    """An output for `stream` (stdout, say) that never blocks on a reader."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return LinesOutput(lambda line: print(line, file=stream, flush=True))
    stream.flush()  # what was printed before comes first
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        return FileOutput(fd)
    if stat.S_ISSOCK(mode):
        return SocketOutput(fd)
    try:
        return NonBlockingOutput.reopen(fd)
    except OSError:  # no /proc (macOS, some containers), or a FIFO with no reader yet
        return PolledOutput(fd)


SPOOL_BOUND = 64 * 1024
"""Bytes waiting for a stuck stderr: as much again as a pipe holds, some 600 trace lines."""

DROPS_TOLD_EVERY = 5.0
"""Seconds between two lines that say how many lines a stuck reader cost."""

RETRY_AFTER = 0.01
"""Once the reader is stuck, seconds before a new line tries the descriptor again: a
system call per trace record would be paid by the loop and every thread."""

EXIT_FLUSH = 0.2
"""At exit, seconds spent waiting for room for what is still waiting; then it is lost."""


class Spool:
    """Lines for one output from any thread or the loop; nobody ever waits for its reader."""

    def __init__(self, out: Output, name: str, bound: int = SPOOL_BOUND) -> None:
        self._out = out
        self._name = name
        self._bound = bound
        self._lock = threading.Lock()
        self._waiting = bytearray()
        self._writing = 0  # bytes taken out by the one writer, not yet written
        self._retry_at = 0.0
        self._dropped = 0
        self._told = 0
        self._told_at = -math.inf

    @property
    def dropped(self) -> int:
        return self._dropped

    def add(self, data: bytes) -> None:
        """Keep `data` to be written, or drop and count it if the bound is reached.

        No I/O: safe to call with another lock held (the trace's)."""
        with self._lock:
            if len(self._waiting) + self._writing + len(data) > self._bound:
                self._dropped += 1
            else:
                self._waiting += data

    def write(self, data: bytes) -> None:
        self.add(data)
        self.flush()

    def flush(self) -> None:
        """Write what waits, as far as the output takes it now; another thread already
        writing will write it instead."""
        if self._retry_at and time.monotonic() < self._retry_at:
            return
        for _ in range(2):  # then leave what others added meanwhile to them
            with self._lock:
                if self._writing:
                    return
                data = self._drop_notice() + bytes(self._waiting)
                if not data:
                    return
                self._waiting.clear()
                self._writing = len(data)
            taken = 0
            try:
                taken = self._out.write_some(data)
            finally:
                with self._lock:
                    self._waiting[:0] = data[taken:]  # first out, before what came since
                    self._writing = 0
            if taken < len(data):
                self._retry_at = time.monotonic() + RETRY_AFTER
                return
            self._retry_at = 0.0

    def _drop_notice(self) -> bytes:
        untold = self._dropped - self._told
        if not untold or time.monotonic() - self._told_at < DROPS_TOLD_EVERY:
            return b""
        self._told, self._told_at = self._dropped, time.monotonic()
        return f"guessgame: {untold} lines dropped: {self._name} is not keeping up\n".encode()

    def flush_at_exit(self) -> None:
        """Write what waits, waiting EXIT_FLUSH seconds at most for the reader."""
        deadline = time.monotonic() + EXIT_FLUSH
        self._told_at = -math.inf  # a last count of the losses, whenever the last was
        while True:
            self._retry_at = 0.0
            self.flush()
            left = deadline - time.monotonic()
            fd = self._out.fileno()
            if not self._waiting or left <= 0 or fd is None:
                return
            waiting = select.poll()  # not select(): the descriptor may be past 1023
            waiting.register(fd, select.POLLOUT)
            waiting.poll(left * 1000)


_STDERR: Spool | None = None


def stderr() -> Spool:
    """The process's one spool on its own stderr, made on first use."""
    global _STDERR
    if _STDERR is None:
        assert sys.__stderr__ is not None
        _STDERR = Spool(for_stream(sys.__stderr__), "stderr")
    return _STDERR


def stderr_is_ours() -> bool:
    """False while sys.stderr is redirected (a test's capture, say): write to that as is."""
    return sys.stderr is sys.__stderr__ and sys.stderr is not None


def write_stderr(text: str) -> None:
    """A report (the wait graph, a blocked loop) to the process's stderr through its
    spool, which never blocks, so any thread may write one, the loop's included; to
    whatever replaces sys.stderr (a test's capture) as is."""
    if stderr_is_ours():
        stderr().write(text.encode(errors="replace"))
    else:
        sys.stderr.write(text)
        sys.stderr.flush()


def flush_stderr_at_exit() -> None:
    if _STDERR is not None:
        _STDERR.flush_at_exit()


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log records to whatever sys.stderr is at the time of each record, not at creation.

    The process's own stderr is written through its spool: sessions log their farewells
    from the event loop, and a stderr nobody reads must not stop it. Anything else (a
    test's capture) is written as usual.
    """

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        if not stderr_is_ours():
            super().emit(record)
            return
        try:
            stderr().write((self.format(record) + "\n").encode(errors="replace"))
        except Exception:  # as logging.Handler does: a failing handler must not raise
            self.handleError(record)
