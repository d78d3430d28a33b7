"""One conformance suite per interface, run against every implementation of it.

Connections: the blocking one, the asyncio one, and the two faces that offer one
flavour over the other across a bridge, each with an event loop on asyncio's loop and,
where it is installed, on uvloop's. Each is driven through a `Driver` that makes its
calls look synchronous, so every test body is written once and tests only the surface
the twins share: open and connect, send, receive, close, peer, and their errors, and
read_ahead, which only the two connections have.
Sessions and clients: the threaded and asyncio twins, driven by a `Twin`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import random
import socket
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

from conftest import UVLOOP
from guessgame import adapters, protocol
from guessgame.aio import client as aio_client
from guessgame.aio import connection as aio_connection
from guessgame.aio import session as aio_session
from guessgame.bridge import Bridge, new_event_loop
from guessgame.protocol import (
    Decision,
    Game,
    GameStarted,
    Guesser,
    IdleTimeout,
    LineTooLong,
    NotUTF8,
    PeerClosed,
    ProtocolError,
    Reported,
)
from guessgame.threaded import client as threaded_client
from guessgame.threaded import connection as threaded_connection
from guessgame.threaded import session as threaded_session
from timing import UNIT

LIMIT = 32
IDLE = None  # no idle timeout: these tests synchronise on the peer's bytes
SHORT = UNIT / 25
"""The idle timeout of the tests that wait for it to pass."""

def _loop_factory(uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop]:
    return functools.partial(new_event_loop, uvloop)


class Driver:
    """Makes a connection's calls synchronous, whatever its flavour."""

    def __init__(self, open_: Callable[[socket.socket, float | None], Any],
                 connect: Callable[[str, int, float | None], Any],
                 call: Callable[[Any], Any], close: Callable[[], None]) -> None:
        self._open, self._connect, self._call, self._close = open_, connect, call, close

    def open(self, sock: socket.socket, idle: float | None = IDLE) -> Any:
        return self._open(sock, idle)

    def connect(self, host: str, port: int, idle: float | None = IDLE) -> Any:
        return self._connect(host, port, idle)

    def __call__(self, result: Any) -> Any:
        return self._call(result)

    def close(self) -> None:
        self._close()


def _threaded(uvloop: bool) -> Driver:
    del uvloop  # no event loop
    return Driver(lambda s, idle: threaded_connection.Connection(s, LIMIT, idle),
                  lambda host, port, idle: threaded_connection.Connection.connect(
                      host, port, LIMIT, idle),
                  lambda r: r, lambda: None)


def _aio(uvloop: bool) -> Driver:
    runner = asyncio.Runner(loop_factory=_loop_factory(uvloop))
    return Driver(lambda s, idle: runner.run(aio_connection.Connection.open(s, LIMIT, idle)),
                  lambda host, port, idle: runner.run(aio_connection.Connection.connect(
                      host, port, LIMIT, idle)),
                  lambda r: runner.run(r) if asyncio.iscoroutine(r) else r, runner.close)


def _blocking_face(uvloop: bool) -> Driver:
    bridge = Bridge.start_loop_thread(max_workers=4, uvloop=uvloop)
    return Driver(lambda s, idle: bridge.run_in_loop(
                      adapters.BlockingFace.open(bridge, s, LIMIT, idle)),
                  lambda host, port, idle: bridge.run_in_loop(
                      adapters.BlockingFace.connect(bridge, host, port, LIMIT, idle)),
                  lambda r: r, bridge.close)


def _async_face(uvloop: bool) -> Driver:
    runner = asyncio.Runner(loop_factory=_loop_factory(uvloop))

    async def adopt() -> Bridge:
        return Bridge.adopt_running_loop(max_workers=4)

    bridge = runner.run(adopt())

    def close() -> None:
        bridge.shutdown_executors()
        runner.close()

    return Driver(lambda s, idle: adapters.AsyncFace(
                      threaded_connection.Connection(s, LIMIT, idle), bridge),
                  lambda host, port, idle: adapters.AsyncFace(
                      threaded_connection.Connection.connect(host, port, LIMIT, idle), bridge),
                  lambda r: runner.run(r) if asyncio.iscoroutine(r) else r, close)


FLAVOURS: dict[str, Callable[[bool], Driver]] = {
    "threaded": _threaded, "aio": _aio, "blocking-face": _blocking_face,
    "async-face": _async_face}
"""Every implementation of a connection; each with an event loop also runs on uvloop."""

NEEDS_UVLOOP = pytest.mark.skipif(not UVLOOP, reason="uvloop is not installed")
IMPLEMENTATIONS = [pytest.param((name, False), id=name) for name in FLAVOURS] + [
    pytest.param((name, True), id=f"{name}-uvloop", marks=NEEDS_UVLOOP)
    for name in FLAVOURS if name != "threaded"]

READS_AHEAD = [param for param in IMPLEMENTATIONS if param.values[0][0] in ("threaded", "aio")]
"""The connections that tell whether a whole line is read ahead (the faces batch on it)."""


@pytest.fixture(params=IMPLEMENTATIONS)
def driver(request: pytest.FixtureRequest) -> Iterator[Driver]:
    """One implementation of a connection, on asyncio's loop or uvloop's."""
    name, uvloop = request.param
    driver = FLAVOURS[name](uvloop)
    yield driver
    driver.close()


@contextlib.contextmanager
def opened(driver: Driver, idle: float | None = IDLE,
           buffer: int | None = None) -> Iterator[tuple[Any, socket.socket]]:
    """A connection over a socket pair, and the raw socket of its peer; with `buffer`,
    the kernel buffers between them are that small."""
    ours, peer = socket.socketpair()
    if buffer is not None:
        for sock, option in ((ours, socket.SO_SNDBUF), (peer, socket.SO_RCVBUF)):
            sock.setsockopt(socket.SOL_SOCKET, option, buffer)
    connection = driver.open(ours, idle)
    try:
        yield connection, peer
    finally:
        driver(connection.close())
        peer.close()


@pytest.fixture
def pair(driver: Driver) -> Iterator[tuple[Driver, Any, socket.socket]]:
    """A connection under test and the raw socket of its peer."""
    with opened(driver) as (connection, peer):
        yield driver, connection, peer


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


def test_a_line_sent_a_byte_at_a_time_while_the_receive_waits(driver: Driver) -> None:
    """Each byte its own send, from another thread while receive() waits: however many
    reads the line takes, each within what is left of its idle timeout, it is received
    whole, and so is the line after it."""
    with opened(driver, idle=UNIT) as (connection, peer):
        sender = threading.Thread(target=_send_bytewise, args=(peer, b"REPORT UNSURE\nNUMBER\n"),
                                  name="a byte at a time")
        sender.start()
        try:
            assert driver(connection.receive()) == "REPORT UNSURE"
            assert driver(connection.receive()) == "NUMBER"
        finally:
            sender.join()


def _send_bytewise(sock: socket.socket, data: bytes) -> None:
    for byte in data:
        sock.send(bytes([byte]))


@pytest.mark.parametrize("driver", READS_AHEAD, indirect=True)
def test_bytes_after_a_line_stay_buffered_for_the_next_receive(
        pair: tuple[Driver, Any, socket.socket]) -> None:
    """What a read brings past a line waits for the next receive(), even once the peer
    has left, and read_ahead() tells whether a whole line is waiting."""
    run, connection, peer = pair
    assert not connection.read_ahead()
    peer.sendall(b"NUMBER\nREPORT UNSURE\nPAR")
    assert run(connection.receive()) == "NUMBER"
    assert connection.read_ahead()
    peer.shutdown(socket.SHUT_WR)
    assert run(connection.receive()) == "REPORT UNSURE"
    assert not connection.read_ahead()  # the start of a line is not a line
    with pytest.raises(PeerClosed) as closed:
        run(connection.receive())
    assert closed.value.mid_line


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
    with pytest.raises(NotUTF8, match="UTF-8"):
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


def test_a_connection_to_a_listener_names_its_peer(driver: Driver) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        connection = driver.connect("127.0.0.1", port)
        peer, _ = listener.accept()
    with peer:
        try:
            assert connection.peer == f"127.0.0.1:{port}"
            peer.sendall(b"NUMBER\n")
            assert driver(connection.receive()) == "NUMBER"
        finally:
            driver(connection.close())
        assert peer.recv(16) == b""  # closed: the peer sees the end of the stream


def test_a_silent_peer_times_out_the_receive(driver: Driver) -> None:
    with opened(driver, idle=SHORT) as (connection, _), pytest.raises(IdleTimeout):
        driver(connection.receive())


def test_a_peer_that_stops_reading_times_out_the_send(driver: Driver) -> None:
    """Sends fill the buffers on both sides, then one waits the idle timeout and fails;
    a face that queues sends fails the next send once its queue is full."""
    with opened(driver, idle=SHORT, buffer=4096) as (connection, _), pytest.raises(PeerClosed):
        while True:
            driver(connection.send("x" * 1000))


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
def test_a_finished_connection_is_freed_without_the_cycle_collector(driver: Driver,
                                                                    reset: bool) -> None:
    """Everything a finished connection held goes as soon as it is closed.

    A reference cycle would keep it until the collector's next full collection, which
    comes rarely: a server with many short connections then holds the memory of the
    finished ones, and RSS keeps the high-water mark. An error that crossed a janus
    queue with its traceback was such a cycle, and so are janus's own queues.
    """
    run = driver
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
            f"a closed connection is still referenced by "
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
    """A blocking Lines that replays `incoming`, then raises `end`, and records what is
    sent."""

    peer = "scripted"

    def __init__(self, incoming: list[str], end: protocol.GameError | None = None) -> None:
        self.incoming, self.sent, self.closed = list(incoming), list[str](), False
        self.end = end or PeerClosed()

    def send(self, line: str) -> None:
        self.sent.append(line)

    def receive(self) -> str:
        if not self.incoming:
            raise self.end
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


def _as_is(result: Any) -> Any:
    return result


@dataclass(frozen=True)
class Twin:
    """One flavour of the session and client layers, with what drives it."""

    session: ModuleType
    client: ModuleType
    lines: type[ScriptedLines]
    run: Callable[[Any], Any]


TWINS = {"threaded": Twin(threaded_session, threaded_client, ScriptedLines, _as_is),
         "aio": Twin(aio_session, aio_client, AsyncScriptedLines, asyncio.run)}


@pytest.fixture(params=list(TWINS))
def twin(request: pytest.FixtureRequest) -> Twin:
    return TWINS[request.param]


SESSION_SCRIPT = ["PARAMS 1 3", "NUMBER", "REPORT 不明", "NUMBER", "REPORT CORRECT", "NUMBER",
                  "BOGUS", "x" * 10]


def test_session_twins_answer_the_same(twin: Twin) -> None:
    lines = twin.lines(SESSION_SCRIPT)
    events: list[protocol.Event] = []
    twin.run(twin.session.Session(lines, Guesser(random.Random(5)), events.append).run())
    guesses = [int(line) for line in lines.sent[:2]]
    assert lines.sent[2:] == ["ERROR NUMBER before PARAMS: no game in progress",
                              "ERROR unknown command 'BOGUS'", "ERROR unknown command 'xxxxxxxxxx'"]
    assert events == [GameStarted(1, 3), Reported(guesses[0], Decision.UNSURE),
                      Reported(guesses[1], Decision.CORRECT)]
    assert len(set(guesses)) == 2


def test_session_closes_after_an_oversized_line(twin: Twin) -> None:
    lines = twin.lines([], end=LineTooLong(LIMIT))
    twin.run(twin.session.Session(lines, Guesser(random.Random()), None).run())
    assert lines.sent == [f"ERROR line longer than {LIMIT} bytes"]


def test_client_twins_play_the_same(twin: Twin) -> None:
    lines = twin.lines(["4", "1", "3"])
    rounds = twin.run(twin.client.Client(lines).play(Game(1, 5, 3, 5)))
    assert rounds == [(4, Decision.UNSURE), (1, Decision.COLDER), (3, Decision.CORRECT)]
    assert lines.sent == ["PARAMS 1 5", "NUMBER", "REPORT UNSURE", "NUMBER", "REPORT COLDER",
                          "NUMBER", "REPORT CORRECT"]


def test_client_stops_at_the_guess_count(twin: Twin) -> None:
    lines = twin.lines(["1", "2"])
    rounds = twin.run(twin.client.Client(lines).play(Game(1, 5, 5, 2)))
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
