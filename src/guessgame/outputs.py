"""Where the transcript goes: an output that takes what it can now and never blocks.

A reader that stops reading (a pager, a stalled log shipper, a terminal on Ctrl-S)
must not stop the games, so the report printer writes through an `Output`:
`write_some()` takes as many bytes as fit without waiting, and `fileno()` tells what to
wait on for room, if anything.

- A pipe or a terminal is reopened through /proc/self/fd with O_NONBLOCK. Setting
  O_NONBLOCK on stdout itself would change the open file description it shares with
  stderr, the shell and anything else printing to it, whose blocking writes would then
  fail; a description of our own changes nobody else's.
- A socket is written with MSG_DONTWAIT, which asks for a non-blocking send per call.
- A regular file is written as is: a file never waits for a reader.
- Anything without a descriptor (a test's list, a StringIO) gets each line as a str.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import stat
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
    """A descriptor written as is: a regular file, or the last resort."""

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
    except OSError:  # no /proc, or a FIFO with no reader yet: write it as is
        return FileOutput(fd)
