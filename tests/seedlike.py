"""A client and servers written the way the original threaded and asyncio programs were.

They keep the original's wire behaviour on purpose: the Japanese decision words, no
reply to PARAMS or REPORT, one random guess per NUMBER. Wire-compatibility tests play
them against this project's server and client. Output goes to a list, not stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import socket
import threading
from collections.abc import AsyncIterator, Iterator

from peers import one_connection_server
from timing import UNIT

WARMER, COLDER, UNSURE, CORRECT, SAME = "近付いた", "遠ざかった", "不明", "正解!", "前回と同じ"


class ConnectionClosed(Exception):
    pass


def judge(secret: int, number: int, last_distance: float | None) -> tuple[str, float]:
    distance = math.fabs(number - secret)
    if distance == 0:
        return CORRECT, distance
    if last_distance is None:
        return UNSURE, distance
    if distance < last_distance:
        return WARMER, distance
    if distance > last_distance:
        return COLDER, distance
    return SAME, distance


class SeedClient:
    """The threaded client: one blocking socket, makefile for reading."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.file = sock, sock.makefile("rb")
        self.secret: int | None = None
        self.last_distance: float | None = None

    def send(self, command: str) -> None:
        self.sock.send((command + "\n").encode())

    def receive(self) -> str:
        line = self.file.readline()
        if not line:
            raise ConnectionClosed()
        return line.rstrip().decode()

    @contextlib.contextmanager
    def session(self, lower: int, upper: int, secret: int) -> Iterator[None]:
        self.secret, self.last_distance = secret, None
        self.send(f"PARAMS {lower} {upper}")
        yield

    def request_numbers(self, count: int) -> Iterator[int]:
        for _ in range(count):
            self.send("NUMBER")
            yield int(self.receive())
            if self.last_distance == 0:
                return

    def report_outcome(self, number: int) -> str:
        assert self.secret is not None
        decision, self.last_distance = judge(self.secret, number, self.last_distance)
        self.send(f"REPORT {decision}")
        return decision


def run_seed_client(port: int) -> list[tuple[int, str]]:
    with socket.create_connection(("127.0.0.1", port), timeout=UNIT) as sock:
        client = SeedClient(sock)
        with client.session(1, 5, 3):
            results = [(x, client.report_outcome(x)) for x in client.request_numbers(5)]
        with client.session(10, 15, 12):
            for number in client.request_numbers(6):
                results.append((number, client.report_outcome(number)))
        client.file.close()
    return results


async def run_seed_async_client(port: int) -> list[tuple[int, str]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    results: list[tuple[int, str]] = []
    state: dict[str, float | None] = {"last": None}

    async def send(command: str) -> None:
        writer.write((command + "\n").encode())
        await writer.drain()

    @contextlib.asynccontextmanager
    async def session(lower: int, upper: int) -> AsyncIterator[None]:
        state["last"] = None
        await send(f"PARAMS {lower} {upper}")
        yield

    async def request_numbers(count: int) -> AsyncIterator[int]:
        for _ in range(count):
            await send("NUMBER")
            yield int((await reader.readline()).rstrip().decode())
            if state["last"] == 0:
                return

    for lower, upper, secret, count in ((1, 5, 3, 5), (10, 15, 12, 6)):
        async with session(lower, upper):
            async for number in request_numbers(count):
                decision, state["last"] = judge(secret, number, state["last"])
                await send(f"REPORT {decision}")
                results.append((number, decision))
    writer.close()
    await writer.wait_closed()
    return results


class SeedSession:
    """The threaded server's session: random guesses, prints reports, asserts on input."""

    def __init__(self, sock: socket.socket, printed: list[str]) -> None:
        self.sock, self.file, self.printed = sock, sock.makefile("rb"), printed
        self.lower = self.upper = 0
        self.guesses: list[int] = []

    def send(self, command: str) -> None:
        self.sock.send((command + "\n").encode())

    def loop(self) -> None:
        while line := self.file.readline():
            parts = line.rstrip().decode().split(" ")
            if parts[0] == "PARAMS":
                self.lower, self.upper, self.guesses = int(parts[1]), int(parts[2]), []
            elif parts[0] == "NUMBER":
                while (guess := random.randint(self.lower, self.upper)) in self.guesses:
                    pass
                self.guesses.append(guess)
                self.send(str(guess))
            elif parts[0] == "REPORT":
                self.printed.append(f"Server: {self.guesses[-1]} is {parts[1]}")
        self.file.close()


def seed_threaded_server(printed: list[str]) -> contextlib.AbstractContextManager[int]:
    """Serves one connection in a thread, the original's way; yields the port."""
    return one_connection_server(lambda conn: SeedSession(conn, printed).loop(), "seed server")


async def seed_async_handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            printed: list[str]) -> None:
    lower = upper = 0
    guesses: list[int] = []
    while line := await reader.readline():
        parts = line.rstrip().decode().split(" ")
        if parts[0] == "PARAMS":
            lower, upper, guesses = int(parts[1]), int(parts[2]), []
        elif parts[0] == "NUMBER":
            while (guess := random.randint(lower, upper)) in guesses:
                pass
            guesses.append(guess)
            writer.write(f"{guess}\n".encode())
            await writer.drain()
        elif parts[0] == "REPORT":
            printed.append(f"Server: {guesses[-1]} is {parts[1]}")
    writer.close()
    await writer.wait_closed()


@contextlib.contextmanager
def seed_async_server(printed: list[str]) -> Iterator[int]:
    """Serves one connection with asyncio streams in its own program's loop (a thread
    here, standing in for another process); yields the port."""
    ready: list[int] = []
    started = threading.Event()

    async def main() -> None:
        done = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await seed_async_handle(reader, writer, printed)
            done.set()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            ready.append(server.sockets[0].getsockname()[1])
            started.set()
            await done.wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="seed async server")
    thread.start()
    started.wait(UNIT)
    try:
        yield ready[0]
    finally:
        thread.join()
