"""Drives `guessgame debug ...` through its stdin, one command per prompt.

A reader thread collects stdout; each command waits for the next `(Pdb) ` prompt, with a
deadline, and parses where the program stopped: the thread, task and session the
prompt names, and pdb's `> file(line)function()` line.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass

from timing import UNIT

PROMPT = "(Pdb) "
HEADER = re.compile(r"\[thread '([^']*)', task '([^']*)', session '([^']*)'\]")
# The program's own output shares stdout with pdb, so a line it prints may run into the
# location line: "server: new game 1..5> /path(93)put()". The location is found after it.
LOCATION = re.compile(r"(?:^|(?<=\S))> (/\S+?|\S+?\.py|<[^>]+>)\((\d+)\)([\w<>]+)\(\)(->)?",
                      re.MULTILINE)


@dataclass(frozen=True)
class Stop:
    thread: str
    task: str
    session: str
    file: str
    line: int
    function: str
    returning: bool
    text: str  # everything printed since the command

    @property
    def where(self) -> str:
        return (f"{os.path.basename(self.file)}:{self.line} {self.function}() in "
                f"thread {self.thread!r}, task {self.task!r}")


class Debugged:
    def __init__(self, args: list[str], timeout: float = 2 * UNIT,
                 cwd: str | os.PathLike[str] | None = None) -> None:
        self.timeout = timeout
        self.process = subprocess.Popen(
            [sys.executable, "-m", "guessgame", "debug", *args], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, cwd=cwd)
        self._out: list[str] = []
        self._seen = 0
        self._arrived = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="pdb reader")
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while chunk := os.read(fd, 65536):
            with self._arrived:
                self._out.append(chunk.decode(errors="replace"))
                self._arrived.notify_all()
        with self._arrived:
            self._out.append("\0")  # ended
            self._arrived.notify_all()

    def text(self) -> str:
        with self._arrived:
            return "".join(self._out)

    def _wait_for(self, found: re.Pattern[str] | str) -> str:
        """What arrived after the last wait, up to and including `found`."""
        pattern = re.compile(re.escape(found)) if isinstance(found, str) else found
        with self._arrived:
            def ready() -> re.Match[str] | None:
                return pattern.search("".join(self._out), self._seen)

            if not self._arrived.wait_for(lambda: ready() or "\0" in self._out[-1:],
                                          self.timeout):
                raise AssertionError(f"nothing matched {pattern.pattern!r} in {self.timeout} s; "
                                     f"output:\n{''.join(self._out)[-3000:]}")
            match = ready()
            if match is None:
                raise AssertionError(f"the program ended before {pattern.pattern!r}; "
                                     f"output:\n{''.join(self._out)[-3000:]}")
            text = "".join(self._out)[self._seen:match.end()]
            self._seen = match.end()
            return text

    def expect(self, found: re.Pattern[str] | str) -> str:
        return self._wait_for(found)

    def stop(self) -> Stop:
        text = self._wait_for(PROMPT)
        headers = list(HEADER.finditer(text))
        locations = list(LOCATION.finditer(text))
        if not headers or not locations:
            raise AssertionError(f"a prompt without a stop:\n{text}")
        here, at = headers[-1], locations[-1]
        return Stop(*here.groups(), at.group(1), int(at.group(2)), at.group(3),
                    at.group(4) is not None, text)

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def command(self, command: str) -> Stop:
        self.send(command)
        return self.stop()

    def command_until(self, command: str, found: re.Pattern[str]) -> str:
        """What the program printed after `command`, up to `found`."""
        self.send(command)
        return self._wait_for(found)

    def reply(self, command: str) -> str:
        """The output of a command that does not move the program."""
        self.send(command)
        return self._wait_for(PROMPT)

    def finish(self) -> str:
        """`continue` to the end; the whole output."""
        self.send("continue")
        try:
            self.process.wait(self.timeout)
        finally:
            self.close()
        return self.text()

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(self.timeout)
        self._reader.join(self.timeout)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
