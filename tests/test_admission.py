"""The connection limit counts the peers a server still serves, not those that left."""

from __future__ import annotations

import errno
import os
import select
import socket
from collections.abc import Iterator

import pytest

from guessgame import admission
from guessgame.admission import Reserve, Sessions
from timing import UNIT

linux_only = pytest.mark.skipif(not hasattr(select, "POLLRDHUP"),
                                reason="poll() tells a peer's shutdown on Linux only")


@pytest.fixture
def tcp_pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """Connected (server side, peer side) TCP pairs on loopback, closed afterwards."""
    pairs: list[tuple[socket.socket, socket.socket]] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        for _ in range(4):
            peer = socket.create_connection(listener.getsockname())
            ours, _ = listener.accept()
            pairs.append((ours, peer))
        yield pairs
    for ours, peer in pairs:
        ours.close()
        peer.close()


@linux_only
def test_a_peer_that_left_holds_no_place_at_the_limit(
        tcp_pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    sessions = Sessions(limit=2)
    (first, first_peer), (second, _), (third, _), (fourth, fourth_peer) = tcp_pairs
    assert sessions.admit(first, "first") and sessions.admit(second, "second")
    first_peer.close()  # it leaves; its session has not run since to read the end
    assert sessions.admit(third, "third") is not None
    assert len(sessions) == 3  # the first is still served, until it ends
    # The two still connected fill the limit: the next is refused with its ERROR line.
    assert sessions.admit(fourth, "fourth") is None
    fourth_peer.settimeout(UNIT)
    assert fourth_peer.recv(100).startswith(b"ERROR")


@linux_only
def test_a_session_set_aside_is_still_woken_on_stop_and_released_once(
        tcp_pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    sessions = Sessions(limit=1)
    (first, first_peer), (second, _), *_ = tcp_pairs
    first_id = sessions.admit(first, "first")
    first_peer.close()
    second_id = sessions.admit(second, "second")
    assert first_id and second_id
    sessions.abort_all()  # shuts both sockets down, so each session thread would wake
    assert first.recv(1) == b"" and second.recv(1) == b""
    sessions.release(first_id)
    sessions.release(second_id)
    assert len(sessions) == 0


def test_a_spare_lost_for_a_moment_is_taken_back_before_any_peer_is_accepted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another thread may hold a descriptor for the moment between a refused peer's
    close and the spare's reopening. The next accept must take the spare back first,
    and accept nobody until it has: a peer accepted then would keep the spare's place,
    and every later refusal would be silence."""
    real_open = os.open
    busy = True

    def open_while_busy(path: str, flags: int, *args: int) -> int:
        if busy and path == os.devnull:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real_open(path, flags, *args)

    reserve = Reserve()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        peers = [socket.create_connection(listener.getsockname()) for _ in range(2)]
        try:
            monkeypatch.setattr(admission.os, "open", open_while_busy)
            assert reserve._answer(listener)  # the first peer refused; no spare now
            with pytest.raises(OSError, match="no descriptor to spare yet"):
                reserve.accept(listener)  # the second waits: the spare comes first
            busy = False
            accepted = reserve.accept(listener)
            assert accepted is not None
            accepted[0].close()
            peers[0].settimeout(UNIT)
            assert peers[0].recv(100).startswith(b"ERROR")
        finally:
            for peer in peers:
                peer.close()
            reserve.close()
