"""Clients and servers that behave on the wire like Effective Python's own item 61 programs.

The book (2nd edition, item 61; its published example code is
`example_code/item_61.py` in bslatkin/effectivepython) has a threaded client and
server, then an asyncio client and server. These peers are written here from what
those programs do, not copied from them. Where each behaviour comes from:

- Decision words `Warmer`, `Colder`, `Unsure`, `Correct`, in mixed case; no word for
  "same distance": the client starts each round at `Unsure` and changes it only for a
  correct, closer or farther guess (the book's `report_outcome`).
- The client wraps each game in a context manager that sends `PARAMS lo hi` on entry and
  `PARAMS 0 -1` on exit, whatever happened, and reads no reply to either (the book's
  `session`).
- The client plays (1, 5, secret 3) and then (10, 15, secret 12), asking for at most
  five numbers in each, and stops asking once a guess was correct (`request_numbers`,
  `run_client`). Five guesses for six numbers: the second game is lost whenever the
  server guesses 12 last. The book's own run wins because it seeds `random` with 1234.
- The client turns each reply into an int with int(): an `ERROR` line crashes it
  with ValueError. It strips the last byte of each line, not whitespace.
- The server reads until an empty line or the end of the stream; it guesses at random,
  never repeating itself within a game; after `REPORT Correct` it answers every further
  NUMBER with the secret; it prints `Server: <guess> is <word>` for each report; it
  asserts on argument counts and raises on an unknown command (`Session`).

Where the peers deviate, it is to keep a test deterministic and clean, and nothing on
the wire changes: each server serves one connection and seeds its own
`random.Random(1234)` (the book seeds the global generator with 1234); the asyncio
client leaves out the book's `sleep(0.01)` after each report (it only orders the
book's printing of two programs sharing one process) and its `sleep(0.1)` before
connecting (our servers listen before the test connects); files and writers are
closed, where the book leaves them to the garbage collector or the process exit; and
where the book's server would spin forever once every number was guessed, it raises.
Output goes to a list, not stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import socket
import threading
from collections.abc import AsyncIterator, Iterator

from peers import DEADLINE, one_connection_server

WARMER, COLDER, UNSURE, CORRECT = "Warmer", "Colder", "Unsure", "Correct"
GAMES = ((1, 5, 3), (10, 15, 12))
REQUESTS = 5
"""The book's client asks for at most five numbers in each game."""
CLEAR = "PARAMS 0 -1"
SEED = 1234

Results = list[list[tuple[int, str]]]
"""The (guess, word) pairs the client reported, game by game."""


class ConnectionClosed(Exception):
    pass


class UnknownCommand(Exception):
    pass


def decide(secret: int, number: int, last_distance: float | None) -> tuple[str, float]:
    """The book's client's judgement: Unsure unless correct, closer or farther."""
    distance = math.fabs(number - secret)
    decision = UNSURE
    if distance == 0:
        decision = CORRECT
    elif last_distance is None:
        pass
    elif distance < last_distance:
        decision = WARMER
    elif distance > last_distance:
        decision = COLDER
    return decision, distance


def parse_line(raw: bytes) -> str:
    """The book drops the last byte of a line (its newline) and decodes the rest."""
    if not raw:
        raise ConnectionClosed()
    return raw[:-1].decode()


# --- the threaded client -------------------------------------------------------------


class BookClient:
    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.file = sock, sock.makefile("rb")
        self.secret: int | None = None
        self.last_distance: float | None = None

    def send(self, command: str) -> None:
        self.sock.send((command + "\n").encode())  # send, not sendall, as the book does

    def receive(self) -> str:
        return parse_line(self.file.readline())

    @contextlib.contextmanager
    def session(self, lower: int, upper: int, secret: int) -> Iterator[None]:
        self.secret = secret
        self.send(f"PARAMS {lower} {upper}")
        try:
            yield
        finally:
            self.secret, self.last_distance = None, None
            self.send(CLEAR)

    def request_numbers(self, count: int) -> Iterator[int]:
        for _ in range(count):
            self.send("NUMBER")
            yield int(self.receive())
            if self.last_distance == 0:
                return

    def report_outcome(self, number: int) -> str:
        assert self.secret is not None
        decision, self.last_distance = decide(self.secret, number, self.last_distance)
        self.send(f"REPORT {decision}")
        return decision


def run_book_client(port: int, host: str = "127.0.0.1") -> Results:
    results: Results = []
    with socket.create_connection((host, port), timeout=DEADLINE) as sock:
        client = BookClient(sock)
        for lower, upper, secret in GAMES:
            with client.session(lower, upper, secret):
                results.append([(number, client.report_outcome(number))
                                for number in client.request_numbers(REQUESTS)])
        client.file.close()
    return results


# --- the asyncio client --------------------------------------------------------------


class AsyncBookClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.secret: int | None = None
        self.last_distance: float | None = None

    async def send(self, command: str) -> None:
        self.writer.write((command + "\n").encode())
        await self.writer.drain()

    async def receive(self) -> str:
        return parse_line(await self.reader.readline())

    @contextlib.asynccontextmanager
    async def session(self, lower: int, upper: int, secret: int) -> AsyncIterator[None]:
        self.secret = secret
        await self.send(f"PARAMS {lower} {upper}")
        try:
            yield
        finally:
            self.secret, self.last_distance = None, None
            await self.send(CLEAR)

    async def request_numbers(self, count: int) -> AsyncIterator[int]:
        for _ in range(count):
            await self.send("NUMBER")
            yield int(await self.receive())
            if self.last_distance == 0:
                return

    async def report_outcome(self, number: int) -> str:
        assert self.secret is not None
        decision, self.last_distance = decide(self.secret, number, self.last_distance)
        await self.send(f"REPORT {decision}")
        return decision


async def run_book_async_client(port: int, host: str = "127.0.0.1") -> Results:
    reader, writer = await asyncio.open_connection(host, port)
    client = AsyncBookClient(reader, writer)
    results: Results = []
    for lower, upper, secret in GAMES:
        async with client.session(lower, upper, secret):
            results.append([(number, await client.report_outcome(number))
                            async for number in client.request_numbers(REQUESTS)])
    writer.close()
    await writer.wait_closed()
    return results


def run_book_async_client_in_thread(port: int, host: str = "127.0.0.1") -> Results:
    """The asyncio client as its own program: asyncio.run() in the calling thread."""
    return asyncio.run(run_book_async_client(port, host))


# --- the servers' shared game state ----------------------------------------------------


class BookGame:
    """The book's per-connection server state; both servers below drive it."""

    def __init__(self, printed: list[str]) -> None:
        self.printed = printed
        self.rng = random.Random(SEED)
        self.lower = self.upper = 0
        self.secret: int | None = None
        self.guesses: list[int] = []

    def set_params(self, parts: list[str]) -> None:
        assert len(parts) == 3
        self.lower, self.upper = int(parts[1]), int(parts[2])
        self.secret, self.guesses = None, []

    def next_guess(self) -> int:
        if self.secret is None:
            if len(set(self.guesses)) > self.upper - self.lower:
                raise RuntimeError(f"every number from {self.lower} to {self.upper} was guessed")
            while (guess := self.rng.randint(self.lower, self.upper)) in self.guesses:
                pass
        else:
            guess = self.secret  # after Correct, every NUMBER gets the secret again
        self.guesses.append(guess)
        return guess

    def receive_report(self, parts: list[str]) -> None:
        assert len(parts) == 2
        decision, last = parts[1], self.guesses[-1]
        if decision == CORRECT:
            self.secret = last
        self.printed.append(f"Server: {last} is {decision}")

    def reply(self, command: str) -> str | None:
        """The line to send for `command`, if any."""
        parts = command.split(" ")
        if parts[0] == "PARAMS":
            self.set_params(parts)
        elif parts[0] == "NUMBER":
            return str(self.next_guess())
        elif parts[0] == "REPORT":
            self.receive_report(parts)
        else:
            raise UnknownCommand(command)
        return None


# --- the threaded server ---------------------------------------------------------------


def book_session(sock: socket.socket, printed: list[str]) -> None:
    game = BookGame(printed)
    with sock.makefile("rb") as file:
        try:
            while command := parse_line(file.readline()):  # an empty line ends it too
                if (reply := game.reply(command)) is not None:
                    sock.send((reply + "\n").encode())
        except ConnectionClosed:
            pass


def book_threaded_server(printed: list[str]) -> contextlib.AbstractContextManager[int]:
    """Serves one connection in a thread, the book's way; yields the port."""
    return one_connection_server(lambda conn: book_session(conn, printed), "book server")


# --- the asyncio server ----------------------------------------------------------------


async def book_async_handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            printed: list[str]) -> None:
    game = BookGame(printed)
    try:
        while command := parse_line(await reader.readline()):
            if (reply := game.reply(command)) is not None:
                writer.write((reply + "\n").encode())
                await writer.drain()
    except ConnectionClosed:
        pass
    finally:
        writer.close()
        await writer.wait_closed()


@contextlib.contextmanager
def book_async_server(printed: list[str]) -> Iterator[int]:
    """Serves one connection with asyncio.start_server in its own program's loop (a thread
    here, standing in for another process); yields the port."""
    ports: list[int] = []
    started = threading.Event()
    failed: list[BaseException] = []

    async def main() -> None:
        done = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await book_async_handle(reader, writer, printed)
            except Exception as error:  # the test re-raises it in its own thread
                failed.append(error)
            finally:
                done.set()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            ports.append(server.sockets[0].getsockname()[1])
            started.set()
            await asyncio.wait_for(done.wait(), DEADLINE)

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="book async server")
    thread.start()
    if not started.wait(DEADLINE):
        raise AssertionError("the book's asyncio server did not start listening")
    try:
        yield ports[0]
    finally:
        thread.join()
    if failed:
        raise failed[0]
