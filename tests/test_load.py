"""Load held as a production server must hold it, at every stage: a burst of arrivals
that play at once, a stdout nobody reads, and worker threads that go away afterwards.

Sized to stay fast: 200 arrivals and a worker_idle_timeout of 0.5 s here; the bench
(`guessgame bench`, docs/performance.md) measures 1000 and 10,000.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import pytest

from guessgame.config import Layers, Settings
from guessgame.live.host import serving
from peers import (
    CONFIG,
    SHUTDOWN_LIMIT,
    Peer,
    eventually,
    layers_arg,
    play_rounds,
    serve_unread,
    stop_and_time,
)
from timing import UNIT

ARRIVALS = 200
FIRST_REPLY_LIMIT = 2.0
"""Seconds from a client's connect() to its first reply, for every client of a burst."""
WORKER_IDLE_TIMEOUT = 0.5
RETIRE_MARGIN = UNIT
PLAY = b"REPORT UNSURE\nNUMBER\n"


@dataclass
class Arrival:
    """One client of the burst: a plain non-blocking socket that plays as fast as the
    server answers, as a load generator would."""

    sock: socket.socket
    connected_at: float
    first_reply: float | None = None
    buffer: bytes = field(default=b"")


def burst(port: int, count: int) -> list[Arrival]:
    """`count` clients connect at once, each sending its first NUMBER with no wait;
    each keeps playing until all have had their first reply (or the limit passed)."""
    arrivals: list[Arrival] = []
    with selectors.DefaultSelector() as selector:
        try:
            for _ in range(count):
                sock = socket.socket()
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                arrival = Arrival(sock, time.monotonic())
                arrivals.append(arrival)
                sock.connect(("127.0.0.1", port))
                sock.sendall(b"PARAMS 1 1000000000\nNUMBER\n")
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ, arrival)
            end = time.monotonic() + FIRST_REPLY_LIMIT * 2
            waiting = count
            while waiting and time.monotonic() < end:
                for key, _ in selector.select(0.1):
                    one: Arrival = key.data
                    data = one.sock.recv(4096)
                    assert data, "the server closed a connection in the middle of a game"
                    one.buffer += data
                    replies = one.buffer.count(b"\n")
                    one.buffer = one.buffer.rpartition(b"\n")[2]
                    if replies and one.first_reply is None:
                        one.first_reply = time.monotonic() - one.connected_at
                        waiting -= 1
                    for _ in range(replies):
                        one.sock.send(PLAY)  # a round is 20 bytes: the buffer takes it
        finally:
            for arrival in arrivals:
                arrival.sock.close()
    return arrivals


def server_threads() -> int:
    return threading.active_count()


def test_a_burst_is_answered_at_once_and_its_threads_retire(settings: Settings) -> None:
    settings = settings.with_options(worker_idle_timeout=WORKER_IDLE_TIMEOUT,
                                     max_connections=ARRIVALS + 16)
    with serving(settings) as server:
        idle = server_threads()
        arrivals = burst(server.port, ARRIVALS)
        unanswered = sum(arrival.first_reply is None for arrival in arrivals)
        slowest = max(arrival.first_reply or float("inf") for arrival in arrivals)
        assert unanswered == 0, f"{unanswered} of {ARRIVALS} clients never got a reply"
        assert slowest < FIRST_REPLY_LIMIT, f"the slowest first reply took {slowest:.2f} s"
        # Every session ends, then every worker it used waits out its idle timeout.
        eventually(lambda: server_threads() <= idle,
                   lambda: f"threads back to {idle}, still {server_threads()}: "
                           f"{sorted(t.name for t in threading.enumerate())[:8]}",
                   deadline=WORKER_IDLE_TIMEOUT + RETIRE_MARGIN)


# --- a stdout nobody reads -----------------------------------------------------------


def test_a_stdout_nobody_reads_blocks_no_game_and_no_stop(layers: Layers) -> None:
    """`serve` never runs the client layer, so the 16 combinations are 8 servers twice:
    each server takes SIGINT once and SIGTERM once."""
    signum = signal.SIGINT if layers.client else signal.SIGTERM
    with tempfile.TemporaryFile() as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "guessgame", "serve", "--port", "0", "--config",
             str(CONFIG), "--async", layers_arg(layers)],
            stdout=subprocess.PIPE, stderr=stderr, env=os.environ)
        try:
            assert server.stdout is not None
            first = server.stdout.readline().decode()  # and never another byte
            assert first.startswith("listening on "), first
            port = int(first.rsplit(":", 1)[1])
            # More than the pipe and the report queue hold together.
            play_rounds(port, 12_500)

            def drops_logged() -> bool:
                stderr.seek(0)
                return b"reports dropped: stdout is not keeping up" in stderr.read()

            eventually(drops_logged, "the warning that reports are being dropped")
            with Peer(port) as newcomer:
                assert newcomer.probe() == ["1"]
            code, took = stop_and_time(server, signum)
        finally:
            if server.poll() is None:  # only after a failed assertion: do not leave it
                server.kill()
                server.wait()
            if server.stdout is not None:
                server.stdout.close()
        stderr.seek(0)
        err = stderr.read().decode(errors="replace")
    assert code == 0, err
    assert took < SHUTDOWN_LIMIT, f"stopping took {took:.2f} s"
    assert "Traceback" not in err, err


# --- a stderr nobody reads either ----------------------------------------------------

@pytest.mark.parametrize("async_layers", ["connection,session", "all"])
def test_a_stderr_nobody_reads_stops_no_loop(async_layers: str) -> None:
    """Sessions log their farewells from the event loop at these two: a stderr (and a
    stdout) that nobody reads must cost log records, never the loop."""
    server, port = serve_unread("--async", async_layers)
    try:
        for _ in range(200):  # a farewell each, far more than the pipe holds
            with Peer(port) as passerby:
                assert passerby.probe() == ["1"]
        with Peer(port) as newcomer:
            assert newcomer.probe() == ["1"]
        code, took = stop_and_time(server, signal.SIGTERM)
    finally:
        if server.poll() is None:  # only after a failed assertion: do not leave it
            server.kill()
        server.communicate()
    assert code == 0
    assert took < SHUTDOWN_LIMIT, f"stopping took {took:.2f} s"
