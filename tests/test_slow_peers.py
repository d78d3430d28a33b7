"""A peer that trickles bytes and never finishes a line (slowloris) is closed by the
idle timeout at every layer combination, as an idle peer is: the timeout counts the
time without a complete line, not the time without a byte."""

from __future__ import annotations

import socket
import threading

from guessgame import protocol
from guessgame.config import Settings
from guessgame.live.host import serving
from guessgame.protocol import IdleTimeout
from guessgame.threaded.connection import Connection
from peers import PROBE_REPLY, Peer, wait_until_idle

IDLE_TIMEOUT = 1.5
"""Longer than the trickle's one second, so that a timeout per recv() never fires."""

CLOSE_MARGIN = 1.0


def test_a_peer_trickling_a_byte_a_second_is_closed(settings: Settings) -> None:
    closing = protocol.error_line(IdleTimeout(IDLE_TIMEOUT)) + "\n"
    with serving(settings.with_options(idle_timeout=IDLE_TIMEOUT)) as server:
        with Peer.to(server) as slow:
            slow.send("PARAMS 1 5")
            assert slow.ask("NUMBER").isdigit()
            said, took = slow.trickle(b"NUMBER", every=1.0)
        assert said.decode() == closing
        assert took <= IDLE_TIMEOUT + CLOSE_MARGIN, f"closed after {took:.2f} s"
        wait_until_idle(server, "the trickling peer's session to end")
        with Peer.to(server) as newcomer:
            assert newcomer.probe() == PROBE_REPLY


def test_a_slow_line_does_not_shorten_the_next_lines_time() -> None:
    """A line read by many recv()s waits only what is left of its time; the next line
    gets the whole timeout again."""
    idle = 1.0
    ours, theirs = socket.socketpair()
    with Connection(ours, 64, idle) as connection, theirs:
        sender = threading.Thread(target=_dribble, args=(theirs, b"NUMBER\n", idle / 20))
        sender.start()
        assert connection.receive() == "NUMBER"  # 7 recv()s, most with a shortened wait
        sender.join()
        late = threading.Timer(idle * 0.8, theirs.sendall, (b"PARAMS 1 5\n",))
        late.start()
        try:
            assert connection.receive() == "PARAMS 1 5"
        finally:
            late.join()


def _dribble(sock: socket.socket, data: bytes, pause: float) -> None:
    done = threading.Event()
    for index in range(len(data)):
        sock.sendall(data[index:index + 1])
        done.wait(pause)
