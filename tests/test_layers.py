"""One conformance suite, run against every implementation of each layer.

Connections: the blocking one, the asyncio one, and the two faces that offer one
flavour over the other across a bridge. Each is driven through a `Driver` that makes
its calls look synchronous, so every test body is written once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import socket
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from guessgame import adapters, protocol
from guessgame.aio import client as aio_client
from guessgame.aio import connection as aio_connection
from guessgame.aio import session as aio_session
from guessgame.bridge import Bridge
from guessgame.protocol import (
    Decision,
    Game,
    GameStarted,
    Guesser,
    LineTooLong,
    PeerClosed,
    ProtocolError,
    Reported,
)
from guessgame.threaded import client as threaded_client
from guessgame.threaded import connection as threaded_connection
from guessgame.threaded import session as threaded_session

LIMIT = 32
IDLE = None  # no idle timeout: these tests synchronise on the peer's bytes


class Driver:
    """Makes a connection's calls synchronous, whatever its flavour."""

    def __init__(self, open_: Callable[[socket.socket], Any], call: Callable[[Any], Any],
                 close: Callable[[], None]) -> None:
        self._open, self._call, self._close = open_, call, close

    def open(self, sock: socket.socket) -> Any:
        return self._open(sock)

    def __call__(self, result: Any) -> Any:
        return self._call(result)

    def close(self) -> None:
        self._close()


def _threaded() -> Driver:
    return Driver(lambda s: threaded_connection.Connection(s, LIMIT, IDLE), lambda r: r,
                  lambda: None)


def _aio() -> Driver:
    runner = asyncio.Runner()
    return Driver(lambda s: runner.run(aio_connection.Connection.open(s, LIMIT, IDLE)),
                  lambda r: runner.run(r) if asyncio.iscoroutine(r) else r, runner.close)


def _blocking_face() -> Driver:
    bridge = Bridge.start_loop_thread(max_workers=4)
    return Driver(lambda s: bridge.run_in_loop(adapters.BlockingFace.open(bridge, s, LIMIT, IDLE)),
                  lambda r: r, bridge.close)


def _async_face() -> Driver:
    runner = asyncio.Runner()

    async def adopt() -> Bridge:
        return Bridge.adopt_running_loop(max_workers=4)

    bridge = runner.run(adopt())

    def close() -> None:
        bridge.shutdown_executors()
        runner.close()

    return Driver(lambda s: adapters.AsyncFace(threaded_connection.Connection(s, LIMIT, IDLE),
                                               bridge),
                  lambda r: runner.run(r) if asyncio.iscoroutine(r) else r, close)


DRIVERS = {"threaded": _threaded, "aio": _aio, "blocking-face": _blocking_face,
           "async-face": _async_face}


@pytest.fixture(params=list(DRIVERS))
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Driver, Any, socket.socket]]:
    """A connection under test and the raw socket of its peer."""
    driver = DRIVERS[request.param]()
    ours, peer = socket.socketpair()
    connection = driver.open(ours)
    try:
        yield driver, connection, peer
    finally:
        driver(connection.close())
        peer.close()
        driver.close()


def test_lines_cross_in_both_directions(pair: tuple[Driver, Any, socket.socket]) -> None:
    run, connection, peer = pair
    run(connection.send("PARAMS 1 5"))
    assert peer.recv(100) == b"PARAMS 1 5\n"
    peer.sendall(b"NUMBER\nREPORT WARMER\r\n")
    assert run(connection.receive()) == "NUMBER"
    assert run(connection.receive()) == "REPORT WARMER"


def test_a_line_arriving_one_byte_at_a_time(pair: tuple[Driver, Any, socket.socket]) -> None:
    run, connection, peer = pair
    for byte in b"REPORT UNSURE\n":
        peer.send(bytes([byte]))
    assert run(connection.receive()) == "REPORT UNSURE"


def test_line_limit_counts_the_newline(pair: tuple[Driver, Any, socket.socket]) -> None:
    run, connection, peer = pair
    peer.sendall(b"x" * (LIMIT - 1) + b"\n")
    assert run(connection.receive()) == "x" * (LIMIT - 1)
    peer.sendall(b"y" * LIMIT + b"\n")
    with pytest.raises(LineTooLong):
        run(connection.receive())


def test_undecodable_line_is_an_error_and_the_next_line_still_reads(
        pair: tuple[Driver, Any, socket.socket]) -> None:
    run, connection, peer = pair
    peer.sendall(b"\xff\xfe\n" + b"NUMBER\n")
    with pytest.raises(ProtocolError, match="UTF-8"):
        run(connection.receive())
    assert run(connection.receive()) == "NUMBER"


@pytest.mark.parametrize(("tail", "mid_line"), [(b"", False), (b"NUMB", True)])
def test_peer_closing_is_peer_closed(pair: tuple[Driver, Any, socket.socket], tail: bytes,
                                     mid_line: bool) -> None:
    run, connection, peer = pair
    peer.sendall(tail)
    peer.shutdown(socket.SHUT_WR)
    with pytest.raises(PeerClosed) as closed:
        run(connection.receive())
    assert closed.value.mid_line is mid_line


def _error_of(run: Driver, receive: Callable[[], Any]) -> type[BaseException]:
    """The class of the error `receive()` fails with.

    Caught where it is raised, as a session does, and not by pytest.raises or by
    asyncio.Runner, which keep the error, and with it the frames of its traceback."""
    async def caught(pending: Coroutine[Any, Any, Any]) -> type[BaseException]:
        try:
            await pending
        except protocol.GameError as error:
            return type(error)
        return type(None)

    try:
        result = receive()
    except protocol.GameError as error:
        return type(error)
    return run(caught(result)) if asyncio.iscoroutine(result) else type(None)


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
@pytest.mark.parametrize("flavour", list(DRIVERS))
def test_a_finished_connection_is_freed_without_the_cycle_collector(flavour: str,
                                                                    reset: bool) -> None:
    """Everything a finished connection held goes as soon as it is closed.

    A reference cycle would keep it until the collector's next full collection, which
    comes rarely: a server with many short connections then holds the memory of the
    finished ones, and RSS keeps the high-water mark. An error that crossed a janus
    queue with its traceback was such a cycle, and so are janus's own queues.
    """
    run = DRIVERS[flavour]()
    ours, peer = socket.socketpair()
    gc.collect()
    gc.disable()
    try:
        connection = run.open(ours)
        freed = weakref.ref(connection)
        peer.sendall(b"\xff\n")  # an error that keeps the connection open, then the end
        if reset:  # a peer that closes with a line unread resets the connection
            run(connection.send("NUMBER"))
        peer.close()
        assert issubclass(_error_of(run, connection.receive), ProtocolError)
        assert issubclass(_error_of(run, connection.receive), PeerClosed)
        run(connection.close())
        del connection
        assert freed() is None, (
            f"a closed {flavour} connection is still referenced by "
            f"{[type(r).__name__ for r in gc.get_referrers(freed())]}")
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        # asyncio's transports are cycles of their own, which no code here can break.
        cycles = {type(o).__qualname__ for o in gc.garbage
                  if type(o).__module__.partition(".")[0] in ("guessgame", "janus")}
        assert not cycles, f"left for the cycle collector: {sorted(cycles)}"
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        run.close()


@pytest.mark.parametrize("flavour", ["threaded", "aio"])
def test_a_peer_that_stops_reading_times_out_the_send(flavour: str) -> None:
    ours, peer = socket.socketpair()
    for sock, option in ((ours, socket.SO_SNDBUF), (peer, socket.SO_RCVBUF)):
        sock.setsockopt(socket.SOL_SOCKET, option, 4096)
    line = "x" * 1000
    with peer, asyncio.Runner() as runner:
        if flavour == "aio":
            conn = runner.run(aio_connection.Connection.open(ours, 2048, 0.2))
            send, close = (lambda: runner.run(conn.send(line))), (lambda: runner.run(conn.close()))
        else:
            blocking = threaded_connection.Connection(ours, 2048, 0.2)
            send, close = (lambda: blocking.send(line)), blocking.close
        try:
            with pytest.raises(PeerClosed):
                while True:  # until the buffers on both sides are full and the send waits
                    send()
        finally:
            close()


class RecvSpy(socket.socket):
    """A socket that records the size each recv() or recv_into() asks for."""

    asked: list[int]

    def recv(self, size: int, flags: int = 0) -> bytes:
        self.asked.append(size)
        return super().recv(size, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self.asked.append(nbytes or len(buffer))
        return super().recv_into(buffer, nbytes, flags)


def test_an_asyncio_connection_reads_in_chunks_the_heap_serves() -> None:
    ours, peer = socket.socketpair()
    spy = RecvSpy(fileno=ours.detach())
    spy.asked = []
    lines = [f"NUMBER {index}" for index in range(2000)]
    peer.sendall("".join(line + "\n" for line in lines).encode())

    async def receive_all() -> list[str]:
        conn = await aio_connection.Connection.open(spy, LIMIT, IDLE)
        try:
            return [await conn.receive() for _ in lines]
        finally:
            await conn.close()

    with peer:
        assert asyncio.run(receive_all()) == lines
    assert spy.asked, "the transport read through recv()"
    assert max(spy.asked) <= aio_connection.READ_BYTES, spy.asked


# --- sessions and clients, over scripted connections ---------------------------------


class ScriptedLines:
    """A blocking Lines that replays `incoming` and records what is sent."""

    peer = "scripted"

    def __init__(self, incoming: list[str]) -> None:
        self.incoming, self.sent, self.closed = list(incoming), list[str](), False

    def send(self, line: str) -> None:
        self.sent.append(line)

    def receive(self) -> str:
        if not self.incoming:
            raise PeerClosed()
        return self.incoming.pop(0)

    def close(self) -> None:
        self.closed = True


class AsyncScriptedLines(ScriptedLines):
    async def send(self, line: str) -> None:  # type: ignore[override]
        ScriptedLines.send(self, line)

    async def receive(self) -> str:  # type: ignore[override]
        return ScriptedLines.receive(self)

    async def close(self) -> None:  # type: ignore[override]
        ScriptedLines.close(self)


def _run(flavour: str, body: Callable[[], Coroutine[Any, Any, Any]] | Callable[[], Any]) -> Any:
    result = body()
    return asyncio.run(result) if flavour == "aio" else result


SESSION_SCRIPT = ["PARAMS 1 3", "NUMBER", "REPORT 不明", "NUMBER", "REPORT CORRECT", "NUMBER",
                  "BOGUS", "x" * 10]


@pytest.mark.parametrize("flavour", ["threaded", "aio"])
def test_session_twins_answer_the_same(flavour: str) -> None:
    lines = (AsyncScriptedLines if flavour == "aio" else ScriptedLines)(SESSION_SCRIPT)
    events: list[protocol.Event] = []
    module = aio_session if flavour == "aio" else threaded_session
    session = module.Session(lines, Guesser(random.Random(5)), events.append)  # type: ignore[arg-type]
    _run(flavour, session.run)
    guesses = [int(line) for line in lines.sent[:2]]
    assert lines.sent[2:] == ["ERROR NUMBER before PARAMS: no game in progress",
                              "ERROR unknown command 'BOGUS'", "ERROR unknown command 'xxxxxxxxxx'"]
    assert events == [GameStarted(1, 3), Reported(guesses[0], Decision.UNSURE),
                      Reported(guesses[1], Decision.CORRECT)]
    assert len(set(guesses)) == 2


@pytest.mark.parametrize("flavour", ["threaded", "aio"])
def test_session_closes_after_an_oversized_line(flavour: str) -> None:
    class TooLong(ScriptedLines):
        def receive(self) -> str:
            raise LineTooLong(LIMIT)

    class AsyncTooLong(AsyncScriptedLines):
        async def receive(self) -> str:  # type: ignore[override]
            raise LineTooLong(LIMIT)

    lines = (AsyncTooLong if flavour == "aio" else TooLong)([])
    module = aio_session if flavour == "aio" else threaded_session
    _run(flavour, module.Session(lines, Guesser(random.Random()), None).run)  # type: ignore[arg-type]
    assert lines.sent == [f"ERROR line longer than {LIMIT} bytes"]


@pytest.mark.parametrize("flavour", ["threaded", "aio"])
def test_client_twins_play_the_same(flavour: str) -> None:
    lines = (AsyncScriptedLines if flavour == "aio" else ScriptedLines)(["4", "1", "3"])
    module = aio_client if flavour == "aio" else threaded_client
    client = module.Client(lines)  # type: ignore[arg-type]
    rounds = _run(flavour, lambda: client.play(Game(1, 5, 3, 5)))
    assert rounds == [(4, Decision.UNSURE), (1, Decision.COLDER), (3, Decision.CORRECT)]
    assert lines.sent == ["PARAMS 1 5", "NUMBER", "REPORT UNSURE", "NUMBER", "REPORT COLDER",
                          "NUMBER", "REPORT CORRECT"]


@pytest.mark.parametrize("flavour", ["threaded", "aio"])
def test_client_stops_at_the_guess_count(flavour: str) -> None:
    lines = (AsyncScriptedLines if flavour == "aio" else ScriptedLines)(["1", "2"])
    module = aio_client if flavour == "aio" else threaded_client
    client = module.Client(lines)  # type: ignore[arg-type]
    rounds = _run(flavour, lambda: client.play(Game(1, 5, 5, 2)))
    assert [decision for _, decision in rounds] == [Decision.UNSURE, Decision.WARMER]
    assert lines.sent.count("NUMBER") == 2


def test_closing_a_blocking_connection_wakes_a_receive_parked_in_another_thread() -> None:
    # AsyncFace closes from the loop while a worker may be parked in receive().
    ours, peer = socket.socketpair()
    connection = threaded_connection.Connection(ours, LIMIT, None)
    outcome: list[BaseException] = []

    def park() -> None:
        try:
            connection.receive()
        except BaseException as error:  # the test inspects whatever ended the read
            outcome.append(error)

    reader = threading.Thread(target=park, name="parked reader")
    reader.start()
    with peer:
        connection.close()
        reader.join()
    assert len(outcome) == 1 and isinstance(outcome[0], PeerClosed), outcome


def test_cancelling_an_asyncio_receive_loses_no_line() -> None:
    ours, peer = socket.socketpair()

    async def cancel_then_receive() -> str:
        conn = await aio_connection.Connection.open(ours, LIMIT, IDLE)
        try:
            waiting = asyncio.ensure_future(conn.receive())
            await asyncio.sleep(0)  # it waits: nothing was sent yet
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            peer.sendall(b"NUMBER\n")
            return await conn.receive()
        finally:
            await conn.close()

    with peer:
        assert asyncio.run(cancel_then_receive()) == "NUMBER"
