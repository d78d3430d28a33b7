"""Out of file descriptors, a server still answers every newcomer: with a game if it
can, else with one ERROR line and a close, never with silence in the backlog. The log
says so in a line or two, not a line per refusal, and once peers leave, newcomers are
served again. At every combination, in a `serve` process limited to 64 descriptors."""

from __future__ import annotations

import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time

from guessgame import protocol
from guessgame.config import Layers
from guessgame.protocol import OutOfDescriptors
from peers import CONFIG, PROBE_REPLY, SHUTDOWN_LIMIT, Peer, eventually, layers_arg, stop_and_time

DESCRIPTORS = 64
PEERS = 100
ANSWER_LIMIT = 2.0
"""Seconds from a peer's connect() to its first line, a guess or an ERROR."""

LIMITED = (
    "import resource, runpy; "
    f"resource.setrlimit(resource.RLIMIT_NOFILE, ({DESCRIPTORS}, {DESCRIPTORS})); "
    "runpy.run_module('guessgame', run_name='__main__')"
)
"""`python -c LIMITED serve ...`: guessgame's command line, with a hard limit it cannot raise."""

REFUSAL = protocol.error_line(OutOfDescriptors())


def first_lines(port: int, count: int) -> tuple[list[socket.socket], list[str], float]:
    """`count` peers each start a game at once; their sockets (still open), each one's
    first line (empty if none came in time), and the slowest answer in seconds."""
    opened: list[socket.socket] = []
    answers: dict[socket.socket, bytes] = {}
    connected: dict[socket.socket, float] = {}
    slowest = 0.0
    with selectors.DefaultSelector() as selector:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_LIMIT)
            connected[sock] = time.monotonic()
            opened.append(sock)
            sock.sendall(b"PARAMS 1 1\nNUMBER\n")
            selector.register(sock, selectors.EVENT_READ)
        end = time.monotonic() + ANSWER_LIMIT
        while len(answers) < count and time.monotonic() < end:
            for key, _ in selector.select(end - time.monotonic()):
                sock = key.fileobj  # type: ignore[assignment]
                try:
                    data = sock.recv(4096)
                except ConnectionResetError:  # refused and closed before our bytes were read
                    data = b""
                answers[sock] = answers.get(sock, b"") + data
                if b"\n" in answers[sock] or not data:
                    selector.unregister(sock)
                    slowest = max(slowest, time.monotonic() - connected[sock])
                    answers.setdefault(sock, b"")
    lines = [answers.get(sock, b"").partition(b"\n")[0].decode() for sock in opened]
    return opened, lines, slowest


def newcomer_is_served(port: int) -> bool:
    try:
        with Peer(port) as newcomer:
            return newcomer.probe() == PROBE_REPLY
    except OSError:  # refused and closed before our last line was sent
        return False


def test_out_of_descriptors_every_peer_is_answered(layers: Layers) -> None:
    signum = signal.SIGINT if layers.client else signal.SIGTERM
    with tempfile.TemporaryFile() as stderr:
        server = subprocess.Popen(
            [sys.executable, "-c", LIMITED, "serve", "--port", "0", "--config", str(CONFIG),
             "--async", layers_arg(layers), "--no-reports"],
            stdout=subprocess.PIPE, stderr=stderr)
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline().decode().rsplit(":", 1)[1])
            opened, lines, slowest = first_lines(port, PEERS)
            for sock in opened:
                sock.close()
            games, refusals = lines.count("1"), lines.count(REFUSAL)
            unanswered = [line for line in lines if line not in ("1", REFUSAL)]
            if not unanswered:
                eventually(lambda: newcomer_is_served(port),
                           "a newcomer served once the peers left")
            code, stopping = stop_and_time(server, signum)
        finally:
            if server.poll() is None:  # only after a failed assertion: do not leave it
                server.kill()
            server.communicate()
        stderr.seek(0)
        err = stderr.read().decode(errors="replace")
    # The server's log goes with every failure: it tells a lost spare from a slow one.
    assert not unanswered, (f"{len(unanswered)} of {PEERS} peers got neither a game nor "
                            f"the ERROR line in {ANSWER_LIMIT} s", unanswered[:5], err)
    assert games and refusals, (games, refusals, err)
    assert slowest < ANSWER_LIMIT, (slowest, err)
    assert code == 0, err
    assert stopping < SHUTDOWN_LIMIT
    told = [line for line in err.splitlines() if "open files" in line]
    assert 1 <= len(told) <= 3, err
    counted = sum(int(count) for count in re.findall(r"refused (\d+) peers", err))
    assert counted >= refusals, err  # the newcomer may have been refused a time or two
    assert "Traceback" not in err, err
