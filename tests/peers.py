"""Peers that misbehave, and ways to wait for a server to notice them.

Tests synchronise on what a server does - a reply, a close, a session released, a log
record - never on sleeps. `eventually` polls such an observable fact with a deadline,
so a server that never gets there fails the test with a sentence instead of hanging.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from guessgame.config import Layers
from guessgame.live.host import ServerHost
from timing import UNIT
from wire import Wire

CONFIG = Path(__file__).resolve().parent.parent / "guessgame.toml"

DEADLINE = 2 * UNIT
"""How long a server may take to do something it should do at once; only a hang hits it."""

POLL = 0.002

SHUTDOWN_LIMIT = 2.0
"""Seconds a serve process may take to exit after SIGINT or SIGTERM."""

PIPE_BYTES = 4096
"""The smallest pipe Linux makes: a few dozen log records fill it."""

PROBE = ("PARAMS 1 1", "NUMBER", "REPORT CORRECT")
PROBE_REPLY = ["1"]
"""A one-number game that any live session answers with exactly PROBE_REPLY, and that
leaves the session between games."""


def eventually(predicate: Callable[[], bool], what: str | Callable[[], str],
               deadline: float = DEADLINE) -> None:
    """Wait until `predicate()` holds; fail naming `what` if it does not by the deadline."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            described = what() if callable(what) else what
            raise AssertionError(f"timed out after {deadline:g} s waiting for {described}")
        time.sleep(POLL)


def layers_arg(layers: Layers) -> str:
    """The --async value that selects `layers`."""
    return ",".join(layers.names) or "none"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def thread_names() -> list[str]:
    return sorted(thread.name for thread in threading.enumerate())


def is_idle_session_thread(name: str) -> bool:
    """One of a threaded server's session threads, waiting between peers (`session_N`;
    while it serves it is named `session <peer>`)."""
    return re.fullmatch(r"session_\d+", name) is not None


class Peer(Wire):
    """A raw line client that can also misbehave: dribble bytes, half-close, reset."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        super().__init__(port, host)
        # Dribbled bytes must leave one at a time, not wait to be coalesced.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @classmethod
    def to(cls, server: ServerHost) -> Peer:
        return cls(server.port)

    def exchange(self, lines: Iterable[str | bytes]) -> list[str]:
        """Send each line; read one reply for each line that gets one (NUMBER, or an error
        the caller marks by passing bytes)."""
        replies = []
        for line in lines:
            self.send(line)
            if line == "NUMBER" or isinstance(line, bytes):
                replies.append(self.line())
        return replies

    def probe(self) -> list[str]:
        """A session that still works answers a one-number game."""
        return self.exchange(PROBE)

    def dribble(self, data: bytes) -> None:
        """Send `data` one byte per segment."""
        for index in range(len(data)):
            self.sock.sendall(data[index:index + 1])

    def read_all(self) -> bytes:
        """Everything the server sends until it closes; a reset after the data counts as a
        close (a server closing with our bytes unread resets the connection)."""
        chunks = []
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def trickle(self, data: bytes, every: float) -> tuple[bytes, float]:
        """Send `data` over and over, one byte every `every` seconds, never a whole line,
        until the server closes: what it sent, and the seconds from the first byte.

        Each pause is a wait for the server to speak, so its close ends the trickle at once.
        """
        started = time.monotonic()
        for index in range(int(DEADLINE / every)):
            self.sock.sendall(data[index % len(data):][:1])
            readable, _, _ = select.select([self.sock], [], [], every)
            if readable:
                return self.read_all(), time.monotonic() - started
        raise AssertionError(f"the server kept a trickling peer for {DEADLINE:g} s")

    def half_close(self) -> None:
        """Tell the server no more bytes are coming, and still read what it sends."""
        self.sock.shutdown(socket.SHUT_WR)

    def reset(self) -> None:
        """Vanish abruptly: close with a TCP reset instead of an orderly FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()


@contextmanager
def peers(server: ServerHost, count: int) -> Iterator[list[Peer]]:
    opened: list[Peer] = []
    try:
        for _ in range(count):
            opened.append(Peer.to(server))
        yield opened
    finally:
        for peer in opened:
            peer.close()


def wait_until_idle(server: ServerHost, what: str = "every session to end") -> None:
    eventually(lambda: server.open_sessions == 0, what)


@contextmanager
def one_connection_server(handle: Callable[[socket.socket], None], name: str) -> Iterator[int]:
    """A server in a thread of the test that serves one connection with `handle`;
    yields its port, and joins the thread on exit."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(DEADLINE)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except TimeoutError:  # the client under test never came
            return
        with conn:
            conn.settimeout(DEADLINE)
            handle(conn)

    thread = threading.Thread(target=serve, name=name)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join()
        listener.close()


def play_rounds(port: int, rounds: int) -> None:
    """One client playing `rounds` rounds as fast as the server answers, many in flight."""
    per_game, in_flight = 100, 200
    with Peer(port) as peer:
        played = 0
        while played < rounds:
            lines = []
            for number in range(played, played + in_flight):
                if number % per_game == 0:
                    lines.append(b"PARAMS 1 1000000000\n")
                lines.append(b"NUMBER\nREPORT UNSURE\n")
            peer.sock.sendall(b"".join(lines))
            for _ in range(in_flight):
                assert peer.line().isdigit()
            played += in_flight


def stop_and_time(server: subprocess.Popen[bytes], signum: int) -> tuple[int, float]:
    """Send `signum`; the exit code, and how long the server took to exit."""
    started = time.monotonic()
    server.send_signal(signum)
    code = server.wait(timeout=SHUTDOWN_LIMIT + 1)
    return code, time.monotonic() - started


def serve_unread(*options: str) -> tuple[subprocess.Popen[bytes], int]:
    """`guessgame serve` with `options`, whose stdout and stderr are the smallest pipes
    Linux makes and are never read past the `listening on` line; the process and its
    port. The caller stops it."""
    server = subprocess.Popen(
        [sys.executable, "-m", "guessgame", "serve", "--port", "0", "--config", str(CONFIG),
         *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert server.stdout is not None and server.stderr is not None
    for pipe in (server.stdout, server.stderr):
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    first = server.stdout.readline().decode()  # and never another byte of either
    return server, int(first.rsplit(":", 1)[1])
