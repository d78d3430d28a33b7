"""A `guessgame serve` process to reload: its config file, its signals, its log lines.

Tests wait on what the server says (a log line, a statistics table) or does (a thread
count in /proc), each with a deadline; never on a sleep.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from peers import CONFIG, DEADLINE, eventually

NEVER_ON_STDERR = ("Traceback", "Task was destroyed", "Exception ignored", "ResourceWarning")


def config_text(stage: str, rollout: str | None = None) -> str:
    """The repository's config at `stage`, with `rollout = {...}` beside it if given.

    Idle worker threads, the threaded server's session threads among them, retire after
    0.5 s instead of 10, so that a test sees a drained server back at a fresh start's
    shape within its wait."""
    text = re.sub(r'^stage = ".*"$', f'stage = "{stage}"', CONFIG.read_text(), flags=re.M)
    text = re.sub(r"^worker_idle_timeout = \S+", "worker_idle_timeout = 0.5", text, flags=re.M)
    if rollout is not None:
        text = text.replace("[guessgame]\n", f"[guessgame]\nrollout = {rollout}\n", 1)
    return text


def stage_line(old: str, new: str) -> str:
    """The log line a reload from stage `old` to `new` of the repository's config prints."""
    from guessgame import config

    settings = config.load(str(CONFIG), new)
    return f"guessgame: stage {old} -> {new} ({settings.describe_layers()})"


class Flavours:
    """One SIGUSR2 table: (layer, flavour) -> sessions, errors, replies, p50, p99."""

    ROW = re.compile(r"guessgame: (connection|session|server)\s+\|(.*)")

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.rows: dict[tuple[str, str], list[str]] = {}
        for line in lines:
            match = self.ROW.fullmatch(line)
            if match:
                threads, aio = match.group(2).split("|")
                self.rows[match.group(1), "threads"] = threads.split()
                self.rows[match.group(1), "asyncio"] = aio.split()

    def sessions(self, layer: str, flavour: str) -> int:
        return int(self.rows[layer, flavour][0])

    def errors(self, layer: str, flavour: str) -> int:
        return int(self.rows[layer, flavour][1])

    def replies(self, layer: str, flavour: str) -> int:
        return int(self.rows[layer, flavour][2])

    def latency(self, layer: str, flavour: str) -> tuple[str, str]:
        row = self.rows[layer, flavour]
        return row[3], row[4]


class Shape(NamedTuple):
    threads: int
    descriptors: dict[str, int]


class LiveServe:
    """A serve process whose stderr and stdout are read as they come."""

    def __init__(self, config: Path, *options: str) -> None:
        self.config = config
        self.process = subprocess.Popen(
            [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-m", "guessgame",
             "serve", "--port", "0", "--config", str(config), *options],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=os.environ | {"PYTHONWARNINGS": "error::ResourceWarning"},
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        first = self.process.stdout.readline()
        assert first.startswith("listening on "), first + self.process.stderr.read()
        self.port = int(first.rsplit(":", 1)[1])
        self.err: list[str] = []
        self.out: list[str] = []
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stderr, self.err),
                             name="serve stderr"),
            threading.Thread(target=self._read, args=(self.process.stdout, self.out),
                             name="serve stdout"),
        ]
        for reader in self._readers:
            reader.start()
        # The line logged before serving began, so later waits count only what follows.
        self.wait_for_line(lambda line: line.startswith("guessgame: config "), "the config line")

    def _read(self, stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._lock:
                into.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.process.pid

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def shape(self) -> Shape:
        """Its threads, and its descriptors by kind: an event loop shows as one more
        epoll and a self-pipe, a leaked connection as one more socket."""
        kinds: Counter[str] = Counter()
        directory = f"/proc/{self.pid}/fd"
        for fd in os.listdir(directory):
            try:
                target = os.readlink(f"{directory}/{fd}")
            except FileNotFoundError:  # closed while we looked
                continue
            kinds[target.split(":")[0] if target.startswith(("socket:", "pipe:"))
                  else target] += 1
        return Shape(self.threads(), dict(kinds))

    def settled_shape(self) -> Shape:
        """The shape once two looks a poll apart agree: a thread that ends with the call
        that started the first server may still be leaving when the address is out."""
        last = [self.shape()]

        def settled() -> bool:
            now = self.shape()
            same, last[0] = now == last[0], now
            return same

        eventually(settled, "the server's threads and descriptors to settle")
        return last[0]

    def wait_for_shape(self, expected: Shape, why: str) -> None:
        eventually(lambda: self.shape() == expected,
                   lambda: f"{expected} {why}; the server has {self.shape()}")

    def log(self) -> list[str]:
        """The server's own lines on stderr, not those of a session (`guessgame s1: ...`)."""
        with self._lock:
            return [line for line in self.err if line.startswith("guessgame: ")]

    def wait_for_line(self, wanted: Callable[[str], bool], what: str, after: int = 0) -> str:
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in self.log()[after:] if wanted(line)]
            return bool(found)

        eventually(seen, lambda: f"{what}; stderr so far:\n" + "\n".join(self.err))
        return found[0]

    def reload(self, text: str) -> list[str]:
        """Write the config, send SIGHUP, and return the server's lines that followed,
        up to and including its answer: a `stage ... -> ...` line or an error."""
        before = len(self.log())
        self.config.write_text(text)
        self.process.send_signal(signal.SIGHUP)
        self.wait_for_line(lambda line: line.startswith("guessgame: stage ")
                           or str(self.config) in line, "the answer to SIGHUP", before)
        return self.log()[before:]

    def flavours(self) -> Flavours:
        before = len(self.log())
        self.process.send_signal(signal.SIGUSR2)
        self.wait_for_line(lambda line: line.startswith("guessgame: server "),
                           "the flavour table", before)
        return Flavours(self.log()[before:])

    def wait_for_threads(self, expected: int, why: str) -> None:
        eventually(lambda: self.threads() == expected,
                   lambda: f"{expected} threads {why}; the server has {self.threads()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=DEADLINE)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            for reader in self._readers:
                reader.join()
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()
        return code

    def stderr_problems(self) -> list[str]:
        return [line for line in self.err if any(word in line for word in NEVER_ON_STDERR)]


@contextmanager
def live_serve(config: Path, text: str, *options: str) -> Iterator[LiveServe]:
    config.write_text(text)
    server = LiveServe(config, *options)
    try:
        yield server
    finally:
        code = server.stop()
        assert code == 0, "\n".join(server.err)
        assert server.stderr_problems() == [], "\n".join(server.err)


def fresh_shape(tmp: Path, stage: str, *options: str) -> Shape:
    """Threads and descriptors of a serve process just started at `stage`: it announces
    its address once its first server has started everything it starts by itself."""
    with live_serve(tmp / f"fresh-{stage}.toml", config_text(stage), *options) as fresh:
        return fresh.settled_shape()
